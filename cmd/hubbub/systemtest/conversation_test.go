package systemtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// startHistoryIn runs the real history service on SQLite in dir (kept
// across restarts) and returns its stop.
func (e *env) startHistoryIn(dir string) (stop func()) {
	e.t.Helper()
	svc, err := history.New(history.Config{StoreConfig: history.StoreConfig{DataDir: dir},
		IngestConfig: history.IngestConfig{BatchWait: 5 * time.Millisecond}, MarksInterval: 50 * time.Millisecond},
		history.Deps{NC: e.Connect(), Log: logging.Discard()})
	if err != nil {
		e.t.Fatalf("history: %v", err)
	}
	return natstest.Serve(e.t, "history", svc)
}

// write sends a write frame (f.CID set) and returns its acked id (fails on
// an error frame).
func (c *conn) write(f wire.ClientFrame) uint64 {
	c.t.Helper()
	id, ef := c.tryWrite(f)
	if ef != nil {
		c.t.Fatalf("%s %s: %s %s", f.Type, f.CID, ef.Code, ef.Message)
	}
	return id
}

// tryWrite sends a write frame and returns its acked id or its error frame.
func (c *conn) tryWrite(f wire.ClientFrame) (uint64, *wire.ErrorFrame) {
	c.t.Helper()
	c.send(f)
	got := c.await("ack of "+f.CID, func(fr client.Frame) bool {
		var x struct {
			CID string `json:"cid"`
		}
		return (fr.Type == wire.TypeAck || fr.Type == wire.TypeError) && fr.Decode(&x) == nil && x.CID == f.CID
	})
	if got.Type == wire.TypeError {
		ef := decode[wire.ErrorFrame](c.t, got)
		return 0, &ef
	}
	return decode[wire.Ack](c.t, got).ID, nil
}

// eventsUpTo collects the message frames c receives until one has id last,
// in order.
func (c *conn) eventsUpTo(last uint64) []wire.Message {
	c.t.Helper()
	var out []wire.Message
	for len(out) == 0 || out[len(out)-1].ID != last {
		out = append(out, c.nextMessage())
	}
	return out
}

// convIDs lists the ids of msgs of the kinds given (all when none).
func convIDs(msgs []wire.Message, kinds ...string) []uint64 {
	var out []uint64
	for _, m := range msgs {
		if len(kinds) == 0 || slices.Contains(kinds, m.Kind) {
			out = append(out, m.ID)
		}
	}
	return out
}

