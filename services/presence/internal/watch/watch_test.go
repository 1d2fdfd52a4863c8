package watch_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/presence/internal/watch"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// kvMap is a view holding the live keys and their values.
type kvMap struct {
	mu       sync.Mutex
	m        map[string]string
	replaced int
}

func (v *kvMap) Replace(entries []jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m = map[string]string{}
	v.replaced++
	for _, e := range entries {
		if e.Operation() == jetstream.KeyValuePut {
			v.m[e.Key()] = string(e.Value())
		}
	}
}

func (v *kvMap) Apply(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		v.m[e.Key()] = string(e.Value())
	} else {
		delete(v.m, e.Key())
	}
}

func (v *kvMap) get(key string) (string, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[key], v.replaced
}

// The view follows puts and deletes, and keeps following after the server
// restarts (the watch is re-established and the view re-snapshotted).
func TestFollowSurvivesServerRestart(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, subjects.BucketRoster)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "a.before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	v := &kvMap{}
	loaded := make(chan struct{}, 8)
	done := make(chan error, 1)
	fctx, stop := context.WithCancel(ctx)
	go func() {
		done <- watch.Follow(fctx, func(context.Context) (jetstream.KeyValue, error) { return kv, nil }, v, watch.Options{
			Loaded:     func() { loaded <- struct{}{} },
			CheckEvery: 200 * time.Millisecond,
			Reconnects: func() uint64 { return nc.Stats().Reconnects },
			Log:        logging.Discard(),
		})
	}()
	<-loaded
	wait := func(key, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, _ := v.get(key)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s = %q, want %q", key, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("a.before", "1")
	if _, err := kv.Put(ctx, "a.live", []byte("2")); err != nil {
		t.Fatal(err)
	}
	wait("a.live", "2")
	if err := kv.Delete(ctx, "a.before"); err != nil {
		t.Fatal(err)
	}
	wait("a.before", "")

	srv.Restart()
	for i := 0; ; i++ {
		_, err := kv.Put(ctx, "a.after", []byte(fmt.Sprint(i)))
		if err == nil {
			wait("a.after", fmt.Sprint(i))
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("put after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, replaced := v.get("a.live"); replaced < 2 {
		t.Errorf("view replaced %d times, want a fresh snapshot after the restart", replaced)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Follow returned %v", err)
	}
}

// Once hands the bucket's content to Replace before Loaded, and ends as its
// contract says: nil when its context ends, ErrReconnected when the
// connection's reconnect count changes, an error when the bucket cannot be
// opened.
func TestOnce(t *testing.T) {
	env := natstest.Provisioned(t, provision.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kv, err := env.JS.KeyValue(ctx, subjects.BucketRoster)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "a.before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	errOpen := errors.New("no bucket")
	tests := []struct {
		name   string
		open   func(context.Context) (jetstream.KeyValue, error)
		after  func(stop context.CancelFunc, reconnects *atomic.Uint64) // once loaded
		want   error                                                    // nil: Once returns nil
		loaded bool
	}{
		{
			name:   "context ends",
			after:  func(stop context.CancelFunc, _ *atomic.Uint64) { stop() },
			loaded: true,
		},
		{
			name:   "reconnected",
			after:  func(_ context.CancelFunc, reconnects *atomic.Uint64) { reconnects.Add(1) },
			want:   watch.ErrReconnected,
			loaded: true,
		},
		{
			name: "bucket fails to open",
			open: func(context.Context) (jetstream.KeyValue, error) { return nil, errOpen },
			want: errOpen,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := tt.open
			if open == nil {
				open = func(context.Context) (jetstream.KeyValue, error) { return kv, nil }
			}
			var reconnects atomic.Uint64
			v := &kvMap{}
			loaded := make(chan string, 1)
			octx, stop := context.WithCancel(ctx)
			defer stop()
			done := make(chan error, 1)
			go func() {
				done <- watch.Once(octx, open, v, watch.Options{
					Loaded:     func() { got, _ := v.get("a.before"); loaded <- got },
					CheckEvery: 20 * time.Millisecond,
					Reconnects: reconnects.Load,
					Log:        logging.Discard(),
				})
			}()
			if tt.loaded {
				select {
				case got := <-loaded:
					if got != "1" {
						t.Fatalf("a.before = %q when loaded, want the snapshot's \"1\"", got)
					}
				case <-ctx.Done():
					t.Fatal("never loaded")
				}
				tt.after(stop, &reconnects)
			}
			select {
			case err := <-done:
				if !errors.Is(err, tt.want) {
					t.Fatalf("Once = %v, want %v", err, tt.want)
				}
			case <-ctx.Done():
				t.Fatal("Once did not return")
			}
			if !tt.loaded && len(loaded) > 0 {
				t.Fatal("Loaded called")
			}
		})
	}
}
