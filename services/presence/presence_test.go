package presence_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// A user with two connections joins once and leaves once: after the last
// connection and the grace period. Only the first join of the room is
// stored ("joined"); tabs closing store nothing.
func TestMultiDeviceJoinLeaveOnce(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	e.start(cfg)
	rec := e.record("general")

	if rep := e.join("general", "alice", "c1", "edge-a"); rep.Online != 1 {
		t.Errorf("first join: online %d, want 1", rep.Online)
	}
	if rep := e.join("general", "alice", "c2", "edge-b"); rep.Online != 1 {
		t.Errorf("second device: online %d, want 1", rep.Online)
	}
	e.join("general", "alice", "c2", "edge-b") // a retried request changes nothing
	poll(t, 5*time.Second, "join event", func() error {
		if n := rec.count(wire.EventJoin, "alice"); n != 1 {
			return fmt.Errorf("%d join events", n)
		}
		return nil
	})

	e.leave("general", "alice", "c1", "edge-a")
	hold(cfg.Grace + 10*cfg.SweepInterval) // window for a wrong leave
	if n := rec.count(wire.EventLeave, ""); n != 0 {
		t.Fatalf("leave announced while a connection remains (%d events)", n)
	}
	if rep, err := e.roster("general", "", 0); err != nil || !slices.Equal(rep.Users, []string{"alice"}) {
		t.Fatalf("roster with one device left: %+v, %v", rep, err)
	}

	e.leave("general", "alice", "c2", "edge-b")
	poll(t, 5*time.Second, "leave event", func() error {
		if n := rec.count(wire.EventLeave, "alice"); n != 1 {
			return fmt.Errorf("%d leave events", n)
		}
		return nil
	})
	hold(5 * cfg.SweepInterval)
	if n := rec.total(); n != 2 {
		t.Errorf("%d presence events, want 2 (one join, one leave)", n)
	}
	joined, left := systemCounts(e.stored("general"))
	if joined["alice"] != 1 || left["alice"] != 0 {
		t.Errorf("system messages: joined %v left %v, want one joined, no left", joined, left)
	}
	rep, err := e.roster("general", "", 0)
	if err != nil || len(rep.Users) != 0 || rep.Online != 0 {
		t.Errorf("roster after leave: %+v, %v", rep, err)
	}
}

// A reload (last connection gone, a new one within the grace period)
// announces nothing; leaving for longer than the grace period announces one
// leave diff, and stores nothing.
func TestReloadWithinGrace(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	cfg.Grace = 1500 * time.Millisecond
	e.start(cfg)
	rec := e.record("general")

	e.join("general", "bob", "tab-1", "edge-a")
	e.leave("general", "bob", "tab-1", "edge-a")
	if rep, err := e.roster("general", "", 0); err != nil || rep.Online != 1 {
		t.Errorf("in grace: roster %+v, %v; want bob still online", rep, err)
	}
	e.join("general", "bob", "tab-2", "edge-b") // the reloaded page
	hold(cfg.Grace + 10*cfg.SweepInterval)
	if n := rec.total(); n != 1 {
		t.Fatalf("reload within grace: %d presence events, want only the first join", n)
	}

	e.leave("general", "bob", "tab-2", "edge-b")
	poll(t, 10*time.Second, "leave after grace", func() error {
		if n := rec.count(wire.EventLeave, "bob"); n != 1 {
			return fmt.Errorf("%d leave events", n)
		}
		return nil
	})
	joined, left := systemCounts(e.stored("general"))
	if joined["bob"] != 1 || left["bob"] != 0 {
		t.Errorf("system messages: joined %v left %v, want one joined, no left", joined, left)
	}
}

