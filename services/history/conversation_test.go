package history_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// post publishes p to its room and returns its id.
func (e *env) post(t *testing.T, p wire.Post) uint64 {
	t.Helper()
	if p.TS == 0 {
		p.TS = time.Now().UnixMilli()
	}
	data, _ := json.Marshal(p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := e.js.Publish(ctx, subjects.Room(p.Room), data)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return ack.Sequence
}

// messageOf asks HistoryMessage for room/id: the message, or the error
// envelope's code and body.
func messageOf(t *testing.T, e *env, room string, id uint64) (wire.Message, string, []byte) {
	t.Helper()
	data, _ := json.Marshal(wire.MessageRequest{Room: room, ID: id})
	msg, err := e.nc.Request(subjects.HistoryMessage, data, 10*time.Second)
	if err != nil {
		t.Fatalf("request message: %v", err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return wire.Message{}, code, msg.Data
	}
	var m wire.Message
	if err := json.Unmarshal(msg.Data, &m); err != nil {
		t.Fatalf("message reply %s: %v", msg.Data, err)
	}
	return m, "", nil
}

// TestConversationRequests: change events published to a room fold into
// the pages and the message history answers, unread counts follow read
// marks, and a missing message is not_found.
func TestConversationRequests(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		start(t, e, cfg)
		on := true
		m1 := e.post(t, wire.Post{Room: "r", User: "alice", Body: "helo @bob", Kind: wire.KindMessage, Mentions: []string{"bob"}})
		m2 := e.post(t, wire.Post{Room: "r", User: "bob", Body: "hi", Kind: wire.KindMessage})
		ed := e.post(t, wire.Post{Room: "r", User: "alice", Body: "hello @bob", Kind: wire.KindEdit, Target: m1})
		e.post(t, wire.Post{Room: "r", User: "bob", Kind: wire.KindReaction, Target: m1, Emoji: "👍", On: &on})
		m3 := e.post(t, wire.Post{Room: "r", User: "carol", Body: "yes", Kind: wire.KindMessage, ReplyTo: m1})
		e.post(t, wire.Post{Room: "r", User: "carol", Body: "@bob look", Kind: wire.KindMessage, Mentions: []string{"bob"}})
		last := e.post(t, wire.Post{Room: "r", User: "bob", Kind: wire.KindDelete, Target: m2})

		var p wire.Page
		eventually(t, 20*time.Second, func() error {
			p = recent(t, e.nc, "r", 0, 10)
			if p.Last != last || len(p.Items) != 4 || !p.Items[1].Deleted {
				return fmt.Errorf("page %+v", p)
			}
			return nil
		})
		if a := p.Items[0]; a.Body != "hello @bob" || a.Edited == 0 || len(a.Reactions) != 1 || a.Reactions[0].Users[0] != "bob" {
			t.Fatalf("folded message %+v", a)
		}
		if r := p.Items[2].Reply; r == nil || r.ID != m1 || r.Body != "hello @bob" {
			t.Fatalf("reply quote %+v", r)
		}
		m, code, _ := messageOf(t, e, "r", m1)
		if code != "" || m.ID != m1 || m.Body != "hello @bob" || len(m.Reactions) != 1 {
			t.Fatalf("message %d: %+v (error %s)", m1, m, code)
		}
		if m, _, _ := messageOf(t, e, "r", m3); m.Reply == nil || m.Reply.ID != m1 {
			t.Fatalf("message %d: %+v", m3, m)
		}
		for _, c := range []struct {
			room string
			id   uint64
		}{{"r", ed}, {"other", m1}, {"r", last + 100}} {
			_, code, body := messageOf(t, e, c.room, c.id)
			var ef wire.ErrorFrame
			if err := json.Unmarshal(body, &ef); code != history.CodeNotFound || err != nil || ef.Code != wire.CodeNotFound {
				t.Fatalf("message %s/%d: code %q body %s, want %s not_found", c.room, c.id, code, body, history.CodeNotFound)
			}
		}
		msg, err := e.nc.Request(subjects.HistoryMessage, []byte(`{"room":"r"}`), 5*time.Second)
		if err != nil || msg.Header.Get(micro.ErrorCodeHeader) != "400" {
			t.Fatalf("message without id: %v %v", msg, err)
		}
		// The raw events still chain on since.
		if all := sinceAll(t, e.nc, "r", 0); len(all) != 7 || all[2].Kind != wire.KindEdit || all[2].Target != m1 {
			t.Fatalf("since 0: %+v", all)
		}

		// alice's message (its edit dropped the mention: an edit carries
		// none), carol's reply and carol's mention; bob's own deleted.
		// Unread counts what the database holds: wait for ingest.
		want := []wire.UnreadCount{{Room: "r", Count: 3, Mentions: 1}, {Room: "r", Read: m1, Count: 2, Mentions: 1}, {Room: "nowhere"}}
		eventually(t, 20*time.Second, func() error {
			u := call[wire.UnreadReply](t, e.nc, subjects.HistoryUnread, wire.UnreadRequest{User: "bob",
				Rooms: []wire.ReadMark{{Room: "r"}, {Room: "r", Read: m1}, {Room: "nowhere"}}})
			if fmt.Sprint(u.Rooms) != fmt.Sprint(want) {
				return fmt.Errorf("unread %+v, want %+v", u.Rooms, want)
			}
			return nil
		})
		msg, err = e.nc.Request(subjects.HistoryUnread, []byte(`{"rooms":[]}`), 5*time.Second)
		if err != nil || msg.Header.Get(micro.ErrorCodeHeader) != "400" {
			t.Fatalf("unread without user: %v %v", msg, err)
		}
	})
}

