package roster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/presence/internal/watch"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natstest"
)

// storeEnv is a Store on a roster bucket of a real embedded NATS server,
// its view following the bucket, and the transitions it announced.
type storeEnv struct {
	t     *testing.T
	kv    jetstream.KeyValue
	view  *View
	store *Store

	mu    sync.Mutex
	diffs []Transition
}

func newStoreEnv(t *testing.T, cfg StoreConfig) *storeEnv {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "roster", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := &storeEnv{t: t, kv: kv, view: NewView()}
	loaded := make(chan struct{})
	var once sync.Once
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = watch.Follow(ctx, func(context.Context) (jetstream.KeyValue, error) { return kv, nil }, e.view, watch.Options{
			Loaded: func() { once.Do(func() { close(loaded) }) },
			Log:    logging.Discard(),
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-loaded:
	case <-time.After(10 * time.Second):
		t.Fatal("view did not load")
	}
	e.store = NewStore(kv, e.view, func(_ context.Context, tr Transition) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.diffs = append(e.diffs, tr)
		return nil
	}, cfg, logging.Discard())
	return e
}

// announced lists the announced transitions as "join user" / "leave user".
func (e *storeEnv) announced() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []string{}
	for _, tr := range e.diffs {
		out = append(out, tr.Event+" "+tr.User)
	}
	return out
}

func (e *storeEnv) join(user, conn string) (uint64, error) {
	return e.store.Join(context.Background(), "general", user, conn, "edge-1")
}

func (e *storeEnv) leave(user, conn string) uint64 {
	e.t.Helper()
	rev, err := e.store.Leave(context.Background(), "general", user, conn)
	if err != nil {
		e.t.Fatalf("leave %s %s: %v", user, conn, err)
	}
	e.view.WaitRev(context.Background(), rev)
	return rev
}

func (e *storeEnv) mustJoin(user, conn string) {
	e.t.Helper()
	rev, err := e.join(user, conn)
	if err != nil {
		e.t.Fatalf("join %s %s: %v", user, conn, err)
	}
	e.view.WaitRev(context.Background(), rev)
}

// lateJoin is the join of conn arriving after its leave: refused.
func (e *storeEnv) lateJoin(user, conn string) {
	e.t.Helper()
	if rev, err := e.join(user, conn); !errors.Is(err, ErrGone) {
		e.t.Fatalf("late join %s %s: rev %d, err %v; want ErrGone", user, conn, rev, err)
	}
}

func (e *storeEnv) listed() []string {
	users, online, _ := e.view.Page("general", "", 100)
	if online != len(users) {
		e.t.Fatalf("online %d, users %v", online, users)
	}
	return users
}

// sweepUntil sweeps until cond holds.
func (e *storeEnv) sweepUntil(what string, cond func() error) {
	e.t.Helper()
	natstest.Eventually(e.t, 20*time.Second, what, func() error {
		if _, err := e.store.Sweep(context.Background()); err != nil {
			return err
		}
		return cond()
	})
}

