package registry

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// fault is what fakePresence does with one request.
type fault int

const (
	answer fault = iota // apply it and reply
	drop                // neither apply nor reply (lost, or presence down)
	refuse              // reply with a service error, do not apply
	hold                // apply it, reply once release is closed
	gone                // refuse it for good (410: its connection already left), do not apply
)

// fakePresence answers join and leave requests on the real subjects
// over a real NATS server, keeping the connections it was told about, and
// injects the faults its plan returns.
type fakePresence struct {
	mu      sync.Mutex
	conns   map[string]bool // conn/room → joined
	calls   map[string]int  // subject → requests seen
	leaves  []bool          // the Explicit flag of every leave request seen
	plan    func(subject string, n int) fault
	release chan struct{}
}

func startFakePresence(t *testing.T, nc *nats.Conn, plan func(subject string, n int) fault) *fakePresence {
	t.Helper()
	p := &fakePresence{conns: map[string]bool{}, calls: map[string]int{}, plan: plan, release: make(chan struct{})}
	for _, subj := range []string{subjects.PresenceJoin, subjects.PresenceLeave} {
		sub, err := nc.Subscribe(subj, p.handle)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *fakePresence) handle(m *nats.Msg) {
	var ev wire.ConnEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return
	}
	p.mu.Lock()
	p.calls[m.Subject]++
	if m.Subject == subjects.PresenceLeave {
		p.leaves = append(p.leaves, ev.Explicit)
	}
	f := p.plan(m.Subject, p.calls[m.Subject])
	if f == answer || f == hold {
		p.conns[ev.Conn+"/"+ev.Room] = m.Subject == subjects.PresenceJoin
	}
	p.mu.Unlock()
	switch f {
	case drop:
		return
	case refuse:
		h := nats.Header{}
		h.Set(micro.ErrorHeader, "store unavailable")
		h.Set(micro.ErrorCodeHeader, "500")
		_ = m.RespondMsg(&nats.Msg{Header: h})
		return
	case gone:
		h := nats.Header{}
		h.Set(micro.ErrorHeader, "not_joined: connection already left")
		h.Set(micro.ErrorCodeHeader, "410")
		_ = m.RespondMsg(&nats.Msg{Header: h})
		return
	case hold:
		go func() {
			<-p.release
			_ = m.Respond([]byte(`{"online":1}`))
		}()
		return
	}
	_ = m.Respond([]byte(`{"online":1}`))
}

func (p *fakePresence) joined(conn, room string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[conn+"/"+room]
}

func (p *fakePresence) seen(subject string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[subject]
}

func newRegistryClient(t *testing.T, timeout time.Duration) (*Presence, *nats.Conn) {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := New(nreq.New(nc, timeout))
	t.Cleanup(c.Close)
	return c, nc
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A leave that is lost, times out or is refused is sent again until
// presence confirms it: a connection that ended never stays in a roster
// (guarantee 8), however busy presence was when it ended.
func TestUnregisterRetriesUntilPresenceConfirms(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault fault
	}{
		{"lost", drop},
		{"refused", refuse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, nc := newRegistryClient(t, 100*time.Millisecond)
			p := startFakePresence(t, nc, func(subject string, n int) fault {
				if subject == subjects.PresenceLeave && n <= 3 {
					return tc.fault
				}
				return answer
			})
			ev := wire.ConnEvent{Room: "general", User: "amy", Conn: "c1", Edge: "e1"}
			roster := make(chan struct{})
			c.Register(ev, func(context.Context) { close(roster) })
			eventually(t, "join confirmed", func() bool { return p.joined("c1", "general") })
			<-roster

			c.Unregister(ev)
			eventually(t, "leave applied", func() bool { return !p.joined("c1", "general") })
			if n := p.seen(subjects.PresenceLeave); n != 4 {
				t.Fatalf("presence saw %d leaves, want 4 (3 failed, 1 confirmed)", n)
			}
			eventually(t, "entry forgotten", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return len(c.entries) == 0 && len(c.unconfirmed) == 0
			})
		})
	}
}

