package systemtest_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// roster asks presence for a room's users.
func (e *env) roster(room string) []string {
	e.t.Helper()
	data, _ := json.Marshal(wire.RosterRequest{Room: room, Limit: 1000})
	msg, err := e.NC.Request(subjects.PresenceRoster, data, 5*time.Second)
	if err != nil {
		e.t.Fatalf("roster: %v", err)
	}
	var r wire.RosterReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		e.t.Fatalf("roster reply %s: %v", msg.Data, err)
	}
	return r.Users
}

// An edge whose lease key disappears while it is alive (presence then
// drops its connections) notices on the next renewal, re-creates the lease
// and registers every local connection with presence again.
func TestLeaseLossReregistersConnections(t *testing.T) {
	e := newSystem(t)
	te := e.startEdge(nil) // lease TTL 3 s: renewed every second
	alice := dial(t, te.wsURL("alice"))
	bob := dial(t, te.wsURL("bob"))
	alice.join("general", nil)
	alice.join("random", nil)
	bob.join("general", nil)
	want := map[string][]string{"general": {"alice", "bob"}, "random": {"alice"}}
	for room, users := range want {
		natstest.Until(t, 5*time.Second, "roster of "+room, func() bool { return slices.Equal(e.roster(room), users) })
	}

	kv, err := e.JS.KeyValue(tctx(t), subjects.BucketEdges)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(tctx(t), te.EdgeID()); err != nil {
		t.Fatal(err)
	}
	// Presence reaps the edge's connections (the users go after the
	// grace period); the edge re-registers them on its next renewal.
	natstest.Until(t, 10*time.Second, "lease loss noticed", func() bool { return te.Metrics().LeaseLostTotal() == 1 })
	if _, err := kv.Get(tctx(t), te.EdgeID()); err != nil {
		t.Fatalf("lease not re-created: %v", err)
	}
	for room, users := range want {
		natstest.Until(t, 10*time.Second, "roster of "+room+" healed", func() bool { return slices.Equal(e.roster(room), users) })
	}
	// And it stays healed: presence keeps the re-registered connections
	// through several more renewals and sweeps.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for room, users := range want {
			if got := e.roster(room); !slices.Equal(got, users) {
				t.Fatalf("roster of %s is %v after healing, want %v", room, got, users)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := te.Metrics().LeaseLostTotal(); n != 1 {
		t.Fatalf("lease lost %v times, want 1", n)
	}
	// A connection that leaves afterwards really leaves.
	_ = bob.c.Close()
	natstest.Until(t, 10*time.Second, "bob gone", func() bool { return slices.Equal(e.roster("general"), []string{"alice"}) })
}
