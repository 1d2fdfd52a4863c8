package presence_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// roomReq sends a room request and decodes its answer; a refusal comes
// back as a *serviceError.
func roomReq[T any](e *env, subject string, req any) (T, error) {
	var out T
	err := e.request(subject, req, &out)
	return out, err
}

// mustRoom is roomReq failing the test on an error.
func mustRoom[T any](t *testing.T, e *env, subject string, req any) T {
	t.Helper()
	out, err := roomReq[T](e, subject, req)
	if err != nil {
		t.Fatalf("%s %+v: %v", subject, req, err)
	}
	return out
}

// refused checks err is a refusal with micro status status and wire code
// code ("<code>: …" description).
func refused(t *testing.T, what string, err error, status, code string) {
	t.Helper()
	var se *serviceError
	if !errors.As(err, &se) || se.code != status || !strings.HasPrefix(se.desc, code+":") {
		t.Fatalf("%s: %v, want a %s %s refusal", what, err, status, code)
	}
}

func (e *env) access(t *testing.T, room, user string) wire.Access {
	t.Helper()
	return mustRoom[wire.Access](t, e, subjects.PresenceAccess, wire.AccessRequest{User: user, Room: room})
}

func (e *env) moderate(room, by, user, action string) error {
	_, err := roomReq[wire.RoomGrant](e, subjects.PresenceRoomModerate, wire.ModerateRequest{By: by, Room: room, User: user, Action: action})
	return err
}

// tryJoin joins a connection, answering the refusal instead of failing.
func (e *env) tryJoin(room, user string) error {
	var rep wire.ConnReply
	// A new connection each time: a connection id that left is refused
	// (roster gone markers), whatever the room's access.
	return e.request(subjects.PresenceJoin, wire.ConnEvent{Room: room, User: user, Conn: "c-" + user + "-" + nuid.Next(), Edge: "edge-a"}, &rep)
}

// audits lists room's stored system messages other than joined/left, as
// "<user>|<body>".
func audits(msgs []wire.Message) []string {
	var out []string
	for _, m := range msgs {
		if m.Kind == wire.KindSystem && m.Body != m.User+" joined" && m.Body != m.User+" left" {
			out = append(out, m.User+"|"+m.Body)
		}
	}
	return out
}

// accessEvents records the access events of room.
type accessEvents struct {
	mu  sync.Mutex
	evs []wire.AccessEvent
}

func (e *env) watchAccess(room string) *accessEvents {
	e.t.Helper()
	r := &accessEvents{}
	sub, err := e.nc.Subscribe(subjects.Access(room), func(m *nats.Msg) {
		var ev wire.AccessEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			e.t.Errorf("bad access event %q: %v", m.Data, err)
			return
		}
		r.mu.Lock()
		r.evs = append(r.evs, ev)
		r.mu.Unlock()
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return r
}

// find waits for an event of action on user and returns it.
func (r *accessEvents) find(t *testing.T, user, action string) wire.AccessEvent {
	t.Helper()
	var found wire.AccessEvent
	poll(t, 5*time.Second, "access event "+action+" "+user, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, ev := range r.evs {
			if ev.User == user && ev.Action == action {
				found = ev
				return nil
			}
		}
		return fmt.Errorf("events so far: %+v", r.evs)
	})
	return found
}