// explicitLeaves returns the Explicit flags of the leaves seen.
func (p *fakePresence) explicitLeaves() []bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]bool(nil), p.leaves...)
}

// An explicit leave (the user's leave frame) carries Explicit on every
// attempt, retries included; a plain Unregister after it (the session
// dropping the room) does not undo it, and an explicit one made while a
// plain leave is still unconfirmed makes that leave explicit.
func TestExplicitLeaveCarriedByRetries(t *testing.T) {
	tests := []struct {
		name  string
		calls []bool // Explicit of each Unregister call, in order
	}{
		{"explicit", []bool{true}},
		{"explicit then plain", []bool{true, false}},
		{"plain then explicit", []bool{false, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, nc := newRegistryClient(t, 100*time.Millisecond)
			p := startFakePresence(t, nc, func(subject string, n int) fault {
				if subject == subjects.PresenceLeave && n <= 2 {
					return drop
				}
				return answer
			})
			ev := wire.ConnEvent{Room: "general", User: "amy", Conn: "c1", Edge: "e1"}
			c.Register(ev, nil)
			eventually(t, "join confirmed", func() bool { return p.joined("c1", "general") })
			for _, explicit := range tc.calls {
				lev := ev
				lev.Explicit = explicit
				c.Unregister(lev)
			}
			eventually(t, "leave applied", func() bool { return !p.joined("c1", "general") })
			got := p.explicitLeaves()
			if len(got) < 3 {
				t.Fatalf("%d leaves seen, want at least 3 (2 lost)", len(got))
			}
			if last := got[len(got)-1]; !last {
				t.Errorf("the confirmed leave was not explicit: %v", got)
			}
			if !tc.calls[0] {
				return // the first, plain attempt may have gone out before the upgrade
			}
			for i, x := range got {
				if !x {
					t.Errorf("leave attempt %d not explicit: %v", i, got)
				}
			}
		})
	}
}

// A connection that leaves while its join is still out ends up gone: the
// leave is sent after the join's reply, never before it.
func TestUnregisterWhileJoinIsOut(t *testing.T) {
	c, nc := newRegistryClient(t, 5*time.Second)
	p := startFakePresence(t, nc, func(subject string, n int) fault {
		if subject == subjects.PresenceJoin {
			return hold
		}
		return answer
	})
	ev := wire.ConnEvent{Room: "general", User: "amy", Conn: "c1", Edge: "e1"}
	ran := make(chan struct{}, 1)
	c.Register(ev, func(context.Context) { ran <- struct{}{} })
	eventually(t, "join applied", func() bool { return p.joined("c1", "general") })
	c.Unregister(ev)
	if n := p.seen(subjects.PresenceLeave); n != 0 {
		t.Fatalf("leave sent while its join was out (%d)", n)
	}
	close(p.release)
	eventually(t, "leave applied after the join", func() bool { return !p.joined("c1", "general") })
	select {
	case <-ran:
		t.Fatal("joined callback ran for a connection that had left")
	default:
	}
}

// The same connection leaving and joining a room again ends joined,
// whatever order the replies come in.
func TestRegisterAgainWhileLeaveIsOut(t *testing.T) {
	c, nc := newRegistryClient(t, 5*time.Second)
	var mu sync.Mutex
	holdLeave := false
	p := startFakePresence(t, nc, func(subject string, n int) fault {
		mu.Lock()
		defer mu.Unlock()
		if subject == subjects.PresenceLeave && holdLeave {
			return hold
		}
		return answer
	})
	ev := wire.ConnEvent{Room: "general", User: "amy", Conn: "c1", Edge: "e1"}
	c.Register(ev, nil)
	eventually(t, "join applied", func() bool { return p.joined("c1", "general") })
	mu.Lock()
	holdLeave = true
	mu.Unlock()
	c.Unregister(ev)
	eventually(t, "leave applied", func() bool { return !p.joined("c1", "general") })
	c.Register(ev, nil)
	close(p.release)
	eventually(t, "joined again", func() bool { return p.joined("c1", "general") && p.seen(subjects.PresenceJoin) == 2 })
}

