package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/presence/internal/lease"
	"github.com/hubbub-chat/hubbub/services/presence/internal/watch"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// A released lease is reported gone (not expired), an unrenewed one expired,
// a renewed one stays live.
func TestWatcherReportsGoneEdges(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := provision.Ensure(ctx, js, provision.Config{LeaseTTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, subjects.BucketEdges)
	if err != nil {
		t.Fatal(err)
	}
	for _, edge := range []string{"released", "crashed", "alive"} {
		if _, err := kv.Put(ctx, edge, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	w := lease.NewWatcher(16)
	loaded := make(chan struct{}, 1)
	go func() {
		_ = watch.Follow(ctx, func(context.Context) (jetstream.KeyValue, error) { return kv, nil }, w,
			watch.Options{Loaded: func() { loaded <- struct{}{} }, Log: logging.Discard()})
	}()
	<-loaded
	if w.Count() != 3 || !w.Live("alive") {
		t.Fatalf("live edges after load: %d", w.Count())
	}
	if err := kv.Delete(ctx, "released"); err != nil {
		t.Fatal(err)
	}
	got := map[string]lease.Gone{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for len(got) < 2 {
		select {
		case g := <-w.Gone():
			got[g.Edge] = g
		case <-tick.C:
			if _, err := kv.Put(ctx, "alive", []byte("{}")); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("gone edges so far: %v", got)
		}
	}
	if g := got["released"]; g.Expired {
		t.Errorf("released lease reported expired: %+v", g)
	}
	if g, ok := got["crashed"]; !ok || !g.Expired {
		t.Errorf("crashed lease: %+v %v", g, ok)
	}
	if !w.Live("alive") || w.Live("crashed") || w.Live("released") {
		t.Errorf("live set wrong: alive=%v crashed=%v released=%v", w.Live("alive"), w.Live("crashed"), w.Live("released"))
	}
}