// The connections of an edge whose lease is not renewed are removed (one
// leave diff per user, no stored "left": the users did not leave the
// room); another edge's users stay.
func TestLeaseExpiryRemovesEdgeUsers(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	edges, err := e.js.KeyValue(ctx, subjects.BucketEdges)
	if err != nil {
		t.Fatal(err)
	}
	// "steady" renews its lease; "doomed" puts it once and crashes.
	e.holdLeases("steady")
	if _, err := edges.Put(ctx, "doomed", []byte(`{"edge":"doomed"}`)); err != nil {
		t.Fatal(err)
	}
	e.start(cfg)
	rec := e.record("general")
	e.join("general", "ann", "a1", "doomed")
	e.join("general", "amy", "a2", "doomed")
	e.join("general", "amy", "a3", "doomed")
	e.join("general", "ben", "b1", "steady")
	e.join("general", "bea", "b2", "steady")
	e.join("general", "bea", "a4", "doomed") // bea also has a tab on the doomed edge

	poll(t, 15*time.Second, "doomed edge's users leave", func() error {
		if a, b := rec.count(wire.EventLeave, "ann"), rec.count(wire.EventLeave, "amy"); a != 1 || b != 1 {
			return fmt.Errorf("leave events: ann %d amy %d", a, b)
		}
		return nil
	})
	hold(cfg.Grace + 10*cfg.SweepInterval)
	if n := rec.count(wire.EventLeave, ""); n != 2 {
		t.Errorf("%d leave events, want 2 (ann, amy)", n)
	}
	rep, err := e.roster("general", "", 0)
	if err != nil || !slices.Equal(rep.Users, []string{"bea", "ben"}) {
		t.Errorf("roster: %+v, %v; want [bea ben]", rep, err)
	}
	joined, left := systemCounts(e.stored("general"))
	if len(left) != 0 {
		t.Errorf("left system messages %v after an edge died, want none", left)
	}
	for _, u := range []string{"ann", "amy", "ben", "bea"} {
		if joined[u] != 1 {
			t.Errorf("%s: %d joined messages, want 1", u, joined[u])
		}
	}
}

// Connections of an edge that died while no presence ran (its lease is
// gone when presence starts) are removed by the periodic check.
func TestOrphanedEdgeCleanedAtStartup(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	edges, err := e.js.KeyValue(ctx, subjects.BucketEdges)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := edges.Put(ctx, "ghost", []byte(`{"edge":"ghost"}`)); err != nil {
		t.Fatal(err)
	}
	first := e.start(cfg)
	e.join("general", "gil", "g1", "ghost")
	e.join("general", "hal", "h1", "edge-a")
	first.stop(t)
	if err := edges.Delete(ctx, "ghost"); err != nil { // the edge died meanwhile
		t.Fatal(err)
	}
	rec := e.record("general")
	e.start(cfg)
	poll(t, 15*time.Second, "ghost edge's user leaves", func() error {
		if n := rec.count(wire.EventLeave, "gil"); n != 1 {
			return fmt.Errorf("%d leave events for gil", n)
		}
		return nil
	})
	rep, err := e.roster("general", "", 0)
	if err != nil || !slices.Equal(rep.Users, []string{"hal"}) {
		t.Errorf("roster: %+v, %v; want [hal]", rep, err)
	}
}

