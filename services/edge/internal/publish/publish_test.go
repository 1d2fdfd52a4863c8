package publish

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// lossyJS is the real JetStream client, except that the PubAck of the
// publishes lose picks never reaches the caller — as when a stream leader
// dies after storing a message: the message is stored, its ack is lost.
type lossyJS struct {
	jetstream.JetStream
	lose func(*nats.Msg) bool
}

func (j lossyJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := j.JetStream.PublishMsgAsync(m, opts...)
	if err != nil || !j.lose(m) {
		return f, err
	}
	return lostAck{msg: m}, nil
}

// lostAck is a future whose outcome never arrives (nil channels block).
type lostAck struct{ msg *nats.Msg }

func (lostAck) Ok() <-chan *jetstream.PubAck { return nil }
func (lostAck) Err() <-chan error            { return nil }
func (l lostAck) Msg() *nats.Msg             { return l.msg }

// startJS is a provisioned test server's JetStream.
func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	return natstest.Provisioned(t, provision.Config{}).JS
}

// A PubAck that never comes delays the outcomes of its own connection's
// lane (which keep their order) but not those of other connections, and
// Close waits for every lane's outcomes.
func TestLostPubAckDelaysOnlyItsLane(t *testing.T) {
	js := startJS(t)
	p := newPublisher(lossyJS{JetStream: js, lose: func(m *nats.Msg) bool {
		return strings.Contains(string(m.Data), `"cid":"lost"`)
	}}, 5*time.Second, 100) // bob's acks have seconds to come back however loaded the machine

	events := make(chan string, 16)
	record := func(name string) PostDone {
		return func(res PostResult, err error) {
			switch {
			case errors.Is(err, nreq.ErrUnavailable):
				events <- name + ":unavailable"
			case err != nil:
				events <- name + ":" + err.Error()
			case res.ID == 0:
				events <- name + ":no id"
			default:
				events <- name + ":ok"
			}
		}
	}
	alice, bob := p.NewLane(), p.NewLane()
	for _, post := range []struct {
		lane *Lane
		user string
		cid  string
	}{
		{alice, "alice", "lost"}, // first on the wire: its ack never comes
		{alice, "alice", "a2"},
		{bob, "bob", "b1"},
		{bob, "bob", "b2"},
	} {
		if err := post.lane.Post(msg("general", post.user, "hello", post.cid), record(post.cid)); err != nil {
			t.Fatalf("post %s: %v", post.cid, err)
		}
	}
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()

	var got []string
	deadline := time.After(15 * time.Second)
	for len(got) < 4 {
		select {
		case ev := <-events:
			got = append(got, ev)
		case <-deadline:
			t.Fatalf("outcomes so far %v", got)
		}
	}
	want := []string{"b1:ok", "b2:ok", "lost:unavailable", "a2:ok"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("outcomes %v, want %v (bob's acks must not wait for alice's lost one)", got, want)
	}
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return after every outcome was reported")
	}
	if n := p.Pending(); n != 0 {
		t.Fatalf("pending after close %d", n)
	}
	if err := alice.Post(msg("general", "alice", "late", "a3"), record("a3")); !errors.Is(err, ErrPublisherClosed) {
		t.Fatalf("post after close: %v, want ErrPublisherClosed", err)
	}
}