// A reply, an edit, a reaction and a delete made over WebSocket travel the
// room's one chain: an SSE client and a client resuming with since from
// before them get them in order, gaplessly; once history stored them, a
// page shows the folded state; an edit made while history is stopped is
// folded once history is back.
func TestConversation(t *testing.T) {
	e := newEnv(t)
	e.startPresence()
	dir := t.TempDir()
	stopHistory := e.startHistoryIn(dir)
	te := e.startEdge(nil)

	alice := dial(t, te.wsURL("alice"))
	alice.join("general", nil)
	bob := dial(t, te.wsURL("bob"))
	bob.join("general", nil)

	m1 := alice.say("general", "hello @bob", "m1")
	m2 := alice.say("general", "typo", "m2")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, te.httpURL("/api/rooms/general/events?user=sse"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sse := sseEvents(resp.Body)
	var sh wire.History
	if err := json.Unmarshal([]byte(nextEvent(t, sse, "history").data), &sh); err != nil {
		t.Fatal(err)
	}

	on := true
	r1 := bob.write(wire.ClientFrame{Type: wire.TypeMessage, Room: "general", Body: "hi alice", CID: "r1", ReplyTo: m1})
	e1 := alice.write(wire.ClientFrame{Type: wire.TypeEdit, Room: "general", ID: m1, Body: "hello @bob!", CID: "e1"})
	x1 := bob.write(wire.ClientFrame{Type: wire.TypeReact, Room: "general", ID: m1, Emoji: "👍", On: &on, CID: "x1"})
	d1 := alice.write(wire.ClientFrame{Type: wire.TypeDelete, Room: "general", ID: m2, CID: "d1"})
	changes := []uint64{r1, e1, x1, d1}

	// The SSE client: every event after its page, chained, ours in order.
	var seen []wire.Message
	for len(seen) == 0 || seen[len(seen)-1].ID != d1 {
		ev := nextEvent(t, sse, "message")
		var mf wire.MessageFrame
		if err := json.Unmarshal([]byte(ev.data), &mf); err != nil || ev.id != strconv.FormatUint(mf.Message.ID, 10) {
			t.Fatalf("sse event id %q data %s", ev.id, ev.data)
		}
		seen = append(seen, mf.Message)
	}
	if seen[0].Prev != sh.Last {
		t.Fatalf("sse: first live event %d has prev %d, the page's last is %d", seen[0].ID, seen[0].Prev, sh.Last)
	}
	checkChain(t, seen)
	if got := convIDs(seen, wire.KindMessage, wire.KindEdit, wire.KindReaction, wire.KindDelete); !slices.Equal(got, changes) {
		t.Fatalf("sse saw %v, want %v", got, changes)
	}

	// A client resuming from before the changes: the raw events, in
	// order, chained from its cursor.
	carol := dial(t, te.wsURL("carol"))
	h := carol.join("general", &m2)
	resumed := h.Items
	if h.Last < d1 {
		// What followed the page arrives live.
		resumed = append(resumed, carol.eventsUpTo(d1)...)
	}
	if len(resumed) == 0 || resumed[0].Prev != m2 {
		t.Fatalf("resumed %+v, want a chain from %d", resumed, m2)
	}
	checkChain(t, resumed)
	if got := convIDs(resumed, wire.KindMessage, wire.KindEdit, wire.KindReaction, wire.KindDelete); !slices.Equal(got, changes) {
		t.Fatalf("resumed %v, want %v", got, changes)
	}
	for _, m := range resumed {
		if m.ID == e1 && (m.Kind != wire.KindEdit || m.Target != m1 || m.Body != "hello @bob!" || !slices.Equal(m.Mentions, []string{"bob"})) {
			t.Fatalf("resumed edit %+v", m)
		}
	}

	// Once history stored them: the folded page.
	page := awaitPage(t, te.httpURL("/api/rooms/general/messages?limit=50"), d1)
	byID := map[uint64]wire.Message{}
	for _, m := range page.Items {
		if wire.IsChange(m.Kind) {
			t.Fatalf("a change event in a page: %+v", m)
		}
		byID[m.ID] = m
	}
	if m := byID[m1]; m.Body != "hello @bob!" || m.Edited == 0 || !slices.Equal(m.Mentions, []string{"bob"}) || len(m.Reactions) != 1 || m.Reactions[0].Emoji != "👍" ||
		m.Reactions[0].Count != 1 || !slices.Equal(m.Reactions[0].Users, []string{"bob"}) {
		t.Fatalf("folded message %+v", m)
	}
	if m := byID[m2]; !m.Deleted || m.Body != "" {
		t.Fatalf("folded delete %+v", m)
	}
	if m := byID[r1]; m.ReplyTo != m1 || m.Reply == nil || m.Reply.ID != m1 || m.Reply.User != "alice" {
		t.Fatalf("folded reply %+v", m)
	}
	// A join's page says the same, with the same cursor.
	dave := dial(t, te.wsURL("dave"))
	if h := dave.join("general", nil); h.Last < d1 || !slices.Contains(convIDs(h.Items), m1) {
		t.Fatalf("join page last %d items %v, want last ≥ %d", h.Last, convIDs(h.Items), d1)
	}

	// History's lookups: another room's message, someone else's, a
	// tombstone.
	alice.join("elsewhere", nil)
	other := alice.say("elsewhere", "in another room", "o1")
	for _, tc := range []struct {
		c    *conn
		f    wire.ClientFrame
		code string
	}{
		{alice, wire.ClientFrame{Type: wire.TypeMessage, Room: "general", Body: "x", CID: "n1", ReplyTo: other}, wire.CodeNotFound},
		{bob, wire.ClientFrame{Type: wire.TypeEdit, Room: "general", ID: m1, Body: "mine now", CID: "n2"}, wire.CodeForbidden},
		{alice, wire.ClientFrame{Type: wire.TypeEdit, Room: "general", ID: m2, Body: "undelete", CID: "n3"}, wire.CodeNotFound},
		{bob, wire.ClientFrame{Type: wire.TypeReact, Room: "general", ID: m2, Emoji: "👍", On: &on, CID: "n4"}, wire.CodeNotFound},
	} {
		if _, ef := tc.c.tryWrite(tc.f); ef == nil || ef.Code != tc.code || ef.CID != tc.f.CID {
			t.Fatalf("%s %s: %+v, want %s", tc.f.Type, tc.f.CID, ef, tc.code)
		}
	}

	// History stops; an edit is still accepted (the target read from the
	// stream) and is folded once history is back.
	stopHistory()
	e2 := alice.write(wire.ClientFrame{Type: wire.TypeEdit, Room: "general", ID: m1, Body: "edited while history was away", CID: "e2"})
	e.startHistoryIn(dir)
	// History's own answers (not the edge's stream fallback).
	natstest.Until(t, 15*time.Second, "history to fold the edit made while it was stopped", func() bool {
		p, err := historyRequest[wire.Page](e, subjects.HistoryRecent, wire.RecentRequest{Room: "general", Limit: 50})
		if err != nil || p.Last < e2 {
			return false
		}
		for _, m := range p.Items {
			if m.ID == m1 {
				return m.Body == "edited while history was away" && len(m.Reactions) == 1
			}
		}
		return false
	})
	m, err := historyRequest[wire.Message](e, subjects.HistoryMessage, wire.MessageRequest{Room: "general", ID: m1})
	if err != nil || m.Body != "edited while history was away" || m.Edited == 0 {
		t.Fatalf("history's message %d: %+v, %v", m1, m, err)
	}
}

// historyRequest asks history directly over NATS.
func historyRequest[T any](e *env, subject string, req any) (T, error) {
	var out T
	data, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	msg, err := e.NC.Request(subject, data, 2*time.Second)
	if err != nil {
		return out, err
	}
	if msg.Header.Get(micro.ErrorCodeHeader) != "" {
		return out, fmt.Errorf("%s: %s %s", subject, msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader))
	}
	return out, json.Unmarshal(msg.Data, &out)
}

// awaitPage polls a page until its cursor reaches last.
func awaitPage(t *testing.T, url string, last uint64) wire.Page {
	t.Helper()
	var page wire.Page
	natstest.Until(t, 15*time.Second, fmt.Sprintf("a page with last %d", last), func() bool {
		code, body := httpGet(t, url)
		return code == 200 && json.Unmarshal([]byte(body), &page) == nil && page.Last >= last
	})
	return page
}
