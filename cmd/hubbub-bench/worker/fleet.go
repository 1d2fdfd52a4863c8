package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/hist"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/proc"
	"github.com/hubbub-chat/hubbub/shared/names"
)

// ErrUnknownOp is returned for a command the worker does not know.
var ErrUnknownOp = errors.New("unknown operation")

// ErrBadSpec is returned for an impossible command.
var ErrBadSpec = errors.New("bad command")

// fleet is the set of clients of one worker process and their counters.
type fleet struct {
	ctx    context.Context
	cancel context.CancelFunc
	bufs   sync.Pool

	tag        atomic.Value // string: the current run's tag
	bodyPrefix atomic.Value // []byte: "bench <tag> "
	cidPrefix  atomic.Value // []byte: "<tag>."

	mu          sync.Mutex
	ws          []*wsClient
	nats        []*natsClient
	members     map[string]int
	connectErrs int
	ackedByRoom map[string]int64
	errorCodes  map[string]int64
	closeCodes  map[int]int64

	connectTime hist.Hist
	latency     hist.Hist
	latencyAck  hist.Hist
	sent        atomic.Int64
	sendErrs    atomic.Int64
	acked       atomic.Int64
	received    atomic.Int64
	frames      atomic.Int64
	gaps        atomic.Int64
	dups        atomic.Int64
	disconnects atomic.Int64
	firstSend   atomic.Int64
	lastSend    atomic.Int64
	lastRecv    atomic.Int64
}

func newFleet(ctx context.Context) *fleet {
	ctx, cancel := context.WithCancel(ctx)
	f := &fleet{
		ctx:         ctx,
		cancel:      cancel,
		members:     map[string]int{},
		ackedByRoom: map[string]int64{},
		errorCodes:  map[string]int64{},
		closeCodes:  map[int]int64{},
	}
	f.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	f.setTag("none")
	return f
}

func (f *fleet) getBuf() *[]byte { return f.bufs.Get().(*[]byte) }

func (f *fleet) putBuf(b *[]byte) {
	if b != nil && cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		f.bufs.Put(b)
	}
}

func (f *fleet) setTag(tag string) {
	f.tag.Store(tag)
	f.bodyPrefix.Store([]byte("bench " + tag + " "))
	f.cidPrefix.Store([]byte(tag + "."))
}

func (f *fleet) noteRecv(now int64) {
	for {
		l := f.lastRecv.Load()
		if now <= l || f.lastRecv.CompareAndSwap(l, now) {
			return
		}
	}
}

func (f *fleet) ack(room string) {
	f.acked.Add(1)
	f.mu.Lock()
	f.ackedByRoom[room]++
	f.mu.Unlock()
}

func (f *fleet) errorCode(code string) {
	f.mu.Lock()
	f.errorCodes[code]++
	f.mu.Unlock()
}

func (f *fleet) closeCode(code int) {
	f.mu.Lock()
	f.closeCodes[code]++
	f.mu.Unlock()
}

// lost counts why a connection ended (by kind, so the map stays small).
func (f *fleet) lost(err error) {
	f.errorCode("disconnect: " + errKind(err))
}

// errKind classifies a connection error.
func errKind(err error) string {
	var ne net.Error
	kind := "other: " + fmt.Sprint(err)
	if len(kind) > 60 {
		kind = kind[:60]
	}
	switch {
	case err == nil:
		kind = "none"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		kind = "eof"
	case errors.Is(err, syscall.ECONNRESET):
		kind = "reset"
	case errors.Is(err, errServerClosed):
		kind = "close frame"
	case errors.Is(err, errNotConnected):
		kind = "not connected"
	case errors.Is(err, syscall.EPIPE):
		kind = "broken pipe"
	case errors.Is(err, errBadFrame):
		kind = "bad frame"
	case errors.As(err, &ne) && ne.Timeout():
		kind = "timeout"
	}
	return kind
}

func (f *fleet) noteAffected(c *wsClient) {
	f.mu.Lock()
	c.affected = true
	c.resumedAt = 0
	c.dirtyAfter = false
	c.unrecov = false
	f.mu.Unlock()
}

func (f *fleet) noteResumed(c *wsClient) {
	f.mu.Lock()
	c.resumedAt = time.Now().UnixNano()
	f.mu.Unlock()
}