// A join presence refuses for good (410: it already saw the leave of this
// registration) is final: not retried, the joined callback does not run,
// nothing stays unconfirmed; a later Unregister still sends its leave.
func TestRefusedJoinIsFinal(t *testing.T) {
	c, nc := newRegistryClient(t, 5*time.Second)
	p := startFakePresence(t, nc, func(subject string, n int) fault {
		if subject == subjects.PresenceJoin && n == 1 {
			return gone
		}
		return answer
	})
	ev := wire.ConnEvent{Room: "general", User: "amy", Conn: "c1.1", Edge: "e1"}
	ran := make(chan struct{}, 1)
	c.Register(ev, func(context.Context) { ran <- struct{}{} })
	eventually(t, "refusal settled", func() bool { return p.seen(subjects.PresenceJoin) >= 1 && c.Unconfirmed() == 0 })
	if n := p.seen(subjects.PresenceJoin); n != 1 {
		t.Fatalf("refused join sent %d times, want 1", n)
	}
	if p.joined("c1.1", "general") {
		t.Fatal("refused join applied")
	}
	// Another registration's confirmed join revives joins given up on; the
	// refused one is not among them.
	c.Register(wire.ConnEvent{Room: "general", User: "bob", Conn: "c2.1", Edge: "e1"}, nil)
	eventually(t, "bob's join confirmed", func() bool { return c.Unconfirmed() == 0 && p.joined("c2.1", "general") })
	c.Unregister(ev)
	eventually(t, "leave confirmed", func() bool { return p.seen(subjects.PresenceLeave) == 1 && c.Unconfirmed() == 0 })
	select {
	case <-ran:
		t.Fatal("joined callback ran for a refused join")
	default:
	}
	if n := p.seen(subjects.PresenceJoin); n != 2 {
		t.Fatalf("%d joins sent, want 2 (the refused one once, bob's)", n)
	}
}

// Close stops retries that would never succeed and returns.
func TestCloseStopsRetries(t *testing.T) {
	c, nc := newRegistryClient(t, 50*time.Millisecond)
	p := startFakePresence(t, nc, func(subject string, n int) fault {
		if subject == subjects.PresenceLeave {
			return drop
		}
		return answer
	})
	ev := wire.ConnEvent{Room: "general", User: "amy", Conn: "c1", Edge: "e1"}
	c.Register(ev, nil)
	eventually(t, "join applied", func() bool { return p.joined("c1", "general") })
	c.Unregister(ev)
	eventually(t, "leave retried", func() bool { return p.seen(subjects.PresenceLeave) >= 2 })
	c.Close()
	n := p.seen(subjects.PresenceLeave)
	time.Sleep(3 * RegisterBackoff)
	if m := p.seen(subjects.PresenceLeave); m != n {
		t.Fatalf("%d leaves sent after Close", m-n)
	}
}

// Rosters and counts are plain requests to presence; with presence down
// they are unavailable.
func TestRosterAndCounts(t *testing.T) {
	c, nc := newRegistryClient(t, 500*time.Millisecond)
	ctx := context.Background()
	if _, err := c.Roster(ctx, wire.RosterRequest{Room: "r"}); !errors.Is(err, nreq.ErrUnavailable) {
		t.Fatalf("roster with presence down: %v", err)
	}
	for subj, reply := range map[string]string{
		subjects.PresenceRoster: `{"room":"r","users":["ann"]}`,
		subjects.PresenceCounts: `{"counts":{"r":1}}`,
	} {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) { _ = m.Respond([]byte(reply)) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	rr, err := c.Roster(ctx, wire.RosterRequest{Room: "r"})
	if err != nil || len(rr.Users) != 1 || rr.Users[0] != "ann" {
		t.Fatalf("roster %+v, %v", rr, err)
	}
	cr, err := c.Counts(ctx, wire.CountsRequest{Rooms: []string{"r"}})
	if err != nil || cr.Counts["r"] != 1 {
		t.Fatalf("counts %+v, %v", cr, err)
	}
}
