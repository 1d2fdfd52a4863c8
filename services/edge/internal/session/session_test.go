package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session/sessiontest"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

type fixture struct {
	*sessiontest.Fakes
	env  *session.Env
	sink *sessiontest.Sink
	sess *session.Session
}

// open starts a session for alice (rooms: the token's rooms, nil: all)
// after tweak changed the config.
func open(t *testing.T, rooms []string, tweak func(*session.Config)) *fixture {
	t.Helper()
	fk := sessiontest.New()
	cfg := session.Config{EdgeID: "e1"}
	if tweak != nil {
		tweak(&cfg)
	}
	env := fk.Env(cfg)
	sink := &sessiontest.Sink{}
	sess, err := env.Open(sink, auth.Identity{User: "alice", Rooms: rooms}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sess.Start()
	return &fixture{Fakes: fk, env: env, sink: sink, sess: sess}
}

func (f *fixture) do(frames ...string) {
	for _, fr := range frames {
		f.sess.Handle(context.Background(), []byte(fr))
	}
}

// lastError is the code of the newest error frame ("" if none).
func (f *fixture) lastError(t *testing.T) wire.ErrorFrame {
	t.Helper()
	fs := f.sink.Frames()
	for i := len(fs) - 1; i >= 0; i-- {
		if fs[i].Type == wire.TypeError {
			return sessiontest.Error(t, fs[i])
		}
	}
	return wire.ErrorFrame{}
}

func TestWelcomeFirst(t *testing.T) {
	f := open(t, nil, nil)
	fs := f.sink.Frames()
	var w wire.Welcome
	if len(fs) != 1 || json.Unmarshal(fs[0].JSON, &w) != nil || w.User != "alice" || w.Protocol != wire.ProtocolVersion {
		t.Fatalf("frames after Start: %v", fs)
	}
	if f.Obs.Count("opened") != 1 {
		t.Fatalf("opened counted %d times", f.Obs.Count("opened"))
	}
}

// Every refused frame gets an error frame with the right code (and the
// cid and room echoed when valid); the session goes on.
func TestRefusedFrames(t *testing.T) {
	tests := []struct {
		name  string
		rooms []string
		setup []string
		frame string
		code  string
		cid   string
		room  string
	}{
		{"not json", nil, nil, `hello`, wire.CodeBadJSON, "", ""},
		{"json null", nil, nil, `null`, wire.CodeBadJSON, "", ""},
		{"no type", nil, nil, `{"room":"a"}`, wire.CodeUnknownType, "", "a"},
		{"unknown type", nil, nil, `{"type":"dance","room":"a"}`, wire.CodeUnknownType, "", "a"},
		{"bad room", nil, nil, `{"type":"join","room":"Not A Room!"}`, wire.CodeInvalidRoom, "", ""},
		{"empty body", nil, []string{`{"type":"join","room":"a"}`}, `{"type":"message","room":"a","body":"  ","cid":"c1"}`, wire.CodeInvalidBody, "c1", "a"},
		{"bad cid", nil, []string{`{"type":"join","room":"a"}`}, `{"type":"message","room":"a","body":"hi","cid":"a b"}`, wire.CodeInvalidCID, "", "a"},
		{"message unjoined", nil, nil, `{"type":"message","room":"a","body":"hi","cid":"c1"}`, wire.CodeNotJoined, "c1", "a"},
		{"typing unjoined", nil, nil, `{"type":"typing","room":"a","state":"on"}`, wire.CodeNotJoined, "", "a"},
		{"bad typing state", nil, []string{`{"type":"join","room":"a"}`}, `{"type":"typing","room":"a","state":"maybe"}`, wire.CodeInvalidState, "", "a"},
		{"history unjoined", nil, nil, `{"type":"history","room":"a","before":9}`, wire.CodeNotJoined, "", "a"},
		{"history limit", nil, []string{`{"type":"join","room":"a"}`}, `{"type":"history","room":"a","limit":500}`, wire.CodeInvalidLimit, "", "a"},
		{"leave unjoined", nil, nil, `{"type":"leave","room":"a"}`, wire.CodeNotJoined, "", "a"},
		{"join forbidden", []string{"b"}, nil, `{"type":"join","room":"a"}`, wire.CodeForbidden, "", "a"},
		{"history forbidden", []string{"b"}, nil, `{"type":"history","room":"a"}`, wire.CodeForbidden, "", "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := open(t, tt.rooms, nil)
			f.do(tt.setup...)
			f.do(tt.frame)
			ef := f.lastError(t)
			if ef.Code != tt.code || ef.CID != tt.cid || ef.Room != tt.room {
				t.Fatalf("error %+v, want code %s cid %q room %q", ef, tt.code, tt.cid, tt.room)
			}
			if f.Obs.Count("error:"+tt.code) != 1 {
				t.Fatalf("error %s counted %d times", tt.code, f.Obs.Count("error:"+tt.code))
			}
			if f.sink.CloseCode() != 0 {
				t.Fatal("a refused frame closed the connection")
			}
		})
	}
}

