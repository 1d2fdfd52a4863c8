// Package memprobe is "hubbub-bench memprobe": it measures the memory an
// edge process spends per idle, joined WebSocket connection. It runs an
// embedded JetStream nats-server, history (SQLite) and presence in its own
// process, starts the real hubbub-edge binary as a child process, opens N
// connections that each join a room from ceil(N/perProcess) client
// processes (the per-process open-file limit; "hubbub-bench memprobe
// client"), waits until the edge's memory settles, and reports
// (VmRSS after − VmRSS before) / N of the edge process and its goroutine
// count.
//
//	hubbub-bench memprobe -n 1000,5000,19000
//
// Environment variables given to memprobe (e.g. HUBBUB_WS_READ) pass
// through to the edge process. It is a measuring tool, not a test: it
// asserts nothing.
package memprobe

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/proc"
	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/services/presence"
	"github.com/hubbub-chat/hubbub/shared/natsembed"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

// Main runs the probe with args, or with "client" first a client process.
// self is the command line that runs "hubbub-bench memprobe", for the
// client processes.
func Main(ctx context.Context, args, self []string) error {
	if len(args) > 0 && args[0] == "client" {
		return clientMain(args[1:])
	}
	return probeMain(ctx, args, self)
}

type probeConfig struct {
	counts     []int
	rooms      int
	perProcess int
	edgeBin    string
	settle     time.Duration
	self       []string
}

func probeMain(ctx context.Context, args, self []string) error {
	fs := flag.NewFlagSet("memprobe", flag.ContinueOnError)
	cfg := probeConfig{self: self}
	counts := fs.String("n", "1000,5000,19000", "connection counts to measure, comma-separated (a fresh edge each)")
	fs.IntVar(&cfg.rooms, "rooms", 100, "rooms the connections are spread over")
	fs.IntVar(&cfg.perProcess, "per-process", 15000, "connections per client process")
	fs.StringVar(&cfg.edgeBin, "edge-bin", "", "hubbub-edge binary (default: go build it)")
	fs.DurationVar(&cfg.settle, "settle", 20*time.Second, "how long to let the edge settle before reading its memory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("bad -n %q", s)
		}
		cfg.counts = append(cfg.counts, n)
	}
	dir, err := os.MkdirTemp("", "memprobe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.edgeBin == "" {
		cfg.edgeBin = filepath.Join(dir, "hubbub-edge")
		out, err := exec.Command("go", "build", "-o", cfg.edgeBin, "github.com/hubbub-chat/hubbub/services/edge/cmd/hubbub-edge").CombinedOutput()
		if err != nil {
			return fmt.Errorf("build hubbub-edge: %w: %s", err, out)
		}
	}
	fmt.Printf("%-8s %12s %12s %14s %12s %12s\n", "conns", "rss_before", "rss_after", "rss_per_conn", "goroutines0", "goroutines")
	for i, n := range cfg.counts {
		r, err := measure(ctx, cfg, filepath.Join(dir, strconv.Itoa(i)), n)
		if err != nil {
			return fmt.Errorf("n=%d: %w", n, err)
		}
		fmt.Printf("%-8d %10dKiB %10dKiB %12.0f B %12d %12d\n", n, r.before>>10, r.after>>10, float64(r.after-r.before)/float64(n), r.gBefore, r.gAfter)
	}
	return nil
}

type result struct {
	before, after   int64
	gBefore, gAfter int
}

// measure runs one edge with n connections.
func measure(ctx context.Context, cfg probeConfig, dir string, n int) (result, error) {
	var res result
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	url, stopServices, err := startServices(ctx, dir)
	if err != nil {
		return res, err
	}
	defer stopServices()
	edge, addr, err := startEdge(cfg.edgeBin, url)
	if err != nil {
		return res, err
	}
	defer stopProcess(edge)
	base := "http://" + addr
	time.Sleep(2 * time.Second) // let the edge's start-up garbage go before the baseline
	if res.before, err = proc.RSS(edge.Process.Pid); err != nil {
		return res, err
	}
	m0 := metrics(base)
	res.gBefore = int(m0["go_goroutines"])
	runtimeStats(n, "before", m0)

	closeClients, err := startClients(cfg, "ws://"+addr+"/ws", n)
	defer closeClients()
	if err != nil {
		return res, err
	}
	if res.after, err = settle(edge.Process.Pid, base, n, cfg.settle); err != nil {
		return res, err
	}
	m := metrics(base)
	res.gAfter = int(m["go_goroutines"])
	runtimeStats(n, "after", m)
	return res, nil
}

