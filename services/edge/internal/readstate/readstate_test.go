package readstate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/pages"
	"github.com/hubbub-chat/hubbub/services/edge/internal/readstate"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// env is an embedded NATS with the stream and buckets provisioned.
type env struct {
	*natstest.Env
	t testing.TB
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{Env: natstest.Provisioned(t, provision.Config{}), t: t}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// post stores a message in room and returns its id.
func (e *env) post(room, user, body string) uint64 {
	e.t.Helper()
	p, _ := json.Marshal(wire.Post{Room: room, User: user, Body: body, Kind: wire.KindMessage, TS: 1, Mentions: wire.Mentions(body)})
	ack, err := e.JS.Publish(ctxT(e.t), subjects.Room(room), p)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// service starts a read state (an edge's) on its own connection.
func (e *env) service(cfg readstate.Config) *readstate.Service {
	e.t.Helper()
	nc := e.Connect()
	req := nreq.New(nc, 2*time.Second)
	log := slog.New(slog.DiscardHandler)
	l, err := pages.New(req, "", roomlog.Decoder{MaxBody: wire.DefaultMaxBody}, log)
	if err != nil {
		e.t.Fatal(err)
	}
	s := readstate.New(cfg, readstate.Deps{JS: l.JetStream(), Req: req, LastID: l.LastID, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, started) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("readstate run: %v", err)
		}
	})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		e.t.Fatal("readstate did not subscribe")
	}
	return s
}