// connect adds the clients of spec and returns when all have joined or failed.
func (f *fleet) connect(spec *ConnectSpec) error {
	if spec.Count <= 0 || spec.Rooms <= 0 || len(spec.URLs) == 0 {
		return fmt.Errorf("%w: connect needs count, rooms and urls", ErrBadSpec)
	}
	conc := spec.Concurrency
	if conc <= 0 {
		conc = 64
	}
	var lim *rate.Limiter
	if spec.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(spec.Rate), max(1, int(spec.Rate/50)))
	}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	for g := spec.First; g < spec.First+spec.Count; g++ {
		if lim != nil {
			if err := lim.Wait(f.ctx); err != nil {
				return fmt.Errorf("connect: %w", err)
			}
		}
		select {
		case sem <- struct{}{}:
		case <-f.ctx.Done():
			return fmt.Errorf("connect: %w", f.ctx.Err())
		}
		wg.Add(1)
		done := func(room string, err error) {
			f.mu.Lock()
			if err != nil {
				f.connectErrs++
			} else {
				f.members[room]++
			}
			f.mu.Unlock()
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
			<-sem
			wg.Done()
		}
		switch spec.Kind {
		case KindWS, "":
			c := &wsClient{
				f: f, spec: spec, g: g, room: spec.Room(g), url: spec.URLIndex(g),
				user: spec.UserPrefix + fmt.Sprint(g), hdr: make([]byte, 2, ws14),
			}
			f.mu.Lock()
			f.ws = append(f.ws, c)
			f.mu.Unlock()
			go c.run(f.ctx, func(err error) { done(c.room, err) })
		case KindNATS:
			c := &natsClient{f: f, spec: spec, g: g, room: spec.Room(g)}
			f.mu.Lock()
			f.nats = append(f.nats, c)
			f.mu.Unlock()
			go func() { done(c.room, c.connect()) }()
		default:
			<-sem
			wg.Done()
			return fmt.Errorf("%w: kind %q", ErrBadSpec, spec.Kind)
		}
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("%d of %d clients failed to connect, first: %w", f.connectErrs, spec.Count, firstErr)
	}
	return nil
}

// ws14 is the capacity ws.ReadHeaderBuffer needs.
const ws14 = 12

// run sends at spec.Rate from every sender for spec.Duration, then drains.
func (f *fleet) run(spec *RunSpec) error {
	if spec.Tag == "" || len(spec.Tag) > 20 || !names.ValidRoom(spec.Tag) {
		return fmt.Errorf("%w: tag %q", ErrBadSpec, spec.Tag)
	}
	if f.tag.Load().(string) != spec.Tag {
		f.resetRun()
		f.setTag(spec.Tag)
	}
	type sender struct {
		send func() error
		next time.Time
	}
	var senders []*sender
	f.mu.Lock()
	for _, c := range f.ws {
		if c.spec.Sender {
			c := c
			senders = append(senders, &sender{send: func() error {
				if !c.alive.Load() {
					return errNotConnected
				}
				return c.send(spec.Tag, spec.BodySize)
			}})
		}
	}
	for _, c := range f.nats {
		if c.spec.Sender {
			c := c
			senders = append(senders, &sender{send: func() error { return c.publish(spec) }})
		}
	}
	f.mu.Unlock()
	start := time.Now()
	end := start.Add(spec.Duration)
	if spec.Rate > 0 && len(senders) > 0 {
		period := time.Duration(float64(time.Second) / spec.Rate)
		for i, s := range senders {
			// Spread the senders' phases over one period.
			s.next = start.Add(period * time.Duration(i) / time.Duration(len(senders)))
		}
		f.firstSend.Store(start.UnixNano())
		tick := time.NewTicker(time.Millisecond)
		for now := start; now.Before(end); now = time.Now() {
			for _, s := range senders {
				// At most a few catch-up sends per tick: a stalled server must
				// not turn into a burst.
				for k := 0; k < 4 && !s.next.After(now) && s.next.Before(end); k++ {
					if err := s.send(); err != nil {
						f.sendErrs.Add(1)
						f.errorCode("send: " + errKind(err))
					} else {
						f.sent.Add(1)
					}
					s.next = s.next.Add(period)
				}
				if s.next.Before(now.Add(-period * 4)) {
					s.next = now // fell behind: drop the backlog
				}
			}
			select {
			case <-tick.C:
			case <-f.ctx.Done():
				tick.Stop()
				return fmt.Errorf("run: %w", f.ctx.Err())
			}
		}
		tick.Stop()
		f.lastSend.Store(time.Now().UnixNano())
	} else {
		select {
		case <-time.After(spec.Duration):
		case <-f.ctx.Done():
			return fmt.Errorf("run: %w", f.ctx.Err())
		}
	}
	// Drain: wait until nothing of this run arrived for Quiet.
	quiet, drain := spec.Quiet, spec.Drain
	if quiet <= 0 {
		quiet = time.Second
	}
	if drain <= 0 {
		drain = 15 * time.Second
	}
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) {
		last := max(f.lastRecv.Load(), f.lastSend.Load())
		if time.Since(time.Unix(0, last)) >= quiet {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// errNotConnected is what a sender reports while reconnecting.
var errNotConnected = errors.New("not connected")

func (f *fleet) resetRun() {
	f.sent.Store(0)
	f.sendErrs.Store(0)
	f.acked.Store(0)
	f.received.Store(0)
	f.firstSend.Store(0)
	f.lastSend.Store(0)
	f.lastRecv.Store(0)
	f.latency = hist.Hist{}
	f.latencyAck = hist.Hist{}
	f.mu.Lock()
	f.ackedByRoom = map[string]int64{}
	f.errorCodes = map[string]int64{}
	f.mu.Unlock()
}

// stats snapshots the counters.
func (f *fleet) stats(killTime int64, window time.Duration) *Stats {
	s := &Stats{
		ConnectTime: f.connectTime.Snapshot(),
		Sent:        f.sent.Load(),
		SendErrors:  f.sendErrs.Load(),
		Acked:       f.acked.Load(),
		Received:    f.received.Load(),
		Latency:     f.latency.Snapshot(),
		AckLatency:  f.latencyAck.Snapshot(),
		FirstSend:   f.firstSend.Load(),
		LastSend:    f.lastSend.Load(),
		LastRecv:    f.lastRecv.Load(),
		Frames:      f.frames.Load(),
		Gaps:        f.gaps.Load(),
		Dups:        f.dups.Load(),
		Disconnects: f.disconnects.Load(),
		Members:     map[string]int{},
		AckedByRoom: map[string]int64{},
		ErrorCodes:  map[string]int64{},
		CloseCodes:  map[int]int64{},
	}
	var resume hist.Hist
	f.mu.Lock()
	s.Clients = len(f.ws) + len(f.nats)
	s.ConnectErrors = f.connectErrs
	for k, v := range f.members {
		s.Members[k] = v
		s.Joined += v
	}
	s.Connected = s.Joined
	for k, v := range f.ackedByRoom {
		s.AckedByRoom[k] = v
	}
	for k, v := range f.errorCodes {
		s.ErrorCodes[k] = v
	}
	for k, v := range f.closeCodes {
		s.CloseCodes[k] = v
	}
	for _, c := range f.ws {
		if !c.affected {
			continue
		}
		s.Affected++
		if c.unrecov {
			s.Unrecovered++
		}
		if c.resumedAt == 0 {
			continue
		}
		s.Resumed++
		if killTime > 0 {
			resume.Record(time.Duration(c.resumedAt - killTime))
		}
		if !c.dirtyAfter {
			s.ResumedClean++
			if killTime > 0 && c.resumedAt-killTime <= int64(window) {
				s.InWindowClean++
			}
		}
	}
	f.mu.Unlock()
	s.ResumeTime = resume.Snapshot()
	if cpu, maxRSS, err := proc.Self(); err == nil {
		s.CPU, s.MaxRSS = cpu, maxRSS
	}
	return s
}

// Serve runs the worker command loop: one JSON Command per line of in, one
// JSON Reply per line of out. It returns after OpClose, at EOF or when ctx
// ends.
func Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	f := newFleet(ctx)
	defer f.closeAll()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var cmd Command
		var rep Reply
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			rep.Error = fmt.Sprintf("bad command: %v", err)
		} else {
			stop, err := f.do(&cmd, &rep)
			if err != nil {
				rep.Error = err.Error()
			}
			if stop {
				if err := enc.Encode(&rep); err != nil {
					return fmt.Errorf("write reply: %w", err)
				}
				return nil
			}
		}
		if err := enc.Encode(&rep); err != nil {
			return fmt.Errorf("write reply: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read commands: %w", err)
	}
	return nil
}