// Typing "on" creates an entry; without "off" it expires and presence
// publishes "off"; an explicit "off" removes the entry.
func TestTypingExpiry(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	offs := make(chan wire.TypingEvent, 16)
	sub, err := e.nc.Subscribe(subjects.Typing("general"), func(m *natsMsg) {
		ev, err := decodeTyping(m.Data)
		if err == nil && ev.State == wire.TypingOff {
			offs <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	typists := func() []string {
		var rep wire.TypingStateReply
		if err := e.request(subjects.PresenceTyping, wire.TypingStateRequest{Room: "general"}, &rep); err != nil {
			t.Fatalf("typing request: %v", err)
		}
		return rep.Users
	}
	e.publishTyping(wire.TypingEvent{Room: "general", User: "cat", State: wire.TypingOn, Conn: "c1"})
	poll(t, 5*time.Second, "typing entry", func() error {
		if u := typists(); !slices.Equal(u, []string{"cat"}) {
			return fmt.Errorf("typists %v", u)
		}
		return nil
	})
	select {
	case ev := <-offs:
		if ev.User != "cat" || ev.Room != "general" {
			t.Errorf("off event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no typing off after the entry expired")
	}
	poll(t, 5*time.Second, "typing entry gone", func() error {
		if u := typists(); len(u) != 0 {
			return fmt.Errorf("typists %v", u)
		}
		return nil
	})

	// Explicit off: the entry goes at once and presence adds nothing.
	e.publishTyping(wire.TypingEvent{Room: "general", User: "dan", State: wire.TypingOn, Conn: "d1"})
	poll(t, 5*time.Second, "dan typing", func() error {
		if u := typists(); !slices.Equal(u, []string{"dan"}) {
			return fmt.Errorf("typists %v", u)
		}
		return nil
	})
	e.publishTyping(wire.TypingEvent{Room: "general", User: "dan", State: wire.TypingOff, Conn: "d1"})
	var got []wire.TypingEvent
	poll(t, 5*time.Second, "dan stopped", func() error {
		for len(offs) > 0 {
			got = append(got, <-offs)
		}
		if u := typists(); len(u) != 0 {
			return fmt.Errorf("typists %v", u)
		}
		return nil
	})
	hold(2 * time.Second) // past the TTL: no expiry "off" may follow
	for len(offs) > 0 {
		got = append(got, <-offs)
	}
	for _, ev := range got {
		if ev.Conn != "d1" {
			t.Errorf("unexpected off event from presence after explicit off: %+v", ev)
		}
	}
}

// Two replicas, two devices per user racing: each online transition gives
// exactly one roster diff; membership stores exactly one "joined" per user
// (first join), nothing for tabs closing and reconnecting, and one "left"
// per user for explicit leaves sent from both devices at once.
func TestTwoReplicasOncePerTransition(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	e.start(cfg)
	e.start(cfg)
	rec := e.record("lobby")
	const users = 20
	each := func(do func(user, conn, edge string)) {
		var wg sync.WaitGroup
		for i := range users {
			for _, conn := range []string{"x", "y"} { // two devices racing
				wg.Go(func() {
					u := fmt.Sprintf("user%02d", i)
					do(u, u+conn, "edge-"+conn)
				})
			}
		}
		wg.Wait()
	}
	diffs := func(what, event string, want int) {
		t.Helper()
		poll(t, 15*time.Second, what, func() error {
			if n := rec.count(event, ""); n != want {
				return fmt.Errorf("%d %s events", n, event)
			}
			return nil
		})
	}
	messages := func(phase string, wantLeft int) {
		t.Helper()
		joined, left := systemCounts(e.stored("lobby"))
		for i := range users {
			u := fmt.Sprintf("user%02d", i)
			if joined[u] != 1 || left[u] != wantLeft {
				t.Errorf("%s: %s has %d joined, %d left system messages; want 1 and %d", phase, u, joined[u], left[u], wantLeft)
			}
		}
	}

	each(func(u, c, ed string) { e.join("lobby", u, c, ed) })
	diffs("joins", wire.EventJoin, users)
	each(func(u, c, ed string) { e.leave("lobby", u, c, ed) }) // tabs closing
	diffs("leaves", wire.EventLeave, users)
	hold(cfg.Grace + 10*cfg.SweepInterval)
	messages("tabs closed", 0)
	if n := rec.total(); n != 2*users {
		t.Errorf("%d presence events, want %d", n, 2*users)
	}

	// Back again (a new session: a diff, nothing stored), then leaving the
	// room from both devices at once. New registrations have new ids (a
	// left id is refused: see roster.Entry's gone markers).
	each(func(u, c, ed string) { e.join("lobby", u, c+".2", ed) })
	diffs("joins again", wire.EventJoin, 2*users)
	each(func(u, c, ed string) { e.leaveRoom("lobby", u, c+".2", ed) })
	diffs("leaves again", wire.EventLeave, 2*users)
	hold(cfg.Grace + 10*cfg.SweepInterval)
	messages("left the room", 1)
	if n := rec.total(); n != 4*users {
		t.Errorf("%d presence events, want %d", n, 4*users)
	}
}

// Membership is conversation, presence is not (DESIGN §3a): 30 users'
// first joins store 30 "joined"; tabs closing, reloading and reconnecting
// after the grace period store nothing; an explicit leave stores one
// "left", a second explicit leave nothing; a join after it is a first join
// again.
func TestMembershipIsConversation(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	e.start(cfg)
	rec := e.record("town")
	const n = 30
	var users []string
	for i := range n {
		users = append(users, fmt.Sprintf("citizen%02d", i))
	}
	all := func(do func(u string)) {
		var wg sync.WaitGroup
		for _, u := range users {
			wg.Go(func() { do(u) })
		}
		wg.Wait()
	}
	check := func(phase string, wantJoined, wantLeft map[string]int) {
		t.Helper()
		msgs := e.stored("town")
		joined, left := systemCounts(msgs)
		total := 0
		for _, u := range users {
			total += wantJoined[u] + wantLeft[u]
			if joined[u] != wantJoined[u] || left[u] != wantLeft[u] {
				t.Errorf("%s: %s has %d joined, %d left; want %d, %d", phase, u, joined[u], left[u], wantJoined[u], wantLeft[u])
			}
		}
		if len(msgs) != total {
			t.Errorf("%s: %d messages stored, want %d", phase, len(msgs), total)
		}
	}
	joined, left := map[string]int{}, map[string]int{}
	for _, u := range users {
		joined[u] = 1
	}

	all(func(u string) { e.join("town", u, "t1-"+u, "edge-a") })
	check("first joins", joined, left)

	all(func(u string) { // reload: a new tab within the grace period
		e.leave("town", u, "t1-"+u, "edge-a")
		e.join("town", u, "t2-"+u, "edge-b")
	})
	all(func(u string) { e.leave("town", u, "t2-"+u, "edge-b") }) // tab closed
	poll(t, 15*time.Second, "leave diffs", func() error {
		if got := rec.count(wire.EventLeave, ""); got != n {
			return fmt.Errorf("%d leave diffs", got)
		}
		return nil
	})
	all(func(u string) { e.join("town", u, "t3-"+u, "edge-a") }) // back later
	hold(10 * cfg.SweepInterval)
	check("reload, close, reconnect", joined, left)
	if j, l := rec.count(wire.EventJoin, ""), rec.count(wire.EventLeave, ""); j != 2*n || l != n {
		t.Errorf("%d join and %d leave diffs, want %d and %d", j, l, 2*n, n)
	}

	u := users[0]
	e.leaveRoom("town", u, "t3-"+u, "edge-a")
	left[u] = 1
	check("explicit leave", joined, left)
	e.leaveRoom("town", u, "t3-"+u, "edge-a") // a retried leave frame
	e.leaveRoom("town", u, "t9-"+u, "edge-b") // leaving from another tab
	hold(10 * cfg.SweepInterval)
	check("second explicit leave", joined, left)

	e.join("town", u, "t4-"+u, "edge-a") // rejoining is a first join again
	joined[u] = 2
	check("rejoin after leaving", joined, left)
}

// A join that finds a membership without its "joined" message (its
// creator died between creating the key and publishing) stores it, once:
// the repair publishes under the creator's id, within memberRepairWindow.
// An old membership is not repaired.
func TestMemberJoinRepair(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	e.start(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	members, err := e.js.KeyValue(ctx, subjects.BucketMembers)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		age  time.Duration
		want int
	}{
		{"creator died just now", 0, 1},
		{"membership of long ago", 10 * time.Minute, 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user := fmt.Sprintf("orphan%d", i)
			b, _ := json.Marshal(wire.Membership{Room: "fix", User: user, Since: time.Now().Add(-tc.age).UnixMilli()})
			if _, err := members.Create(ctx, subjects.MemberKey("fix", names.UserToken(user)), b); err != nil {
				t.Fatal(err)
			}
			e.join("fix", user, "c1-"+user, "edge-a")
			e.join("fix", user, "c2-"+user, "edge-b") // online: not repaired again
			e.leave("fix", user, "c1-"+user, "edge-a")
			e.leave("fix", user, "c2-"+user, "edge-b")
			poll(t, 10*time.Second, "offline", func() error {
				rep, err := e.roster("fix", "", 0)
				if err == nil && slices.Contains(rep.Users, user) {
					err = errors.New("still online")
				}
				return err
			})
			e.join("fix", user, "c3-"+user, "edge-a") // a new session repairs again: a duplicate
			if joined, _ := systemCounts(e.stored("fix")); joined[user] != tc.want {
				t.Errorf("%d joined messages, want %d", joined[user], tc.want)
			}
		})
	}
}

// A join nobody claimed (its creator died after creating the entry) is
// claimed and announced once by one of two replicas' sweepers; a leave
// stuck after its claim (the claimer died) is finished — the entry deleted
// — without a second diff. Nothing is stored.
func TestTakeoverOfStuckTransitions(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, subjects.BucketRoster)
	if err != nil {
		t.Fatal(err)
	}
	put := func(user string, v map[string]any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := kv.Put(ctx, subjects.RosterKey("stuck", names.UserToken(user)), b); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Minute).UnixMilli()
	put("kay", map[string]any{"user": "kay", "conns": map[string]string{"k1": "edge-a"}, "epoch": "e-kay", "since": old})
	put("lou", map[string]any{"user": "lou", "conns": map[string]string{}, "epoch": "e-lou", "since": old,
		"announced": true, "empty_since": old, "leaving": old})
	rec := e.record("stuck")
	e.start(cfg)
	e.start(cfg)
	poll(t, 15*time.Second, "takeovers", func() error {
		if n := rec.count(wire.EventJoin, "kay"); n != 1 {
			return fmt.Errorf("%d join diffs for kay", n)
		}
		if _, err := kv.Get(ctx, subjects.RosterKey("stuck", names.UserToken("lou"))); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("lou's stuck entry: %v", err)
		}
		return nil
	})
	hold(20 * cfg.SweepInterval)
	if n, total := rec.count(wire.EventJoin, "kay"), rec.total(); n != 1 || total != 1 {
		t.Errorf("%d join diffs for kay, %d diffs in all; want 1 and 1", n, total)
	}
	if rep, err := e.roster("stuck", "", 0); err != nil || !slices.Equal(rep.Users, []string{"kay"}) {
		t.Errorf("roster %+v, %v; want [kay]", rep, err)
	}
	if msgs := e.stored("stuck"); len(msgs) != 0 {
		t.Errorf("%d messages stored by presence transitions: %+v", len(msgs), msgs)
	}
}

// A restarted presence rebuilds its roster from the bucket, and announces
// nothing for users it finds there: no diff, no stored message, also when
// they open another tab.
func TestRestartRebuildsRoster(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	first := e.start(cfg)
	for _, u := range []string{"zoe", "yan", "xia"} {
		e.join("dev", u, "c-"+u, "edge-a")
	}
	first.stop(t)
	rec := e.record("dev")
	e.start(cfg)
	rep, err := e.roster("dev", "", 0)
	if err != nil || !slices.Equal(rep.Users, []string{"xia", "yan", "zoe"}) || rep.Online != 3 {
		t.Fatalf("roster after restart: %+v, %v", rep, err)
	}
	for _, u := range []string{"zoe", "yan", "xia"} {
		e.join("dev", u, "c2-"+u, "edge-b")
	}
	hold(10 * cfg.SweepInterval)
	if n := rec.total(); n != 0 {
		t.Errorf("restart announced %d presence events", n)
	}
	msgs := e.stored("dev")
	joined, _ := systemCounts(msgs)
	for _, u := range []string{"zoe", "yan", "xia"} {
		if joined[u] != 1 {
			t.Errorf("%s: %d join messages", u, joined[u])
		}
	}
	if len(msgs) != 3 {
		t.Errorf("%d messages stored, want the 3 first joins", len(msgs))
	}
}

// Roster pages are sorted, capped and chained by cursor; counts cover all
// rooms or the listed ones; bad requests get errors.
func TestRosterPagingAndCounts(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	var want []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range 250 {
		u := fmt.Sprintf("u%03d", i)
		want = append(want, u)
		sem <- struct{}{}
		wg.Go(func() { defer func() { <-sem }(); e.join("big", u, "c"+u, "edge-a") })
	}
	for _, u := range []string{"p", "q", "r"} {
		e.join("small", u, "c"+u, "edge-a")
	}
	wg.Wait()

	// Walk the pages.
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		rep, err := e.roster("big", after, 100)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Online != 250 {
			t.Errorf("online %d, want 250", rep.Online)
		}
		got = append(got, rep.Users...)
		if rep.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		after = rep.Next
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged roster has %d users, sorted=%v; want the 250 sorted", len(got), slices.IsSorted(got))
	}

	tests := []struct {
		name                string
		room, after         string
		limit               int
		wantLen, wantOnline int
		wantFirst, wantNext string
		wantCode            string
	}{
		{name: "default limit", room: "big", wantLen: 100, wantOnline: 250, wantFirst: "u000", wantNext: "u099"},
		{name: "limit above max capped", room: "big", limit: 5000, wantLen: 250, wantOnline: 250, wantFirst: "u000"},
		{name: "cursor", room: "big", after: "u245", limit: 10, wantLen: 4, wantOnline: 250, wantFirst: "u246"},
		{name: "cursor between names", room: "big", after: "u1", limit: 1, wantLen: 1, wantOnline: 250, wantFirst: "u100", wantNext: "u100"},
		{name: "empty room", room: "nobody", wantLen: 0},
		{name: "small", room: "small", wantLen: 3, wantOnline: 3, wantFirst: "p"},
		{name: "negative limit", room: "big", limit: -1, wantCode: "400"},
		{name: "invalid room", room: "Not A Room", wantCode: "400"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := e.roster(tc.room, tc.after, tc.limit)
			if tc.wantCode != "" {
				if !errIs(err, tc.wantCode) {
					t.Fatalf("err %v, want code %s", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Users) != tc.wantLen || rep.Online != tc.wantOnline || rep.Next != tc.wantNext {
				t.Errorf("got %d users, online %d, next %q", len(rep.Users), rep.Online, rep.Next)
			}
			if tc.wantLen > 0 && rep.Users[0] != tc.wantFirst {
				t.Errorf("first %q, want %q", rep.Users[0], tc.wantFirst)
			}
		})
	}

	countsTests := []struct {
		name string
		req  wire.CountsRequest
		want map[string]int
		code string
	}{
		{name: "all rooms", want: map[string]int{"big": 250, "small": 3}},
		{name: "listed", req: wire.CountsRequest{Rooms: []string{"small", "empty"}}, want: map[string]int{"small": 3, "empty": 0}},
		{name: "invalid", req: wire.CountsRequest{Rooms: []string{"a.b"}}, code: "400"},
	}
	for _, tc := range countsTests {
		t.Run("counts/"+tc.name, func(t *testing.T) {
			var rep wire.CountsReply
			err := e.request(subjects.PresenceCounts, tc.req, &rep)
			if tc.code != "" {
				if !errIs(err, tc.code) {
					t.Fatalf("err %v, want %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(rep.Counts) != fmt.Sprint(tc.want) {
				t.Errorf("counts %v, want %v", rep.Counts, tc.want)
			}
		})
	}
}

// Bad join/leave requests are refused and change nothing.
func TestBadConnEvents(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	tests := []struct {
		name string
		ev   any
	}{
		{"bad room", wire.ConnEvent{Room: "#General", User: "u", Conn: "c", Edge: "e"}},
		{"no user", wire.ConnEvent{Room: "general", Conn: "c", Edge: "e"}},
		{"no conn", wire.ConnEvent{Room: "general", User: "u", Edge: "e"}},
		{"edge with wildcard", wire.ConnEvent{Room: "general", User: "u", Conn: "c", Edge: "e.*"}},
		{"not json", "join please"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rep wire.ConnReply
			if err := e.request(subjects.PresenceJoin, tc.ev, &rep); !errIs(err, "400") {
				t.Errorf("join: %v, want a 400 error", err)
			}
		})
	}
	var rep wire.CountsReply
	if err := e.request(subjects.PresenceCounts, wire.CountsRequest{}, &rep); err != nil || len(rep.Counts) != 0 {
		t.Errorf("counts after bad requests: %v %v", rep.Counts, err)
	}
}

// 10,000 members in one room: each join produces one diff and one stored
// "joined" (each is a first join) and nothing else, and a roster page is
// capped.
func TestTenThousandMembers(t *testing.T) {
	if testing.Short() {
		t.Log("running the 10,000 member test in -short mode too; it has no timing assertion")
	}
	e := newEnv(t, shortProvision())
	cfg := short()
	cfg.Grace = time.Minute
	e.start(cfg)
	rec := e.record("huge")
	const members = 10000
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				u := fmt.Sprintf("member%05d", i)
				e.join("huge", u, "c"+u, "edge-a")
			}
		})
	}
	for i := range members {
		next <- i
	}
	close(next)
	wg.Wait()
	poll(t, 60*time.Second, "join diffs", func() error {
		if n := rec.count(wire.EventJoin, ""); n != members {
			return fmt.Errorf("%d join events", n)
		}
		return nil
	})
	if n := rec.total(); n != members {
		t.Errorf("%d presence frames, want exactly %d join diffs", n, members)
	}
	rep, err := e.roster("huge", "", 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Users) != 1000 || rep.Online != members || rep.Next != rep.Users[999] {
		t.Errorf("page: %d users, online %d, next %q", len(rep.Users), rep.Online, rep.Next)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := e.js.Stream(ctx, subjects.Stream)
	if err != nil {
		t.Fatal(err)
	}
	st, err := info.Info(ctx, jetstream.WithSubjectFilter(subjects.Room("huge")))
	if err != nil {
		t.Fatal(err)
	}
	if n := st.State.Subjects[subjects.Room("huge")]; n != members {
		t.Errorf("%d system messages stored, want %d", n, members)
	}
}

