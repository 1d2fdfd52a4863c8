// Package historybench is "hubbub-bench history": it measures the history
// service end to end, in one process:
//
//   - ingest: it publishes -n messages into the CHAT stream first, then
//     starts a history service and times how long the service takes to
//     store them all (until the consumer's ack floor reaches the stream's
//     last sequence), reporting messages per second;
//   - recent: -requesters goroutines over -conns NATS connections ask for
//     recent pages (-limit items) of random rooms for -duration, reporting
//     pages per second and latency percentiles.
//
// It runs an embedded JetStream server unless -nats-url names one, and
// stores into a fresh Postgres database created on the server -database-url
// names (dropped afterwards) or, without it, into SQLite in a temporary
// directory. With -profile-dir it writes a CPU profile of each phase.
// It measures and reports; it asserts nothing about speed.
package historybench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/pgdb"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/proc"
	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/shared/natsembed"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Main runs the measurement with the command-line arguments args (-h
// lists them) until it is done or ctx ends.
func Main(ctx context.Context, args []string) error { return run(ctx, args) }

// options are the command-line settings.
type options struct {
	natsURL    string
	dbURL      string
	n          int
	rooms      int
	body       int
	batch      int
	maxPending int
	inserts    int
	poolConns  int
	requesters int
	conns      int
	limit      int
	duration   time.Duration
	profileDir string
	skipRecent bool
	verify     bool
	verbose    bool
	dbName     string // the bench database, once created
}

func parse(args []string) (options, error) {
	var o options
	f := flag.NewFlagSet("history", flag.ContinueOnError)
	f.StringVar(&o.natsURL, "nats-url", "", "NATS server to use (empty: an embedded JetStream server in a temporary directory)")
	f.StringVar(&o.dbURL, "database-url", os.Getenv("HUBBUB_BENCH_DATABASE_URL"),
		"Postgres server URL; a fresh database is created on it and dropped afterwards (empty: SQLite) ($HUBBUB_BENCH_DATABASE_URL)")
	f.IntVar(&o.n, "n", 200000, "messages to publish and ingest")
	f.IntVar(&o.rooms, "rooms", 100, "rooms the messages are spread over")
	f.IntVar(&o.body, "body", 80, "message body size in bytes")
	f.IntVar(&o.batch, "batch", 0, "history insert batch size (0: the service default)")
	f.IntVar(&o.poolConns, "pool-conns", 0, "history's Postgres read pool size (pool_max_conns; 0: the store default)")
	f.IntVar(&o.inserts, "inserts", 0, "history insert batches in flight (0: the service default)")
	f.IntVar(&o.maxPending, "max-ack-pending", 0, "history consumer MaxAckPending (0: the service default)")
	f.IntVar(&o.requesters, "requesters", 64, "concurrent recent requesters")
	f.IntVar(&o.conns, "conns", 4, "NATS connections the requesters share")
	f.IntVar(&o.limit, "limit", 50, "items per recent page")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long the recent phase runs")
	f.StringVar(&o.profileDir, "profile-dir", "", "write ingest.pprof and recent.pprof CPU profiles here")
	f.BoolVar(&o.skipRecent, "skip-recent", false, "measure ingest only")
	f.BoolVar(&o.verify, "verify", false, "decode every recent reply fully (costs the load generator CPU the service could use)")
	f.BoolVar(&o.verbose, "v", false, "log the service's warnings")
	if err := f.Parse(args); err != nil {
		return o, err
	}
	if o.n <= 0 || o.rooms <= 0 || o.body <= 0 || o.requesters <= 0 || o.conns <= 0 || o.limit <= 0 {
		return o, errors.New("-n, -rooms, -body, -requesters, -conns and -limit must be positive")
	}
	return o, nil
}