func (f *fleet) do(cmd *Command, rep *Reply) (stop bool, err error) {
	switch cmd.Op {
	case OpConnect:
		if cmd.Connect == nil {
			return false, fmt.Errorf("%w: connect without spec", ErrBadSpec)
		}
		err = f.connect(cmd.Connect)
		rep.Stats = f.stats(0, 0)
	case OpPrepare:
		if cmd.Run == nil {
			return false, fmt.Errorf("%w: prepare without spec", ErrBadSpec)
		}
		f.resetRun()
		f.setTag(cmd.Run.Tag)
	case OpRun:
		if cmd.Run == nil {
			return false, fmt.Errorf("%w: run without spec", ErrBadSpec)
		}
		err = f.run(cmd.Run)
		rep.Stats = f.stats(0, 0)
	case OpHistory:
		if cmd.History == nil {
			return false, fmt.Errorf("%w: history without spec", ErrBadSpec)
		}
		rep.Stats, err = f.history(cmd.History)
	case OpStats:
		rep.Stats = f.stats(cmd.KillTime, cmd.Window)
	case OpClose:
		f.closeAll()
		rep.Stats = f.stats(0, 0)
		return true, nil
	default:
		return false, fmt.Errorf("%w: %q", ErrUnknownOp, cmd.Op)
	}
	return false, err
}

func (f *fleet) closeAll() {
	f.cancel()
	f.mu.Lock()
	wsc, nc := f.ws, f.nats
	f.ws, f.nats = nil, nil
	f.mu.Unlock()
	for _, c := range wsc {
		c.close()
	}
	for _, c := range nc {
		c.close()
	}
}