// Joins keep arriving while a replica stops (micro drains its
// subscriptions asynchronously, so handlers run after Stop): each gets an
// answer, a shutdown error or no responders — none is queued for a worker
// that already drained and left to time out.
func TestStopUnderJoins(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			e := newEnv(t, shortProvision())
			e.holdLeases("edge-s")
			r := e.start(short())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			var answered, refused atomic.Int64
			for w := range 6 {
				nc := e.connect()
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ctx.Err() == nil; i++ {
						user := fmt.Sprintf("u%d-%d", w, i)
						b, _ := json.Marshal(wire.ConnEvent{Room: "stop", User: user, Conn: "c-" + user, Edge: "edge-s"})
						m, err := nc.Request(subjects.PresenceJoin, b, 10*time.Second)
						switch {
						case errors.Is(err, nats.ErrNoResponders):
							refused.Add(1)
						case err != nil:
							t.Errorf("join %s while stopping: %v", user, err)
							return
						case m.Header.Get(micro.ErrorCodeHeader) == "":
							answered.Add(1)
						case m.Header.Get(micro.ErrorCodeHeader) == "503",
							strings.HasPrefix(m.Header.Get(micro.ErrorHeader), wire.CodeUnavailable+":"):
							// Refused at the door, or cut off when shutdown's
							// bounded drain cancelled the store call.
							refused.Add(1)
						default:
							t.Errorf("join %s: %s %s", user, m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader))
						}
					}
				}()
			}
			poll(t, 10*time.Second, "joins answered", func() error {
				if n := answered.Load(); n < 30 {
					return fmt.Errorf("%d answered", n)
				}
				return nil
			})
			r.stop(t)
			// Past the stop, requests meet no responders; give in-flight
			// ones their time, then end.
			poll(t, 15*time.Second, "requests refused after stop", func() error {
				if refused.Load() == 0 {
					return errors.New("none refused yet")
				}
				return nil
			})
			cancel()
			wg.Wait()
		})
	}
}

