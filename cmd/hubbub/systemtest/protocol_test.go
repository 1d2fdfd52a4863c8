package systemtest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	gws "github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Bad input gets an error frame with the right code, stores nothing, and
// leaves the connection usable.
func TestBadInputGetsErrorFrames(t *testing.T) {
	e := newEnv(t)
	e.startPresence()
	te := e.startEdge(nil)
	c := dial(t, te.wsURL("alice"))
	c.joinLive("general")
	c.await("roster", isType(wire.TypeRoster))

	tests := []struct {
		name string
		op   gws.OpCode
		data string
		code string
	}{
		{"unknown type", gws.OpText, `{"type":"shout","room":"general"}`, wire.CodeUnknownType},
		{"missing type", gws.OpText, `{"room":"general"}`, wire.CodeUnknownType},
		{"bad json", gws.OpText, `{"type":"message",`, wire.CodeBadJSON},
		{"not an object", gws.OpText, `[1,2,3]`, wire.CodeBadJSON},
		{"trailing data", gws.OpText, `{"type":"leave","room":"general"} {}`, wire.CodeBadJSON},
		{"bad room name", gws.OpText, `{"type":"message","room":"gen.eral","body":"x","cid":"a1"}`, wire.CodeInvalidRoom},
		{"wildcard room", gws.OpText, `{"type":"join","room":"*"}`, wire.CodeInvalidRoom},
		{"empty body", gws.OpText, `{"type":"message","room":"general","body":"   ","cid":"a2"}`, wire.CodeInvalidBody},
		{"2001-character body", gws.OpText, `{"type":"message","room":"general","body":"` + strings.Repeat("é", 2001) + `","cid":"a3"}`, wire.CodeInvalidBody},
		{"missing cid", gws.OpText, `{"type":"message","room":"general","body":"hi"}`, wire.CodeInvalidCID},
		{"room not joined", gws.OpText, `{"type":"message","room":"random","body":"hi","cid":"a4"}`, wire.CodeNotJoined},
		{"typing in room not joined", gws.OpText, `{"type":"typing","room":"random","state":"on"}`, wire.CodeNotJoined},
		{"bad typing state", gws.OpText, `{"type":"typing","room":"general","state":"maybe"}`, wire.CodeInvalidState},
		{"bad history limit", gws.OpText, `{"type":"history","room":"general","limit":100000}`, wire.CodeInvalidLimit},
		{"binary frame", gws.OpBinary, "\x00\x01binary", wire.CodeBinaryFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.c.SendRaw(tt.op, []byte(tt.data)); err != nil {
				t.Fatal(err)
			}
			if ef := c.errorFrame(tt.code); ef.Message == "" {
				t.Error("error frame without a message")
			}
			if n := len(e.roomMessages("general")) + len(e.roomMessages("random")); n != 0 {
				t.Fatalf("%d messages stored after bad input", n)
			}
		})
	}
	// Still usable: a valid message is acked and stored.
	id := c.say("general", "still here", "ok-1")
	if msgs := e.roomMessages("general"); len(msgs) != 1 || msgs[0].ID != id {
		t.Fatalf("stored %+v, want one message with id %d", msgs, id)
	}
}

// Framing violations close the connection with the matching code.
func TestFramingLimitsClose(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(func(c *edge.Config) { c.WS.MaxMessage = 1024 })
	tests := []struct {
		name string
		data []byte
		code gws.StatusCode
	}{
		{"frame over max", []byte(`{"type":"message","body":"` + strings.Repeat("x", 1100) + `"}`), gws.StatusMessageTooBig},
		{"invalid utf-8", []byte("{\"type\":\"join\",\"room\":\"a\xff\"}"), gws.StatusInvalidFramePayloadData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, te.wsURL("alice"))
			if err := c.c.SendRaw(gws.OpText, tt.data); err != nil {
				t.Fatal(err)
			}
			if code := c.closed(); code != tt.code {
				t.Fatalf("close code %d, want %d", code, tt.code)
			}
		})
	}
	if n := len(e.roomMessages("a")); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// A message is acked with its id and reaches every member, the sender's
// other connections included; resending the same cid stores nothing new,
// delivers nothing new and is acked with the same id.
func TestMessageAckFanOutAndDedup(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(nil)
	alice1 := dial(t, te.wsURL("alice"))
	alice2 := dial(t, te.wsURL("alice"))
	bob := dial(t, te.wsURL("bob"))
	all := []*conn{alice1, alice2, bob}
	for _, c := range all {
		c.joinLive("general")
	}
	before := time.Now().UnixMilli()
	id := alice1.say("general", "  hello, world  ", "cid-1")
	if id == 0 {
		t.Fatal("ack without id")
	}
	for _, c := range all {
		m := c.message(id)
		if m.Room != "general" || m.User != "alice" || m.Body != "hello, world" || m.Kind != wire.KindMessage || m.CID != "cid-1" {
			t.Fatalf("message %+v", m)
		}
		if m.TS < before || m.TS > time.Now().UnixMilli() {
			t.Fatalf("ts %d outside the send window", m.TS)
		}
		if m.Prev >= m.ID {
			t.Fatalf("prev %d not below id %d", m.Prev, m.ID)
		}
	}
	// Same cid again: same id, nothing stored or delivered.
	if id2 := alice1.say("general", "hello, world", "cid-1"); id2 != id {
		t.Fatalf("duplicate acked with %d, want %d", id2, id)
	}
	// Another user's identical cid is a different message.
	bobID := bob.say("general", "me too", "cid-1")
	if bobID == id {
		t.Fatal("bob's cid was deduplicated against alice's")
	}
	for _, c := range all {
		// The next message frame after id must be bob's: no second delivery.
		if m := c.nextMessage(); m.ID != bobID || m.Prev != id {
			t.Fatalf("after %d got message %d (prev %d), want %d (prev %d)", id, m.ID, m.Prev, bobID, id)
		}
	}
	if msgs := e.roomMessages("general"); len(msgs) != 2 {
		t.Fatalf("%d messages stored, want 2", len(msgs))
	}
}

