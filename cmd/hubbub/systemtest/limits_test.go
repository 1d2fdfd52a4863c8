package systemtest_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// A peer that stops answering pings is dropped after two intervals; one
// that answers stays.
func TestDeadPeerDropped(t *testing.T) {
	e := newEnv(t)
	// Long enough that the live client answers in time on a loaded -race run.
	const interval = 500 * time.Millisecond
	te := e.startEdge(func(c *edge.Config) { c.WS.PingInterval = interval })
	live := dial(t, te.wsURL("alive")) // the client answers pings
	dead, _ := rawDial(t, te.wsURL("dead"))
	if err := wsutil.WriteClientText(dead, []byte(`{"type":"join","room":"general"}`)); err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 5*time.Second, "both connected", func() bool { return te.Connections() == 2 })
	natstest.Until(t, 5*time.Second, "dead peer dropped", func() bool { return te.Connections() == 1 })
	if n := te.Metrics().Closes("ping_timeout"); n != 1 {
		t.Fatalf("ping_timeout closes = %v, want 1", n)
	}
	time.Sleep(3 * interval) // three more pings the live client must answer
	live.joinLive("general")
	if te.Connections() != 1 {
		t.Fatal("a peer answering pings was dropped")
	}
}

func TestPerConnectionLimits(t *testing.T) {
	e := newEnv(t)
	e.startPresence()
	te := e.startEdge(func(c *edge.Config) {
		c.Session.MaxRooms = 2
		c.Session.MessageRate = 1
		c.Session.MessageBurst = 3
	})
	c := dial(t, te.wsURL("alice"))
	c.joinLive("a")
	c.joinLive("b")
	c.send(wire.ClientFrame{Type: wire.TypeJoin, Room: "c"})
	if ef := c.errorFrame(wire.CodeTooManyRooms); ef.Room != "c" {
		t.Fatalf("error %+v", ef)
	}
	// Re-joining a joined room is not a new room.
	c.joinLive("a")
	// Leaving frees a slot.
	c.send(wire.ClientFrame{Type: wire.TypeLeave, Room: "b"})
	c.joinLive("c")

	// Flood: the burst passes, then rate_limited with the cid echoed.
	for i := range 3 {
		c.say("a", "flood", fmt.Sprintf("f%d", i))
	}
	_, ef := c.trySay("a", "flood", "f3")
	if ef == nil || ef.Code != wire.CodeRateLimited || ef.CID != "f3" {
		t.Fatalf("4th message: %+v, want rate_limited", ef)
	}
	if n := len(e.roomMessages("a")); n != 3 {
		t.Fatalf("%d messages stored, want 3", n)
	}
}

// Presence: a roster frame after join, presence diffs after that, and a
// disconnect leaves presence.
func TestRosterAndPresenceEvents(t *testing.T) {
	e := newSystem(t)
	te := e.startEdge(nil)
	alice := dial(t, te.wsURL("alice"))
	alice.join("general", nil)
	r := decode[wire.Roster](t, alice.await("roster", isType(wire.TypeRoster)))
	if r.Online != 1 || len(r.Users) != 1 || r.Users[0] != "alice" {
		t.Fatalf("roster %+v", r)
	}
	bob := dial(t, te.wsURL("bob"))
	bob.join("general", nil)
	r = decode[wire.Roster](t, bob.await("roster", isType(wire.TypeRoster)))
	if r.Online != 2 {
		t.Fatalf("bob's roster %+v", r)
	}
	p := decode[wire.Presence](t, alice.await("presence of bob", func(f client.Frame) bool {
		return f.Type == wire.TypePresence && decode[wire.Presence](t, f).User == "bob"
	}))
	if p.Event != wire.EventJoin || p.User != "bob" || p.Online != 2 {
		t.Fatalf("presence %+v", p)
	}
	// A system message announces bob's first join of the room.
	sys := alice.nextMessage()
	for sys.Kind != wire.KindSystem || sys.User != "bob" {
		sys = alice.nextMessage()
	}
	_ = bob.c.Close()
	p = decode[wire.Presence](t, alice.await("bob leaving", func(f client.Frame) bool {
		return f.Type == wire.TypePresence && decode[wire.Presence](t, f).Event == wire.EventLeave
	}))
	if p.Event != wire.EventLeave || p.User != "bob" || p.Online != 1 {
		t.Fatalf("presence %+v", p)
	}
	// Closing a tab is presence only: nothing stored (DESIGN §3a). The
	// chain is ordered, so a "bob left" would arrive before the marker.
	marker := alice.say("general", "after bob closed", "a-m")
	for m := alice.nextMessage(); m.ID != marker; m = alice.nextMessage() {
		if m.Kind == wire.KindSystem {
			t.Fatalf("closing a tab stored %+v", m)
		}
	}
	// A leave frame is leaving the room: membership, stored once.
	carol := dial(t, te.wsURL("carol"))
	carol.join("general", nil)
	carol.send(wire.ClientFrame{Type: wire.TypeLeave, Room: "general"})
	var got []string
	for m := alice.nextMessage(); m.Body != "carol left"; m = alice.nextMessage() {
		got = append(got, m.Body)
	}
	if !slices.Equal(got, []string{"carol joined"}) {
		t.Fatalf("before \"carol left\": %q, want [carol joined]", got)
	}
}
