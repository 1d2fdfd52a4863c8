// Package netpoll tells the owners of many mostly idle sockets when one of
// them becomes readable, so that an idle socket needs no goroutine: one
// poller goroutine waits in epoll for every registered socket, and each
// readiness runs the socket's Handler on a bounded pool of worker
// goroutines that exist only while there is work.
//
// Registrations are one-shot: after a socket reported readiness it stays
// silent until its owner calls Arm again, so a socket's Handler never runs
// twice at once. It is implemented on Linux; New fails elsewhere with
// ErrUnsupported and callers fall back to a goroutine per socket.
package netpoll

import "errors"

// Errors.
var (
	// ErrUnsupported: the platform has no poller (not Linux).
	ErrUnsupported = errors.New("netpoll: not supported on this platform")
	// ErrClosed: the poller is closed.
	ErrClosed = errors.New("netpoll: poller closed")
	// ErrRemoved: the descriptor was removed.
	ErrRemoved = errors.New("netpoll: descriptor removed")
	// ErrNoData is returned by TryRead when nothing is ready to be read.
	ErrNoData = errors.New("netpoll: no data ready")
)

// Handler is told that its socket is readable, hung up or failed. Ready
// runs on a pool worker; it should read what is there and then call Arm
// (or Remove) on the descriptor. The kernel, not Go, orders Arm before
// the Ready it leads to: state Ready shares with the code that armed must
// be guarded by a lock.
type Handler interface {
	Ready()
}

// Config sizes a Poller. Zero values take the defaults.
type Config struct {
	// Workers bounds how many Handler.Ready calls run at once (1024).
	Workers int
	// Events is how many readiness events one wait collects (256).
	Events int
}

// Defaults for Config.
const (
	DefaultWorkers = 1024
	DefaultEvents  = 256
)

func (c Config) withDefaults() Config {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Events <= 0 {
		c.Events = DefaultEvents
	}
	return c
}

// pool runs ready descriptors' handlers on at most max goroutines, which
// exit as soon as the queue is empty. The caller holds the poller's lock.
type pool struct {
	max     int
	running int
	queue   []Handler
	head    int
}

// pushLocked queues h and reports whether a new worker must be started.
func (q *pool) pushLocked(h Handler) bool {
	q.queue = append(q.queue, h)
	if q.running < q.max {
		q.running++
		return true
	}
	return false
}

// popLocked returns the next handler, or nil when the worker must exit.
func (q *pool) popLocked() Handler {
	if q.head == len(q.queue) {
		q.running--
		if cap(q.queue) > 1024 {
			q.queue = nil
		} else {
			q.queue = q.queue[:0]
		}
		q.head = 0
		return nil
	}
	h := q.queue[q.head]
	q.queue[q.head] = nil
	q.head++
	return h
}

// Pending is the number of ready handlers waiting for a worker (tests,
// metrics).
func (p *Poller) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pool.queue) - p.pool.head
}

// Dispatch runs the descriptor's handler on a worker as if its socket had
// become readable (for data already buffered in user space). The owner
// calls it only while the descriptor is not armed.
func (d *Desc) Dispatch() { d.p.dispatch(d.h) }

func (p *Poller) dispatch(h Handler) {
	p.mu.Lock()
	start := p.pool.pushLocked(h)
	p.mu.Unlock()
	if start {
		go p.work()
	}
}

func (p *Poller) work() {
	for {
		p.mu.Lock()
		h := p.pool.popLocked()
		p.mu.Unlock()
		if h == nil {
			return
		}
		h.Ready()
	}
}