// Typing reaches other users, never the typist's own connections.
func TestTypingNotEchoedToTypist(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(nil)
	alice1 := dial(t, te.wsURL("alice"))
	alice2 := dial(t, te.wsURL("alice"))
	bob := dial(t, te.wsURL("bob"))
	for _, c := range []*conn{alice1, alice2, bob} {
		c.joinLive("general")
	}
	alice1.send(wire.ClientFrame{Type: wire.TypeTyping, Room: "general", State: wire.TypingOn})
	tf := decode[wire.Typing](t, bob.await("typing", isType(wire.TypeTyping)))
	if tf.User != "alice" || tf.State != wire.TypingOn || tf.Room != "general" {
		t.Fatalf("typing frame %+v", tf)
	}
	// Sending a message ends typing: bob sees "off".
	alice1.say("general", "done typing", "t-1")
	if tf := decode[wire.Typing](t, bob.await("typing off", isType(wire.TypeTyping))); tf.State != wire.TypingOff || tf.User != "alice" {
		t.Fatalf("typing frame %+v, want alice off", tf)
	}
	// Bob types; both of alice's connections see it.
	bob.send(wire.ClientFrame{Type: wire.TypeTyping, Room: "general", State: wire.TypingOn})
	for _, c := range []*conn{alice1, alice2} {
		if tf := decode[wire.Typing](t, c.await("bob typing", isType(wire.TypeTyping))); tf.User != "bob" {
			t.Fatalf("alice got typing %+v before bob's", tf)
		}
	}
	// Alice types again; bob's marker message afterwards proves alice's
	// connections received everything up to it, and none of it was her own
	// typing (typing and messages travel in order through the edge).
	alice2.send(wire.ClientFrame{Type: wire.TypeTyping, Room: "general", State: wire.TypingOn})
	bob.await("alice typing", func(f client.Frame) bool {
		return f.Type == wire.TypeTyping && strings.Contains(string(f.Raw), `"user":"alice"`)
	})
	marker := bob.say("general", "marker", "m-1")
	for _, c := range []*conn{alice1, alice2} {
		for {
			f, err := c.next()
			if err != nil {
				t.Fatal(err)
			}
			if f.Type == wire.TypeTyping && decode[wire.Typing](t, f).User == "alice" {
				t.Fatalf("alice received her own typing frame %s", f.Raw)
			}
			if f.Type == wire.TypeMessage && decode[wire.MessageFrame](t, f).Message.ID == marker {
				break
			}
		}
	}
}

// Two edges on one NATS: clients on each see each other's messages.
func TestTwoEdgesShareRooms(t *testing.T) {
	e := newEnv(t)
	e1 := e.startEdge(nil)
	e2 := e.startEdge(nil)
	if e1.EdgeID() == e2.EdgeID() {
		t.Fatal("edges share an id")
	}
	alice := dial(t, e1.wsURL("alice"))
	bob := dial(t, e2.wsURL("bob"))
	alice.joinLive("general")
	bob.joinLive("general")
	a := alice.say("general", "hi from edge 1", "a-1")
	b := bob.say("general", "hi from edge 2", "b-1")
	for _, c := range []*conn{alice, bob} {
		if m := c.message(a); m.User != "alice" {
			t.Fatalf("message %+v", m)
		}
		if m := c.message(b); m.User != "bob" || m.Prev != a {
			t.Fatalf("message %+v, want prev %d", m, a)
		}
	}
}

// Origins outside the allow-list are refused with 403; bad credentials
// are closed with 4002; no user yields a guest name.
func TestOriginAndAuth(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(nil)
	ctx := tctx(t)
	_, err := client.Dial(ctx, te.wsURL("alice"), client.Options{Header: http.Header{"Origin": {"http://evil.example"}}})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("foreign origin: err = %v, want 403", err)
	}
	c, err := client.Dial(ctx, te.wsURL("alice"), client.Options{Header: http.Header{"Origin": {"http://" + te.Addr()}}})
	if err != nil {
		t.Fatalf("same-host origin refused: %v", err)
	}
	if _, err := c.Welcome(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()

	bad, err := client.Dial(ctx, te.wsURL("%20alice"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := bad.WaitClosed(ctx); err != nil || code != 4002 {
		t.Fatalf("invalid user: close %d (%v), want 4002", code, err)
	}
	guest, err := client.Dial(ctx, "ws://"+te.Addr()+"/ws", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	w, err := guest.Welcome(ctx)
	if err != nil || !strings.HasPrefix(w.User, "guest-") {
		t.Fatalf("welcome %+v (%v), want a guest name", w, err)
	}
}