// Close does not return while a lane still waits for an outcome.
func TestCloseWaitsForLostAck(t *testing.T) {
	js := startJS(t)
	p := newPublisher(lossyJS{JetStream: js, lose: func(*nats.Msg) bool { return true }}, time.Second, 100)
	reported := make(chan struct{})
	if err := p.NewLane().Post(msg("general", "carol", "hello", "c1"), func(_ PostResult, err error) {
		if !errors.Is(err, nreq.ErrUnavailable) {
			t.Errorf("outcome %v, want nreq.ErrUnavailable", err)
		}
		close(reported)
	}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	select {
	case <-reported:
	default:
		t.Fatal("Close returned before the pending outcome was reported")
	}
}

// The edge-wide bound counts the publishes of every lane.
func TestPendingBoundAcrossLanes(t *testing.T) {
	js := startJS(t)
	p := newPublisher(lossyJS{JetStream: js, lose: func(*nats.Msg) bool { return true }}, time.Second, 3)
	done := func(PostResult, error) {}
	lanes := []*Lane{p.NewLane(), p.NewLane(), p.NewLane()}
	for i, l := range lanes {
		if err := l.Post(msg("general", "u", "m", "c"+string(rune('0'+i))), done); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	if err := p.NewLane().Post(msg("general", "u", "m", "c9"), done); !errors.Is(err, ErrBusy) {
		t.Fatalf("fourth post: %v, want ErrBusy", err)
	}
	p.Close()
	if n := p.Pending(); n != 0 {
		t.Fatalf("pending after close %d", n)
	}
}

// msg is a chat message post.
func msg(room, user, body, cid string) wire.Post {
	return wire.Post{Room: room, User: user, Body: body, Kind: wire.KindMessage, CID: cid}
}

// Every kind of post is stored as published (its fields in the stream
// payload), and its cid de-duplicates per room and user: the same cid
// again stores nothing and is answered with the original id.
func TestPostKindsAndDedup(t *testing.T) {
	js := startJS(t)
	p := newPublisher(js, 5*time.Second, 100)
	on := true
	post := func(l *Lane, pp wire.Post) PostResult {
		t.Helper()
		out := make(chan PostResult, 1)
		if err := l.Post(pp, func(res PostResult, err error) {
			if err != nil {
				t.Errorf("post %s: %v", pp.CID, err)
			}
			out <- res
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case res := <-out:
			return res
		case <-time.After(10 * time.Second):
			t.Fatal("no outcome")
		}
		return PostResult{}
	}
	l := p.NewLane()
	first := post(l, wire.Post{Room: "general", User: "alice", Body: "hi @bob", Kind: wire.KindMessage, CID: "m1", Mentions: []string{"bob"}, ReplyTo: 7})
	posts := []wire.Post{
		{Room: "general", User: "alice", Body: "fixed", Kind: wire.KindEdit, CID: "e1", Target: first.ID},
		{Room: "general", User: "alice", Kind: wire.KindReaction, CID: "r1", Target: first.ID, Emoji: "👍", On: &on},
		{Room: "general", User: "alice", Kind: wire.KindDelete, CID: "d1", Target: first.ID},
	}
	ids := []uint64{first.ID}
	for _, pp := range posts {
		ids = append(ids, post(l, pp).ID)
	}
	// The edit's cid again (another body): the original id, nothing stored.
	dup := post(l, wire.Post{Room: "general", User: "alice", Body: "other", Kind: wire.KindEdit, CID: "e1", Target: first.ID})
	if !dup.Duplicate || dup.ID != ids[1] {
		t.Fatalf("resent cid: %+v, want duplicate of %d", dup, ids[1])
	}
	// Another user's same cid is not a duplicate.
	if res := post(p.NewLane(), wire.Post{Room: "general", User: "bob", Body: "mine", Kind: wire.KindMessage, CID: "e1"}); res.Duplicate {
		t.Fatalf("bob's cid e1 was taken as alice's duplicate: %+v", res)
	}
	p.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, subjects.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 5 {
		t.Fatalf("stream holds %d messages, want 5", info.State.Msgs)
	}
	want := append([]wire.Post{{Room: "general", User: "alice", Body: "hi @bob", Kind: wire.KindMessage, CID: "m1", Mentions: []string{"bob"}, ReplyTo: 7}}, posts...)
	for i, id := range ids {
		m, err := st.GetMsg(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var got wire.Post
		if err := json.Unmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
		if got.TS == 0 {
			t.Errorf("post %d has no ts", id)
		}
		got.TS = 0
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("stored %d: %+v, want %+v", id, got, want[i])
		}
	}
}
