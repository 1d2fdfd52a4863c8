package scenario

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/localdeploy"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
)

// Idle opens connections in Stages (cumulative totals), each joined to a
// room of Members members, and measures the connect rate and the edges'
// RSS growth per connection after every stage.
type Idle struct {
	Stages  []int
	Members int
	// Rate paces connection attempts per second across all workers (0: as
	// fast as Concurrency allows).
	Rate float64
}

// Idle runs the idle-connections scenario, one Result per stage.
func (r *Runner) Idle(ctx context.Context, t Target, c Idle) []Result {
	total := c.Stages[len(c.Stages)-1]
	fail := func(res Result, err error) []Result {
		res.Failed = err.Error()
		return []Result{res}
	}
	if len(t.Edges) == 0 {
		return fail(Result{Scenario: "idle", Target: t.Name}, fmt.Errorf("%w: idle needs the edge processes to read their memory", ErrTarget))
	}
	pool, err := r.pool(ctx, total)
	if err != nil {
		return fail(Result{Scenario: "idle", Target: t.Name}, err)
	}
	defer pool.Close()
	rooms := max(1, total/max(1, c.Members))
	tag := r.nextTag("i")
	base0 := map[*localdeploy.Process]int64{}
	met0 := map[*localdeploy.Process]map[string]float64{}
	for _, e := range t.Edges {
		base0[e], _ = e.RSS()
		met0[e] = goMetrics(e)
	}
	var out []Result
	done := 0
	for _, stage := range c.Stages {
		res := Result{Scenario: "idle", Target: t.Name, Started: time.Now(), LoadAvg: loadavg(),
			Params: map[string]any{"connections": stage, "members": c.Members, "rooms": rooms, "edges": len(t.Edges)}}
		spec := worker.ConnectSpec{
			Kind: worker.KindWS, URLs: t.URLs, First: done, Count: stage - done, Rooms: rooms,
			RoomPrefix: tag + "-", UserPrefix: tag + "u", Edge: -1, Concurrency: 128, Timeout: 60 * time.Second,
		}
		if c.Rate > 0 {
			spec.Rate = c.Rate / float64(pool.Len())
		}
		st0, _ := pool.Each(worker.Command{Op: worker.OpStats})
		meter := startCPU(t, st0)
		start := time.Now()
		st, err := connect(pool, spec)
		elapsed := time.Since(start)
		if err != nil {
			res.Notes = append(res.Notes, "connect: "+err.Error())
		}
		res.ServerCPU, res.GenCPU = meter.stop(st)
		_ = settle(pool, 2*time.Second, 120*time.Second)
		time.Sleep(2 * time.Second)
		st, _ = pool.Each(worker.Command{Op: worker.OpStats})
		m := merge(st)
		res.Clients = m.joined
		res.ConnectErrors = m.connectErrs
		res.ConnectPerSec = round(float64(stage-done)/elapsed.Seconds(), 0)
		res.ConnectP99Ms = quant(m.connect).P99
		res.Gaps, res.Dups = m.gaps, m.dups
		var growth, rss int64
		delta := map[string]float64{}
		for _, e := range t.Edges {
			v, err := e.RSS()
			if err != nil {
				res.Notes = append(res.Notes, fmt.Sprintf("%s: %v", e.Name, err))
				continue
			}
			growth += v - base0[e]
			rss += v
			for k, v := range goMetrics(e) {
				delta[k] += v - met0[e][k]
			}
		}
		res.RSSGrowth, res.ServerRSS = growth, rss
		if m.joined > 0 {
			n := float64(m.joined)
			res.RSSPerConn = round(float64(growth)/n, 0)
			res.GoroutinesConn = round(delta["go_goroutines"]/n, 2)
			res.StackPerConn = round(delta["go_memstats_stack_inuse_bytes"]/n, 0)
			res.HeapPerConn = round(delta["go_memstats_heap_inuse_bytes"]/n, 0)
		}
		res.Errors = m.errors
		if len(res.Errors) == 0 {
			res.Errors = nil
		}
		res.Wall = round(time.Since(res.Started).Seconds(), 1)
		out = append(out, res)
		r.Log.Info("idle stage", "connections", stage, "joined", m.joined, "rss_per_conn", res.RSSPerConn, "connects_per_s", res.ConnectPerSec)
		done = stage
		if m.joined == 0 || ctx.Err() != nil {
			break
		}
	}
	return out
}

// goMetrics reads the Go runtime gauges the idle scenario breaks memory
// down with from the process's /metrics (empty when it has none).
func goMetrics(p *localdeploy.Process) map[string]float64 {
	out := map[string]float64{}
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + p.Addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return out
	}
	for line := range strings.Lines(string(b)) {
		for _, name := range []string{"go_goroutines", "go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes"} {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				out[name], _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
	}
	return out
}

// edgeCounters sums the edges' close and drop counters (by label) from
// their /metrics: why the server ended or shed connections.
func edgeCounters(edges []*localdeploy.Process) map[string]int64 {
	out := map[string]int64{}
	cl := &http.Client{Timeout: 5 * time.Second}
	for _, e := range edges {
		resp, err := cl.Get("http://" + e.Addr + "/metrics")
		if err != nil {
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if !strings.HasPrefix(line, "hubbub_edge_closes_total{") && !strings.HasPrefix(line, "hubbub_edge_drops_total{") && !strings.HasPrefix(line, "hubbub_edge_error_frames_total{") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64)
			if err != nil || v == 0 {
				continue
			}
			out["edge "+line[:i]] += int64(v)
		}
	}
	return out
}