func run(ctx context.Context, args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	if o.verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}

	tmp, err := os.MkdirTemp("", "hubbub-bench-history-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	natsURL := o.natsURL
	if natsURL == "" {
		srv, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(tmp, "nats")})
		if err != nil {
			return err
		}
		defer func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		}()
		natsURL = srv.ClientURL()
	}
	nc, err := nats.Connect(natsURL, nats.Name("hubbub-bench-history"))
	if err != nil {
		return fmt.Errorf("connect %s: %w", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := fresh(ctx, js); err != nil {
		return err
	}

	cfg := history.Config{
		StoreConfig:  history.StoreConfig{DataDir: filepath.Join(tmp, "sqlite")},
		IngestConfig: history.IngestConfig{BatchSize: o.batch, MaxAckPending: o.maxPending, Inserts: o.inserts},
	}
	backend := "sqlite"
	if o.dbURL != "" {
		backend = "postgres"
		dbURL, name, drop, err := createDatabase(ctx, o.dbURL)
		if err != nil {
			return err
		}
		defer drop()
		if o.poolConns > 0 {
			u, err := url.Parse(dbURL)
			if err != nil {
				return fmt.Errorf("database url: %w", err)
			}
			q := u.Query()
			q.Set("pool_max_conns", strconv.Itoa(o.poolConns))
			u.RawQuery = q.Encode()
			dbURL = u.String()
		}
		cfg.DatabaseURL, o.dbName = dbURL, name
	}
	fmt.Printf("machine: %d CPUs, GOMAXPROCS %d, %s; store %s; nats %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), backend, natsURL)

	last, err := publish(ctx, js, o)
	if err != nil {
		return err
	}

	svc, err := history.New(cfg, history.Deps{NC: nc, Log: log})
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	stopProfile, err := profile(o.profileDir, "ingest.pprof")
	if err != nil {
		cancel()
		return err
	}
	load, cpu0 := loadavg(), cpuNow(o.dbName)
	start := time.Now()
	go func() { done <- svc.Run(sctx) }()
	err = waitStored(ctx, js, last, done)
	took := time.Since(start)
	stopProfile()
	if err != nil {
		cancel()
		return err
	}
	fmt.Printf("ingest: %d messages in %v = %.0f msgs/s (batch %d, %d inserts in flight; loadavg before %s, after %s)\n",
		o.n, took.Round(time.Millisecond), float64(o.n)/took.Seconds(), cfg.WithDefaults().BatchSize, cfg.WithDefaults().Inserts, load, loadavg())
	fmt.Printf("ingest: %s\n", per(cpu0, cpuNow(o.dbName), float64(o.n), "message"))

	if !o.skipRecent {
		if err := waitReady(ctx, svc); err != nil {
			cancel()
			return err
		}
		if err := recentLoad(ctx, natsURL, o); err != nil {
			cancel()
			return err
		}
	}
	cancel()
	if err := <-done; err != nil {
		return fmt.Errorf("history run: %w", err)
	}
	return nil
}

// fresh deletes the stream and consumer left by an earlier run on an
// external server, then provisions.
func fresh(ctx context.Context, js jetstream.JetStream) error {
	if err := js.DeleteStream(ctx, subjects.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete stream: %w", err)
	}
	if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}

// createDatabase creates a uniquely named database on the server of admin
// and returns its URL and a function dropping it.
func createDatabase(ctx context.Context, admin string) (dbURL, name string, drop func(), err error) {
	var rnd [4]byte
	_, _ = crand.Read(rnd[:])
	name = "hubbub_bench_" + hex.EncodeToString(rnd[:])
	dbURL, dropErr, err := pgdb.Fresh(ctx, admin, name)
	if err != nil {
		return "", "", nil, err
	}
	drop = func() {
		if err := dropErr(); err != nil {
			fmt.Fprintln(os.Stderr, "hubbub-bench history: drop database:", err)
		}
	}
	return dbURL, name, drop, nil
}

// publish stores o.n messages in the stream (asynchronous publishes, every
// one acknowledged) and returns the last sequence.
func publish(ctx context.Context, js jetstream.JetStream, o options) (uint64, error) {
	body := strings.Repeat("m", o.body)
	start := time.Now()
	var (
		mu   sync.Mutex
		last uint64
		errs []error
	)
	acks := make(chan jetstream.PubAckFuture, 4096)
	var wg sync.WaitGroup
	wg.Go(func() {
		for f := range acks {
			select {
			case a := <-f.Ok():
				mu.Lock()
				last = max(last, a.Sequence)
				mu.Unlock()
			case err := <-f.Err():
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}
	})
	for i := range o.n {
		room := fmt.Sprintf("room-%04d", i%o.rooms)
		data, err := json.Marshal(wire.Post{Room: room, User: fmt.Sprintf("user-%d", i%997), Body: body,
			Kind: wire.KindMessage, TS: time.Now().UnixMilli(), CID: fmt.Sprintf("c%d", i)})
		if err != nil {
			close(acks)
			return 0, err
		}
		f, err := js.PublishAsync(subjects.Room(room), data)
		for errors.Is(err, jetstream.ErrTooManyStalledMsgs) && ctx.Err() == nil {
			// The server is slower than the publisher (a busy machine):
			// let the outstanding acks arrive, then go on.
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			f, err = js.PublishAsync(subjects.Room(room), data)
		}
		if err != nil {
			close(acks)
			wg.Wait()
			return 0, fmt.Errorf("publish: %w", err)
		}
		select {
		case acks <- f:
		case <-ctx.Done():
			close(acks)
			wg.Wait()
			return 0, ctx.Err()
		}
	}
	close(acks)
	wg.Wait()
	if len(errs) > 0 {
		return 0, fmt.Errorf("%d publishes failed, first: %w", len(errs), errs[0])
	}
	took := time.Since(start)
	fmt.Printf("publish: %d messages (%d rooms, %d-byte bodies) in %v = %.0f msgs/s\n",
		o.n, o.rooms, o.body, took.Round(time.Millisecond), float64(o.n)/took.Seconds())
	return last, nil
}

// waitStored polls the history consumer until its ack floor reaches last.
func waitStored(ctx context.Context, js jetstream.JetStream, last uint64, done <-chan error) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			return fmt.Errorf("history stopped during ingest: %w", err)
		case <-t.C:
		}
		cons, err := js.Consumer(ctx, subjects.Stream, subjects.HistoryConsumer)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer info: %w", err)
		}
		if ci.AckFloor.Stream >= last {
			return nil
		}
	}
}

