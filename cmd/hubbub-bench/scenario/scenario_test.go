package scenario

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/hist"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/localdeploy"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/proc"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
)

// snap is a histogram snapshot of ds.
func snap(ds ...time.Duration) hist.Snapshot {
	var h hist.Hist
	for _, d := range ds {
		h.Record(d)
	}
	return h.Snapshot()
}

// repeat is n copies of d.
func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestMerge(t *testing.T) {
	a := &worker.Stats{
		Clients: 3, Joined: 2, ConnectErrors: 1,
		Members: map[string]int{"r0": 2}, AckedByRoom: map[string]int64{"r0": 10},
		ErrorCodes: map[string]int64{"rate_limited": 2}, CloseCodes: map[int]int64{1008: 1},
		Sent: 11, Acked: 10, Received: 20, Gaps: 1, Frames: 100, Disconnects: 1,
		FirstSend: 2000, LastRecv: 9000, SendErrors: 1,
		Latency: snap(time.Millisecond), ConnectTime: snap(time.Millisecond),
		Affected: 5, Resumed: 4, ResumedClean: 3, InWindowClean: 2, Unrecovered: 1,
		Pages: 7, PageErrors: 1, Elapsed: 2 * time.Second,
		CPU: proc.CPU{User: time.Second, Sys: time.Second},
	}
	b := &worker.Stats{
		Clients: 4, Joined: 4,
		Members: map[string]int{"r0": 1, "r1": 3}, AckedByRoom: map[string]int64{"r0": 10, "r1": 5},
		ErrorCodes: map[string]int64{"rate_limited": 1}, CloseCodes: map[int]int64{1008: 2, 1001: 1},
		Sent: 5, Acked: 5, Received: 30, Dups: 2, Frames: 50,
		FirstSend: 1000, LastRecv: 8000,
		Latency: snap(2*time.Millisecond, 3*time.Millisecond), ResumeTime: snap(time.Second), PageTime: snap(time.Microsecond),
		Affected: 1, Resumed: 1, ResumedClean: 1, InWindowClean: 1,
		Pages: 3, Elapsed: time.Second,
		CPU: proc.CPU{User: time.Second},
	}
	// A worker that did not send yet (FirstSend 0) does not move the start.
	c := &worker.Stats{Clients: 1, Received: 0, FirstSend: 0, LastRecv: 0}
	m := merge([]*worker.Stats{a, nil, b, c})

	if m.clients != 8 || m.joined != 6 || m.connectErrs != 1 {
		t.Errorf("clients %d joined %d connect errors %d, want 8 6 1", m.clients, m.joined, m.connectErrs)
	}
	if want := map[string]int{"r0": 3, "r1": 3}; !reflect.DeepEqual(m.members, want) {
		t.Errorf("members %v, want %v", m.members, want)
	}
	if want := map[string]int64{"r0": 20, "r1": 5}; !reflect.DeepEqual(m.ackedByRoom, want) {
		t.Errorf("acked by room %v, want %v", m.ackedByRoom, want)
	}
	if want := map[string]int64{"rate_limited": 3, "close_1008": 3, "close_1001": 1, "send_errors": 1}; !reflect.DeepEqual(m.errors, want) {
		t.Errorf("errors %v, want %v", m.errors, want)
	}
	if m.sent != 16 || m.acked != 15 || m.received != 50 || m.gaps != 1 || m.dups != 2 || m.frames != 150 || m.disconnects != 1 {
		t.Errorf("counters %+v", m)
	}
	if m.firstSend != 1000 || m.lastRecv != 9000 {
		t.Errorf("first send %d last receipt %d, want the earliest 1000 and the latest 9000", m.firstSend, m.lastRecv)
	}
	if m.latency.Count() != 3 || m.connect.Count() != 1 || m.resume.Count() != 1 || m.page.Count() != 1 || m.ack.Count() != 0 {
		t.Errorf("histogram counts latency %d connect %d resume %d page %d ack %d, want 3 1 1 1 0",
			m.latency.Count(), m.connect.Count(), m.resume.Count(), m.page.Count(), m.ack.Count())
	}
	if m.latency.Max != int64(3*time.Millisecond) {
		t.Errorf("latency max %v, want 3ms", time.Duration(m.latency.Max))
	}
	if m.affected != 6 || m.resumed != 5 || m.clean != 4 || m.inWindow != 3 || m.unrecovered != 1 {
		t.Errorf("storm counters affected %d resumed %d clean %d in window %d unrecovered %d", m.affected, m.resumed, m.clean, m.inWindow, m.unrecovered)
	}
	if m.pages != 10 || m.pageErrs != 1 || m.elapsed != 2*time.Second {
		t.Errorf("pages %d errors %d elapsed %v, want 10 1 2s (the longest)", m.pages, m.pageErrs, m.elapsed)
	}
	if m.cpu != (proc.CPU{User: 2 * time.Second, Sys: time.Second}) {
		t.Errorf("cpu %+v", m.cpu)
	}
	// Σ acked × members: r0 20 × 3 + r1 5 × 3.
	if got := m.expected(); got != 75 {
		t.Errorf("expected %d, want 75", got)
	}

	empty := merge(nil)
	if empty.members == nil || empty.ackedByRoom == nil || empty.errors == nil || empty.expected() != 0 {
		t.Errorf("merge(nil) = %+v, want empty maps", empty)
	}
}