func TestBinaryRefused(t *testing.T) {
	f := open(t, nil, nil)
	f.sess.Binary()
	if ef := f.lastError(t); ef.Code != wire.CodeBinaryFrame {
		t.Fatalf("error %+v", ef)
	}
	if f.Obs.Count("in:binary") != 1 {
		t.Fatal("binary frame not counted")
	}
}

// A join goes to the hub with the session's sink and user, then to
// presence; the roster frame follows presence's confirmation.
func TestJoinRegistersPresenceThenRoster(t *testing.T) {
	f := open(t, nil, nil)
	f.do(`{"type":"join","room":"#General","since":7}`)
	joins := f.Hub.Joins()
	if len(joins) != 1 || joins[0].Room != "general" || joins[0].User != "alice" || joins[0].Since == nil || *joins[0].Since != 7 || joins[0].Sink != session.Sink(f.sink) {
		t.Fatalf("hub joins %+v", joins)
	}
	if f.Presence.In() != 1 || f.sink.Count(wire.TypeRoster) != 0 {
		t.Fatalf("presence %v, roster frames %d", f.Presence.Events(), f.sink.Count(wire.TypeRoster))
	}
	f.Presence.SetRoster(wire.RosterReply{Users: []string{"alice", "bob"}, Online: 2, Next: "bob"})
	f.Presence.Confirm(context.Background())
	var r wire.Roster
	if err := json.Unmarshal(f.sink.Await(t, wire.TypeRoster, 0).JSON, &r); err != nil || r.Room != "general" || r.Online != 2 || !r.More || len(r.Users) != 2 {
		t.Fatalf("roster %+v (%v)", r, err)
	}
}

func TestJoinLimits(t *testing.T) {
	t.Run("room cap", func(t *testing.T) {
		f := open(t, nil, func(c *session.Config) { c.MaxRooms = 2 })
		f.do(`{"type":"join","room":"a"}`, `{"type":"join","room":"b"}`, `{"type":"join","room":"a"}`)
		if f.lastError(t).Code != "" {
			t.Fatalf("a re-join at the cap was refused: %+v", f.lastError(t))
		}
		f.do(`{"type":"join","room":"c"}`)
		if ef := f.lastError(t); ef.Code != wire.CodeTooManyRooms {
			t.Fatalf("third room: %+v", ef)
		}
		if f.Hub.Live() != 2 {
			t.Fatalf("%d live members, want 2 (the re-join replaced its membership)", f.Hub.Live())
		}
	})
	t.Run("join rate", func(t *testing.T) {
		f := open(t, nil, func(c *session.Config) { c.JoinRate, c.JoinBurst = 0.001, 1 })
		f.do(`{"type":"join","room":"a"}`, `{"type":"join","room":"b"}`)
		if ef := f.lastError(t); ef.Code != wire.CodeRateLimited || len(f.Hub.Joins()) != 1 {
			t.Fatalf("second join: %+v, %d hub joins", ef, len(f.Hub.Joins()))
		}
	})
	t.Run("hub down", func(t *testing.T) {
		f := open(t, nil, nil)
		f.Hub.FailJoins(nreq.ErrUnavailable)
		f.do(`{"type":"join","room":"a"}`)
		if ef := f.lastError(t); ef.Code != wire.CodeUnavailable || f.Presence.In() != 0 {
			t.Fatalf("join with the hub down: %+v, presence %v", ef, f.Presence.Events())
		}
	})
	t.Run("failed re-join leaves presence", func(t *testing.T) {
		f := open(t, nil, nil)
		f.do(`{"type":"join","room":"a"}`)
		f.Hub.FailJoins(nreq.ErrUnavailable)
		f.do(`{"type":"join","room":"a"}`)
		if f.Presence.In() != 0 || f.Hub.Live() != 0 {
			t.Fatalf("after a failed re-join: presence %v, %d live members", f.Presence.Events(), f.Hub.Live())
		}
	})
}

