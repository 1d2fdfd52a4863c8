package systemtest_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Chat does not depend on presence, nor a join on history: with presence
// not running, a join gets its history frame (from history, or read from
// the stream while history is down too) before any live message, no error
// frame, and live messages; once presence starts, the background
// registration gets through and the roster frame follows.
func TestJoinWithoutPresence(t *testing.T) {
	tests := []struct {
		name    string
		history bool // run the history service
		since   bool // join with since = the first message
	}{
		{"history up", true, false},
		{"history up, since", true, true},
		{"history down: served from the stream", false, false},
		{"history down, since: served from the stream", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			te := e.startEdge(nil)
			const room = "nopresence"
			var ids []uint64
			for i := range 3 {
				ids = append(ids, e.publish(room, "carol", fmt.Sprintf("old %d", i), fmt.Sprintf("old%d", i)))
			}
			if tt.history {
				e.startHistory()
				waitStored(t, te, room, ids[2])
			}
			want := ids
			var since *uint64
			if tt.since {
				since, want = &ids[0], ids[1:]
			}

			alice := dial(t, te.wsURL("alice"))
			alice.send(wire.ClientFrame{Type: wire.TypeJoin, Room: room, Since: since})
			f := alice.await("first frame of the room", func(f client.Frame) bool {
				return strings.Contains(string(f.Raw), `"room":"`+room+`"`)
			})
			if f.Type != wire.TypeHistory {
				t.Fatalf("first frame of the room: %s, want history", f.Raw)
			}
			h := decode[wire.History](t, f)
			var got []uint64
			for _, m := range h.Items {
				got = append(got, m.ID)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("history ids %v, want %v", got, want)
			}
			checkChain(t, h.Items)

			bob := dial(t, te.wsURL("bob"))
			bob.send(wire.ClientFrame{Type: wire.TypeJoin, Room: room})
			bob.await("bob's history", isType(wire.TypeHistory))
			id := bob.say(room, "live", "live1")
			if m := alice.message(id); m.Body != "live" {
				t.Fatalf("live message %+v", m)
			}
			for _, c := range []*conn{alice, bob} {
				for _, f := range c.stash {
					if f.Type == wire.TypeError {
						t.Fatalf("error frame while presence is down: %s", f.Raw)
					}
				}
			}

			e.startPresence()
			r := decode[wire.Roster](t, alice.await("roster once presence is up", isType(wire.TypeRoster)))
			if r.Room != room {
				t.Fatalf("roster %+v", r)
			}
			natstest.Until(t, 20*time.Second, "alice and bob registered with presence", func() bool {
				users := e.roster(room)
				return slices.Contains(users, "alice") && slices.Contains(users, "bob")
			})
		})
	}
}

// Neither history nor the stream answering fails the join cleanly: an
// unavailable error frame and no live frame.
func TestJoinFailsCleanlyWithoutStream(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(nil)
	alice := dial(t, te.wsURL("alice"))
	e.Stop()
	alice.send(wire.ClientFrame{Type: wire.TypeJoin, Room: "dark"})
	if ef := alice.errorFrame(wire.CodeUnavailable); ef.Room != "dark" {
		t.Fatalf("error %+v", ef)
	}
	e.Restart()
	natstest.Until(t, 20*time.Second, "edge ready again", func() bool { return te.Ready() == nil })
	id := e.publish("dark", "carol", "after", "after")
	alice.send(wire.ClientFrame{Type: wire.TypeTyping, Room: "dark", State: wire.TypingOn})
	alice.errorFrame(wire.CodeNotJoined)
	for _, f := range alice.stash {
		if f.Type == wire.TypeMessage {
			t.Fatalf("live frame %s after a failed join (message %d)", f.Raw, id)
		}
	}
}