func TestExpected(t *testing.T) {
	tests := []struct {
		name    string
		acked   map[string]int64
		members map[string]int
		want    int64
	}{
		{"none", nil, nil, 0},
		{"one room", map[string]int64{"a": 4}, map[string]int{"a": 25}, 100},
		{"room without members", map[string]int64{"a": 4, "b": 7}, map[string]int{"a": 1}, 4},
		{"members without acks", map[string]int64{"a": 2}, map[string]int{"a": 3, "b": 100}, 6},
	}
	for _, tt := range tests {
		m := merged{ackedByRoom: tt.acked, members: tt.members}
		if got := m.expected(); got != tt.want {
			t.Errorf("%s: expected() = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestQuant(t *testing.T) {
	if q := quant(hist.Snapshot{}); q != (Quant{}) {
		t.Errorf("quant(empty) = %+v, want zero", q)
	}
	var ds []time.Duration
	ds = append(ds, repeat(time.Millisecond, 50)...)
	ds = append(ds, repeat(2*time.Millisecond, 40)...)
	ds = append(ds, repeat(10*time.Millisecond, 9)...)
	ds = append(ds, 50*time.Millisecond)
	q := quant(snap(ds...))
	if q.N != 100 || q.Max != 50 {
		t.Errorf("N %d max %v ms, want 100 and exactly 50", q.N, q.Max)
	}
	// Quantiles are in milliseconds, within the histogram's ~3%.
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", q.P50, 1}, {"p90", q.P90, 2}, {"p99", q.P99, 10}} {
		if math.Abs(c.got-c.want) > 0.03*c.want {
			t.Errorf("%s = %v ms, want %v ms ± 3%%", c.name, c.got, c.want)
		}
	}
}

func TestRound(t *testing.T) {
	tests := []struct {
		v      float64
		digits int
		want   float64
	}{
		{1.23456, 2, 1.23},
		{1.235, 0, 1},
		{2.5, 0, 3},
		{0.99996, 4, 1},
		{-1.005, 1, -1},
		{123456.7, -2, 123500},
	}
	for _, tt := range tests {
		if got := round(tt.v, tt.digits); got != tt.want {
			t.Errorf("round(%v, %d) = %v, want %v", tt.v, tt.digits, got, tt.want)
		}
	}
}

func TestOffered(t *testing.T) {
	if got := (Fanout{Rooms: 10, Members: 100, Rate: 2.5}).Offered(); got != 2500 {
		t.Errorf("Offered = %v, want 2500", got)
	}
	if got := (Fanout{Rooms: 0, Members: 100, Rate: 2.5}).Offered(); got != 0 {
		t.Errorf("Offered without rooms = %v, want 0", got)
	}
}

func TestSenders(t *testing.T) {
	tests := []struct {
		name          string
		senderRate    float64
		kind          string
		members       int
		rate          float64
		want          int
		wantPerSender float64
	}{
		{"default cap of 8/s", 0, worker.KindWS, 100, 20, 3, 20.0 / 3},
		{"below the cap", 0, worker.KindWS, 100, 5, 1, 5},
		{"exactly the cap", 0, worker.KindWS, 100, 16, 2, 8},
		{"runner's cap", 2, worker.KindWS, 100, 5, 3, 5.0 / 3},
		{"no more senders than members", 0, worker.KindWS, 4, 100, 4, 25},
		{"no rate still one sender", 0, worker.KindWS, 10, 0, 1, 0},
		{"NATS has no per-connection cap", 0, worker.KindNATS, 100, 1000, 1, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Runner{SenderRate: tt.senderRate}
			n, per := r.senders(Fanout{Members: tt.members, Rate: tt.rate}, tt.kind)
			if n != tt.want || math.Abs(per-tt.wantPerSender) > 1e-9 {
				t.Errorf("senders = %d at %v/s, want %d at %v/s", n, per, tt.want, tt.wantPerSender)
			}
		})
	}
}

func TestDeliveries(t *testing.T) {
	m0 := merged{gaps: 2, dups: 1}
	m := merged{
		members: map[string]int{"a": 10, "b": 10}, ackedByRoom: map[string]int64{"a": 50, "b": 50},
		sent: 101, acked: 100, received: 990, gaps: 5, dups: 1, disconnects: 3,
		firstSend: int64(time.Second), lastRecv: int64(3 * time.Second),
		latency: snap(repeat(time.Millisecond, 10)...), ack: snap(2 * time.Millisecond),
	}
	res := Result{ServerCPU: map[string]float64{"edges": 1.5, "nats-server": 0.5}, GenCPU: 0.25}
	deliveries(&res, m, m0, 4)
	if res.Sent != 101 || res.Acked != 100 || res.Received != 990 || res.Expected != 1000 {
		t.Errorf("sent %d acked %d received %d expected %d", res.Sent, res.Acked, res.Received, res.Expected)
	}
	if res.Reach != 0.99 {
		t.Errorf("reach %v, want 0.99", res.Reach)
	}
	// 990 deliveries between the first send (1 s) and the last receipt (3 s).
	if res.DeliveriesSec != 495 {
		t.Errorf("deliveries/s %v, want 495", res.DeliveriesSec)
	}
	// 2 server cores × 4 s = 8e6 µs over 990 deliveries; 0.25 × 4 s for the generator.
	if res.ServerUsPerDelivery != 8080.81 || res.GenUsPerDelivery != 1010.1 {
		t.Errorf("µs/delivery server %v gen %v, want 8080.81 and 1010.1", res.ServerUsPerDelivery, res.GenUsPerDelivery)
	}
	if res.Gaps != 3 || res.Dups != 0 || res.Disconnects != 3 {
		t.Errorf("gaps %d dups %d disconnects %d, want the run's own 3 0 and 3", res.Gaps, res.Dups, res.Disconnects)
	}
	if res.Latency.N != 10 || res.AckLatency.N != 1 || res.AckLatency.Max != 2 {
		t.Errorf("latency %+v ack %+v", res.Latency, res.AckLatency)
	}

	// Nothing received: no rates, no division by zero.
	var none Result
	deliveries(&none, merged{firstSend: 5}, merged{}, 1)
	if none.Reach != 0 || none.DeliveriesSec != 0 || none.ServerUsPerDelivery != 0 || none.GenUsPerDelivery != 0 {
		t.Errorf("empty run: %+v", none)
	}
	// Receipts but no send time (a worker lost): no rate.
	var noSend Result
	deliveries(&noSend, merged{received: 10, lastRecv: 100}, merged{}, 1)
	if noSend.DeliveriesSec != 0 || math.IsInf(noSend.DeliveriesSec, 0) {
		t.Errorf("deliveries/s without a first send = %v, want 0", noSend.DeliveriesSec)
	}
}

func TestResumes(t *testing.T) {
	m0 := merged{gaps: 1, dups: 1}
	m := merged{affected: 300, resumed: 299, clean: 298, inWindow: 290, unrecovered: 1, gaps: 4, dups: 1, disconnects: 301,
		sent: 10, acked: 9, received: 80, resume: snap(time.Second, 2*time.Second), latency: snap(time.Millisecond)}
	var res Result
	resumes(&res, m, m0)
	if res.Affected != 300 || res.Resumed != 299 || res.ResumedClean != 298 || res.InWindowClean != 290 || res.Unrecovered != 1 {
		t.Errorf("counters %+v", res)
	}
	if res.ResumedPct != 96.67 {
		t.Errorf("resumed %v%%, want 96.67 (gap-free in window of affected)", res.ResumedPct)
	}
	if res.Gaps != 3 || res.Dups != 0 || res.Disconnects != 301 || res.Sent != 10 || res.Acked != 9 || res.Received != 80 {
		t.Errorf("run counters %+v", res)
	}
	if res.ResumeTime.N != 2 || res.ResumeTime.Max != 2000 || res.Latency.N != 1 {
		t.Errorf("resume time %+v latency %+v", res.ResumeTime, res.Latency)
	}
	var none Result
	resumes(&none, merged{}, merged{})
	if none.ResumedPct != 0 || math.IsNaN(none.ResumedPct) {
		t.Errorf("no affected clients: resumed %v%%, want 0", none.ResumedPct)
	}
}

func TestNextTag(t *testing.T) {
	var r Runner
	got := []string{r.nextTag("f"), r.nextTag("f"), r.nextTag("i")}
	if want := []string{"f1", "f2", "i3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tags %v, want %v (unique across prefixes)", got, want)
	}
}

