package scenario

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/coord"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/hist"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/localdeploy"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/proc"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
)

// ErrTarget is returned when a scenario needs something the target lacks.
var ErrTarget = errors.New("scenario: target cannot run this scenario")

// Target is what a scenario runs against.
type Target struct {
	// Name labels results: "hubbub", "baseline-ws", "baseline-nats".
	Name string
	// Kind of client: worker.KindWS or worker.KindNATS.
	Kind string
	// URLs the clients connect to: ws://host:port/ws per edge, or NATS URLs.
	URLs []string
	// Servers are the processes whose memory and CPU are reported, by role
	// ("edge-0", "nats-server", ...). Edges lists the ones clients connect
	// to, in URL order (nil for an external deployment).
	Servers map[string]*localdeploy.Process
	Edges   []*localdeploy.Process
	// NATSURL is the NATS server the history scenarios use.
	NATSURL string
}

// Runner runs scenarios with worker processes.
type Runner struct {
	// Self is argv that starts a worker (the tool with "worker").
	Self []string
	// Env is extra environment for workers.
	Env []string
	// MaxPerWorker caps clients per worker process (fd limit); default 15000.
	MaxPerWorker int
	// MinWorkers is the least number of workers started (default 2).
	MinWorkers int
	// SenderRate caps messages per second from one connection, under the
	// edge's per-connection limit (default 8).
	SenderRate float64
	Log        *slog.Logger

	tag int
}

func (r *Runner) nextTag(prefix string) string {
	r.tag++
	return fmt.Sprintf("%s%d", prefix, r.tag)
}

func (r *Runner) pool(ctx context.Context, clients int) (*coord.Pool, error) {
	per := r.MaxPerWorker
	if per <= 0 {
		per = 15000
	}
	n := max(r.MinWorkers, 2, (clients+per-1)/per)
	return coord.Start(ctx, n, r.Self, r.Env)
}

// connect spreads a group of clients over the pool's workers.
func connect(p *coord.Pool, spec worker.ConnectSpec) ([]*worker.Stats, error) {
	parts := coord.Split(spec.First, spec.Count, p.Len())
	cmds := make([]*worker.Command, p.Len())
	for i, part := range parts {
		if part[1] == 0 {
			continue
		}
		s := spec
		s.First, s.Count = part[0], part[1]
		cmds[i] = &worker.Command{Op: worker.OpConnect, Connect: &s}
	}
	return p.All(cmds)
}

// merged sums worker stats.
type merged struct {
	clients, joined, connectErrs int
	members                      map[string]int
	ackedByRoom                  map[string]int64
	sent, acked, received        int64
	gaps, dups, frames           int64
	disconnects                  int64
	firstSend, lastRecv          int64
	latency, ack, connect        hist.Snapshot
	resume, page                 hist.Snapshot
	affected, resumed, clean     int
	inWindow, unrecovered        int
	pages, pageErrs              int64
	elapsed                      time.Duration
	cpu                          proc.CPU
	errors                       map[string]int64
}

func merge(stats []*worker.Stats) merged {
	m := merged{members: map[string]int{}, ackedByRoom: map[string]int64{}, errors: map[string]int64{}}
	for _, s := range stats {
		if s == nil {
			continue
		}
		m.clients += s.Clients
		m.joined += s.Joined
		m.connectErrs += s.ConnectErrors
		for k, v := range s.Members {
			m.members[k] += v
		}
		for k, v := range s.AckedByRoom {
			m.ackedByRoom[k] += v
		}
		for k, v := range s.ErrorCodes {
			m.errors[k] += v
		}
		for k, v := range s.CloseCodes {
			m.errors[fmt.Sprintf("close_%d", k)] += v
		}
		m.sent += s.Sent
		m.acked += s.Acked
		m.received += s.Received
		m.gaps += s.Gaps
		m.dups += s.Dups
		m.frames += s.Frames
		m.disconnects += s.Disconnects
		if s.FirstSend > 0 && (m.firstSend == 0 || s.FirstSend < m.firstSend) {
			m.firstSend = s.FirstSend
		}
		m.lastRecv = max(m.lastRecv, s.LastRecv)
		m.latency = m.latency.Merge(s.Latency)
		m.ack = m.ack.Merge(s.AckLatency)
		m.connect = m.connect.Merge(s.ConnectTime)
		m.resume = m.resume.Merge(s.ResumeTime)
		m.page = m.page.Merge(s.PageTime)
		m.affected += s.Affected
		m.resumed += s.Resumed
		m.clean += s.ResumedClean
		m.inWindow += s.InWindowClean
		m.unrecovered += s.Unrecovered
		m.pages += s.Pages
		m.pageErrs += s.PageErrors
		m.elapsed = max(m.elapsed, s.Elapsed)
		m.cpu = m.cpu.Add(s.CPU)
		if s.SendErrors > 0 {
			m.errors["send_errors"] += s.SendErrors
		}
	}
	return m
}