// TestMessageAboveWatermark: a replica whose database has not stored a
// message yet (here: read-only, nothing ingested) answers it, and its
// changes, from the stream.
func TestMessageAboveWatermark(t *testing.T) {
	e := newEnv(t)
	cfg := sqliteConfig(t)
	cfg.ReadOnly = true
	start(t, e, cfg)
	id := e.post(t, wire.Post{Room: "r", User: "alice", Body: "just sent", Kind: wire.KindMessage})
	e.post(t, wire.Post{Room: "r", User: "alice", Body: "just edited", Kind: wire.KindEdit, Target: id})
	m, code, body := messageOf(t, e, "r", id)
	if code != "" || m.Body != "just edited" || m.Edited == 0 || m.User != "alice" {
		t.Fatalf("message above the watermark: %+v (error %s %s)", m, code, body)
	}
	if _, code, _ := messageOf(t, e, "r", id+1); code != history.CodeNotFound {
		t.Fatalf("the edit's id: code %q, want not found", code)
	}
	if p := recent(t, e.nc, "r", 0, 10); len(p.Items) != 1 || p.Items[0].Body != "just edited" || p.Last != id+1 {
		t.Fatalf("recent from the stream: %+v", p)
	}
}

// TestMentionEvents: each chat message ingest stores with mentions is
// announced on chat.mention.<usertoken> once per mentioned user (not to an
// author mentioning themselves); a message some other writer had already
// stored is not announced again.
func TestMentionEvents(t *testing.T) {
	e := newEnv(t)
	cfg := sqliteConfig(t)
	sub, err := e.nc.SubscribeSync(subjects.MentionAll)
	if err != nil {
		t.Fatal(err)
	}
	// Stored by "another replica" before this one ingests it.
	early := e.post(t, wire.Post{Room: "r", User: "alice", Body: "@bob early", Kind: wire.KindMessage, Mentions: []string{"bob"}})
	st := storeOf(t, cfg)
	if _, err := st.Insert(context.Background(), []wire.Message{{ID: early, Room: "r", User: "alice", Body: "@bob early",
		Kind: wire.KindMessage, TS: 1, Mentions: []string{"bob"}}}); err != nil {
		t.Fatal(err)
	}
	start(t, e, cfg)
	id := e.post(t, wire.Post{Room: "r", User: "alice", Body: "@bob @carol @alice", Kind: wire.KindMessage,
		Mentions: []string{"bob", "carol", "alice"}})
	got := map[string]wire.MentionEvent{}
	for range 2 {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("mention events so far %v: %v", got, err)
		}
		var ev wire.MentionEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if m.Subject != subjects.Mention(names.UserToken(ev.User)) {
			t.Fatalf("event %+v on %s", ev, m.Subject)
		}
		got[ev.User] = ev
	}
	for _, u := range []string{"bob", "carol"} {
		if ev := got[u]; ev != (wire.MentionEvent{Room: "r", ID: id, User: u, By: "alice"}) {
			t.Fatalf("event for %s: %+v", u, ev)
		}
	}
	// Nothing else: not early (already stored), not alice herself. A
	// message posted after proves the subscription is still live.
	last := e.post(t, wire.Post{Room: "r", User: "carol", Body: "@dave", Kind: wire.KindMessage, Mentions: []string{"dave"}})
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ev wire.MentionEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.ID != last || ev.User != "dave" {
		t.Fatalf("next event %+v %v, want dave's mention in %d", ev, err, last)
	}
}
