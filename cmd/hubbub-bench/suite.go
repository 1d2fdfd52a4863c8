package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/localdeploy"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/pgdb"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/proc"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/report"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/scenario"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/logging"
)

// suiteConfig is the standard suite's configuration.
type suiteConfig struct {
	quick       bool
	bin, out    string
	databaseURL string
	postgres    bool
	scenarios   string
	baselines   bool
	hubbub      bool
	profile     bool

	edges, fanoutEdges, stormEdges int

	idleStages  string
	idleMembers int
	idleRate    float64

	fanout, latency string
	duration        time.Duration

	stormClients, stormMembers int
	stormRate                  float64
	stormJitter, stormWindow   time.Duration

	historyConc     string
	historyDuration time.Duration
	historyRooms    int
	ingest          int

	waitQuiet time.Duration
	quietLoad float64
	logLevel  string
}

func parseSuite(args []string) (suiteConfig, error) {
	var c suiteConfig
	f := config.New("hubbub-bench suite")
	f.BoolVar(&c.quick, "quick", false, "smoke-test sizes (about a minute)")
	f.String(&c.bin, "bin", "HUBBUB_BENCH_BIN", "bin/bench", "directory with nats-server, hubbub-edge, hubbub-history, hubbub-presence")
	f.String(&c.out, "out", "HUBBUB_BENCH_OUT", "bench-results", "directory for results (JSON, markdown, profiles, logs)")
	f.String(&c.databaseURL, "database-url", "HUBBUB_BENCH_DATABASE_URL", "postgres://hubbub:hubbub@127.0.0.1:5432/hubbub?sslmode=disable", "Postgres server for the history scenarios (a fresh database is created and dropped)")
	f.Bool(&c.postgres, "postgres", "HUBBUB_BENCH_POSTGRES", true, "also run the history scenarios on Postgres")
	f.String(&c.scenarios, "scenarios", "HUBBUB_BENCH_SCENARIOS", "idle,fanout,latency,storm,history,ingest", "scenarios to run")
	f.Bool(&c.baselines, "baselines", "HUBBUB_BENCH_BASELINES", true, "measure the NATS and WebSocket baselines too")
	f.Bool(&c.hubbub, "hubbub", "HUBBUB_BENCH_HUBBUB", true, "measure Hubbub (false: baselines only)")
	f.Bool(&c.profile, "profile", "HUBBUB_BENCH_PROFILE", true, "capture CPU profiles of nats-server, history and the first edge during the last fan-out and the last latency point")
	f.Int(&c.edges, "edges", "HUBBUB_BENCH_EDGES", 7, "edge processes (idle uses all; <= 19k connections each)")
	f.Int(&c.fanoutEdges, "fanout-edges", "HUBBUB_BENCH_FANOUT_EDGES", 2, "edges the fan-out and latency clients use")
	f.Int(&c.stormEdges, "storm-edges", "HUBBUB_BENCH_STORM_EDGES", 3, "edges of the reconnect storm (the first is killed)")
	f.String(&c.idleStages, "idle", "HUBBUB_BENCH_IDLE", "20000,60000,100000", "cumulative idle connection counts")
	f.Int(&c.idleMembers, "idle-members", "HUBBUB_BENCH_IDLE_MEMBERS", 50, "members per room of idle connections")
	f.Float64Var(&c.idleRate, "idle-rate", 0, "connection attempts per second (0: 64 concurrent per worker)")
	f.String(&c.fanout, "fanout", "HUBBUB_BENCH_FANOUT", "10x100x50,10x500x40,100x50x40,2x1000x100", "fan-out points: ROOMSxMEMBERSxMSGS_PER_S_PER_ROOM, comma-separated")
	f.String(&c.latency, "latency", "HUBBUB_BENCH_LATENCY", "20x100x10,100x20x10", "latency points (same syntax; 20,000 deliveries/s each by default)")
	f.Duration(&c.duration, "duration", "HUBBUB_BENCH_DURATION", 10*time.Second, "sending time of each fan-out/latency point")
	f.Int(&c.stormClients, "storm-clients", "HUBBUB_BENCH_STORM_CLIENTS", 20000, "reconnect storm clients (spread over -storm-edges)")
	f.Int(&c.stormMembers, "storm-members", "HUBBUB_BENCH_STORM_MEMBERS", 100, "members per room in the storm")
	f.Float64Var(&c.stormRate, "storm-rate", 1, "messages per second per room during the storm")
	f.Duration(&c.stormJitter, "storm-jitter", "HUBBUB_BENCH_STORM_JITTER", 2*time.Second, "clients wait up to this long before reconnecting")
	f.Duration(&c.stormWindow, "storm-window", "HUBBUB_BENCH_STORM_WINDOW", 10*time.Second, "resume deadline after the kill")
	f.String(&c.historyConc, "history-concurrency", "HUBBUB_BENCH_HISTORY_CONCURRENCY", "8,32,64", "concurrent request loops of the history scenario, comma-separated")
	f.Duration(&c.historyDuration, "history-duration", "HUBBUB_BENCH_HISTORY_DURATION", 5*time.Second, "duration of each history point")
	f.Int(&c.historyRooms, "history-rooms", "HUBBUB_BENCH_HISTORY_ROOMS", 20, "rooms (of 100 messages each) read by the history scenario")
	f.Int(&c.ingest, "ingest", "HUBBUB_BENCH_INGEST", 50000, "messages of the ingest scenario")
	f.Duration(&c.waitQuiet, "wait-quiet", "HUBBUB_BENCH_WAIT_QUIET", 0, "wait up to this long for the 1-minute load average to fall below -quiet-load before starting")
	f.Float64Var(&c.quietLoad, "quiet-load", 0.7, "load average considered quiet")
	f.String(&c.logLevel, "log-level", "HUBBUB_BENCH_LOG_LEVEL", "info", "log level")
	if err := f.Parse(args); err != nil {
		return c, err
	}
	if c.quick {
		c.edges, c.fanoutEdges, c.stormEdges = 3, 2, 3
		c.idleStages, c.idleMembers = "200,400", 20
		c.fanout, c.latency, c.duration = "4x25x10", "5x20x10", 3*time.Second
		c.stormClients, c.stormMembers, c.stormRate, c.stormJitter, c.stormWindow = 300, 20, 2, 500*time.Millisecond, 10*time.Second
		c.historyConc, c.historyDuration, c.historyRooms, c.ingest = "4", 2*time.Second, 4, 2000
	}
	return c, nil
}