// A private room: non-members are refused (access and join); an invite
// lets bob read and join ("bob joined" stored); a kick revokes it at once,
// stores "bob was kicked by alice" with alice as its user, and is
// announced on chat.access.<room>.
func TestPrivateRoomInviteKick(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	events := e.watchAccess("secret")

	f := mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "alice", Room: "secret", Private: true, Title: "Secret", Topic: "plans"})
	if f.Type != wire.TypeRoom || !f.Private || f.Role != wire.RoleOwner || f.Owner != "alice" || f.Title != "Secret" {
		t.Fatalf("create answered %+v", f)
	}
	created := events.find(t, "alice", wire.ActionCreate)
	if a := e.access(t, "secret", "alice"); !a.MayRead || !a.MayWrite || !a.MayModerate || a.Role != wire.RoleOwner {
		t.Errorf("owner's access %+v", a)
	}
	a := e.access(t, "secret", "bob")
	if !a.Exists || !a.Private || a.MayRead || a.MayWrite || a.Role != "" || a.Rev < created.Rev {
		t.Errorf("non-member's access %+v", a)
	}
	refused(t, "non-member joins", e.tryJoin("secret", "bob"), "403", wire.CodeForbidden)
	e.join("secret", "alice", "c-alice", "edge-a")
	if r, err := e.roster("secret", "", 10); err != nil || !slices.Equal(r.Users, []string{"alice"}) {
		t.Errorf("roster after a refused join: %+v %v, want alice only", r, err)
	}

	g := mustRoom[wire.RoomGrant](t, e, subjects.PresenceRoomInvite, wire.RoomUserRequest{By: "alice", Room: "secret", User: "bob"})
	if !g.Invited || g.By != "alice" || g.Action != wire.ActionInvite || g.Rev == 0 {
		t.Errorf("invite answered %+v", g)
	}
	invited := events.find(t, "bob", wire.ActionInvite)
	a = e.access(t, "secret", "bob")
	if !a.MayRead || !a.MayWrite || a.MayModerate || a.Member || a.Role != wire.RoleMember || a.Rev != invited.Rev {
		t.Errorf("invited access %+v (event rev %d)", a, invited.Rev)
	}
	if err := e.tryJoin("secret", "bob"); err != nil {
		t.Fatalf("invited join: %v", err)
	}
	if a := e.access(t, "secret", "bob"); !a.Member {
		t.Errorf("joined access %+v", a)
	}
	refused(t, "a stranger invites", func() error {
		_, err := roomReq[wire.RoomGrant](e, subjects.PresenceRoomInvite, wire.RoomUserRequest{By: "mallory", Room: "secret", User: "mallory2"})
		return err
	}(), "403", wire.CodeForbidden)

	if err := e.moderate("secret", "alice", "bob", wire.ActionKick); err != nil {
		t.Fatalf("kick: %v", err)
	}
	ev := events.find(t, "bob", wire.ActionKick)
	if ev.By != "alice" || ev.Rev <= invited.Rev {
		t.Errorf("kick event %+v", ev)
	}
	a = e.access(t, "secret", "bob")
	if a.MayRead || a.MayWrite || a.Member || a.Role != "" {
		t.Errorf("kicked access %+v", a)
	}
	refused(t, "kicked user rejoins", e.tryJoin("secret", "bob"), "403", wire.CodeForbidden)
	refused(t, "kick again", e.moderate("secret", "bob", "alice", wire.ActionKick), "403", wire.CodeForbidden)

	msgs := e.stored("secret")
	joined, left := systemCounts(msgs)
	if joined["alice"] != 1 || joined["bob"] != 1 || left["bob"] != 0 {
		t.Errorf("joined %v left %v, want alice and bob once, no left", joined, left)
	}
	want := []string{"alice|bob was invited by alice", "alice|bob was kicked by alice"}
	if got := audits(msgs); !slices.Equal(got, want) {
		t.Errorf("audit messages %q, want %q", got, want)
	}
}