// Acks keep message order and carry the stream id; the pending bound
// and the edge's bound refuse with the codes the protocol documents.
func TestMessages(t *testing.T) {
	f := open(t, nil, func(c *session.Config) { c.MaxPendingPosts = 2 })
	f.do(`{"type":"join","room":"a"}`)
	f.do(`{"type":"message","room":"a","body":" hi ","cid":"c1"}`, `{"type":"message","room":"a","body":"two","cid":"c2"}`)
	f.do(`{"type":"message","room":"a","body":"three","cid":"c3"}`)
	if ef := f.lastError(t); ef.Code != wire.CodeRateLimited || ef.CID != "c3" {
		t.Fatalf("third pending message: %+v", ef)
	}
	posts := f.Publisher.Posts()
	if len(posts) != 2 || posts[0].Body != "hi" || posts[0].User != "alice" || posts[0].Room != "a" {
		t.Fatalf("posts %+v", posts)
	}
	f.Publisher.Complete(41)
	f.Publisher.Fail(nreq.ErrUnavailable)
	var ack wire.Ack
	if err := json.Unmarshal(f.sink.Await(t, wire.TypeAck, 0).JSON, &ack); err != nil || ack.CID != "c1" || ack.ID != 41 {
		t.Fatalf("ack %+v (%v)", ack, err)
	}
	if ef := f.lastError(t); ef.Code != wire.CodeUnavailable || ef.CID != "c2" {
		t.Fatalf("failed publish: %+v", ef)
	}
	if f.Obs.Count("published") != 1 {
		t.Fatalf("published %d", f.Obs.Count("published"))
	}
	// The slots are free again.
	f.do(`{"type":"message","room":"a","body":"four","cid":"c4"}`)
	if n := len(f.Publisher.Posts()); n != 3 {
		t.Fatalf("%d posts after the outcomes, want 3", n)
	}
	// The edge's own bound.
	f.Publisher.Refuse(publish.ErrBusy)
	f.do(`{"type":"message","room":"a","body":"five","cid":"c5"}`)
	if ef := f.lastError(t); ef.Code != wire.CodeUnavailable || ef.CID != "c5" {
		t.Fatalf("edge busy: %+v", ef)
	}
}

func TestMessageRate(t *testing.T) {
	f := open(t, nil, func(c *session.Config) { c.MessageRate, c.MessageBurst = 0.001, 1 })
	f.Publisher.AutoAck()
	f.do(`{"type":"join","room":"a"}`, `{"type":"message","room":"a","body":"x","cid":"c1"}`, `{"type":"message","room":"a","body":"y","cid":"c2"}`)
	if ef := f.lastError(t); ef.Code != wire.CodeRateLimited || ef.CID != "c2" {
		t.Fatalf("over the rate: %+v", ef)
	}
	f.sink.Await(t, wire.TypeAck, 0)
}

func TestTyping(t *testing.T) {
	f := open(t, nil, func(c *session.Config) { c.TypingRate, c.TypingBurst = 0.001, 1 })
	f.Publisher.AutoAck()
	f.do(`{"type":"join","room":"a"}`, `{"type":"typing","room":"a","state":"on"}`)
	f.do(`{"type":"typing","room":"a","state":"on"}`) // a renewal over the limit: dropped
	if ef := f.lastError(t); ef.Code != "" {
		t.Fatalf("renewal answered %+v", ef)
	}
	f.do(`{"type":"typing","room":"a","state":"off"}`)
	if ef := f.lastError(t); ef.Code != wire.CodeRateLimited {
		t.Fatalf("typing off over the limit: %+v", ef)
	}
	// A message ends typing.
	f.do(`{"type":"message","room":"a","body":"x","cid":"c1"}`)
	evs := f.Typing.Events()
	if len(evs) != 2 || evs[0].State != wire.TypingOn || evs[1].State != wire.TypingOff || evs[1].Conn != f.sess.ID() {
		t.Fatalf("typing events %+v", evs)
	}
}

