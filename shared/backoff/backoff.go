// Package backoff is Hubbub's one retry helper: a delay policy (an initial
// wait doubling up to a cap, optionally jittered), the running state of one
// series of retries, a context-aware sleep, and Retry, the loop every
// service writes around an operation that fails while NATS, JetStream or
// the database is away.
package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Policy describes the waits between attempts: Initial before the first
// retry, doubling for each further one, never more than Max.
type Policy struct {
	// Initial is the wait before the first retry (> 0).
	Initial time.Duration
	// Max caps every wait (≥ Initial; ≤ 0 means Initial).
	Max time.Duration
	// Jitter, in [0, 1], shortens each wait by a random part of at most
	// Jitter × the wait, so replicas that failed together do not retry in
	// step; 0 keeps the waits exact.
	Jitter float64
	// ResetAfter, when > 0, starts the waits over at Initial after an
	// attempt of Retry that ran longer than it: a connection that held for
	// a while and then broke is retried quickly again.
	ResetAfter time.Duration
}

// Delay is the wait before retry n (n ≥ 1; a smaller n counts as 1):
// Initial × 2^(n-1), capped at Max, then jittered.
func (p Policy) Delay(n int) time.Duration {
	limit := max(p.Max, p.Initial)
	d := p.Initial
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return p.jitter(min(d, limit))
}

// jitter shortens d by a uniform random part of at most Jitter × d.
func (p Policy) jitter(d time.Duration) time.Duration {
	j := min(max(p.Jitter, 0), 1)
	if j == 0 || d <= 0 {
		return d
	}
	return d - time.Duration(rand.Float64()*j*float64(d))
}

// Backoff is one series of retries under a Policy. Its zero value is not
// usable; call Policy.Start. A Backoff is used by one goroutine.
type Backoff struct {
	p Policy
	n int // retries so far
}

// Start begins a series of retries.
func (p Policy) Start() *Backoff { return &Backoff{p: p} }

// Next returns the wait before the next retry and counts it.
func (b *Backoff) Next() time.Duration {
	b.n++
	return b.p.Delay(b.n)
}

// Reset starts the waits over at Initial.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits d or until ctx ends, and reports whether it waited fully.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// permanent marks an error that retrying cannot change.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err (nil stays nil) so that Retry returns it at once
// instead of retrying; Retry returns err itself, not the wrapper.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Retry calls op until it returns nil, then returns nil. After each
// failure it returns ctx.Err() if ctx has ended, the error itself if op
// marked it Permanent, and otherwise calls notify (when not nil) with the
// error and the wait, then waits (ctx.Err() if ctx ends meanwhile) and
// tries again. op is called at least once, even when ctx has already
// ended: a last attempt during shutdown is the caller's to refuse.
func Retry(ctx context.Context, p Policy, op func(context.Context) error, notify func(err error, wait time.Duration)) error {
	b := p.Start()
	for {
		start := time.Now()
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var pe permanent
		if errors.As(err, &pe) {
			return pe.err
		}
		if p.ResetAfter > 0 && time.Since(start) > p.ResetAfter {
			b.Reset()
		}
		wait := b.Next()
		if notify != nil {
			notify(err, wait)
		}
		if !Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}