// Ban keeps a user out of a public room (also after leaving and
// rejoining); unban lets them back (a first join again); mute stops
// writing, not reading. A public room without a record has no
// moderators.
func TestBanMuteUnban(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "alice", Room: "town"})
	if a := e.access(t, "town", "bob"); !a.Exists || a.Private || !a.MayRead || !a.MayWrite {
		t.Errorf("public room access %+v", a)
	}
	e.join("town", "bob", "c-bob", "edge-a")

	for _, tc := range []struct {
		action         string
		read, write    bool
		muted, banned  bool
		member, joinOK bool
	}{
		{wire.ActionMute, true, false, true, false, true, true},
		{wire.ActionUnmute, true, true, false, false, true, true},
		{wire.ActionBan, false, false, false, true, false, false},
		{wire.ActionUnban, true, true, false, false, false, true},
	} {
		if err := e.moderate("town", "alice", "bob", tc.action); err != nil {
			t.Fatalf("%s: %v", tc.action, err)
		}
		a := e.access(t, "town", "bob")
		if a.MayRead != tc.read || a.MayWrite != tc.write || a.Muted != tc.muted || a.Banned != tc.banned || a.Member != tc.member {
			t.Errorf("after %s: %+v", tc.action, a)
		}
		err := e.tryJoin("town", "bob")
		if tc.joinOK && err != nil || !tc.joinOK && err == nil {
			t.Errorf("after %s: join answered %v, want ok=%v", tc.action, err, tc.joinOK)
		}
		if tc.action == wire.ActionBan {
			refused(t, "banned join", err, "403", wire.CodeForbidden)
			e.leaveRoom("town", "bob", "c-bob", "edge-a") // leaving does not lift a ban
			refused(t, "banned rejoin", e.tryJoin("town", "bob"), "403", wire.CodeForbidden)
			refused(t, "invite of the banned", func() error {
				_, err := roomReq[wire.RoomGrant](e, subjects.PresenceRoomInvite, wire.RoomUserRequest{By: "alice", Room: "town", User: "bob"})
				return err
			}(), "403", wire.CodeForbidden)
		}
	}
	// Muting the unmuted again changes nothing and stores nothing.
	if err := e.moderate("town", "alice", "bob", wire.ActionUnmute); err != nil {
		t.Fatal(err)
	}
	msgs := e.stored("town")
	want := []string{"alice|bob was muted by alice", "alice|bob was unmuted by alice", "alice|bob was banned by alice", "alice|bob was unbanned by alice"}
	if got := audits(msgs); !slices.Equal(got, want) {
		t.Errorf("audit messages %q, want %q", got, want)
	}
	if joined, _ := systemCounts(msgs); joined["bob"] != 2 {
		t.Errorf("bob joined %d times, want 2 (before the ban, after the unban)", joined["bob"])
	}

	// A public room nobody created: open, and nobody moderates it.
	e.join("lounge", "bob", "c-bob", "edge-a")
	if a := e.access(t, "lounge", "carol"); a.Exists || !a.MayRead || !a.MayWrite || a.MayModerate {
		t.Errorf("record-less room access %+v", a)
	}
	refused(t, "kick in a record-less room", e.moderate("lounge", "carol", "bob", wire.ActionKick), "403", wire.CodeForbidden)
}

// A DM: the same room from both sides, only its two users, no moderation
// (not even by a moderator of another room), listed in both lobbies; a DM
// with oneself is a note-to-self room; DM names are reserved.
func TestDirectMessages(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	ab := mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomDM, wire.DMRequest{By: "alice", User: "bob"})
	ba := mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomDM, wire.DMRequest{By: "bob", User: "alice"})
	if ab.Room != ba.Room || ab.Room != wire.DMRoom("bob", "alice") || !names.ValidRoom(ab.Room) || !ab.DM || !ab.Private ||
		!slices.Equal(ab.Members, []string{"alice", "bob"}) || !slices.Equal(ba.Members, ab.Members) {
		t.Fatalf("dm alice→bob %+v, bob→alice %+v", ab, ba)
	}
	dm := ab.Room
	for _, u := range []string{"alice", "bob"} {
		if a := e.access(t, dm, u); !a.MayRead || !a.MayWrite || a.MayModerate || !a.DM || a.Role != wire.RoleMember {
			t.Errorf("%s's DM access %+v", u, a)
		}
		if err := e.tryJoin(dm, u); err != nil {
			t.Errorf("%s joins the DM: %v", u, err)
		}
	}
	// carol owns a room (so moderates something) and still may not.
	mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "carol", Room: "carols", Private: true})
	if a := e.access(t, dm, "carol"); a.MayRead || a.MayWrite {
		t.Errorf("third user's DM access %+v", a)
	}
	refused(t, "third user joins the DM", e.tryJoin(dm, "carol"), "403", wire.CodeForbidden)
	refused(t, "moderation in a DM", e.moderate(dm, "alice", "bob", wire.ActionKick), "403", wire.CodeForbidden)
	refused(t, "invite into a DM", func() error {
		_, err := roomReq[wire.RoomGrant](e, subjects.PresenceRoomInvite, wire.RoomUserRequest{By: "alice", Room: dm, User: "carol"})
		return err
	}(), "403", wire.CodeForbidden)

	note := mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomDM, wire.DMRequest{By: "alice", User: "alice"})
	if note.Room == dm || !note.DM || !slices.Equal(note.Members, []string{"alice"}) {
		t.Errorf("note to self %+v", note)
	}
	if a := e.access(t, note.Room, "bob"); a.MayRead {
		t.Errorf("bob reads alice's notes: %+v", a)
	}

	// DM names are reserved: not creatable, not joinable before the DM exists.
	unborn := wire.DMRoom("dave", "erin")
	refused(t, "join an unborn DM", e.tryJoin(unborn, "dave"), "403", wire.CodeForbidden)
	refused(t, "create a dm- room", func() error {
		_, err := roomReq[wire.RoomFrame](e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "dave", Room: unborn})
		return err
	}(), "403", wire.CodeForbidden)

	lobby := func(user string) []string {
		rep := mustRoom[wire.RoomsReply](t, e, subjects.PresenceRooms, wire.RoomsRequest{User: user})
		var out []string
		for _, r := range rep.Rooms {
			out = append(out, r.Room+"/"+r.Role)
		}
		slices.Sort(out)
		return out
	}
	wantAlice := []string{dm + "/member", note.Room + "/member"}
	slices.Sort(wantAlice)
	if got := lobby("alice"); !slices.Equal(got, wantAlice) {
		t.Errorf("alice's rooms %v, want %v", got, wantAlice)
	}
	if got := lobby("bob"); !slices.Equal(got, []string{dm + "/member"}) {
		t.Errorf("bob's rooms %v", got)
	}
	if got := lobby("carol"); !slices.Equal(got, []string{"carols/owner"}) {
		t.Errorf("carol's rooms %v", got)
	}
	// Described on request: public rooms with a record (titles), never
	// others' private rooms or DMs.
	mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "carol", Room: "plaza", Title: "The Plaza"})
	rep := mustRoom[wire.RoomsReply](t, e, subjects.PresenceRooms, wire.RoomsRequest{User: "bob", Rooms: []string{"plaza", "carols", note.Room, "lounge"}})
	if len(rep.Rooms) != 2 || rep.Rooms[0].Room != dm || rep.Rooms[1].Room != "plaza" || rep.Rooms[1].Title != "The Plaza" || rep.Rooms[1].Role != "" {
		t.Errorf("bob's rooms with plaza, carols, alice's notes, lounge described: %+v", rep.Rooms)
	}
}