func TestHistory(t *testing.T) {
	f := open(t, nil, nil)
	f.do(`{"type":"join","room":"a"}`)
	f.Pages.Set(wire.Page{Items: []wire.Message{{ID: 3, Room: "a"}}, HasMore: true, Last: 5}, nil)
	f.do(`{"type":"history","room":"a","before":9}`)
	var h wire.History
	if err := json.Unmarshal(f.sink.Await(t, wire.TypeHistory, 1).JSON, &h); err != nil || len(h.Items) != 1 || !h.HasMore || !h.Recovered || h.Last != 5 {
		t.Fatalf("history %+v (%v)", h, err)
	}
	if reqs := f.Pages.Requests(); len(reqs) != 1 || reqs[0].Before != 9 || reqs[0].Limit != wire.DefaultPage {
		t.Fatalf("requests %+v", reqs)
	}
	f.Pages.Set(wire.Page{}, nreq.ErrUnavailable)
	f.do(`{"type":"history","room":"a","before":3}`)
	if ef := f.lastError(t); ef.Code != wire.CodeUnavailable {
		t.Fatalf("history down: %+v", ef)
	}
}

func TestLeave(t *testing.T) {
	f := open(t, nil, nil)
	f.do(`{"type":"join","room":"a"}`, `{"type":"typing","room":"a","state":"on"}`, `{"type":"leave","room":"a"}`)
	if f.Hub.Live() != 0 || f.Presence.In() != 0 {
		t.Fatalf("after leave: %d members, presence %v", f.Hub.Live(), f.Presence.Events())
	}
	if evs := f.Typing.Events(); len(evs) != 2 || evs[1].State != wire.TypingOff {
		t.Fatalf("typing %+v", evs)
	}
	f.do(`{"type":"message","room":"a","body":"x","cid":"c1"}`)
	if ef := f.lastError(t); ef.Code != wire.CodeNotJoined {
		t.Fatalf("message after leave: %+v", ef)
	}
}