func (e *storeEnv) conns(user string) []string {
	it, ok := e.view.Get(Key("general", user))
	if !ok {
		return nil
	}
	var out []string
	for c := range it.Entry.Conns {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

func want(got, want []string) error {
	if !slices.Equal(got, want) {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

// A join that arrives after its own connection's leave (the edge gave up
// waiting for the join and sent the leave) never registers the connection:
// it is never listed, no join diff is announced, and the sweeper neither
// announces nor keeps anything for it; the user's other connections, and
// new ones, are unaffected.
func TestLeaveBeforeJoinNeverRegisters(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run performs the scenario; it returns the transitions and
		// connections expected once the sweeper has settled.
		run       func(e *storeEnv)
		announced []string
		listed    []string
		conns     []string
	}{{
		name: "no entry yet",
		run: func(e *storeEnv) {
			e.leave("amy", "c1")
			if got := e.listed(); len(got) != 0 {
				t.Fatalf("marker listed as online: %v", got)
			}
			e.lateJoin("amy", "c1")
		},
		announced: []string{},
		listed:    []string{},
	}, {
		name: "user online on another connection",
		run: func(e *storeEnv) {
			e.mustJoin("amy", "c0")
			e.leave("amy", "c1")
			e.lateJoin("amy", "c1")
		},
		announced: []string{"join amy"},
		listed:    []string{"amy"},
		conns:     []string{"c0"},
	}, {
		name: "user in grace period",
		run: func(e *storeEnv) {
			e.mustJoin("amy", "c0")
			e.leave("amy", "c0")
			e.leave("amy", "c1")
			e.lateJoin("amy", "c1")
		},
		announced: []string{"join amy", "leave amy"},
		listed:    []string{},
	}, {
		name: "session ended before the late join",
		run: func(e *storeEnv) {
			e.mustJoin("amy", "c1")
			e.leave("amy", "c1")
			e.sweepUntil("leave announced", func() error { return want(e.announced(), []string{"join amy", "leave amy"}) })
			e.lateJoin("amy", "c1") // a retry of the join, late
		},
		announced: []string{"join amy", "leave amy"},
		listed:    []string{},
	}, {
		name: "new connection after the marker",
		run: func(e *storeEnv) {
			e.leave("amy", "c1")
			e.lateJoin("amy", "c1")
			e.mustJoin("amy", "c2")
		},
		announced: []string{"join amy"},
		listed:    []string{"amy"},
		conns:     []string{"c2"},
	}, {
		name: "leave retried after the connection was removed",
		run: func(e *storeEnv) {
			e.mustJoin("amy", "c0")
			e.mustJoin("amy", "c1")
			e.leave("amy", "c1")
			e.leave("amy", "c1")
			e.lateJoin("amy", "c1")
		},
		announced: []string{"join amy"},
		listed:    []string{"amy"},
		conns:     []string{"c0"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newStoreEnv(t, StoreConfig{Grace: 100 * time.Millisecond, Retry: 200 * time.Millisecond})
			tc.run(e)
			// Past grace and retry: the sweeper has had every chance to
			// announce (or claim) something for the marker.
			e.sweepUntil("settled", func() error {
				if err := want(e.listed(), tc.listed); err != nil {
					return err
				}
				if err := want(e.conns("amy"), tc.conns); err != nil {
					return fmt.Errorf("conns: %w", err)
				}
				it, ok := e.view.Get(Key("general", "amy"))
				if ok && !it.Entry.Announced && it.Entry.User != "" {
					return fmt.Errorf("join not announced yet: %+v", it.Entry)
				}
				if ok && it.Entry.EmptySince != 0 {
					return fmt.Errorf("in grace: %+v", it.Entry)
				}
				return want(e.announced(), tc.announced)
			})
			for range 3 {
				if _, err := e.store.Sweep(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if err := want(e.announced(), tc.announced); err != nil {
				t.Fatalf("announced: %v", err)
			}
			if got := e.view.Online("general"); got != len(tc.listed) {
				t.Fatalf("online %d, want %d", got, len(tc.listed))
			}
			if got := e.view.Counts(nil)["general"]; got != len(tc.listed) {
				t.Fatalf("counts %d, want %d", got, len(tc.listed))
			}
			e.lateJoin("amy", "c1") // still refused
		})
	}
}

// Gone markers expire: a marker-only entry is deleted by the sweeper once
// its markers are older than GoneTTL, and then the id may join again.
func TestGoneMarkersExpire(t *testing.T) {
	e := newStoreEnv(t, StoreConfig{Grace: 100 * time.Millisecond, Retry: 200 * time.Millisecond, GoneTTL: 300 * time.Millisecond})
	e.leave("amy", "c1")
	if _, ok := e.view.Get(Key("general", "amy")); !ok {
		t.Fatal("no marker-only entry after a leave of an unknown connection")
	}
	e.sweepUntil("marker pruned", func() error {
		if _, ok := e.view.Get(Key("general", "amy")); ok {
			return errors.New("marker-only entry still there")
		}
		return nil
	})
	if got := e.announced(); len(got) != 0 {
		t.Fatalf("announced %v for a marker", got)
	}
	e.mustJoin("amy", "c1")
	if err := want(e.listed(), []string{"amy"}); err != nil {
		t.Fatal(err)
	}
}

// An entry keeps at most MaxGone markers, dropping the oldest.
func TestGoneMarkersBounded(t *testing.T) {
	e := newStoreEnv(t, StoreConfig{})
	for i := range MaxGone + 5 {
		e.leave("amy", fmt.Sprintf("c%03d", i))
	}
	it, ok := e.view.Get(Key("general", "amy"))
	if !ok || len(it.Entry.Gone) != MaxGone {
		t.Fatalf("entry %v (ok %v): %d markers, want %d", it.Entry.User, ok, len(it.Entry.Gone), MaxGone)
	}
	e.lateJoin("amy", fmt.Sprintf("c%03d", MaxGone+4))
}
