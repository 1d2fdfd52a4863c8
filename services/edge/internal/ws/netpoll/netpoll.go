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

import (
	"errors"
	"sync"

	"github.com/hubbub-chat/hubbub/shared/defaults"
)

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
	defaults.Positive(&c.Workers, DefaultWorkers)
	defaults.Positive(&c.Events, DefaultEvents)
	return c
}

// Pool runs Handlers on at most a fixed number of goroutines, which exist
// only while there is work.
type Pool struct {
	mu      sync.Mutex
	max     int
	running int
	queue   []Handler
	head    int
}

// NewPool returns a pool of at most workers goroutines (DefaultWorkers if
// workers <= 0).
func NewPool(workers int) *Pool {
	if workers <= 0 {
		workers = DefaultWorkers
	}
	return &Pool{max: workers}
}

// Run calls h.Ready on a pool goroutine, in the order Run was called once
// a goroutine is free.
func (p *Pool) Run(h Handler) {
	p.mu.Lock()
	start := p.pushLocked(h)
	p.mu.Unlock()
	if start {
		go p.work()
	}
}

// Pending is the number of handlers waiting for a goroutine.
func (p *Pool) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) - p.head
}

// pushLocked queues h and reports whether a new worker must be started.
func (p *Pool) pushLocked(h Handler) bool {
	p.queue = append(p.queue, h)
	if p.running < p.max {
		p.running++
		return true
	}
	return false
}

// popLocked returns the next handler, or nil when the worker must exit.
func (p *Pool) popLocked() Handler {
	if p.head == len(p.queue) {
		p.running--
		if cap(p.queue) > 1024 {
			p.queue = nil
		} else {
			p.queue = p.queue[:0]
		}
		p.head = 0
		return nil
	}
	h := p.queue[p.head]
	p.queue[p.head] = nil
	p.head++
	return h
}

func (p *Pool) work() {
	for {
		p.mu.Lock()
		h := p.popLocked()
		p.mu.Unlock()
		if h == nil {
			return
		}
		h.Ready()
	}
}

// Pending is the number of ready handlers waiting for a worker.
func (p *Poller) Pending() int { return p.pool.Pending() }

// Dispatch runs the descriptor's handler on a worker as if its socket had
// become readable (for data already buffered in user space). The owner
// calls it only while the descriptor is not armed.
func (d *Desc) Dispatch() { d.p.pool.Run(d.h) }