// countHistory answers hubbub.history.unread the way history's contract
// says (wire.UnreadCount), counting from the CHAT stream itself: the
// messages after each mark by other users, and those mentioning the user.
func (e *env) countHistory() (stop func()) {
	e.t.Helper()
	st, err := e.JS.Stream(ctxT(e.t), subjects.Stream)
	if err != nil {
		e.t.Fatal(err)
	}
	sub, err := e.NC.Subscribe(subjects.HistoryUnread, func(m *nats.Msg) {
		var req wire.UnreadRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := st.Info(ctx)
		if err != nil {
			return
		}
		rep := wire.UnreadReply{Rooms: []wire.UnreadCount{}}
		for _, mark := range req.Rooms {
			c := wire.UnreadCount{Room: mark.Room, Read: mark.Read}
			for seq := mark.Read + 1; seq <= info.State.LastSeq; seq++ {
				raw, err := st.GetMsg(ctx, seq)
				if err != nil || raw.Subject != subjects.Room(mark.Room) {
					continue
				}
				var p wire.Post
				if json.Unmarshal(raw.Data, &p) != nil || p.Kind != wire.KindMessage || p.User == req.User {
					continue
				}
				c.Count++
				if slices.Contains(p.Mentions, req.User) {
					c.Mentions++
				}
			}
			rep.Rooms = append(rep.Rooms, c)
		}
		data, _ := json.Marshal(rep)
		_ = m.Respond(data)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.NC.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return func() { _ = sub.Unsubscribe(); _ = e.NC.Flush() }
}

// sink records the unread frames it is sent.
type sink struct {
	mu  sync.Mutex
	got []wire.Unread
}

func (s *sink) Send(f *frame.Frame) bool {
	var u wire.Unread
	if err := json.Unmarshal(f.JSON, &u); err != nil || u.Type != wire.TypeUnread {
		panic(fmt.Sprintf("not an unread frame: %s", f.JSON))
	}
	s.mu.Lock()
	s.got = append(s.got, u)
	s.mu.Unlock()
	return true
}

func (s *sink) frames() []wire.Unread {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// await waits for an unread frame matching ok.
func (s *sink) await(t *testing.T, what string, ok func(wire.Unread) bool) wire.Unread {
	t.Helper()
	var hit wire.Unread
	natstest.Until(t, 10*time.Second, what, func() bool {
		for _, u := range s.frames() {
			if ok(u) {
				hit = u
				return true
			}
		}
		return false
	})
	return hit
}

func (e *env) storedMark(user, room string) uint64 {
	e.t.Helper()
	kv, err := e.JS.KeyValue(ctxT(e.t), subjects.BucketReads)
	if err != nil {
		e.t.Fatal(err)
	}
	en, err := kv.Get(ctxT(e.t), subjects.ReadKey(names.UserToken(user), room))
	if err != nil {
		e.t.Fatalf("mark of %s in %s: %v", user, room, err)
	}
	var st wire.ReadState
	if err := json.Unmarshal(en.Value(), &st); err != nil {
		e.t.Fatal(err)
	}
	return st.Read
}

// Concurrent writers (a user's tabs on several edges) never move a mark
// back: every stored value is at least the one before it, and the mark
// ends at the highest id written. A mark beyond the room's newest event
// is capped there; a lower one changes nothing.
func TestMarkOnlyMovesForward(t *testing.T) {
	e := newEnv(t)
	var ids []uint64
	for i := range 40 {
		ids = append(ids, e.post("r", "bob", fmt.Sprint("m", i)))
	}
	newest := ids[len(ids)-1]
	a, b := e.service(readstate.Config{}), e.service(readstate.Config{})

	kv, err := e.JS.KeyValue(ctxT(t), subjects.BucketReads)
	if err != nil {
		t.Fatal(err)
	}
	key := subjects.ReadKey(names.UserToken("alice"), "r")
	w, err := kv.Watch(ctxT(t), key)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()

	var wg sync.WaitGroup
	for g := range 6 {
		svc := a
		if g%2 == 1 {
			svc = b
		}
		order := slices.Clone(ids)
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		wg.Go(func() {
			for _, id := range order {
				if _, err := svc.Mark(ctxT(t), "alice", "r", id); err != nil {
					t.Errorf("mark %d: %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	if got := e.storedMark("alice", "r"); got != newest {
		t.Fatalf("mark = %d, want %d (the highest written)", got, newest)
	}
	var seen []uint64
	deadline := time.After(5 * time.Second)
	for len(seen) == 0 || seen[len(seen)-1] != newest {
		select {
		case en := <-w.Updates():
			if en == nil {
				continue // the end of the initial values
			}
			var st wire.ReadState
			if err := json.Unmarshal(en.Value(), &st); err != nil {
				t.Fatal(err)
			}
			seen = append(seen, st.Read)
		case <-deadline:
			t.Fatalf("watch did not reach %d: %v", newest, seen)
		}
	}
	if !slices.IsSorted(seen) {
		t.Fatalf("the mark moved back: stored values %v", seen)
	}

	if moved, err := a.Mark(ctxT(t), "alice", "r", ids[3]); err != nil || moved {
		t.Fatalf("a lower mark: moved=%v err=%v, want a no-op", moved, err)
	}
	later := e.post("r", "bob", "later")
	if moved, err := a.Mark(ctxT(t), "alice", "r", later+100); err != nil || !moved {
		t.Fatalf("a mark beyond the newest: moved=%v err=%v", moved, err)
	}
	if got := e.storedMark("alice", "r"); got != later {
		t.Fatalf("mark beyond the newest stored as %d, want it capped at %d", got, later)
	}
	if _, err := a.Mark(ctxT(t), "alice", "Not A Room", 1); err == nil {
		t.Fatal("a bad room was marked")
	}
}

// A read on one edge reaches every connection of the user on every edge
// (the bucket's subject), and a mention does too; another user's
// connection gets nothing of it.
func TestPushReachesAllOfTheUsersConnections(t *testing.T) {
	e := newEnv(t)
	defer e.countHistory()()
	one, two := e.service(readstate.Config{Workers: 1}), e.service(readstate.Config{Workers: 1})
	var a1, a2, b1 sink
	defer one.Register("alice", &a1)()
	defer two.Register("alice", &a2)()
	defer two.Register("bob", &b1)()

	m1 := e.post("r", "bob", "hello")
	m2 := e.post("r", "bob", "hi @alice")
	m3 := e.post("r", "carol", "three")
	if _, err := one.Mark(ctxT(t), "alice", "r", m1); err != nil {
		t.Fatal(err)
	}
	for i, s := range []*sink{&a1, &a2} {
		u := s.await(t, fmt.Sprint("alice's connection ", i, " gets the read"), func(u wire.Unread) bool { return u.Read == m1 })
		if u.Room != "r" || u.Count != 2 || u.Mentions != 1 {
			t.Fatalf("connection %d: %+v, want 2 unread with 1 mention after %d", i, u, m1)
		}
	}
	// A mention event (history's, once it stored the message) pushes too.
	ev, _ := json.Marshal(wire.MentionEvent{Room: "r", ID: m2, User: "alice", By: "bob"})
	before := len(a1.frames())
	if err := e.NC.Publish(subjects.Mention(names.UserToken("alice")), ev); err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 10*time.Second, "the mention pushes an unread", func() bool { return len(a1.frames()) > before })
	if _, err := two.Mark(ctxT(t), "alice", "r", m3); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*sink{&a1, &a2} {
		s.await(t, "alice reads everything", func(u wire.Unread) bool { return u.Read == m3 && u.Count == 0 && u.Mentions == 0 })
	}
	// Bob's own read comes after alice's on the same single worker: had
	// any of hers reached him, it would be here first.
	if _, err := one.Mark(ctxT(t), "bob", "r", m1); err != nil {
		t.Fatal(err)
	}
	b1.await(t, "bob's read", func(u wire.Unread) bool { return u.Read == m1 })
	for _, u := range b1.frames() {
		if u.Read != m1 {
			t.Fatalf("bob got someone else's unread: %+v (all: %+v)", u, b1.frames())
		}
	}
}

// Released connections leave nothing behind and get nothing more.
func TestRegisterLeavesNoTrace(t *testing.T) {
	e := newEnv(t)
	defer e.countHistory()()
	s := e.service(readstate.Config{Workers: 1})
	var releases []func()
	sinks := make([]*sink, 30)
	for i := range sinks {
		sinks[i] = &sink{}
		releases = append(releases, s.Register(fmt.Sprint("user", i%7), sinks[i]))
	}
	if s.Users() != 7 {
		t.Fatalf("%d users registered, want 7", s.Users())
	}
	var kept sink
	defer s.Register("user0", &kept)()
	for _, r := range releases {
		r()
		r() // idempotent
	}
	if s.Users() != 1 {
		t.Fatalf("%d users left after release, want 1 (the one still connected)", s.Users())
	}
	id := e.post("r", "bob", "x")
	if _, err := s.Mark(ctxT(t), "user0", "r", id); err != nil {
		t.Fatal(err)
	}
	kept.await(t, "the connection still open gets the unread", func(u wire.Unread) bool { return u.Read == id })
	if n := len(sinks[0].frames()); n != 0 {
		t.Fatalf("a released connection got %d frames", n)
	}
}

// The lobby's rule: a marked room counts after its mark, a member's room
// without a mark counts every message, any other room does not count.
func TestCountsRule(t *testing.T) {
	e := newEnv(t)
	defer e.countHistory()()
	s := e.service(readstate.Config{})
	a1 := e.post("a", "bob", "a1")
	e.post("a", "bob", "a2 @alice")
	e.post("b", "bob", "b1")
	e.post("b", "alice", "b2 mine")
	e.post("c", "bob", "c1")
	if _, err := s.Mark(ctxT(t), "alice", "a", a1); err != nil {
		t.Fatal(err)
	}
	members, err := e.JS.KeyValue(ctxT(t), subjects.BucketMembers)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := json.Marshal(wire.Membership{Room: "b", User: "alice", Since: 1})
	if _, err := members.Put(ctxT(t), subjects.MemberKey("b", names.UserToken("alice")), ms); err != nil {
		t.Fatal(err)
	}
	got, err := s.Counts(ctxT(t), "alice", []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]wire.UnreadCount{
		"a": {Room: "a", Read: a1, Count: 1, Mentions: 1},
		"b": {Room: "b", Read: 0, Count: 1},
	}
	if len(got) != len(want) || got["a"] != want["a"] || got["b"] != want["b"] {
		t.Fatalf("counts = %+v, want %+v", got, want)
	}
}

// A join is followed by the room's unread, to the joining connection;
// a first join starts the mark at the room's newest event, so what came
// before counts as read; the mark survives for the next join.
func TestJoinedStartsTheMarkAndPushes(t *testing.T) {
	e := newEnv(t)
	defer e.countHistory()()
	s := e.service(readstate.Config{})
	e.post("r", "bob", "old")
	last := e.post("r", "bob", "older @alice")
	var tab sink
	s.Joined("alice", "r", &tab)
	u := tab.await(t, "the join's unread", func(wire.Unread) bool { return true })
	if u.Read != last || u.Count != 0 || u.Mentions != 0 {
		t.Fatalf("first join: %+v, want read %d and nothing unread", u, last)
	}
	if got := e.storedMark("alice", "r"); got != last {
		t.Fatalf("first join stored mark %d, want %d", got, last)
	}
	// An empty room's first join stores mark 0: the room counts from now.
	var empty sink
	s.Joined("alice", "empty", &empty)
	if u := empty.await(t, "the empty room's unread", func(wire.Unread) bool { return true }); u.Read != 0 || u.Count != 0 {
		t.Fatalf("empty room: %+v", u)
	}
	if got := e.storedMark("alice", "empty"); got != 0 {
		t.Fatalf("empty room's mark %d, want 0", got)
	}
	e.post("r", "bob", "new @alice")
	var again sink
	s.Joined("alice", "r", &again)
	u = again.await(t, "the next join's unread", func(wire.Unread) bool { return true })
	if u.Read != last || u.Count != 1 || u.Mentions != 1 {
		t.Fatalf("next join: %+v, want read %d, 1 unread, 1 mention", u, last)
	}
}

// With history down, marks are still stored and pushes are skipped
// without holding anything up; pushes resume when history is back.
func TestHistoryDownSkipsPushes(t *testing.T) {
	e := newEnv(t)
	s := e.service(readstate.Config{Workers: 1})
	var tab sink
	defer s.Register("alice", &tab)()
	m1 := e.post("r", "bob", "one")
	m2 := e.post("r", "bob", "two")
	if _, err := s.Mark(ctxT(t), "alice", "r", m1); err != nil {
		t.Fatalf("mark with history down: %v", err)
	}
	if got := e.storedMark("alice", "r"); got != m1 {
		t.Fatalf("mark = %d, want %d", got, m1)
	}
	if _, err := s.Counts(ctxT(t), "alice", []string{"r"}); err == nil {
		t.Fatal("counts without history answered")
	}
	defer e.countHistory()()
	if _, err := s.Mark(ctxT(t), "alice", "r", m2); err != nil {
		t.Fatal(err)
	}
	tab.await(t, "the push after history is back", func(u wire.Unread) bool { return u.Read == m2 })
	for _, u := range tab.frames() {
		if u.Read == m1 {
			t.Fatalf("a push was made without history: %+v", u)
		}
	}
}

var _ readstate.Sink = (*sink)(nil)