// expected is Σ over rooms of acked messages × members.
func (m merged) expected() int64 {
	var n int64
	for room, a := range m.ackedByRoom {
		n += a * int64(m.members[room])
	}
	return n
}

// settle waits until the workers' frame counters stop moving for quiet
// (join/presence traffic after connecting), at most limit.
func settle(p *coord.Pool, quiet, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last, since := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		st, err := p.Each(worker.Command{Op: worker.OpStats})
		if err != nil {
			return err
		}
		n := merge(st).frames
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// cpuMeter measures CPU of server processes and workers over a window.
type cpuMeter struct {
	start   time.Time
	self    proc.CPU
	servers map[string]proc.CPU
	procs   map[string]*localdeploy.Process
	workers proc.CPU
}

func startCPU(t Target, workers []*worker.Stats) *cpuMeter {
	c := &cpuMeter{start: time.Now(), servers: map[string]proc.CPU{}, procs: t.Servers}
	for name, p := range t.Servers {
		if p.Exited() {
			continue
		}
		if v, err := p.CPU(); err == nil {
			c.servers[name] = v
		}
	}
	c.workers = merge(workers).cpu
	c.self, _, _ = proc.Self()
	return c
}

// stop returns cores used by each server role (edges summed as "edges")
// and by the generator.
func (c *cpuMeter) stop(workers []*worker.Stats) (map[string]float64, float64) {
	servers, gen, _ := c.stopWall(workers)
	return servers, gen
}

// stopWall is stop that also returns the window's length in seconds.
func (c *cpuMeter) stopWall(workers []*worker.Stats) (map[string]float64, float64, float64) {
	wall := time.Since(c.start).Seconds()
	out := map[string]float64{}
	for name, p := range c.procs {
		before, ok := c.servers[name]
		if !ok || p.Exited() {
			continue
		}
		v, err := p.CPU()
		if err != nil {
			continue
		}
		role := name
		if len(name) > 5 && name[:5] == "edge-" {
			role = "edges"
		}
		out[role] += round(v.Sub(before).Total().Seconds()/wall, 2)
	}
	self, _, _ := proc.Self()
	gen := (merge(workers).cpu.Sub(c.workers).Total() + self.Sub(c.self).Total()).Seconds() / wall
	return out, round(gen, 2), wall
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func loadavg() float64 {
	v, _ := proc.LoadAvg()
	return v
}

// Quiesce waits until every server process of t uses less than idle cores
// over one second (background work of the previous scenario: presence
// grace periods, history catching up), at most limit. It returns how long
// it waited.
func Quiesce(ctx context.Context, t Target, idle float64, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit {
		before := map[string]proc.CPU{}
		for name, p := range t.Servers {
			if v, err := p.CPU(); err == nil && !p.Exited() {
				before[name] = v
			}
		}
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-time.After(time.Second):
		}
		busy := false
		for name, p := range t.Servers {
			v, err := p.CPU()
			if err != nil || p.Exited() {
				continue
			}
			if v.Sub(before[name]).Total().Seconds() > idle {
				busy = true
			}
		}
		if !busy {
			break
		}
	}
	return time.Since(start)
}