// Roles: a member cannot moderate; the owner makes moderators (only the
// owner); a moderator kicks members but not the owner nor another
// moderator; the owner kicks a moderator.
func TestRoleRules(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "owner", Room: "team", Private: true})
	for _, u := range []string{"bob", "carol", "dave"} {
		mustRoom[wire.RoomGrant](t, e, subjects.PresenceRoomInvite, wire.RoomUserRequest{By: "owner", Room: "team", User: u})
		if err := e.tryJoin("team", u); err != nil {
			t.Fatal(err)
		}
	}
	role := func(by, user, r string) error {
		_, err := roomReq[wire.RoomGrant](e, subjects.PresenceRoomRole, wire.RoleRequest{By: by, Room: "team", User: user, Role: r})
		return err
	}
	refused(t, "member kicks", e.moderate("team", "bob", "carol", wire.ActionKick), "403", wire.CodeForbidden)
	refused(t, "member mutes", e.moderate("team", "bob", "carol", wire.ActionMute), "403", wire.CodeForbidden)
	if err := role("owner", "bob", wire.RoleModerator); err != nil {
		t.Fatal(err)
	}
	if err := role("owner", "dave", wire.RoleModerator); err != nil {
		t.Fatal(err)
	}
	if a := e.access(t, "team", "bob"); a.Role != wire.RoleModerator || !a.MayModerate {
		t.Errorf("moderator's access %+v", a)
	}
	refused(t, "moderator sets a role", role("bob", "carol", wire.RoleModerator), "403", wire.CodeForbidden)
	refused(t, "owner's role changed", role("owner", "owner", wire.RoleMember), "403", wire.CodeForbidden)
	for _, action := range []string{wire.ActionKick, wire.ActionBan, wire.ActionMute} {
		refused(t, "moderator "+action+"s the owner", e.moderate("team", "bob", "owner", action), "403", wire.CodeForbidden)
		refused(t, "moderator "+action+"s a moderator", e.moderate("team", "bob", "dave", action), "403", wire.CodeForbidden)
	}
	refused(t, "bad role", role("owner", "carol", wire.RoleOwner), "400", wire.CodeBadJSON)
	if err := e.moderate("team", "bob", "carol", wire.ActionKick); err != nil {
		t.Fatalf("moderator kicks a member: %v", err)
	}
	if err := e.moderate("team", "owner", "dave", wire.ActionKick); err != nil {
		t.Fatalf("owner kicks a moderator: %v", err)
	}
	if a := e.access(t, "team", "dave"); a.MayRead || a.Role != "" {
		t.Errorf("kicked moderator's access %+v", a)
	}
	if a := e.access(t, "team", "owner"); !a.MayModerate {
		t.Errorf("owner %+v", a)
	}
	want := []string{"owner|bob was invited by owner", "owner|carol was invited by owner", "owner|dave was invited by owner",
		"owner|bob was made moderator by owner", "owner|dave was made moderator by owner",
		"bob|carol was kicked by bob", "owner|dave was kicked by owner"}
	if got := audits(e.stored("team")); !slices.Equal(got, want) {
		t.Errorf("audit messages\n%q\nwant\n%q", got, want)
	}
}

