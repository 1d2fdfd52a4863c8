package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// TestEnsureIdempotentAndRepublish provisions twice, publishes to two rooms
// and checks the live copies carry the message id and the previous id in
// the same room.
func TestEnsureIdempotentAndRepublish(t *testing.T) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
			t.Fatalf("ensure #%d: %v", i+1, err)
		}
	}
	live, err := nc.SubscribeSync(subjects.LiveAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// a, b, a, a  → ids 1..4; prev in room a: 0, 1, 3; in room b: 0.
	rooms := []string{"a", "b", "a", "a"}
	for _, r := range rooms {
		if _, err := js.Publish(ctx, subjects.Room(r), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct{ seq, last string }{{"1", "0"}, {"2", "0"}, {"3", "1"}, {"4", "3"}}
	for i, w := range want {
		m, err := live.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("live message %d: %v", i, err)
		}
		if m.Subject != subjects.Live(rooms[i]) {
			t.Errorf("subject %q, want %q", m.Subject, subjects.Live(rooms[i]))
		}
		if got := m.Header.Get(subjects.HeaderSequence); got != w.seq {
			t.Errorf("msg %d: %s=%q want %q", i, subjects.HeaderSequence, got, w.seq)
		}
		if got := m.Header.Get(subjects.HeaderLastSequence); got != w.last {
			t.Errorf("msg %d: %s=%q want %q", i, subjects.HeaderLastSequence, got, w.last)
		}
	}
	for _, b := range provision.Buckets(provision.Config{}) {
		if _, err := js.KeyValue(ctx, b.Bucket); err != nil {
			t.Errorf("bucket %s: %v", b.Bucket, err)
		}
	}
}