// point is one ROOMSxMEMBERSxRATE entry.
func points(s, name string, d time.Duration) ([]scenario.Fanout, error) {
	var out []scenario.Fanout
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		parts := strings.Split(p, "x")
		if len(parts) != 3 {
			return nil, fmt.Errorf("point %q: want ROOMSxMEMBERSxRATE", p)
		}
		r, err1 := strconv.Atoi(parts[0])
		m, err2 := strconv.Atoi(parts[1])
		rate, err3 := strconv.ParseFloat(parts[2], 64)
		if err1 != nil || err2 != nil || err3 != nil || r <= 0 || m <= 0 || rate <= 0 {
			return nil, fmt.Errorf("point %q: want positive ROOMSxMEMBERSxRATE", p)
		}
		out = append(out, scenario.Fanout{Name: name, Rooms: r, Members: m, Rate: rate, Duration: d, BodySize: 100})
	}
	return out, nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// runSuite runs the standard suite; self is argv that re-executes the tool.
func runSuite(ctx context.Context, args []string, self []string) error {
	c, err := parseSuite(args)
	if err != nil {
		return err
	}
	run, err := suite(ctx, c, self, os.Stdout)
	if err != nil {
		return err
	}
	_ = run
	return nil
}

// suite runs the scenarios and writes results; the markdown also goes to w.
func suite(ctx context.Context, c suiteConfig, self []string, w io.Writer) (*report.Run, error) {
	log, err := logging.New(os.Stderr, "text", c.logLevel)
	if err != nil {
		return nil, err
	}
	fanouts, err := points(c.fanout, "fanout", c.duration)
	if err != nil {
		return nil, err
	}
	latencies, err := points(c.latency, "latency", c.duration)
	if err != nil {
		return nil, err
	}
	idle, err := ints(c.idleStages)
	if err != nil {
		return nil, err
	}
	conc, err := ints(c.historyConc)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, s := range strings.Split(c.scenarios, ",") {
		want[strings.TrimSpace(s)] = true
	}
	waitQuiet(ctx, log, c.waitQuiet, c.quietLoad)

	started := time.Now()
	stamp := started.UTC().Format("20060102T150405Z")
	outDir, err := filepath.Abs(filepath.Join(c.out, stamp))
	if err != nil {
		return nil, fmt.Errorf("results dir: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("results dir: %w", err)
	}
	binDir, err := filepath.Abs(c.bin)
	if err != nil {
		return nil, fmt.Errorf("bin dir: %w", err)
	}
	bins := localdeploy.Binaries{
		NATSServer: filepath.Join(binDir, "nats-server"), Edge: filepath.Join(binDir, "hubbub-edge"),
		History: filepath.Join(binDir, "hubbub-history"), Presence: filepath.Join(binDir, "hubbub-presence"), Self: self,
	}
	run := &report.Run{Started: started, Command: "hubbub-bench suite " + strings.Join(os.Args[min(2, len(os.Args)):], " "), Machine: machine(), Quick: c.quick}
	runner := &scenario.Runner{Self: append(append([]string{}, self...), "worker"), Log: log}
	save := func() {
		run.Finished = time.Now()
		if err := report.WriteJSON(filepath.Join(outDir, "results.json"), run); err != nil {
			log.Error("save results", "err", err)
		}
	}
	add := func(rs ...scenario.Result) {
		for _, r := range rs {
			run.Results = append(run.Results, r)
			log.Info("result", "scenario", r.Scenario, "target", r.Target, "params", r.Params, "deliveries_per_s", r.DeliveriesSec,
				"reach", r.Reach, "p50_ms", r.Latency.P50, "p99_ms", r.Latency.P99, "failed", r.Failed)
		}
		save()
	}
	defer save()

	// Baselines: raw NATS core fan-out and the minimal WebSocket server.
	if c.baselines && (want["fanout"] || want["latency"] || want["idle"]) {
		if err := baselines(ctx, c, bins, outDir, runner, fanouts, latencies, idle, want, add); err != nil {
			return run, err
		}
		save()
	}
	// Hubbub with SQLite history.
	if !c.hubbub {
		want = map[string]bool{}
	} else if err := hubbub(ctx, log, c, bins, outDir, runner, fanouts, latencies, idle, conc, want, add, run); err != nil {
		return run, err
	}
	save()
	// History on Postgres.
	if c.postgres && (want["history"] || want["ingest"]) {
		if err := postgresPhase(ctx, c, bins, outDir, runner, conc, want, add); err != nil {
			return run, err
		}
	}
	save()
	var md bytes.Buffer
	report.Markdown(&md, run)
	if err := os.WriteFile(filepath.Join(outDir, "results.md"), md.Bytes(), 0o644); err != nil {
		return run, fmt.Errorf("write markdown: %w", err)
	}
	_, _ = w.Write(md.Bytes())
	fmt.Fprintf(w, "\nResults: %s/results.json, results.md; logs and profiles under %s\n", outDir, outDir)
	return run, nil
}

type addFunc func(...scenario.Result)

func baselines(ctx context.Context, c suiteConfig, bins localdeploy.Binaries, outDir string, runner *scenario.Runner,
	fanouts, latencies []scenario.Fanout, idle []int, want map[string]bool, add addFunc) error {
	d, err := localdeploy.New(filepath.Join(outDir, "baseline"), bins)
	if err != nil {
		return err
	}
	defer d.Close()
	nats, err := d.StartNATS(ctx)
	if err != nil {
		return err
	}
	wsb, err := d.Baseline(ctx)
	if err != nil {
		return err
	}
	tn := scenario.Target{Name: "baseline-nats", Kind: worker.KindNATS, URLs: []string{"nats://" + nats.Addr},
		Servers: map[string]*localdeploy.Process{"nats-server": nats}}
	tw := scenario.Target{Name: "baseline-ws", Kind: worker.KindWS, URLs: []string{"ws://" + wsb.Addr + "/ws"},
		Servers: map[string]*localdeploy.Process{"baseline-ws": wsb}, Edges: []*localdeploy.Process{wsb}}
	if want["idle"] {
		// One process: at most one edge's worth of connections.
		n := min(idle[len(idle)-1], 15000)
		add(runner.Idle(ctx, tw, scenario.Idle{Stages: []int{n}, Members: c.idleMembers, Rate: c.idleRate})...)
	}
	for _, set := range []struct {
		on  bool
		pts []scenario.Fanout
	}{{want["fanout"], fanouts}, {want["latency"], latencies}} {
		if !set.on {
			continue
		}
		for _, p := range set.pts {
			add(runner.Fanout(ctx, tn, p))
			add(runner.Fanout(ctx, tw, p))
		}
	}
	return ctx.Err()
}

// hubbubDeployment starts nats-server, presence, history and n edges.
func hubbubDeployment(ctx context.Context, d *localdeploy.Deployment, edges int, databaseURL string) (scenario.Target, []*localdeploy.Process, error) {
	t := scenario.Target{Name: "hubbub", Kind: worker.KindWS, Servers: map[string]*localdeploy.Process{}}
	nats, err := d.StartNATS(ctx)
	if err != nil {
		return t, nil, err
	}
	t.Servers["nats-server"] = nats
	t.NATSURL = "nats://" + nats.Addr
	common := []string{"HUBBUB_NATS_URL=" + t.NATSURL, "HUBBUB_LOG_LEVEL=warn"}
	pres, err := d.Service(ctx, "presence", d.Bins.Presence, common)
	if err != nil {
		return t, nil, err
	}
	t.Servers["presence"] = pres
	henv := append([]string{"HUBBUB_DATA_DIR=" + filepath.Join(d.Dir, "history"), "HUBBUB_DATABASE_URL=" + databaseURL}, common...)
	hist, err := d.Service(ctx, "history", d.Bins.History, henv)
	if err != nil {
		return t, nil, err
	}
	t.Servers["history"] = hist
	var all []*localdeploy.Process
	for i := 0; i < edges; i++ {
		name := "edge-" + strconv.Itoa(i)
		e, err := d.Service(ctx, name, d.Bins.Edge, append([]string{"HUBBUB_EDGE_ID=bench-" + name}, common...))
		if err != nil {
			return t, nil, err
		}
		t.Servers[name] = e
		all = append(all, e)
	}
	return t, all, nil
}

// subset is the target restricted to some edges.
func subset(t scenario.Target, edges []*localdeploy.Process) scenario.Target {
	s := t
	s.Edges = edges
	s.URLs = nil
	s.Servers = map[string]*localdeploy.Process{}
	for name, p := range t.Servers {
		if !strings.HasPrefix(name, "edge-") {
			s.Servers[name] = p
		}
	}
	for _, e := range edges {
		s.URLs = append(s.URLs, "ws://"+e.Addr+"/ws")
		s.Servers[e.Name] = e
	}
	return s
}

func hubbub(ctx context.Context, log *slog.Logger, c suiteConfig, bins localdeploy.Binaries, outDir string, runner *scenario.Runner,
	fanouts, latencies []scenario.Fanout, idle, conc []int, want map[string]bool, add addFunc, run *report.Run) error {
	d, err := localdeploy.New(filepath.Join(outDir, "hubbub"), bins)
	if err != nil {
		return err
	}
	defer d.Close()
	d.Profile = c.profile
	edges := max(c.edges, c.fanoutEdges, c.stormEdges)
	t, all, err := hubbubDeployment(ctx, d, edges, "")
	if err != nil {
		return err
	}
	quiesce := func() {
		if w := scenario.Quiesce(ctx, t, 0.05, 90*time.Second); w > 2*time.Second {
			log.Info("waited for the servers to go idle", "for", w.Round(time.Second))
		}
	}
	if want["idle"] {
		add(runner.Idle(ctx, subset(t, all), scenario.Idle{Stages: idle, Members: c.idleMembers, Rate: c.idleRate})...)
		quiesce()
	}
	ft := subset(t, all[:c.fanoutEdges])
	// The last point of fan-out and of latency are profiled: nats-server,
	// the first edge and history, over the sending window.
	profiled := []*localdeploy.Process{t.Servers["nats-server"], t.Servers["history"]}
	if len(all) > 0 {
		profiled = append(profiled, all[0])
	}
	withProfile := func(p scenario.Fanout, label string) scenario.Fanout {
		if c.profile {
			p.DuringRun = func() func() {
				return profile(ctx, profiled, p.Duration, outDir, label, run)
			}
		}
		return p
	}
	// points runs fan-out points, profiling the last one as label.
	points := func(ps []scenario.Fanout, label string) {
		for i, p := range ps {
			if i == len(ps)-1 {
				p = withProfile(p, label)
			}
			add(runner.Fanout(ctx, ft, p))
			quiesce()
		}
	}
	if want["fanout"] {
		points(fanouts, "fanout")
	}
	if want["latency"] {
		points(latencies, "latency")
	}
	if want["history"] {
		for _, n := range conc {
			add(runner.History(ctx, t, scenario.History{Rooms: c.historyRooms, PerRoom: 100, Limit: 50, Concurrency: n, Duration: c.historyDuration, Backend: "sqlite"}))
		}
	}
	if want["ingest"] {
		add(runner.Ingest(ctx, t, scenario.Ingest{Messages: c.ingest, Rooms: 100, Backend: "sqlite"}))
		quiesce()
	}
	if want["storm"] {
		st := subset(t, all[len(all)-c.stormEdges:])
		add(runner.Storm(ctx, st, scenario.Storm{Clients: c.stormClients, Members: c.stormMembers, Rate: c.stormRate, Jitter: c.stormJitter, Window: c.stormWindow}))
	}
	return ctx.Err()
}

func postgresPhase(ctx context.Context, c suiteConfig, bins localdeploy.Binaries, outDir string, runner *scenario.Runner,
	conc []int, want map[string]bool, add addFunc) error {
	dbURL, drop, err := pgdb.Fresh(ctx, c.databaseURL, "hubbub_bench_"+strconv.FormatInt(time.Now().Unix(), 10))
	if err != nil {
		return err
	}
	defer func() { _ = drop() }() // a failed drop leaves a database named after the run's time
	d, err := localdeploy.New(filepath.Join(outDir, "postgres"), bins)
	if err != nil {
		return err
	}
	defer d.Close()
	t, _, err := hubbubDeployment(ctx, d, 0, dbURL)
	if err != nil {
		return err
	}
	if want["history"] {
		for _, n := range conc {
			add(runner.History(ctx, t, scenario.History{Rooms: c.historyRooms, PerRoom: 100, Limit: 50, Concurrency: n, Duration: c.historyDuration, Backend: "postgres"}))
		}
	}
	if want["ingest"] {
		add(runner.Ingest(ctx, t, scenario.Ingest{Messages: c.ingest, Rooms: 100, Backend: "postgres"}))
	}
	return ctx.Err()
}

// profile captures a CPU profile of each process over the next d in the
// background, as <dir>/<process>-<label>.pprof with a `go tool pprof -top`
// summary beside it. The returned function waits for the captures and
// records them in run.
func profile(ctx context.Context, procs []*localdeploy.Process, d time.Duration, dir, label string, run *report.Run) func() {
	type outcome struct{ files, notes []string }
	results := make(chan outcome, len(procs))
	n := 0
	for _, p := range procs {
		if p == nil || p.PprofAddr == "" {
			continue
		}
		n++
		go func() {
			path := filepath.Join(dir, p.Name+"-"+label+".pprof")
			files, err := captureProfile(ctx, p, d, path)
			o := outcome{files: files}
			if err != nil {
				o.notes = append(o.notes, fmt.Sprintf("%s profile (%s): %v", p.Name, label, err))
			}
			results <- o
		}()
	}
	return func() {
		for range n {
			o := <-results
			run.Profiles = append(run.Profiles, o.files...)
			run.Notes = append(run.Notes, o.notes...)
		}
	}
}

// captureProfile fetches /debug/pprof/profile from p for d, saves it at
// path and its top functions at path.top.txt.
func captureProfile(ctx context.Context, p *localdeploy.Process, d time.Duration, path string) ([]string, error) {
	secs := max(1, int(d.Seconds()))
	cl := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.PprofAddr, secs), nil)
	if err != nil {
		return nil, fmt.Errorf("profile request: %w", err)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("profile: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, fmt.Errorf("save profile: %w", err)
	}
	files := []string{path}
	top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=30", p.Bin, path).Output()
	if err != nil {
		return files, fmt.Errorf("go tool pprof -top: %w", err)
	}
	if err := os.WriteFile(path+".top.txt", top, 0o644); err != nil {
		return files, fmt.Errorf("save profile summary: %w", err)
	}
	return append(files, path+".top.txt"), nil
}

func waitQuiet(ctx context.Context, log *slog.Logger, limit time.Duration, quiet float64) {
	if limit <= 0 {
		return
	}
	deadline := time.Now().Add(limit)
	for {
		l, err := proc.LoadAvg()
		if err != nil || l < quiet {
			return
		}
		if time.Now().After(deadline) {
			log.Warn("machine never got quiet; figures are contaminated", "loadavg", l)
			return
		}
		log.Info("waiting for a quiet machine", "loadavg", l, "want_below", quiet)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

func machine() report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var b []byte
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		m.Kernel = string(b)
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		m.MemoryGiB = float64(si.Totalram) * float64(si.Unit) / (1 << 30)
	}
	m.LoadAvg, _ = proc.LoadAvg()
	return m
}