func waitReady(ctx context.Context, svc *history.Service) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := svc.Ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("history not ready: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recentLoad runs the recent phase and prints its figures.
func recentLoad(ctx context.Context, natsURL string, o options) error {
	conns := make([]*nats.Conn, o.conns)
	for i := range conns {
		nc, err := nats.Connect(natsURL, nats.Name(fmt.Sprintf("hubbub-bench-history-%d", i)))
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer nc.Close()
		conns[i] = nc
	}
	stopProfile, err := profile(o.profileDir, "recent.pprof")
	if err != nil {
		return err
	}
	defer stopProfile()
	load, cpu0 := loadavg(), cpuNow(o.dbName)
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var (
		pages, failures atomic.Int64
		firstErr        atomic.Value
		mu              sync.Mutex
		lat             []time.Duration
	)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.requesters {
		nc := conns[w%len(conns)]
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				room := fmt.Sprintf("room-%04d", rand.IntN(o.rooms))
				req, _ := json.Marshal(wire.RecentRequest{Room: room, Limit: o.limit})
				t0 := time.Now()
				msg, err := nc.RequestWithContext(ctx, subjects.HistoryRecent, req)
				if err != nil {
					if ctx.Err() == nil {
						failures.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				if err := checkPage(msg, o.limit, o.verify); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, time.Since(t0))
				pages.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	took := time.Since(start)
	cpu1 := cpuNow(o.dbName)
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(10 * time.Microsecond)
	}
	fmt.Printf("recent: %d pages of %d in %v = %.0f pages/s, p50 %v p99 %v, %d failures (%d requesters on %d conns; loadavg before %s, after %s)\n",
		pages.Load(), o.limit, took.Round(time.Millisecond), float64(pages.Load())/took.Seconds(), pct(0.5), pct(0.99),
		failures.Load(), o.requesters, o.conns, load, loadavg())
	fmt.Printf("recent: %s\n", per(cpu0, cpu1, float64(pages.Load()), "page"))
	if e := firstErr.Load(); e != nil {
		fmt.Printf("recent: first failure: %v\n", e)
	}
	return nil
}

// checkPage verifies a reply is a full page (the rooms hold enough): by
// counting its ids, or with full a complete decode.
func checkPage(msg *nats.Msg, limit int, full bool) error {
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("error %s: %s", code, msg.Header.Get(micro.ErrorHeader))
	}
	if !full {
		if n := bytes.Count(msg.Data, []byte(`{"id":`)); n != limit {
			return fmt.Errorf("page has %d items, want %d", n, limit)
		}
		return nil
	}
	var p wire.Page
	if err := json.Unmarshal(msg.Data, &p); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	if len(p.Items) != limit {
		return fmt.Errorf("page of %s has %d items, want %d", p.Room, len(p.Items), limit)
	}
	return nil
}

// profile starts a CPU profile into dir/name (no-op without dir) and
// returns the function that stops it.
func profile(dir, name string) (func(), error) {
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile dir: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("profile: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		})
	}, nil
}

// cpuUsage is CPU time consumed so far by this process and by the
// postgres processes serving database db, plus the server's WAL writer,
// background writer and checkpointer (when readable: same host), in
// seconds. Other databases' backends (other users of a shared server) are
// left out.
type cpuUsage struct{ self, postgres float64 }

func cpuNow(db string) cpuUsage {
	u := cpuUsage{self: pidCPU(os.Getpid())}
	if db == "" {
		return u
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range dirs {
		b, err := os.ReadFile(c)
		if err != nil || strings.TrimSpace(string(b)) != "postgres" {
			continue
		}
		dir := filepath.Dir(c)
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		title, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		t := string(title)
		if strings.Contains(t, " "+db+" ") || strings.Contains(t, "walwriter") ||
			strings.Contains(t, "background writer") || strings.Contains(t, "checkpointer") {
			u.postgres += pidCPU(pid)
		}
	}
	return u
}

// pidCPU is the CPU time pid has used so far, in seconds (0 when it
// cannot be read: the process is gone or not ours to read).
func pidCPU(pid int) float64 {
	c, err := proc.PidCPU(pid)
	if err != nil {
		return 0
	}
	return c.Total().Seconds()
}

// per describes CPU spent between a and b per unit of work.
func per(a, b cpuUsage, units float64, unit string) string {
	if units <= 0 {
		return ""
	}
	self, pg := (b.self-a.self)/units*1e6, (b.postgres-a.postgres)/units*1e6
	if b.postgres == 0 {
		return fmt.Sprintf("CPU per %s: %.1fµs in this process (nats-server, history, load generator), i.e. at most %.0f %ss/s on 2 dedicated cores",
			unit, self, 2e6/self, unit)
	}
	return fmt.Sprintf("CPU per %s: %.1fµs this process (nats-server, history, load generator) + %.1fµs postgres = %.1fµs, i.e. at most %.0f %ss/s on 2 dedicated cores",
		unit, self, pg, self+pg, 2e6/(self+pg), unit)
}

// loadavg returns the 1/5/15-minute load averages of the machine.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