// TestTargetChecks: the scenarios that need processes of their own refuse
// a target without them, before starting any worker.
func TestTargetChecks(t *testing.T) {
	ctx := context.Background()
	r := &Runner{}
	edge := func(name string) *localdeploy.Process { return &localdeploy.Process{Name: name} }
	two := []*localdeploy.Process{edge("edge-0"), edge("edge-1")}
	tests := []struct {
		name string
		run  func() Result
	}{
		{"idle without edges", func() Result {
			out := r.Idle(ctx, Target{Name: "external", URLs: []string{"ws://x/ws"}}, Idle{Stages: []int{10}, Members: 5})
			if len(out) != 1 {
				t.Fatalf("%d results, want 1", len(out))
			}
			return out[0]
		}},
		{"storm with one edge", func() Result {
			return r.Storm(ctx, Target{Name: "hubbub", URLs: []string{"ws://a/ws"}, Edges: two[:1]}, Storm{Clients: 10, Members: 5})
		}},
		{"storm without edge processes", func() Result {
			return r.Storm(ctx, Target{Name: "hubbub", URLs: []string{"ws://a/ws", "ws://b/ws"}}, Storm{Clients: 10, Members: 5})
		}},
		{"storm victim out of range", func() Result {
			return r.Storm(ctx, Target{Name: "hubbub", URLs: []string{"ws://a/ws", "ws://b/ws"}, Edges: two}, Storm{Clients: 10, Members: 5, Victim: 2})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tt.run()
			if !strings.Contains(res.Failed, ErrTarget.Error()) {
				t.Errorf("Failed = %q, want %q", res.Failed, ErrTarget)
			}
			if res.Target == "" || res.Scenario == "" {
				t.Errorf("result not labelled: %+v", res)
			}
		})
	}
	res := r.Storm(ctx, Target{Name: "hubbub", URLs: []string{"ws://a/ws"}}, Storm{Clients: 10, Members: 5, Rate: 2, Window: 15 * time.Second, Jitter: time.Second})
	want := map[string]any{"clients": 10, "members": 5, "edges": 1, "rate_per_room": 2.0, "jitter_s": 1.0, "window_s": 15.0}
	if !reflect.DeepEqual(res.Params, want) {
		t.Errorf("storm params %v, want %v", res.Params, want)
	}
}

