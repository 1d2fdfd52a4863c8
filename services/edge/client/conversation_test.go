package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// These tests drive a real edge over a real NATS server (the CHAT stream
// provisioned, no history service: the edge reads pages and looks
// messages up in the stream) with real WebSocket, SSE and HTTP clients.

const waitFor = 15 * time.Second

// convEdge is an edge under test and its NATS server.
type convEdge struct {
	svc *edge.Service
	ne  *natstest.Env
}

// startConvEdge runs an edge whose message budgets do not get in the way
// of a test's writes; auth tweaks the auth config (nil: none).
func startConvEdge(t *testing.T, authCfg *auth.Config) *convEdge {
	t.Helper()
	ne := natstest.Provisioned(t, provision.Config{TypingTTL: 2 * time.Second, LeaseTTL: 3 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rates := userlimit.Rates{MessageRate: 1000, MessageBurst: 1000}
	cfg := edge.Config{
		Listener: ln, RequestTimeout: 2 * time.Second, DrainPeriod: 100 * time.Millisecond, LeaseTTL: 3 * time.Second,
		Session:    session.Config{Rates: rates},
		UserLimits: userlimit.Config{Rates: rates},
	}
	if authCfg != nil {
		cfg.Auth = *authCfg
	}
	svc, err := edge.New(cfg, edge.Deps{NC: ne.Connect(), Log: logging.Discard(), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("edge.New: %v", err)
	}
	natstest.Serve(t, "edge", svc)
	return &convEdge{svc: svc, ne: ne}
}

// dial connects user (auth none) and joins rooms.
func (e *convEdge) dial(t *testing.T, ctx context.Context, user string, rooms ...string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, "ws://"+e.svc.Addr()+"/ws?user="+user, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Welcome(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		if _, err := c.Join(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// streamMsgs is how many messages the CHAT stream holds.
func (e *convEdge) streamMsgs(t *testing.T, ctx context.Context) uint64 {
	t.Helper()
	st, err := e.ne.JS.Stream(ctx, subjects.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// openSSE follows room's events as user (auth none); lastID, when not
// empty, is sent as Last-Event-ID.
func (e *convEdge) openSSE(t *testing.T, ctx context.Context, room, user, lastID string) <-chan sseEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.svc.Addr()+"/api/rooms/"+room+"/events?user="+user, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %s", resp.Status)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	ch := make(chan sseEvent, 256)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return ch
}

// nextSSE returns the next event of type typ, skipping others.
func nextSSE(t *testing.T, ctx context.Context, ch <-chan sseEvent, typ string) sseEvent {
	t.Helper()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended awaiting %s", typ)
			}
			if ev.event == typ {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("no %s event", typ)
		}
	}
}

// liveMsgs reads the next n message frames of room from c.
func liveMsgs(t *testing.T, ctx context.Context, c *client.Client, room string, n int) []wire.Message {
	t.Helper()
	var out []wire.Message
	for len(out) < n {
		f, err := c.Await(ctx, wire.TypeMessage)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		var m wire.MessageFrame
		if err := f.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if m.Room == room {
			out = append(out, m.Message)
		}
	}
	return out
}

// checkChain fails unless msgs are the events ids, in order, each
// chained to the one before (the first to prev0).
func checkChain(t *testing.T, who string, msgs []wire.Message, prev0 uint64, ids ...uint64) {
	t.Helper()
	if len(msgs) != len(ids) {
		t.Fatalf("%s: %d events, want %d", who, len(msgs), len(ids))
	}
	prev := prev0
	for i, m := range msgs {
		if m.ID != ids[i] || m.Prev != prev {
			t.Fatalf("%s: event %d is %d (prev %d), want %d (prev %d)", who, i, m.ID, m.Prev, ids[i], prev)
		}
		prev = m.ID
	}
}

func refusal(t *testing.T, err error, code string) {
	t.Helper()
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != code {
		t.Fatalf("got %v, want a %s refusal", err, code)
	}
}

// A reply, an edit, a reaction and a delete over WebSocket are acked with
// their own ids and reach another WebSocket client and an SSE client live,
// in order, on the room's one chain; a stream resumed from before them
// gets them raw, a newest page folded (with its last cursor at the newest
// change).
func TestConversationLive(t *testing.T) {
	e := startConvEdge(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	alice := e.dial(t, ctx, "alice", "general")
	bob := e.dial(t, ctx, "bob", "general")
	sse := e.openSSE(t, ctx, "general", "carol", "")
	if h := nextSSE(t, ctx, sse, wire.TypeHistory); h.data == "" {
		t.Fatal("no history event")
	}

	m1, err := alice.Say(ctx, "general", "hello @bob", "m1")
	if err != nil {
		t.Fatal(err)
	}
	r1, err := bob.Reply(ctx, "general", m1, "hi alice", "r1")
	if err != nil {
		t.Fatal(err)
	}
	e1, err := alice.Edit(ctx, "general", m1, "hello @bob, again", "e1")
	if err != nil {
		t.Fatal(err)
	}
	x1, err := bob.React(ctx, "general", m1, "👍", true, "x1")
	if err != nil {
		t.Fatal(err)
	}
	d1, err := bob.Delete(ctx, "general", r1, "d1")
	if err != nil {
		t.Fatal(err)
	}
	ids := []uint64{m1, r1, e1, x1, d1}

	// Every member sees them all: alice (the author of some) and bob.
	got := liveMsgs(t, ctx, alice, "general", len(ids))
	checkChain(t, "alice", got, 0, ids...)
	want := []wire.Message{
		{Kind: wire.KindMessage, User: "alice", Body: "hello @bob", Mentions: []string{"bob"}},
		{Kind: wire.KindMessage, User: "bob", Body: "hi alice", ReplyTo: m1},
		{Kind: wire.KindEdit, User: "alice", Body: "hello @bob, again", Target: m1, Mentions: []string{"bob"}},
		{Kind: wire.KindReaction, User: "bob", Target: m1, Emoji: "👍"},
		{Kind: wire.KindDelete, User: "bob", Target: r1},
	}
	for i, w := range want {
		g := got[i]
		if g.Kind != w.Kind || g.User != w.User || g.Body != w.Body || g.ReplyTo != w.ReplyTo || g.Target != w.Target ||
			g.Emoji != w.Emoji || strings.Join(g.Mentions, ",") != strings.Join(w.Mentions, ",") {
			t.Errorf("event %d: %+v, want %+v", i, g, w)
		}
	}
	if got[3].On == nil || !*got[3].On {
		t.Errorf("reaction on %v, want true", got[3].On)
	}
	checkChain(t, "bob", liveMsgs(t, ctx, bob, "general", len(ids)), 0, ids...)

	// The SSE client: message events, each with its id.
	var sseGot []wire.Message
	for range ids {
		ev := nextSSE(t, ctx, sse, wire.TypeMessage)
		var m wire.MessageFrame
		if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
			t.Fatal(err)
		}
		if ev.id != strconv.FormatUint(m.Message.ID, 10) {
			t.Fatalf("event id %q for message %d", ev.id, m.Message.ID)
		}
		sseGot = append(sseGot, m.Message)
	}
	checkChain(t, "sse", sseGot, 0, ids...)

	// Resuming from before the changes: the raw events, one chain, and the
	// frame's id (what the next resume sends) is the newest.
	resumed := e.openSSE(t, ctx, "general", "carol", strconv.FormatUint(m1, 10))
	ev := nextSSE(t, ctx, resumed, wire.TypeHistory)
	var h wire.History
	if err := json.Unmarshal([]byte(ev.data), &h); err != nil {
		t.Fatal(err)
	}
	checkChain(t, "resumed sse", h.Items, m1, ids[1:]...)
	if ev.id != strconv.FormatUint(d1, 10) || h.Last != d1 {
		t.Fatalf("resumed history event id %q last %d, want %d", ev.id, h.Last, d1)
	}
	// ...and after them: nothing more, the cursor unchanged.
	after := e.openSSE(t, ctx, "general", "carol", strconv.FormatUint(d1, 10))
	ev = nextSSE(t, ctx, after, wire.TypeHistory)
	if err := json.Unmarshal([]byte(ev.data), &h); err != nil || len(h.Items) != 0 || h.Last != d1 || ev.id != strconv.FormatUint(d1, 10) {
		t.Fatalf("history after the newest change: %+v (id %q), %v", h, ev.id, err)
	}

	// A newest page: the messages with their changes folded, last = the
	// newest change (the delete), and live continues from it.
	dave := e.dial(t, ctx, "dave")
	page, err := dave.Join(ctx, "general", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 || page.Last != d1 {
		t.Fatalf("page %+v, want 2 messages, last %d", page, d1)
	}
	first, reply := page.Items[0], page.Items[1]
	if first.Body != "hello @bob, again" || first.Edited == 0 || len(first.Reactions) != 1 ||
		first.Reactions[0].Emoji != "👍" || first.Reactions[0].Count != 1 || first.Reactions[0].Users[0] != "bob" {
		t.Errorf("folded message %+v", first)
	}
	if !reply.Deleted || reply.Body != "" || reply.ReplyTo != m1 {
		t.Errorf("folded reply %+v, want a tombstone replying to %d", reply, m1)
	}
	next, err := alice.Say(ctx, "general", "after the page", "m2")
	if err != nil {
		t.Fatal(err)
	}
	checkChain(t, "dave", liveMsgs(t, ctx, dave, "general", 1), d1, next)
}

// The write rules, each refusal an error frame with the cid on a
// connection that stays usable.
func TestConversationRefusals(t *testing.T) {
	e := startConvEdge(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	alice := e.dial(t, ctx, "alice", "general", "other")
	bob := e.dial(t, ctx, "bob", "general")

	m1, err := alice.Say(ctx, "general", "mine", "m1")
	if err != nil {
		t.Fatal(err)
	}
	o1, err := alice.Say(ctx, "other", "elsewhere", "o1")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("someone else's edit and delete are forbidden", func(t *testing.T) {
		_, err := bob.Edit(ctx, "general", m1, "not yours", "be1")
		refusal(t, err, wire.CodeForbidden)
		_, err = bob.Delete(ctx, "general", m1, "bd1")
		refusal(t, err, wire.CodeForbidden)
		if _, err := bob.Say(ctx, "general", "still here", "b2"); err != nil {
			t.Fatalf("bob's connection after the refusals: %v", err)
		}
	})
	t.Run("a duplicated cid is the same event", func(t *testing.T) {
		e1, err := alice.Edit(ctx, "general", m1, "mine, fixed", "e1")
		if err != nil {
			t.Fatal(err)
		}
		before := e.streamMsgs(t, ctx)
		again, err := alice.Edit(ctx, "general", m1, "mine, fixed", "e1")
		if err != nil || again != e1 {
			t.Fatalf("resent edit: %d, %v; want %d", again, err, e1)
		}
		dupMsg, err := alice.Say(ctx, "general", "mine", "m1")
		if err != nil || dupMsg != m1 {
			t.Fatalf("resent message: %d, %v; want %d", dupMsg, err, m1)
		}
		if after := e.streamMsgs(t, ctx); after != before {
			t.Fatalf("the stream grew from %d to %d messages on resent cids", before, after)
		}
	})
	t.Run("targets must be messages of the room", func(t *testing.T) {
		_, err := alice.Reply(ctx, "general", o1, "across rooms", "rx")
		refusal(t, err, wire.CodeNotFound)
		_, err = alice.Edit(ctx, "general", o1, "across rooms", "ex")
		refusal(t, err, wire.CodeNotFound)
		_, err = alice.React(ctx, "general", 9999, "👍", true, "xx")
		refusal(t, err, wire.CodeNotFound)
		edit, err := alice.Edit(ctx, "general", m1, "again", "e2")
		if err != nil {
			t.Fatal(err)
		}
		_, err = alice.Edit(ctx, "general", edit, "an edit of an edit", "e3")
		refusal(t, err, wire.CodeNotFound)
	})
	t.Run("a deleted message takes no change", func(t *testing.T) {
		m, err := alice.Say(ctx, "general", "soon gone", "m3")
		if err != nil {
			t.Fatal(err)
		}
		d3, err := alice.Delete(ctx, "general", m, "d3")
		if err != nil {
			t.Fatal(err)
		}
		_, err = alice.Edit(ctx, "general", m, "too late", "e4")
		refusal(t, err, wire.CodeNotFound)
		_, err = bob.React(ctx, "general", m, "👍", true, "x4")
		refusal(t, err, wire.CodeNotFound)
		// A resent delete (its ack lost) is acked with the original id.
		before := e.streamMsgs(t, ctx)
		if again, err := alice.Delete(ctx, "general", m, "d3"); err != nil || again != d3 {
			t.Fatalf("resent delete: %d, %v; want %d", again, err, d3)
		}
		if after := e.streamMsgs(t, ctx); after != before {
			t.Fatalf("a resent delete stored %d messages", after-before)
		}
	})
	t.Run("emoji bound", func(t *testing.T) {
		m, err := alice.Say(ctx, "general", "react to me", "m5")
		if err != nil {
			t.Fatal(err)
		}
		emoji := func(i int) string { return string(rune(0x1F600 + i)) }
		for i := range wire.MaxReactionKinds {
			if _, err := bob.React(ctx, "general", m, emoji(i), true, fmt.Sprint("k", i)); err != nil {
				t.Fatalf("reaction %d: %v", i, err)
			}
		}
		_, err = bob.React(ctx, "general", m, emoji(wire.MaxReactionKinds), true, "k-new")
		refusal(t, err, wire.CodeInvalidEmoji)
		// An emoji already there may still be given (by another user) and
		// taken back; taking back one not given is acked too.
		if _, err := alice.React(ctx, "general", m, emoji(0), true, "k-again"); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.React(ctx, "general", m, emoji(1), false, "k-off"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.React(ctx, "general", m, emoji(2), false, "k-never"); err != nil {
			t.Fatalf("taking back a reaction not given: %v", err)
		}
		_, err = bob.React(ctx, "general", m, "a", true, "k-text")
		refusal(t, err, wire.CodeInvalidEmoji)
	})
	t.Run("not joined", func(t *testing.T) {
		_, err := bob.Edit(ctx, "other", o1, "x", "nj")
		refusal(t, err, wire.CodeNotJoined)
	})
}

// httpDo sends one request and returns its status and decoded body.
func httpDo(t *testing.T, method, u string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func postReply(t *testing.T, body string) wire.PostReply {
	t.Helper()
	var pr wire.PostReply
	if err := json.Unmarshal([]byte(body), &pr); err != nil || pr.ID == 0 {
		t.Fatalf("reply %q: %v", body, err)
	}
	return pr
}

// The HTTP verbs take the WebSocket's path: each answers a PostReply or
// the refusal's status, and a WebSocket member sees the events.
func TestConversationHTTP(t *testing.T) {
	e := startConvEdge(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	watcher := e.dial(t, ctx, "watcher", "general")
	base := "http://" + e.svc.Addr() + "/api/rooms/general/messages"
	as := func(user string) string { return "?user=" + user }
	js := map[string]string{"Content-Type": "application/json"}

	code, body := httpDo(t, http.MethodPost, base+as("alice"), js, `{"body":"hello","cid":"h1"}`)
	if code != 200 {
		t.Fatalf("post: %d %s", code, body)
	}
	m1 := postReply(t, body).ID
	code, body = httpDo(t, http.MethodPost, base+as("bob"), js, fmt.Sprintf(`{"body":"hi","cid":"h2","reply_to":%d}`, m1))
	if code != 200 {
		t.Fatalf("reply: %d %s", code, body)
	}
	r1 := postReply(t, body).ID
	code, body = httpDo(t, http.MethodPatch, fmt.Sprintf("%s/%d%s", base, m1, as("alice")), js, `{"body":"hello!","cid":"h3"}`)
	if code != 200 {
		t.Fatalf("edit: %d %s", code, body)
	}
	e1 := postReply(t, body)
	code, body = httpDo(t, http.MethodPatch, fmt.Sprintf("%s/%d%s", base, m1, as("alice")), js, `{"body":"hello!","cid":"h3"}`)
	if dup := postReply(t, body); code != 200 || !dup.Duplicate || dup.ID != e1.ID || dup.CID != "h3" {
		t.Fatalf("resent edit: %d %s, want a duplicate of %d", code, body, e1.ID)
	}
	react := fmt.Sprintf("%s/%d/reactions/%s", base, m1, url.PathEscape("🎉"))
	code, body = httpDo(t, http.MethodPut, react+as("bob")+"&cid=h4", nil, "")
	if pr := postReply(t, body); code != 200 || pr.CID != "h4" {
		t.Fatalf("react: %d %s", code, body)
	}
	x1 := postReply(t, body).ID
	code, body = httpDo(t, http.MethodDelete, react+as("bob"), nil, "")
	if code != 200 {
		t.Fatalf("unreact: %d %s", code, body)
	}
	x2 := postReply(t, body)
	if x2.CID == "" {
		t.Fatal("no cid generated for a request without one")
	}
	code, body = httpDo(t, http.MethodDelete, fmt.Sprintf("%s/%d%s&cid=h6", base, r1, as("bob")), nil, "")
	if code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	d1 := postReply(t, body).ID
	// The same DELETE again (its answer lost): the original id.
	code, body = httpDo(t, http.MethodDelete, fmt.Sprintf("%s/%d%s&cid=h6", base, r1, as("bob")), nil, "")
	if dup := postReply(t, body); code != 200 || !dup.Duplicate || dup.ID != d1 {
		t.Fatalf("resent delete: %d %s, want a duplicate of %d", code, body, d1)
	}

	got := liveMsgs(t, ctx, watcher, "general", 6)
	checkChain(t, "watcher", got, 0, m1, r1, e1.ID, x1, x2.ID, d1)
	if got[3].Emoji != "🎉" || !*got[3].On || *got[4].On || got[1].ReplyTo != m1 {
		t.Fatalf("events %+v", got)
	}

	for _, tc := range []struct {
		name, method, path, user, body string
		hdr                            map[string]string
		status                         int
	}{
		{"someone else's edit", http.MethodPatch, fmt.Sprintf("/%d", m1), "bob", `{"body":"x","cid":"f1"}`, js, http.StatusForbidden},
		{"someone else's delete", http.MethodDelete, fmt.Sprintf("/%d", m1), "bob", "", nil, http.StatusForbidden},
		{"reply to nothing", http.MethodPost, "", "bob", `{"body":"x","cid":"f2","reply_to":99999}`, js, http.StatusNotFound},
		{"edit of nothing", http.MethodPatch, "/99999", "alice", `{"body":"x","cid":"f3"}`, js, http.StatusNotFound},
		{"react on a tombstone", http.MethodPut, fmt.Sprintf("/%d/reactions/%s", r1, url.PathEscape("👍")), "alice", "", nil, http.StatusNotFound},
		{"delete of nothing", http.MethodDelete, "/99999", "bob", "", nil, http.StatusNotFound},
		{"not an emoji", http.MethodPut, fmt.Sprintf("/%d/reactions/abc", m1), "bob", "", nil, http.StatusBadRequest},
		{"not an id", http.MethodPatch, "/seven", "alice", `{"body":"x","cid":"f4"}`, js, http.StatusBadRequest},
		{"an empty edit", http.MethodPatch, fmt.Sprintf("/%d", m1), "alice", `{"body":"  ","cid":"f5"}`, js, http.StatusBadRequest},
		{"a bad room", http.MethodDelete, "", "alice", "", nil, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := base + tc.path + as(tc.user)
			if tc.name == "a bad room" {
				u = "http://" + e.svc.Addr() + "/api/rooms/Not%20A%20Room/messages/1" + as(tc.user)
			}
			if code, body := httpDo(t, tc.method, u, tc.hdr, tc.body); code != tc.status {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.status)
			}
		})
	}
}

// With cookie authentication, every state change passes the Origin
// allow-list: a foreign or null Origin is refused with 403 and nothing is
// stored; the edge's own Origin (and bearer tokens, whatever the Origin)
// go through.
func TestConversationHTTPCookieOrigin(t *testing.T) {
	const secret = "conversation-test-secret-of-32-bytes-or-more"
	e := startConvEdge(t, &auth.Config{Mode: auth.ModeJWT, Secret: secret})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	token := func(user string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := "http://" + e.svc.Addr() + "/api/rooms/general/messages"
	cookie := auth.CookieName + "=" + token("alice")
	own := "http://" + e.svc.Addr()
	hdr := func(origin string, json bool) map[string]string {
		h := map[string]string{"Cookie": cookie}
		if origin != "" {
			h["Origin"] = origin
		}
		if json {
			h["Content-Type"] = "application/json"
		}
		return h
	}
	code, body := httpDo(t, http.MethodPost, base, hdr(own, true), `{"body":"hello","cid":"c1"}`)
	if code != 200 {
		t.Fatalf("post with the edge's origin: %d %s", code, body)
	}
	m1 := postReply(t, body).ID
	before := e.streamMsgs(t, ctx)
	id := strconv.FormatUint(m1, 10)
	react := base + "/" + id + "/reactions/" + url.PathEscape("👍")
	for _, origin := range []string{"https://evil.example", "null"} {
		for _, tc := range []struct {
			method, u, body string
			json            bool
		}{
			{http.MethodPost, base, fmt.Sprintf(`{"body":"x","cid":"p","reply_to":%d}`, m1), true},
			{http.MethodPatch, base + "/" + id, `{"body":"x","cid":"e"}`, true},
			{http.MethodDelete, base + "/" + id, "", false},
			{http.MethodPut, react, "", false},
			{http.MethodDelete, react, "", false},
		} {
			if code, body := httpDo(t, tc.method, tc.u, hdr(origin, tc.json), tc.body); code != http.StatusForbidden {
				t.Errorf("%s %s from %s: %d %s, want 403", tc.method, tc.u, origin, code, body)
			}
		}
	}
	if after := e.streamMsgs(t, ctx); after != before {
		t.Fatalf("refused requests stored %d messages", after-before)
	}
	// Same origin: the verbs go through.
	if code, body := httpDo(t, http.MethodPatch, base+"/"+id, hdr(own, true), `{"body":"hello!","cid":"e1"}`); code != 200 {
		t.Fatalf("edit from the edge's origin: %d %s", code, body)
	}
	if code, body := httpDo(t, http.MethodPut, react, hdr(own, false), ""); code != 200 {
		t.Fatalf("react from the edge's origin: %d %s", code, body)
	}
	// A bearer token is not ambient: no Origin rule.
	bearer := map[string]string{"Authorization": "Bearer " + token("alice"), "Origin": "https://evil.example"}
	if code, body := httpDo(t, http.MethodDelete, base+"/"+id, bearer, ""); code != 200 {
		t.Fatalf("delete with a bearer token: %d %s", code, body)
	}
}