// Guarantee 8 at the session: End releases memberships, typing,
// presence, the user's connection and the admission ticket, once.
func TestEndReleasesEverything(t *testing.T) {
	fk := sessiontest.New()
	env := fk.Env(session.Config{})
	env.Users = userlimit.New(userlimit.Config{MaxConns: 1})
	gate := admit.New(admit.Config{MaxConns: 10})
	ticket, err := gate.Acquire(httptest.NewRequest("GET", "/ws", nil))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := env.Open(&sessiontest.Sink{}, auth.Identity{User: "alice"}, ticket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Open(&sessiontest.Sink{}, auth.Identity{User: "alice"}, nil); !errors.Is(err, session.ErrTooManyConnections) {
		t.Fatalf("second connection of a user at MaxConns 1: %v", err)
	}
	sess.Start()
	for _, fr := range []string{`{"type":"join","room":"a"}`, `{"type":"join","room":"b"}`, `{"type":"typing","room":"b","state":"on"}`} {
		sess.Handle(context.Background(), []byte(fr))
	}
	sess.End("client")
	sess.End("client")
	if fk.Hub.Live() != 0 || fk.Presence.In() != 0 || gate.Held() != 0 || env.Users.Users() != 0 {
		t.Fatalf("after End: members %d, presence %v, tickets %d, users %d", fk.Hub.Live(), fk.Presence.Events(), gate.Held(), env.Users.Users())
	}
	if evs := fk.Typing.Events(); len(evs) != 2 || evs[1].State != wire.TypingOff || evs[1].Room != "b" {
		t.Fatalf("typing %+v", evs)
	}
	if fk.Obs.Count("closed:client") != 1 {
		t.Fatalf("closed counted %d times", fk.Obs.Count("closed:client"))
	}
	if _, err := env.Open(&sessiontest.Sink{}, auth.Identity{User: "alice"}, nil); err != nil {
		t.Fatalf("the user's connection was not released: %v", err)
	}
}

// A refused Open releases the ticket it was given; a session never
// served (End before Start) is not counted as a connection.
func TestOpenRefusedAndUnserved(t *testing.T) {
	fk := sessiontest.New()
	env := fk.Env(session.Config{})
	env.Users = userlimit.New(userlimit.Config{MaxConns: 1})
	gate := admit.New(admit.Config{MaxConns: 10})
	first, _ := gate.Acquire(httptest.NewRequest("GET", "/ws", nil))
	sess, err := env.Open(&sessiontest.Sink{}, auth.Identity{User: "bob"}, first)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := gate.Acquire(httptest.NewRequest("GET", "/ws", nil))
	if _, err := env.Open(&sessiontest.Sink{}, auth.Identity{User: "bob"}, second); !errors.Is(err, session.ErrTooManyConnections) {
		t.Fatalf("Open: %v", err)
	}
	if gate.Held() != 1 {
		t.Fatalf("%d tickets held after a refused Open, want 1", gate.Held())
	}
	sess.End("")
	if gate.Held() != 0 || fk.Obs.Count("opened") != 0 || fk.Obs.Count("closed:") != 0 {
		t.Fatalf("unserved session: tickets %d, opened %d, closed %d", gate.Held(), fk.Obs.Count("opened"), fk.Obs.Count("closed:"))
	}
}

func TestCloseReachesSink(t *testing.T) {
	f := open(t, nil, nil)
	f.sess.Close(1012, "restart")
	if f.sink.CloseCode() != 1012 {
		t.Fatalf("sink close code %d", f.sink.CloseCode())
	}
}

// JoinRoom is the join of a transport without inbound frames: refusals
// come back as *wire.Error, success counts the connection as served.
func TestJoinRoom(t *testing.T) {
	tests := []struct {
		name  string
		rooms []string
		room  string
		down  bool
		code  string
	}{
		{"ok", nil, "General", false, ""},
		{"forbidden", []string{"other"}, "general", false, wire.CodeForbidden},
		{"invalid", nil, "no such room!", false, wire.CodeInvalidRoom},
		{"unavailable", nil, "general", true, wire.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fk := sessiontest.New()
			env := fk.Env(session.Config{})
			if tt.down {
				fk.Hub.FailJoins(nreq.ErrUnavailable)
			}
			sink := &sessiontest.Sink{}
			sess, err := env.Open(sink, auth.Identity{User: "sse", Rooms: tt.rooms}, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = sess.JoinRoom(context.Background(), tt.room, nil)
			var we *wire.Error
			switch {
			case tt.code == "" && err != nil:
				t.Fatalf("JoinRoom: %v", err)
			case tt.code != "" && (!errors.As(err, &we) || we.Code != tt.code):
				t.Fatalf("JoinRoom: %v, want %s", err, tt.code)
			}
			opened := 0
			if tt.code == "" {
				opened = 1
			}
			if fk.Obs.Count("opened") != opened || fk.Presence.In() != opened {
				t.Fatalf("opened %d, presence %v", fk.Obs.Count("opened"), fk.Presence.Events())
			}
			if sink.Count(wire.TypeWelcome) != 0 {
				t.Fatal("JoinRoom sent a welcome frame")
			}
			sess.End("client")
			if fk.Hub.Live() != 0 || fk.Presence.In() != 0 || fk.Obs.Count("closed:client") != opened {
				t.Fatalf("after End: members %d, presence %v", fk.Hub.Live(), fk.Presence.Events())
			}
		})
	}
}

// Post takes a message frame's path: its validation, room rule, user
// budget and bounded publish.
func TestPost(t *testing.T) {
	tests := []struct {
		name       string
		rooms      []string
		room, body string
		refuse     error
		fail       error
		code       string
	}{
		{"stored", nil, "General", " hi ", nil, nil, ""},
		{"empty body", nil, "general", "   ", nil, nil, wire.CodeInvalidBody},
		{"NUL in body", nil, "general", "a\x00b", nil, nil, wire.CodeInvalidBody},
		{"bad room", nil, "Bad.Room", "x", nil, nil, wire.CodeInvalidRoom},
		{"forbidden", []string{"other"}, "general", "x", nil, nil, wire.CodeForbidden},
		{"edge busy", nil, "general", "x", publish.ErrBusy, nil, wire.CodeUnavailable},
		{"no pub ack", nil, "general", "x", nil, nreq.ErrUnavailable, wire.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fk := sessiontest.New()
			env := fk.Env(session.Config{})
			fk.Publisher.Refuse(tt.refuse)
			done := make(chan error, 1)
			var res publish.PostResult
			go func() {
				var err error
				res, err = env.Post(context.Background(), auth.Identity{User: "bob", Rooms: tt.rooms}, tt.room, tt.body, "p1")
				done <- err
			}()
			if tt.code == "" || tt.fail != nil {
				sessiontest.Eventually(t, "the post to reach the publisher", func() bool { return fk.Publisher.Waiting() == 1 })
				if tt.fail != nil {
					fk.Publisher.Fail(tt.fail)
				} else {
					fk.Publisher.Complete(99)
				}
			}
			err := <-done
			var we *wire.Error
			switch {
			case tt.code == "":
				posts := fk.Publisher.Posts()
				if err != nil || res.ID != 99 || len(posts) != 1 || posts[0].Room != "general" || posts[0].Body != "hi" || posts[0].CID != "p1" {
					t.Fatalf("Post: %+v %v, posts %+v", res, err, posts)
				}
			case !errors.As(err, &we) || we.Code != tt.code:
				t.Fatalf("Post: %v, want %s", err, tt.code)
			}
		})
	}
}

