package systemtest_test

import (
	"testing"
)

// Guarantee 9 on the live path: a post that breaks the message rule
// (published to the room subject by something other than an edge) is not
// delivered live, as history does not keep it, and the next message is
// linked to the last one delivered — the same chain a resuming client
// gets from history.
func TestInvalidLiveMessageSkipped(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(nil)
	c := dial(t, te.wsURL("amy"))
	c.join("general", nil)
	before := e.publish("general", "bob", "before", "p0")
	c.message(before)

	e.publish("general", "mallory", "nul\x00body", "p1")
	e.publish("general", "mallory", "\x1b[2J", "p2")
	after := e.publish("general", "bob", "after", "p3")
	m := c.nextMessage()
	if m.ID != after || m.Prev != before {
		t.Fatalf("next live message %d prev %d, want %d prev %d", m.ID, m.Prev, after, before)
	}
	if n := te.Metrics().Drops("invalid_live_message"); n != 2 {
		t.Fatalf("invalid_live_message drops %v, want 2", n)
	}

	// A client resuming from before the poison sees the same chain.
	waitStored(t, te, "general", after)
	r := dial(t, te.wsURL("carol"))
	h := r.join("general", &before)
	if !h.Recovered || len(h.Items) != 1 || h.Items[0].ID != after || h.Items[0].Prev != before {
		t.Fatalf("resumed history %+v", h)
	}
	next := e.publish("general", "bob", "next", "p4")
	for _, cc := range []*conn{c, r} {
		if m := cc.nextMessage(); m.ID != next || m.Prev != after {
			t.Fatalf("message after %d prev %d", m.ID, m.Prev)
		}
	}
}
