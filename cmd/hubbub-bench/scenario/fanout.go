package scenario

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
)

// Fanout is rooms × members, each room receiving Rate messages per second
// from a few of its members (so no connection exceeds the per-connection
// limit), for Duration.
type Fanout struct {
	Rooms    int
	Members  int
	Rate     float64 // messages per second per room
	Duration time.Duration
	BodySize int
	// Name labels the result ("fanout" or "latency").
	Name string
	// DuringRun, when set, is called as sending starts; the function it
	// returns is called when the run has drained (e.g. a profile capture).
	DuringRun func() func()
}

// Offered is the delivery rate the point asks for.
func (f Fanout) Offered() float64 { return float64(f.Rooms*f.Members) * f.Rate }

// Fanout runs one fan-out point.
func (r *Runner) Fanout(ctx context.Context, t Target, f Fanout) (res Result) {
	res = Result{
		Scenario: f.Name, Target: t.Name, Started: time.Now(), LoadAvg: loadavg(),
		Params: map[string]any{"rooms": f.Rooms, "members": f.Members, "rate_per_room": f.Rate, "duration_s": f.Duration.Seconds(), "urls": len(t.URLs)},
	}
	defer func() { res.Wall = round(time.Since(res.Started).Seconds(), 1) }()
	senders, perSender := r.senders(f, t.Kind)
	res.Params["senders_per_room"] = senders
	clients := f.Rooms * f.Members
	res.Clients = clients
	pool, err := r.pool(ctx, clients)
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	defer pool.Close()
	tag := r.nextTag("f")
	base := worker.ConnectSpec{
		Kind: t.Kind, URLs: t.URLs, Rooms: f.Rooms, RoomPrefix: tag + "-", UserPrefix: tag + "u", Edge: -1,
		Concurrency: 64, Timeout: 30 * time.Second,
	}
	connStart := time.Now()
	s := base
	s.First, s.Count, s.Sender = 0, senders*f.Rooms, true
	if _, err := connect(pool, s); err != nil {
		res.Notes = append(res.Notes, "connect: "+err.Error())
	}
	s = base
	s.First, s.Count = senders*f.Rooms, (f.Members-senders)*f.Rooms
	if s.Count > 0 {
		if _, err := connect(pool, s); err != nil {
			res.Notes = append(res.Notes, "connect: "+err.Error())
		}
	}
	res.ConnectPerSec = round(float64(clients)/time.Since(connStart).Seconds(), 0)
	if err := settle(pool, time.Second, 60*time.Second); err != nil {
		res.Failed = err.Error()
		return res
	}
	st, _ := pool.Each(worker.Command{Op: worker.OpStats})
	m0 := merge(st)
	res.ConnectErrors = m0.connectErrs
	res.ConnectP99Ms = quant(m0.connect).P99
	spec := &worker.RunSpec{Tag: tag, Rate: perSender, Duration: f.Duration, BodySize: f.BodySize, Quiet: time.Second, Drain: 20 * time.Second}
	if _, err := pool.Each(worker.Command{Op: worker.OpPrepare, Run: spec}); err != nil {
		res.Failed = err.Error()
		return res
	}
	meter := startCPU(t, st)
	var after func()
	if f.DuringRun != nil {
		after = f.DuringRun()
	}
	st, err = pool.Each(worker.Command{Op: worker.OpRun, Run: spec})
	if after != nil {
		after()
	}
	if err != nil {
		res.Failed = err.Error()
	}
	var wall float64
	res.ServerCPU, res.GenCPU, wall = meter.stopWall(st)
	m := merge(st)
	deliveries(&res, m, m0, wall)
	res.OfferedSec = f.Offered()
	res.Errors = m.errors
	for k, v := range edgeCounters(t.Edges) {
		res.Errors[k] = v
	}
	if len(res.Errors) == 0 {
		res.Errors = nil
	}
	if m.joined != clients {
		res.Notes = append(res.Notes, fmt.Sprintf("%d of %d clients joined", m.joined, clients))
	}
	return res
}

// senders is how many members of each room of f send, and at what rate
// each, so that no connection exceeds the Runner's SenderRate (default 8
// per second) — except over NATS, which has no per-connection limit.
func (r *Runner) senders(f Fanout, kind string) (int, float64) {
	senderRate := r.SenderRate
	if senderRate <= 0 {
		senderRate = 8
	}
	if kind == worker.KindNATS {
		senderRate = math.Max(senderRate, f.Rate)
	}
	n := max(1, min(f.Members, int(math.Ceil(f.Rate/senderRate))))
	return n, f.Rate / float64(n)
}

// deliveries fills the delivery figures of a fan-out result from the
// workers' stats after the run (m) and before it (m0), with res.ServerCPU
// and res.GenCPU measured over wall seconds: counts, reach (received ÷
// acked × members), the delivery rate from the first send to the last
// receipt, latencies, CPU per delivery, and the gaps and duplicates of the
// run alone.
func deliveries(res *Result, m, m0 merged, wall float64) {
	if m.received > 0 {
		var cores float64
		for _, v := range res.ServerCPU {
			cores += v
		}
		res.ServerUsPerDelivery = round(cores*wall*1e6/float64(m.received), 2)
		res.GenUsPerDelivery = round(res.GenCPU*wall*1e6/float64(m.received), 2)
	}
	res.Sent, res.Acked, res.Received = m.sent, m.acked, m.received
	res.Expected = m.expected()
	if res.Expected > 0 {
		res.Reach = round(float64(m.received)/float64(res.Expected), 5)
	}
	if m.firstSend > 0 && m.lastRecv > m.firstSend {
		res.DeliveriesSec = round(float64(m.received)/(float64(m.lastRecv-m.firstSend)/1e9), 0)
	}
	res.Latency, res.AckLatency = quant(m.latency), quant(m.ack)
	res.Gaps, res.Dups = m.gaps-m0.gaps, m.dups-m0.dups
	res.Disconnects = m.disconnects
}
