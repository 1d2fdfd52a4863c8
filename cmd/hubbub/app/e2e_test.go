package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/cmd/hubbub/app"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/services/history/pgtest"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// stores runs a test once per history store.
var stores = []struct {
	name string
	dsn  func(t *testing.T) string
}{
	{"sqlite", func(*testing.T) string { return "" }},
	{"postgres", func(t *testing.T) string { u, _ := pgtest.Database(t); return u }},
}

func testConfig(dataDir, dsn string) app.Config {
	var cfg app.Config
	cfg.DataDir = dataDir
	cfg.NATSListen = "127.0.0.1:0"
	cfg.History.DatabaseURL = dsn
	cfg.Presence.Grace = 300 * time.Millisecond
	cfg.Edge.HTTPAddr = "127.0.0.1:0"
	cfg.Edge.DrainPeriod = 200 * time.Millisecond
	cfg.Log = logging.Discard()
	return cfg
}

func startSystem(t *testing.T, cfg app.Config) *app.System {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sys, err := app.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	_ = ctx
	t.Cleanup(func() {
		if err := sys.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return sys
}

func dial(t *testing.T, sys *app.System, user string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+sys.Addr()+"/ws?user="+url.QueryEscape(user), client.Options{})
	if err != nil {
		t.Fatalf("dial as %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	w, err := c.Welcome(ctx)
	if err != nil {
		t.Fatalf("welcome for %s: %v", user, err)
	}
	if w.User != user || w.Protocol != wire.ProtocolVersion {
		t.Fatalf("welcome = %+v, want user %q protocol %d", w, user, wire.ProtocolVersion)
	}
	return c
}

// member is a client plus its view of one room, checked as a chain: every
// message's prev must be the id of the message before it.
type member struct {
	t      *testing.T
	name   string
	c      *client.Client
	room   string
	last   uint64
	msgs   []wire.Message
	typing []wire.Typing
	pres   []wire.Presence
}

func join(t *testing.T, sys *app.System, user, room string) *member {
	t.Helper()
	m := &member{t: t, name: user, c: dial(t, sys, user), room: room}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := m.c.Join(ctx, room, nil)
	if err != nil {
		t.Fatalf("%s join %s: %v", user, room, err)
	}
	if !h.Recovered {
		t.Fatalf("%s join %s: recovered=false on a plain join", user, room)
	}
	m.addHistory(h.Items)
	return m
}

func (m *member) addHistory(items []wire.Message) {
	m.t.Helper()
	for _, it := range items {
		m.add(it)
	}
}

func (m *member) add(msg wire.Message) {
	m.t.Helper()
	if msg.Room != m.room {
		m.t.Fatalf("%s: message for room %q in view of %q", m.name, msg.Room, m.room)
	}
	if len(m.msgs) > 0 && msg.Prev != m.last {
		m.t.Fatalf("%s: chain broken: message %d has prev %d, last seen %d", m.name, msg.ID, msg.Prev, m.last)
	}
	if msg.ID <= m.last {
		m.t.Fatalf("%s: duplicate or out of order: %d after %d", m.name, msg.ID, m.last)
	}
	m.last = msg.ID
	m.msgs = append(m.msgs, msg)
}

// until reads frames, recording them, until pred holds for a recorded frame.
func (m *member) until(what string, pred func(f client.Frame) bool) client.Frame {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		f, err := m.c.Next(ctx)
		if err != nil {
			m.t.Fatalf("%s: waiting for %s: %v", m.name, what, err)
		}
		switch f.Type {
		case wire.TypeMessage:
			var mf wire.MessageFrame
			mustDecode(m.t, f, &mf)
			m.add(mf.Message)
		case wire.TypeTyping:
			var tf wire.Typing
			mustDecode(m.t, f, &tf)
			if tf.User == m.name {
				m.t.Fatalf("%s received its own typing frame %+v", m.name, tf)
			}
			m.typing = append(m.typing, tf)
		case wire.TypePresence:
			var pf wire.Presence
			mustDecode(m.t, f, &pf)
			m.pres = append(m.pres, pf)
		case wire.TypeError:
			m.t.Fatalf("%s: unexpected error frame %s", m.name, f.Raw)
		}
		if pred(f) {
			return f
		}
	}
}

// untilMessage returns the message with body from the view, reading frames
// until it arrives. Bodies are unique within a test.
func (m *member) untilMessage(body string) wire.Message {
	m.t.Helper()
	for _, msg := range m.msgs {
		if msg.Body == body {
			return msg
		}
	}
	f := m.until("message "+body, func(f client.Frame) bool {
		var mf wire.MessageFrame
		return f.Type == wire.TypeMessage && f.Decode(&mf) == nil && mf.Message.Body == body
	})
	var mf wire.MessageFrame
	mustDecode(m.t, f, &mf)
	return mf.Message
}

func mustDecode(t *testing.T, f client.Frame, v any) {
	t.Helper()
	if err := f.Decode(v); err != nil {
		t.Fatal(err)
	}
}

func say(t *testing.T, m *member, body, cid string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.c.Send(wire.ClientFrame{Type: wire.TypeMessage, Room: m.room, Body: body, CID: cid}); err != nil {
		t.Fatal(err)
	}
	_ = ctx
	f := m.until("ack "+cid, func(f client.Frame) bool {
		var a wire.Ack
		return f.Type == wire.TypeAck && f.Decode(&a) == nil && a.CID == cid
	})
	var a wire.Ack
	mustDecode(t, f, &a)
	if a.ID == 0 {
		t.Fatalf("ack for %s has id 0", cid)
	}
	return a.ID
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamCount is the number of messages stored in CHAT for room.
func streamCount(t *testing.T, natsURL, room string) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, subjects.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subjects.Room(room)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subjects.Room(room)]
}

// TestEndToEnd runs the whole system in-process on each store with real
// WebSocket clients and walks through what a user does.
func TestEndToEnd(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			dsn := st.dsn(t)
			dataDir := t.TempDir()
			cfg := testConfig(dataDir, dsn)
			sys := startSystem(t, cfg)
			const room = "general"

			// Alice with two tabs, then Bob.
			alice := join(t, sys, "alice", room)
			if len(alice.msgs) != 1 || alice.msgs[0].Kind != wire.KindSystem || alice.msgs[0].User != "alice" {
				// The join system message may arrive live rather than in history.
				alice.until("alice joined", func(f client.Frame) bool { return len(alice.msgs) >= 1 })
			}
			alice2 := join(t, sys, "alice", room)
			bob := join(t, sys, "bob", room)

			// Alice's first tab sees Bob arrive: a presence diff and a system message.
			alice.until("presence join bob", func(client.Frame) bool {
				for _, p := range alice.pres {
					if p.Event == wire.EventJoin && p.User == "bob" && p.Online == 2 {
						return true
					}
				}
				return false
			})
			sysJoin := alice.untilMessage("bob joined")
			if sysJoin.Kind != wire.KindSystem || sysJoin.User != "bob" {
				t.Fatalf("bob's join message = %+v", sysJoin)
			}
			// Only one join message for alice although she has two tabs.
			joins := 0
			for _, m := range alice.msgs {
				if m.Kind == wire.KindSystem && m.User == "alice" {
					joins++
				}
			}
			if joins > 1 {
				t.Fatalf("alice's two tabs produced %d join messages", joins)
			}

			// A message is acked with its id and reaches every member,
			// the sender's other tab included, with every field.
			before := time.Now().UnixMilli()
			id := say(t, alice, "hello, world", "c1")
			for _, m := range []*member{alice, alice2, bob} {
				got := m.untilMessage("hello, world")
				if got.ID != id || got.User != "alice" || got.Kind != wire.KindMessage || got.CID != "c1" || got.Room != room {
					t.Fatalf("%s got %+v, want id %d from alice", m.name, got, id)
				}
				if got.TS < before-1000 || got.TS > time.Now().UnixMilli()+1000 {
					t.Fatalf("%s: ts %d is not now", m.name, got.TS)
				}
				if got.Prev == 0 || got.Prev >= got.ID {
					t.Fatalf("%s: prev %d for id %d", m.name, got.Prev, got.ID)
				}
			}

			// Typing reaches the others and never the typist.
			if err := bob.c.Send(wire.ClientFrame{Type: wire.TypeTyping, Room: room, State: wire.TypingOn}); err != nil {
				t.Fatal(err)
			}
			for _, m := range []*member{alice, alice2} {
				m.until("bob typing", func(f client.Frame) bool {
					var tf wire.Typing
					return f.Type == wire.TypeTyping && f.Decode(&tf) == nil && tf.User == "bob" && tf.State == wire.TypingOn
				})
			}

			// The same cid twice: one stored message, one delivery, same id.
			countBefore := streamCount(t, sys.NATSURL(), room)
			if again := say(t, alice, "hello, world", "c1"); again != id {
				t.Fatalf("resend with cid c1 acked with id %d, want %d", again, id)
			}
			id2 := say(t, bob, "hi alice", "b1") // bob's typing switches off on send
			for _, m := range []*member{alice, alice2, bob} {
				got := m.untilMessage("hi alice")
				if got.ID != id2 || got.Prev != id {
					t.Fatalf("%s: after the resend got %+v, want id %d prev %d (no duplicate in between)", m.name, got, id2, id)
				}
			}
			if n := streamCount(t, sys.NATSURL(), room); n != countBefore+1 {
				t.Fatalf("stream holds %d messages for %s after a resend and one new message, want %d", n, room, countBefore+1)
			}

			// The lobby lists the room with message and online counts;
			// it counts chat messages only (not the system messages of
			// first joins) — DESIGN §3a.
			chat := 0
			for _, m := range bob.msgs {
				if m.Kind == wire.KindMessage {
					chat++
				}
			}
			eventually(t, "lobby", func() error {
				var lobby wire.LobbyReply
				getJSON(t, sys.BaseURL()+"/api/lobby", &lobby)
				for _, r := range lobby.Rooms {
					if r.Room == room {
						if r.Online != 2 || r.LastID != id2 || r.Messages != int64(chat) {
							return fmt.Errorf("lobby entry %+v, want online 2, last id %d, %d messages", r, id2, chat)
						}
						return nil
					}
				}
				return fmt.Errorf("room %s not in lobby %+v", room, lobby)
			})

			// Bob closes his tab: alice sees the presence diff and no
			// message (presence is not conversation, DESIGN §3a).
			_ = bob.c.Close()
			alice.until("presence leave bob", func(client.Frame) bool {
				for _, p := range alice.pres {
					if p.Event == wire.EventLeave && p.User == "bob" && p.Online == 1 {
						return true
					}
				}
				return false
			})
			say(t, alice, "after bob closed", "c2")
			alice.untilMessage("after bob closed") // the chain is ordered: a "bob left" would be here by now
			for _, m := range alice.msgs {
				if m.Kind == wire.KindSystem && m.User == "bob" && m.Body != "bob joined" {
					t.Fatalf("closing a tab stored %+v", m)
				}
			}

			// Dave joins and leaves the room with a leave frame: one
			// "dave joined" and one "dave left" (membership is conversation).
			dave := join(t, sys, "dave", room)
			if err := dave.c.Send(wire.ClientFrame{Type: wire.TypeLeave, Room: room}); err != nil {
				t.Fatal(err)
			}
			left := alice.untilMessage("dave left")
			if left.Kind != wire.KindSystem || left.User != "dave" {
				t.Fatalf("leave message %+v", left)
			}
			if m := alice.untilMessage("dave joined"); m.Kind != wire.KindSystem || m.ID >= left.ID {
				t.Fatalf("dave's join message %+v before %+v", m, left)
			}
			_ = dave.c.Close()
			want := alice.msgs

			// Everything survives a restart on the same data.
			_ = alice.c.Close()
			_ = alice2.c.Close()
			if err := sys.Stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			sys2 := startSystem(t, cfg)
			carol := dial(t, sys2, "carol")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			h, err := carol.Join(ctx, room, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := map[uint64]wire.Message{}
			for _, m := range h.Items {
				got[m.ID] = m
			}
			for _, w := range want {
				g, ok := got[w.ID]
				if !ok || g.Body != w.Body || g.User != w.User || g.Prev != w.Prev || g.Kind != w.Kind {
					t.Fatalf("after restart message %d = %+v (present %v), want %+v", w.ID, g, ok, w)
				}
			}
		})
	}
}