// The creation limit holds across two replicas under concurrent creates;
// a room has one owner however many create it at once; re-creating one's
// own room is answered with it; a public room in use cannot be claimed.
func TestCreationLimitAndOwnershipAcrossReplicas(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	cfg.MaxRoomsPerUser = 3
	e.start(cfg)
	e.start(cfg)
	ncs := []*env{e, {t: t, srv: e.srv, nc: e.connect(), js: e.js}}

	var mu sync.Mutex
	var ok, limited int
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_, err := roomReq[wire.RoomFrame](ncs[i%2], subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "alice", Room: fmt.Sprintf("r%d", i), Private: true})
			mu.Lock()
			defer mu.Unlock()
			var se *serviceError
			switch {
			case err == nil:
				ok++
			case errors.As(err, &se) && strings.HasPrefix(se.desc, wire.CodeTooManyRooms+":"):
				limited++
			default:
				t.Errorf("create r%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if ok != 3 || limited != 5 {
		t.Errorf("%d created, %d refused by the limit; want 3 and 5", ok, limited)
	}

	owners := map[string]int{}
	for i := range 6 {
		wg.Go(func() {
			user := fmt.Sprintf("u%d", i)
			f, err := roomReq[wire.RoomFrame](ncs[i%2], subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: user, Room: "hot", Private: true})
			mu.Lock()
			defer mu.Unlock()
			var se *serviceError
			switch {
			case err == nil:
				owners[f.Owner]++
			case errors.As(err, &se) && strings.HasPrefix(se.desc, wire.CodeForbidden+":"):
			default:
				t.Errorf("create hot by %s: %v", user, err)
			}
		})
	}
	wg.Wait()
	if len(owners) != 1 {
		t.Fatalf("owners of hot: %v, want one", owners)
	}
	var owner string
	for o := range owners {
		owner = o
	}
	if a := e.access(t, "hot", owner); a.Role != wire.RoleOwner {
		t.Errorf("hot's owner access %+v", a)
	}
	// A retry of one's own create answers the room and costs nothing.
	if f := mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: owner, Room: "hot", Private: true}); f.Role != wire.RoleOwner {
		t.Errorf("re-create %+v", f)
	}
	e.join("busy", "zed", "c-zed", "edge-a")
	_, err := roomReq[wire.RoomFrame](e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "bob", Room: "busy", Private: true})
	refused(t, "claim a public room in use", err, "403", wire.CodeForbidden)
}

// Two replicas agree: concurrent bans of one user by the owner and a
// moderator, spread over both replicas, store exactly one audit line, and
// it names the actor the stored grant names.
func TestConcurrentModerationOneLine(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	e.start(short())
	other := &env{t: t, srv: e.srv, nc: e.connect(), js: e.js}
	mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "alice", Room: "arena"})
	mustRoom[wire.RoomGrant](t, e, subjects.PresenceRoomRole, wire.RoleRequest{By: "alice", Room: "arena", User: "carol", Role: wire.RoleModerator})
	e.join("arena", "bob", "c-bob", "edge-a")

	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			by, via := "alice", e
			if i%2 == 1 {
				by = "carol"
			}
			if i%3 == 0 {
				via = other
			}
			if err := via.moderate("arena", by, "bob", wire.ActionBan); err != nil {
				t.Errorf("ban by %s: %v", by, err)
			}
		})
	}
	wg.Wait()
	var bans []string
	for _, a := range audits(e.stored("arena")) {
		if strings.Contains(a, "banned") {
			bans = append(bans, a)
		}
	}
	g := mustRoom[wire.RoomGrant](t, e, subjects.PresenceRoomModerate, wire.ModerateRequest{By: "alice", Room: "arena", User: "bob", Action: wire.ActionBan})
	if len(bans) != 1 || bans[0] != g.By+"|bob was banned by "+g.By {
		t.Errorf("ban lines %q, grant by %s; want one line naming it", bans, g.By)
	}
}