// A join request that arrives after its connection's leave (the edge gave
// up waiting for the join and sent the leave) is refused with a final
// 410: the user is never listed, no join diff is published, and, for an
// explicit leave, the membership it ended is not restored.
func TestJoinAfterItsLeaveIsRefused(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	e.start(cfg)
	rec := e.record("general")
	e.leave("general", "amy", "a1", "edge-a")
	e.leaveRoom("general", "bob", "b1", "edge-a")
	for _, ev := range []wire.ConnEvent{
		{Room: "general", User: "amy", Conn: "a1", Edge: "edge-a"},
		{Room: "general", User: "bob", Conn: "b1", Edge: "edge-a"},
	} {
		var rep wire.ConnReply
		err := e.request(subjects.PresenceJoin, ev, &rep)
		var se *serviceError
		if !errors.As(err, &se) || se.code != "410" {
			t.Fatalf("late join %+v: %+v, %v; want a 410", ev, rep, err)
		}
	}
	e.join("general", "cat", "c1", "edge-a") // a later, real join: one diff
	poll(t, 5*time.Second, "cat's join", func() error {
		if n := rec.count(wire.EventJoin, "cat"); n != 1 {
			return fmt.Errorf("%d join events for cat", n)
		}
		return nil
	})
	hold(cfg.Grace + 10*cfg.SweepInterval) // window for a wrong announcement
	if n := rec.total(); n != 1 {
		t.Fatalf("%d presence events, want only cat's join", n)
	}
	if rep, err := e.roster("general", "", 0); err != nil || !slices.Equal(rep.Users, []string{"cat"}) {
		t.Fatalf("roster %+v, %v; want only cat", rep, err)
	}
	joined, _ := systemCounts(e.stored("general"))
	if joined["amy"] != 0 || joined["bob"] != 0 || joined["cat"] != 1 {
		t.Fatalf("joined system messages %v, want only cat's", joined)
	}
}