// Posts draw on the user's budget, shared with the user's connections.
func TestPostUserBudget(t *testing.T) {
	fk := sessiontest.New()
	env := fk.Env(session.Config{})
	env.Users = userlimit.New(userlimit.Config{Rates: userlimit.Rates{MessageRate: 0.001, MessageBurst: 2}})
	fk.Publisher.AutoAck()
	id := auth.Identity{User: "bob"}
	var codes []string
	for range 3 {
		_, err := env.Post(context.Background(), id, "general", "x", "c")
		var we *wire.Error
		switch {
		case err == nil:
			codes = append(codes, "ok")
		case errors.As(err, &we):
			codes = append(codes, we.Code)
		default:
			t.Fatal(err)
		}
	}
	if !slices.Equal(codes, []string{"ok", "ok", wire.CodeRateLimited}) {
		t.Fatalf("posts: %v", codes)
	}
	// The same budget on a connection of the user.
	sink := &sessiontest.Sink{}
	sess, err := env.Open(sink, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	sess.Handle(context.Background(), []byte(`{"type":"join","room":"general"}`))
	sess.Handle(context.Background(), []byte(`{"type":"message","room":"general","body":"x","cid":"w1"}`))
	if ef := sessiontest.Error(t, sink.Await(t, wire.TypeError, 0)); ef.Code != wire.CodeRateLimited {
		t.Fatalf("WebSocket message after the post budget: %+v", ef)
	}
}

func TestPostGivesUpWithContext(t *testing.T) {
	fk := sessiontest.New()
	env := fk.Env(session.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := env.Post(ctx, auth.Identity{User: "bob"}, "general", "x", "c")
		done <- err
	}()
	sessiontest.Eventually(t, "the post to wait", func() bool { return fk.Publisher.Waiting() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Post after cancel: %v", err)
	}
	fk.Publisher.Complete(1) // the late outcome goes nowhere, without blocking
}

// The writes' rules, decided on the target the room log answers: each
// refusal is an error frame with the cid, each accepted write becomes the
// post of its kind; changes draw on the message budget.
func TestWrites(t *testing.T) {
	on := true
	tests := []struct {
		name  string
		frame string
		code  string
		post  wire.Post // the post published when code is ""
	}{
		{"message with mentions", `{"type":"message","room":"a","body":"hi @bob and @carol.","cid":"c"}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindMessage, Body: "hi @bob and @carol.", CID: "c", Mentions: []string{"bob", "carol"}}},
		{"reply", `{"type":"message","room":"a","body":"yes","cid":"c","reply_to":2}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindMessage, Body: "yes", CID: "c", ReplyTo: 2}},
		{"reply to a system message", `{"type":"message","room":"a","body":"yes","cid":"c","reply_to":4}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindMessage, Body: "yes", CID: "c", ReplyTo: 4}},
		{"reply to another room's", `{"type":"message","room":"a","body":"yes","cid":"c","reply_to":6}`, wire.CodeNotFound, wire.Post{}},
		{"edit", `{"type":"edit","room":"a","id":1,"body":" fixed ","cid":"c"}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindEdit, Body: "fixed", CID: "c", Target: 1}},
		{"edit with mentions", `{"type":"edit","room":"a","id":1,"body":"cc @dan","cid":"c"}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindEdit, Body: "cc @dan", CID: "c", Target: 1, Mentions: []string{"dan"}}},
		{"edit of bob's", `{"type":"edit","room":"a","id":2,"body":"x","cid":"c"}`, wire.CodeForbidden, wire.Post{}},
		{"edit of a system message", `{"type":"edit","room":"a","id":4,"body":"x","cid":"c"}`, wire.CodeForbidden, wire.Post{}},
		{"edit of a tombstone", `{"type":"edit","room":"a","id":3,"body":"x","cid":"c"}`, wire.CodeNotFound, wire.Post{}},
		{"edit of nothing", `{"type":"edit","room":"a","id":99,"body":"x","cid":"c"}`, wire.CodeNotFound, wire.Post{}},
		{"edit without id", `{"type":"edit","room":"a","body":"x","cid":"c"}`, wire.CodeInvalidID, wire.Post{}},
		{"delete", `{"type":"delete","room":"a","id":1,"cid":"c"}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindDelete, CID: "c", Target: 1}},
		{"delete of bob's", `{"type":"delete","room":"a","id":2,"cid":"c"}`, wire.CodeForbidden, wire.Post{}},
		{"delete of a system message", `{"type":"delete","room":"a","id":4,"cid":"c"}`, wire.CodeForbidden, wire.Post{}},
		{"delete of a tombstone (a resent delete)", `{"type":"delete","room":"a","id":3,"cid":"c"}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindDelete, CID: "c", Target: 3}},
		{"delete of nothing", `{"type":"delete","room":"a","id":99,"cid":"c"}`, wire.CodeNotFound, wire.Post{}},
		{"react", `{"type":"react","room":"a","id":2,"emoji":"👍","on":true,"cid":"c"}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindReaction, CID: "c", Target: 2, Emoji: "👍", On: &on}},
		{"react on a system message", `{"type":"react","room":"a","id":4,"emoji":"👍","on":true,"cid":"c"}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindReaction, CID: "c", Target: 4, Emoji: "👍", On: &on}},
		{"react on a tombstone", `{"type":"react","room":"a","id":3,"emoji":"👍","on":true,"cid":"c"}`, wire.CodeNotFound, wire.Post{}},
		{"a new emoji past the bound", `{"type":"react","room":"a","id":5,"emoji":"👍","on":true,"cid":"c"}`, wire.CodeInvalidEmoji, wire.Post{}},
		{"a known emoji at the bound", `{"type":"react","room":"a","id":5,"emoji":"😀","on":true,"cid":"c"}`, "",
			wire.Post{Room: "a", User: "alice", Kind: wire.KindReaction, CID: "c", Target: 5, Emoji: "😀", On: &on}},
		{"react without on", `{"type":"react","room":"a","id":2,"emoji":"👍","cid":"c"}`, wire.CodeInvalidState, wire.Post{}},
		{"react with text", `{"type":"react","room":"a","id":2,"emoji":"ok","on":true,"cid":"c"}`, wire.CodeInvalidEmoji, wire.Post{}},
		{"change unjoined", `{"type":"delete","room":"b","id":1,"cid":"c"}`, wire.CodeNotJoined, wire.Post{}},
	}
	full := make([]wire.Reaction, wire.MaxReactionKinds)
	for i := range full {
		full[i] = wire.Reaction{Emoji: string(rune(0x1F600 + i)), Count: 1, Users: []string{"bob"}}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := open(t, nil, nil)
			f.Publisher.AutoAck()
			for _, m := range []wire.Message{
				{ID: 1, Room: "a", User: "alice", Kind: wire.KindMessage, Body: "mine"},
				{ID: 2, Room: "a", User: "bob", Kind: wire.KindMessage, Body: "bob's"},
				{ID: 3, Room: "a", User: "alice", Kind: wire.KindMessage, Deleted: true},
				{ID: 4, Room: "a", User: "alice", Kind: wire.KindSystem, Body: "alice joined"},
				{ID: 5, Room: "a", User: "bob", Kind: wire.KindMessage, Body: "popular", Reactions: full},
				{ID: 6, Room: "other", User: "bob", Kind: wire.KindMessage, Body: "elsewhere"},
			} {
				f.Pages.Put(m)
			}
			f.do(`{"type":"join","room":"a"}`, tt.frame)
			if tt.code != "" {
				if ef := f.lastError(t); ef.Code != tt.code || ef.CID != "c" {
					t.Fatalf("error %+v, want %s with cid c", ef, tt.code)
				}
				if n := len(f.Publisher.Posts()); n != 0 {
					t.Fatalf("%d posts published for a refused write", n)
				}
				return
			}
			var a wire.Ack
			if err := json.Unmarshal(f.sink.Await(t, wire.TypeAck, 0).JSON, &a); err != nil || a.CID != "c" || a.ID == 0 {
				t.Fatalf("ack %+v (%v)", a, err)
			}
			posts := f.Publisher.Posts()
			if len(posts) != 1 || !reflect.DeepEqual(posts[0].Post, tt.post) {
				t.Fatalf("posts %+v, want %+v", posts, tt.post)
			}
		})
	}
}

// A change draws on the message budget; a lookup that fails is
// unavailable; Env.Write serves every write type and refuses others.
func TestWriteBudgetsAndFailures(t *testing.T) {
	f := open(t, nil, func(c *session.Config) { c.MessageRate, c.MessageBurst = 0.001, 1 })
	f.Publisher.AutoAck()
	f.Pages.Put(wire.Message{ID: 1, Room: "a", User: "alice", Kind: wire.KindMessage, Body: "x"})
	f.do(`{"type":"join","room":"a"}`, `{"type":"message","room":"a","body":"x","cid":"c1"}`, `{"type":"edit","room":"a","id":1,"body":"y","cid":"c2"}`)
	if ef := f.lastError(t); ef.Code != wire.CodeRateLimited || ef.CID != "c2" {
		t.Fatalf("an edit over the budget: %+v", ef)
	}

	g := open(t, nil, nil)
	g.Pages.Set(wire.Page{}, nreq.ErrUnavailable)
	g.do(`{"type":"join","room":"a"}`, `{"type":"delete","room":"a","id":1,"cid":"c3"}`)
	if ef := g.lastError(t); ef.Code != wire.CodeUnavailable || ef.CID != "c3" {
		t.Fatalf("a delete with the room log down: %+v", ef)
	}

	g.Pages.Set(wire.Page{}, nil)
	g.Pages.Put(wire.Message{ID: 1, Room: "a", User: "bob", Kind: wire.KindMessage, Body: "x"})
	g.Publisher.AutoAck()
	on := false
	res, err := g.env.Write(context.Background(), auth.Identity{User: "carol"}, wire.ClientFrame{Type: wire.TypeReact, Room: "#A", ID: 1, Emoji: "👍", On: &on, CID: "w1"})
	if err != nil || res.ID == 0 {
		t.Fatalf("Write react: %+v, %v", res, err)
	}
	_, err = g.env.Write(context.Background(), auth.Identity{User: "carol"}, wire.ClientFrame{Type: wire.TypeJoin, Room: "a"})
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeUnknownType {
		t.Fatalf("Write of a join: %v", err)
	}
}

// recordingPresence records every presence event a session sends (the
// fake underneath keeps the wanted state).
type recordingPresence struct {
	*sessiontest.Presence
	mu  sync.Mutex
	evs []string // "register|unregister <room> <conn> [explicit]"
}

func (p *recordingPresence) Register(ev wire.ConnEvent, joined func(context.Context)) {
	p.record("register", ev)
	p.Presence.Register(ev, joined)
}

func (p *recordingPresence) Unregister(ev wire.ConnEvent) {
	p.record("unregister", ev)
	p.Presence.Unregister(ev)
}

func (p *recordingPresence) record(verb string, ev wire.ConnEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := verb + " " + ev.Room + " " + ev.Conn
	if ev.Explicit {
		s += " explicit"
	}
	p.evs = append(p.evs, s)
}

// Each presence registration of a connection has its own id, kept by
// every event about it: a leave names the id of the join it undoes, a
// re-join with since keeps it (the same registration), and leaving then
// joining a room again is a new registration with a new id — presence
// refuses a join of an id whose leave it saw (a join that overtook its
// leave), so a reused id would keep the rejoined connection out of the
// roster.
func TestPresenceIDPerRegistration(t *testing.T) {
	fk := sessiontest.New()
	rec := &recordingPresence{Presence: fk.Presence}
	env := fk.Env(session.Config{EdgeID: "e1"})
	env.Presence = rec
	sess, err := env.Open(&sessiontest.Sink{}, auth.Identity{User: "alice"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sess.Start()
	for _, fr := range []string{
		`{"type":"join","room":"a"}`,
		`{"type":"join","room":"b"}`,
		`{"type":"join","room":"a","since":3}`,
		`{"type":"leave","room":"a"}`,
		`{"type":"join","room":"a"}`,
	} {
		sess.Handle(context.Background(), []byte(fr))
	}
	sess.End("client")
	id := sess.ID()
	want := []string{
		"register a " + id + ".1",
		"register b " + id + ".2",
		"register a " + id + ".1",
		"unregister a " + id + ".1 explicit",
		"unregister a " + id + ".1",
		"register a " + id + ".3",
	}
	rec.mu.Lock()
	got := rec.evs
	rec.mu.Unlock()
	if !slices.Equal(got[:len(want)], want) {
		t.Fatalf("presence events\n%v\nwant prefix\n%v", got, want)
	}
	end := slices.Clone(got[len(want):])
	slices.Sort(end)
	if wantEnd := []string{"unregister a " + id + ".3", "unregister b " + id + ".2"}; !slices.Equal(end, wantEnd) {
		t.Fatalf("events of End %v, want %v", end, wantEnd)
	}
	if fk.Presence.In() != 0 {
		t.Fatalf("registrations left after End: %v", fk.Presence.Events())
	}
}