// Topic and title: owner or moderator; stored as system messages.
func TestTopic(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "alice", Room: "news", Topic: "old"})
	title, topic := "The News", "new"
	f := mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomTopic, wire.TopicRequest{By: "alice", Room: "news", Topic: &topic, Title: &title})
	if f.Topic != "new" || f.Title != title {
		t.Errorf("topic answered %+v", f)
	}
	// A title alone keeps the topic; the same values again store nothing.
	f = mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomTopic, wire.TopicRequest{By: "alice", Room: "news", Title: &title})
	if f.Topic != "new" || f.Title != title {
		t.Errorf("title-only answered %+v", f)
	}
	str := func(s string) *string { return &s }
	_, err := roomReq[wire.RoomFrame](e, subjects.PresenceRoomTopic, wire.TopicRequest{By: "bob", Room: "news", Topic: str("mine")})
	refused(t, "non-moderator sets the topic", err, "403", wire.CodeForbidden)
	_, err = roomReq[wire.RoomFrame](e, subjects.PresenceRoomTopic, wire.TopicRequest{By: "bob", Room: "nowhere", Topic: str("x")})
	refused(t, "topic of a record-less room", err, "404", wire.CodeNotFound)
	_, err = roomReq[wire.RoomFrame](e, subjects.PresenceRoomTopic, wire.TopicRequest{By: "alice", Room: "news", Topic: str("bad\u202etext")})
	refused(t, "bidi override in a topic", err, "400", wire.CodeInvalidBody)
	want := []string{"alice|alice renamed the room to The News", "alice|alice set the topic: new"}
	if got := audits(e.stored("news")); !slices.Equal(got, want) {
		t.Errorf("audit messages %q, want %q", got, want)
	}
}

// A replica that wrote a ban and died before the rest: the moderator's
// retry finishes it (audit line stored, membership ended, event
// published), and a second retry stores nothing more.
func TestModerationRetryFinishes(t *testing.T) {
	e := newEnv(t, shortProvision())
	e.start(short())
	events := e.watchAccess("den")
	mustRoom[wire.RoomFrame](t, e, subjects.PresenceRoomCreate, wire.CreateRoomRequest{By: "alice", Room: "den"})
	e.join("den", "bob", "c-bob", "edge-a")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, subjects.BucketRooms)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(wire.RoomGrant{Room: "den", User: "bob", Banned: true, Action: wire.ActionBan, By: "alice", At: time.Now().UnixMilli()})
	if _, err := kv.Create(ctx, subjects.GrantKey("den", names.UserToken("bob")), b); err != nil {
		t.Fatal(err)
	}
	if a := e.access(t, "den", "bob"); !a.Banned || !a.Member {
		t.Fatalf("half-done ban: %+v", a)
	}
	for range 2 {
		if err := e.moderate("den", "alice", "bob", wire.ActionBan); err != nil {
			t.Fatal(err)
		}
	}
	events.find(t, "bob", wire.ActionBan)
	if a := e.access(t, "den", "bob"); !a.Banned || a.Member || a.MayRead {
		t.Errorf("finished ban: %+v", a)
	}
	if got := audits(e.stored("den")); !slices.Equal(got, []string{"alice|bob was banned by alice"}) {
		t.Errorf("audit messages %q, want the ban once", got)
	}
	// Another moderator's ban of the banned changes nothing.
	mustRoom[wire.RoomGrant](t, e, subjects.PresenceRoomRole, wire.RoleRequest{By: "alice", Room: "den", User: "carol", Role: wire.RoleModerator})
	if err := e.moderate("den", "carol", "bob", wire.ActionBan); err != nil {
		t.Fatal(err)
	}
	if got := audits(e.stored("den")); len(got) != 2 {
		t.Errorf("audit messages %q, want the ban and carol's role only", got)
	}
}
