package loops_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/shared/loops"
)

// recorder notes the order in which loops returned.
type recorder struct {
	mu    sync.Mutex
	order []string
}

func (r *recorder) ended(name string) {
	r.mu.Lock()
	r.order = append(r.order, name)
	r.mu.Unlock()
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type key struct{}

func TestGroupOrderedStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(cancelParent context.CancelFunc, g *loops.Group) error
	}{
		{"parent ends", func(cancel context.CancelFunc, g *loops.Group) error { cancel(); return g.Wait() }},
		{"Stop", func(_ context.CancelFunc, g *loops.Group) error { return g.Stop() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
			defer cancel()
			g := loops.New(parent)
			var rec recorder
			ctxs := map[string]context.Context{}
			var mu sync.Mutex
			var started sync.WaitGroup
			names := []string{"views", "ingest", "retention"}
			for i, name := range names {
				started.Add(1)
				g.Go(name, func(ctx context.Context) error {
					if ctx.Value(key{}) != "v" {
						t.Errorf("%s: the parent's values are missing", name)
					}
					mu.Lock()
					ctxs[name] = ctx
					mu.Unlock()
					started.Done()
					<-ctx.Done()
					// Every loop started before this one still runs.
					mu.Lock()
					for _, earlier := range names[:i] {
						if ctxs[earlier].Err() != nil {
							t.Errorf("%s was cancelled before %s returned", earlier, name)
						}
					}
					mu.Unlock()
					rec.ended(name)
					return nil
				})
			}
			started.Wait()
			if err := tc.stop(cancel, g); err != nil {
				t.Fatalf("stop: %v", err)
			}
			if got, want := rec.got(), []string{"retention", "ingest", "views"}; !slices.Equal(got, want) {
				t.Errorf("stop order %v, want %v", got, want)
			}
			if g.Context().Err() == nil {
				t.Error("Context not cancelled after the stop")
			}
		})
	}
}

func TestGroupFirstErrorCancelsTheRest(t *testing.T) {
	errBroken := errors.New("broken")
	g := loops.New(context.Background())
	var rec recorder
	release := make(chan struct{})
	for _, name := range []string{"a", "b"} {
		g.Go(name, func(ctx context.Context) error {
			<-ctx.Done()
			rec.ended(name)
			return errors.New(name + " ends after the failure")
		})
	}
	g.Go("bad", func(context.Context) error {
		<-release
		return errBroken
	})
	g.Go("fine", func(context.Context) error { return nil }) // ends early, stops nothing
	close(release)
	err := g.Wait()
	if !errors.Is(err, errBroken) || err.Error() != "bad: broken" {
		t.Fatalf("Wait = %v, want bad: broken", err)
	}
	if got, want := rec.got(), []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("stop order %v, want %v", got, want)
	}
	if g.Context().Err() == nil {
		t.Error("Context not cancelled by the failure")
	}
}

func TestGroupEarlyNilKeepsOthers(t *testing.T) {
	g := loops.New(context.Background())
	var ended atomic.Bool
	g.Go("short", func(context.Context) error { ended.Store(true); return nil })
	running := make(chan struct{})
	g.Go("long", func(ctx context.Context) error { close(running); <-ctx.Done(); return nil })
	<-running
	waitUntil(t, "the short loop ended", ended.Load)
	if g.Context().Err() != nil {
		t.Fatal("a loop that returned nil stopped the group")
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestGroupGoAfterStop(t *testing.T) {
	g := loops.New(context.Background())
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	var ran atomic.Bool
	g.Go("late", func(context.Context) error { ran.Store(true); return nil })
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Error("a loop added after the stop ran")
	}
}

// queue is an owner of an OnDemand worker: items appended under mu.
type queue struct {
	mu      sync.Mutex
	items   []int
	worker  loops.OnDemand
	done    []int
	running atomic.Int32
	maxRun  atomic.Int32
	starts  atomic.Int32
}

func (q *queue) push(v int) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.worker.KickLocked(q.work)
	q.mu.Unlock()
}

func (q *queue) work() {
	q.starts.Add(1)
	if n := q.running.Add(1); n > q.maxRun.Load() {
		q.maxRun.Store(n)
	}
	defer q.running.Add(-1)
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.worker.IdleLocked()
			q.mu.Unlock()
			return
		}
		v := q.items[0]
		q.items = q.items[1:]
		q.done = append(q.done, v)
		q.mu.Unlock()
	}
}

func TestOnDemand(t *testing.T) {
	var q queue
	var wg sync.WaitGroup
	const n = 1000
	for i := range 4 {
		wg.Go(func() {
			for j := range n / 4 {
				q.push(i*n + j)
			}
		})
	}
	wg.Wait()
	waitUntil(t, "the queue drained", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.done) == n
	})
	q.worker.Wait()
	if q.running.Load() != 0 {
		t.Error("a worker goroutine still runs with nothing queued")
	}
	if m := q.maxRun.Load(); m > 1 {
		t.Errorf("%d workers ran at once, want 1", m)
	}
	if q.starts.Load() < 1 {
		t.Error("no worker started")
	}
	q.mu.Lock()
	seen := map[int]bool{}
	for _, v := range q.done {
		if seen[v] {
			t.Fatalf("item %d handled twice", v)
		}
		seen[v] = true
	}
	q.mu.Unlock()
	// Idle again: the next push starts a new goroutine.
	before := q.starts.Load()
	q.push(-1)
	q.worker.Wait()
	if q.starts.Load() != before+1 {
		t.Errorf("push on an idle queue started %d goroutines, want 1", q.starts.Load()-before)
	}
}

func TestOnDemandWoken(t *testing.T) {
	var mu sync.Mutex
	var d loops.OnDemand
	waiting := make(chan struct{})
	wakes := 0
	run := func() {
		close(waiting)
		<-d.Woken()
		mu.Lock()
		wakes++
		d.IdleLocked()
		mu.Unlock()
	}
	mu.Lock()
	d.KickLocked(run)
	mu.Unlock()
	<-waiting
	mu.Lock()
	d.KickLocked(run) // running: wakes it rather than starting another
	mu.Unlock()
	d.Wait()
	if wakes != 1 {
		t.Errorf("%d wakes, want 1", wakes)
	}
	d.Wake() // with nothing running: kept, never blocks
	d.Wake()
}

func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- loops.Every(ctx, time.Millisecond, func(fctx context.Context) {
			if fctx != ctx {
				t.Error("fn did not get Every's context")
			}
			calls.Add(1)
		})
	}()
	waitUntil(t, "three calls", func() bool { return calls.Load() >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Every = %v, want nil", err)
	}
	n := calls.Load()
	time.Sleep(5 * time.Millisecond)
	if calls.Load() != n {
		t.Error("fn called after Every returned")
	}
}