// startServices runs an embedded nats-server with the stream and buckets
// provisioned, history (SQLite under dir) and presence, until stop.
func startServices(ctx context.Context, dir string) (url string, stop func(), err error) {
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	log := slog.New(slog.DiscardHandler)
	ns, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		return "", nil, err
	}
	undo = append(undo, ns.Shutdown)
	url = "nats://" + ns.Addr().String()
	connect := func() (*nats.Conn, error) {
		nc, err := nats.Connect(url, nats.MaxReconnects(-1))
		if err == nil {
			undo = append(undo, nc.Close)
		}
		return nc, err
	}
	nc, err := connect()
	if err != nil {
		return "", nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return "", nil, err
	}
	if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
		return "", nil, err
	}
	hnc, err := connect()
	if err != nil {
		return "", nil, err
	}
	hist, err := history.New(history.Config{StoreConfig: history.StoreConfig{DataDir: filepath.Join(dir, "history")}}, history.Deps{NC: hnc, Log: log})
	if err != nil {
		return "", nil, err
	}
	pnc, err := connect()
	if err != nil {
		return "", nil, err
	}
	pres, err := presence.New(presence.Config{}, presence.Deps{NC: pnc, Log: log})
	if err != nil {
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = hist.Run(sctx) })
	wg.Go(func() { _ = pres.Run(sctx) })
	undo = append(undo, func() { cancel(); wg.Wait() })
	return url, stop, nil
}

// startEdge starts the edge binary against natsURL on a free loopback
// address and waits until it is ready.
func startEdge(bin, natsURL string) (edge *exec.Cmd, addr string, err error) {
	if addr, err = freeAddr(); err != nil {
		return nil, "", err
	}
	edge = exec.Command(bin)
	edge.Env = append(os.Environ(), "HUBBUB_NATS_URL="+natsURL, "HUBBUB_HTTP_ADDR="+addr, "HUBBUB_LOG_LEVEL=error")
	edge.Stdout, edge.Stderr = os.Stderr, os.Stderr
	if err := edge.Start(); err != nil {
		return nil, "", err
	}
	if err := waitUntil(30*time.Second, func() bool { return httpStatus("http://"+addr+"/readyz") == http.StatusOK }); err != nil {
		stopProcess(edge)
		return nil, "", errors.New("edge never became ready")
	}
	return edge, addr, nil
}

// stopProcess sends SIGTERM and kills the process if it has not ended
// after 30 s.
func stopProcess(c *exec.Cmd) {
	_ = c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.Process.Kill()
		<-done
	}
}

// startClients starts the client processes for n connections to wsURL and
// waits until every one has joined its connections; closeAll ends them.
func startClients(cfg probeConfig, wsURL string, n int) (closeAll func(), err error) {
	var clients []*exec.Cmd
	var stdins []io.Closer
	closeAll = func() {
		for _, c := range stdins {
			_ = c.Close()
		}
		for _, c := range clients {
			_ = c.Wait()
		}
	}
	ready := make(chan error, (n+cfg.perProcess-1)/cfg.perProcess)
	for off := 0; off < n; off += cfg.perProcess {
		cnt := min(cfg.perProcess, n-off)
		argv := append(append([]string{}, cfg.self...), "client", "-url", wsURL, "-count", strconv.Itoa(cnt),
			"-offset", strconv.Itoa(off), "-rooms", strconv.Itoa(cfg.rooms))
		c := exec.Command(argv[0], argv[1:]...)
		c.Stderr = os.Stderr
		in, err := c.StdinPipe()
		if err != nil {
			return closeAll, err
		}
		out, err := c.StdoutPipe()
		if err != nil {
			return closeAll, err
		}
		if err := c.Start(); err != nil {
			return closeAll, err
		}
		clients = append(clients, c)
		stdins = append(stdins, in)
		go func() {
			line, err := bufio.NewReader(out).ReadString('\n')
			if err == nil && !strings.HasPrefix(line, "ready") {
				err = fmt.Errorf("client: %s", line)
			}
			ready <- err
			_, _ = io.Copy(io.Discard, out)
		}()
	}
	for range clients {
		select {
		case err := <-ready:
			if err != nil {
				return closeAll, fmt.Errorf("client process: %w", err)
			}
		case <-time.After(10 * time.Minute):
			return closeAll, errors.New("clients not ready after 10 minutes")
		}
	}
	return closeAll, nil
}