// metricsServer serves body as /metrics and returns a process at its address.
func metricsServer(t *testing.T, body string) *localdeploy.Process {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return &localdeploy.Process{Name: "edge", Addr: srv.Listener.Addr().String()}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

const edgeMetrics = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 1234
go_goroutines_total_not_this 9
go_memstats_stack_inuse_bytes 6.5536e+06
go_memstats_heap_inuse_bytes 1.2e+07
hubbub_edge_closes_total{reason="client"} 12
hubbub_edge_closes_total{reason="slow"} 0
hubbub_edge_drops_total{reason="queue_full"} 3
hubbub_edge_error_frames_total{code="rate_limited"} 2.5
hubbub_edge_connections 99
hubbub_edge_closes_total{reason="broken"} NaNx
`

func TestGoMetrics(t *testing.T) {
	got := goMetrics(metricsServer(t, edgeMetrics))
	want := map[string]float64{"go_goroutines": 1234, "go_memstats_stack_inuse_bytes": 6553600, "go_memstats_heap_inuse_bytes": 12e6}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("goMetrics = %v, want %v", got, want)
	}
	if got := goMetrics(metricsServer(t, "hubbub_edge_connections 1\n")); len(got) != 0 {
		t.Errorf("goMetrics without Go gauges = %v, want empty", got)
	}
	if got := goMetrics(&localdeploy.Process{Addr: deadAddr(t)}); got == nil || len(got) != 0 {
		t.Errorf("goMetrics of a process without /metrics = %v, want an empty map", got)
	}
}

func TestEdgeCounters(t *testing.T) {
	a := metricsServer(t, edgeMetrics)
	b := metricsServer(t, "hubbub_edge_closes_total{reason=\"client\"} 3\nhubbub_edge_drops_total{reason=\"auth\"} 1\n")
	dead := &localdeploy.Process{Name: "edge-dead", Addr: deadAddr(t)}
	got := edgeCounters([]*localdeploy.Process{a, dead, b})
	// Summed over edges by label; zeros, other series and unparsable values
	// left out; fractions truncated.
	want := map[string]int64{
		`edge hubbub_edge_closes_total{reason="client"}`:           15,
		`edge hubbub_edge_drops_total{reason="queue_full"}`:        3,
		`edge hubbub_edge_drops_total{reason="auth"}`:              1,
		`edge hubbub_edge_error_frames_total{code="rate_limited"}`: 2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("edgeCounters = %v, want %v", got, want)
	}
	if got := edgeCounters(nil); got == nil || len(got) != 0 {
		t.Errorf("edgeCounters(nil) = %v, want an empty map", got)
	}
}

// TestCPUWithoutServers: a target without processes of its own (an
// external deployment) reports only the generator.
func TestCPUWithoutServers(t *testing.T) {
	before := []*worker.Stats{{CPU: proc.CPU{User: time.Second}}}
	after := []*worker.Stats{{CPU: proc.CPU{User: 3 * time.Second}}}
	c := startCPU(Target{Name: "external"}, before)
	servers, gen, wall := c.stopWall(after)
	if len(servers) != 0 {
		t.Errorf("server CPU %v, want none", servers)
	}
	// The workers used 2 s of CPU during the window (plus this process's own).
	if wall <= 0 || gen < round(2/wall, 2)-0.01 {
		t.Errorf("generator %v cores over %v s, want at least %v", gen, wall, 2/wall)
	}
}

func TestQuiesce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Cancelled: returns at once rather than after limit.
	done := make(chan time.Duration, 1)
	go func() { done <- Quiesce(ctx, Target{}, 0.1, time.Hour) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Quiesce ignored its cancelled context")
	}
	// No servers: idle after one round.
	go func() { done <- Quiesce(context.Background(), Target{}, 0.1, time.Hour) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Quiesce without servers did not return")
	}
}
