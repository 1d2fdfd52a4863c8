// Package loops runs a service's background loops: a Group of named loops
// in which the first failure cancels the rest and the loops stop in a
// fixed order; OnDemand, a goroutine that exists only while work is
// queued; and Every, a loop that does one thing at a fixed interval.
package loops

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Group runs named loops until its context ends, one of them fails, or
// Stop is called. They are then stopped one at a time in the reverse order
// of Go — the last started is cancelled and waited for first, like
// deferred calls — so a loop that others rely on, started before them,
// outlives them. A loop that returns nil before that simply ends.
//
// Create a Group with New and always end it with Wait or Stop.
type Group struct {
	ctx    context.Context    // cancelled when stopping begins
	cancel context.CancelFunc // begins stopping
	base   context.Context    // the parent's values, without its cancellation

	mu      sync.Mutex
	loops   []*loop
	err     error // the first failure, named
	stopped bool  // the loops are being (or have been) stopped

	done chan struct{} // closed once every loop has stopped
}

// loop is one loop of a Group.
type loop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Group whose loops stop when ctx ends. Its loops' contexts
// carry ctx's values, not its cancellation: they are cancelled by the
// Group, in order.
func New(ctx context.Context) *Group {
	g := &Group{base: context.WithoutCancel(ctx), done: make(chan struct{})}
	g.ctx, g.cancel = context.WithCancel(ctx)
	go g.stopWhenDone()
	return g
}

// Context is cancelled as soon as the Group begins stopping: its parent
// ended, a loop failed, or Stop was called. Work that must end with the
// loops (but is not one of them) runs under it.
func (g *Group) Context() context.Context { return g.ctx }

// Go starts fn as the loop called name. fn must return once its context
// ends; a non-nil error it returns stops the Group and is what Wait
// reports (as "name: err") if it came first. Go on a Group that has begun
// stopping does nothing: the loop would only be cancelled at once.
func (g *Group) Go(name string, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(g.base)
	l := &loop{cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		cancel()
		return
	}
	g.loops = append(g.loops, l)
	g.mu.Unlock()
	go func() {
		defer close(l.done)
		defer cancel()
		if err := fn(ctx); err != nil {
			g.fail(fmt.Errorf("%s: %w", name, err))
		}
	}()
}

// fail records the first failure and begins stopping.
func (g *Group) fail(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
	g.cancel()
}

// stopWhenDone stops the loops in reverse order once stopping begins.
func (g *Group) stopWhenDone() {
	<-g.ctx.Done()
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	for {
		g.mu.Lock()
		if len(g.loops) == 0 {
			g.mu.Unlock()
			break
		}
		l := g.loops[len(g.loops)-1]
		g.loops = g.loops[:len(g.loops)-1]
		g.mu.Unlock()
		l.cancel()
		<-l.done
	}
	close(g.done)
}

// Wait blocks until the Group has stopped (its context ended or a loop
// failed, and every loop returned) and returns the first failure, nil if
// there was none.
func (g *Group) Wait() error {
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Stop begins stopping the loops now and waits for them, as Wait.
func (g *Group) Stop() error {
	g.cancel()
	return g.Wait()
}

// OnDemand runs a function on a goroutine that exists only while there is
// work. The owner queues work and calls KickLocked; the function works
// until it finds nothing left, calls IdleLocked and returns. Both are
// called with the owner's lock held, the lock that guards the queue, so
// work queued while the goroutine is deciding to end is never stranded.
// The zero value is ready to use; an OnDemand must not be copied.
type OnDemand struct {
	running bool // guarded by the owner's lock
	once    sync.Once
	wake    chan struct{}
	wg      sync.WaitGroup
}

func (d *OnDemand) wakeCh() chan struct{} {
	d.once.Do(func() { d.wake = make(chan struct{}, 1) })
	return d.wake
}

// KickLocked starts run on a new goroutine unless one started by it is
// running; if one is, it wakes it (Woken). The owner's lock must be held.
func (d *OnDemand) KickLocked(run func()) {
	if d.running {
		d.Wake()
		return
	}
	d.running = true
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		run()
	}()
}

// IdleLocked records that the goroutine ends: run calls it, with the
// owner's lock held, when it found no work, and then returns without
// touching the work again.
func (d *OnDemand) IdleLocked() { d.running = false }

// Woken receives a signal (at most one is kept) each time KickLocked or
// Wake is called while run is running: a run that waits for work due
// later waits on it too.
func (d *OnDemand) Woken() <-chan struct{} { return d.wakeCh() }

// Wake signals Woken without the owner's lock, e.g. to make a waiting run
// notice that its owner closed.
func (d *OnDemand) Wake() {
	select {
	case d.wakeCh() <- struct{}{}:
	default:
	}
}

// Wait waits until no goroutine started by KickLocked runs. The owner must
// first make sure none will be started (e.g. a closed flag KickLocked's
// callers check).
func (d *OnDemand) Wait() { d.wg.Wait() }

// Every calls fn once per interval (> 0), the first time one interval
// after it starts, until ctx ends; it then returns nil, so it can be a
// Group's loop. A call that overruns the interval delays the next one
// rather than piling calls up; fn gets ctx and should return once it ends.
func Every(ctx context.Context, interval time.Duration, fn func(context.Context)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			fn(ctx)
		}
	}
}