// settle lets the join storm's garbage be collected and returned to the
// OS for d, reporting how RSS and the Go heap evolve meanwhile, and
// returns the edge's RSS at the end.
func settle(pid int, base string, n int, d time.Duration) (int64, error) {
	start := time.Now()
	for {
		rss, err := proc.RSS(pid)
		if err != nil {
			return 0, err
		}
		m := metrics(base)
		fmt.Fprintf(os.Stderr, "memprobe: n=%d t=%3.0fs rss=%dKiB heap_alloc=%dKiB heap_inuse=%dKiB heap_idle-released=%dKiB next_gc=%dKiB\n",
			n, time.Since(start).Seconds(), rss>>10, int64(m["go_memstats_heap_alloc_bytes"])>>10, int64(m["go_memstats_heap_inuse_bytes"])>>10,
			int64(m["go_memstats_heap_idle_bytes"]-m["go_memstats_heap_released_bytes"])>>10, int64(m["go_memstats_next_gc_bytes"])>>10)
		if time.Since(start) >= d {
			return rss, nil
		}
		time.Sleep(min(10*time.Second, d))
	}
}

// runtimeStats prints the edge's Go runtime memory breakdown.
func runtimeStats(n int, when string, m map[string]float64) {
	kib := func(name string) int64 { return int64(m["go_memstats_"+name+"_bytes"]) >> 10 }
	fmt.Fprintf(os.Stderr, "memprobe: n=%d %s (KiB): sys=%d heap_sys=%d heap_released=%d heap_alloc=%d stack_sys=%d mspan_sys=%d gc_sys=%d other_sys=%d\n",
		n, when, kib("sys"), kib("heap_sys"), kib("heap_released"), kib("heap_alloc"), kib("stack_sys"), kib("mspan_sys"), kib("gc_sys"), kib("other_sys"))
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitUntil(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timeout")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// metrics reads the unlabelled samples of the edge's /metrics.
func metrics(base string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// clientMain opens count connections, joins each to a room, prints
// "ready" once every join got its history (or error) frame, keeps reading
// and discarding (answering pings) until stdin closes.
func clientMain(args []string) error {
	fs := flag.NewFlagSet("memprobe client", flag.ContinueOnError)
	url := fs.String("url", "", "ws:// URL of /ws")
	count := fs.Int("count", 1000, "connections")
	offset := fs.Int("offset", 0, "first user number")
	rooms := fs.Int("rooms", 100, "rooms")
	parallel := fs.Int("parallel", 128, "dials in flight")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var joined atomic.Int64
	var failed atomic.Int64
	var conns []net.Conn
	var mu sync.Mutex
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	for i := range *count {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := *offset + i
			conn, err := dialJoin(*url, id, *rooms, &joined, func() { <-sem })
			if err != nil {
				failed.Add(1)
				fmt.Fprintln(os.Stderr, "memprobe client:", err)
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Minute)
	for joined.Load()+failed.Load() < int64(*count) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if f := failed.Load(); f > 0 {
		fmt.Printf("failed %d connections\n", f)
	} else {
		fmt.Println("ready")
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

// dialJoin connects user u<id>, joins room r<id%rooms> and reads in the
// background; release is called once the join is answered or failed.
func dialJoin(url string, id, rooms int, joined *atomic.Int64, release func()) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, br, _, err := gws.Dial(ctx, url+"?user=u"+strconv.Itoa(id))
	if err != nil {
		release()
		return nil, err
	}
	var rd io.Reader = conn
	if br != nil {
		rd = io.MultiReader(br, conn)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{rd, conn}
	room := "r" + strconv.Itoa(id%rooms)
	if err := wsutil.WriteClientText(conn, []byte(`{"type":"join","room":"`+room+`"}`)); err != nil {
		_ = conn.Close()
		release()
		return nil, err
	}
	go func() {
		once := sync.Once{}
		done := func() { once.Do(func() { joined.Add(1); release() }) }
		defer once.Do(release)
		for {
			data, err := wsutil.ReadServerText(rw)
			if err != nil {
				return
			}
			if strings.Contains(string(data[:min(len(data), 40)]), `"type":"history"`) ||
				strings.Contains(string(data[:min(len(data), 40)]), `"type":"error"`) {
				done()
			}
		}
	}()
	return conn, nil
}
