package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
)

// Storm connects Clients spread over the target's edges (Members per room),
// keeps every room busy with Rate messages per second from senders on a
// surviving edge, kills edge Victim with SIGKILL and measures how many of
// the victim's clients resumed gap-free (join with since, recovered, chain
// intact) within Window.
type Storm struct {
	Clients int
	Members int
	Rate    float64
	Jitter  time.Duration
	Window  time.Duration
	Victim  int
	// Before is how long traffic runs before the kill (default 3 s).
	Before time.Duration
}

// Storm runs the reconnect storm.
func (r *Runner) Storm(ctx context.Context, t Target, s Storm) (res Result) {
	res = Result{Scenario: "storm", Target: t.Name, Started: time.Now(), LoadAvg: loadavg(),
		Params: map[string]any{"clients": s.Clients, "members": s.Members, "edges": len(t.URLs), "rate_per_room": s.Rate,
			"jitter_s": s.Jitter.Seconds(), "window_s": s.Window.Seconds()}}
	defer func() { res.Wall = round(time.Since(res.Started).Seconds(), 1) }()
	if len(t.Edges) != len(t.URLs) || len(t.URLs) < 2 || s.Victim >= len(t.Edges) {
		res.Failed = fmt.Errorf("%w: the storm needs >= 2 edge processes it can kill", ErrTarget).Error()
		return res
	}
	if s.Before <= 0 {
		s.Before = 3 * time.Second
	}
	rooms := max(1, s.Clients/max(1, s.Members))
	pool, err := r.pool(ctx, s.Clients+rooms)
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	defer pool.Close()
	tag := r.nextTag("s")
	// Order URLs so the victim is first for everyone; clients move on to
	// the next URL when it dies.
	urls := append([]string{t.URLs[s.Victim]}, t.URLs[:s.Victim]...)
	urls = append(urls, t.URLs[s.Victim+1:]...)
	start := time.Now()
	if _, err := connect(pool, worker.ConnectSpec{
		Kind: worker.KindWS, URLs: urls, First: 0, Count: s.Clients, Rooms: rooms, RoomPrefix: tag + "-", UserPrefix: tag + "u",
		Edge: -1, Reconnect: true, Jitter: s.Jitter, Concurrency: 64, Timeout: 30 * time.Second,
	}); err != nil {
		res.Notes = append(res.Notes, "connect: "+err.Error())
	}
	// One sender per room, pinned to a surviving edge.
	if _, err := connect(pool, worker.ConnectSpec{
		Kind: worker.KindWS, URLs: urls, First: s.Clients, Count: rooms, Rooms: rooms, RoomPrefix: tag + "-", UserPrefix: tag + "u",
		Edge: 1, Sender: true, Concurrency: 64, Timeout: 30 * time.Second,
	}); err != nil {
		res.Notes = append(res.Notes, "connect: "+err.Error())
	}
	res.ConnectPerSec = round(float64(s.Clients+rooms)/time.Since(start).Seconds(), 0)
	_ = settle(pool, 2*time.Second, 120*time.Second)
	st0, _ := pool.Each(worker.Command{Op: worker.OpStats})
	m0 := merge(st0)
	res.Clients = m0.joined
	meter := startCPU(t, st0)
	type runOut struct {
		st  []*worker.Stats
		err error
	}
	runc := make(chan runOut, 1)
	dur := s.Before + s.Window + 5*time.Second
	spec := &worker.RunSpec{Tag: tag, Rate: s.Rate, Duration: dur, BodySize: 64, Quiet: time.Second, Drain: 10 * time.Second}
	if _, err := pool.Each(worker.Command{Op: worker.OpPrepare, Run: spec}); err != nil {
		res.Failed = err.Error()
		return res
	}
	go func() {
		st, err := pool.Each(worker.Command{Op: worker.OpRun, Run: spec})
		runc <- runOut{st, err}
	}()
	select {
	case <-time.After(s.Before):
	case <-ctx.Done():
		res.Failed = ctx.Err().Error()
		return res
	}
	victim := t.Edges[s.Victim]
	kill := time.Now()
	victim.Kill()
	r.Log.Info("storm: edge killed", "edge", victim.Name)
	out := <-runc
	if out.err != nil {
		res.Failed = out.err.Error()
	}
	res.ServerCPU, res.GenCPU = meter.stop(out.st)
	st, err := pool.Each(worker.Command{Op: worker.OpStats, KillTime: kill.UnixNano(), Window: s.Window})
	if err != nil {
		res.Failed = err.Error()
	}
	m := merge(st)
	resumes(&res, m, m0)
	res.Errors = m.errors
	for k, v := range edgeCounters(t.Edges) {
		res.Errors[k] = v
	}
	if len(res.Errors) == 0 {
		res.Errors = nil
	}
	return res
}

// resumes fills the figures of a storm result from the workers' stats
// after the run (m) and before it (m0): the victim's clients, how many
// resumed, gap-free and within the window (ResumedPct is the last of
// affected), resume times, and the gaps and duplicates of the run alone.
func resumes(res *Result, m, m0 merged) {
	res.Affected, res.Resumed, res.ResumedClean, res.InWindowClean, res.Unrecovered = m.affected, m.resumed, m.clean, m.inWindow, m.unrecovered
	if m.affected > 0 {
		res.ResumedPct = round(100*float64(m.inWindow)/float64(m.affected), 2)
	}
	res.ResumeTime = quant(m.resume)
	res.Gaps, res.Dups = m.gaps-m0.gaps, m.dups-m0.dups
	res.Disconnects = m.disconnects
	res.Sent, res.Acked, res.Received = m.sent, m.acked, m.received
	res.Latency = quant(m.latency)
}
