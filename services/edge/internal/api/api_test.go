package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/api"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session/sessiontest"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// fakeAuth authenticates X-User (missing: auth.ErrMissing); X-Rooms, when
// set, restricts the token to those comma-separated rooms.
type fakeAuth struct{}

func (fakeAuth) Authenticate(r *http.Request) (auth.Identity, error) {
	u := r.Header.Get("X-User")
	if u == "" {
		return auth.Identity{}, auth.ErrMissing
	}
	id := auth.Identity{User: u}
	if rs := r.Header.Get("X-Rooms"); rs != "" {
		id.Rooms = strings.Split(rs, ",")
	}
	return id, nil
}

// fakeBackend answers the API's reads (api.Pages and api.Presence) from memory.
type fakeBackend struct {
	mu     sync.Mutex
	lobby  wire.LobbyReply
	counts map[string]int
	page   wire.Page
	err    error
}

func (b *fakeBackend) Lobby(context.Context, wire.LobbyRequest) (wire.LobbyReply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return wire.LobbyReply{Rooms: append([]wire.RoomSummary(nil), b.lobby.Rooms...)}, b.err
}

func (b *fakeBackend) Counts(context.Context, wire.CountsRequest) (wire.CountsReply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return wire.CountsReply{Counts: b.counts}, b.err
}

func (b *fakeBackend) Recent(context.Context, wire.RecentRequest) (wire.Page, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.page, b.err
}

func (b *fakeBackend) Roster(_ context.Context, req wire.RosterRequest) (wire.RosterReply, error) {
	return wire.RosterReply{Room: req.Room, Users: []string{"alice"}, Online: 1}, nil
}

type fixture struct {
	*sessiontest.Fakes
	env  *session.Env
	be   *fakeBackend
	gate *admit.Gate
	cfg  api.Config
	done chan struct{}
	srv  *httptest.Server
}

// newFixture builds the API on fakes; setup (may be nil) adjusts the
// fixture (its config, the session env) before the server starts.
func newFixture(t *testing.T, setup func(*fixture)) *fixture {
	t.Helper()
	fk := sessiontest.New()
	env := fk.Env(session.Config{})
	env.Users = userlimit.New(userlimit.Config{})
	f := &fixture{Fakes: fk, env: env, be: &fakeBackend{}, gate: admit.New(admit.Config{MaxConns: 100}), done: make(chan struct{})}
	f.cfg = api.Config{KeepAlive: time.Hour, WriteTimeout: 5 * time.Second}
	if setup != nil {
		setup(f)
	}
	a := api.New(f.cfg, api.Deps{Gate: f.gate, Pages: f.be, Presence: f.be, Sessions: env, Auth: fakeAuth{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Obs: fk.Obs, Done: f.done})
	mux := http.NewServeMux()
	a.Register(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// A post takes the path of a WebSocket message: the same refusals, as
// the statuses docs/protocol.md lists.
func TestPost(t *testing.T) {
	bob := map[string]string{"X-User": "bob"}
	tests := []struct {
		name   string
		path   string
		hdr    map[string]string
		body   string
		setup  func(*fixture)
		status int
		code   string
		retry  bool
	}{
		{"stored", "/api/rooms/general/messages", bob, `{"body":"hi","cid":"p1"}`, nil, 200, "", false},
		{"no credentials", "/api/rooms/general/messages", nil, `{"body":"hi"}`, nil, 401, wire.CodeAuthRequired, false},
		{"bad json", "/api/rooms/general/messages", bob, `{"body":`, nil, 400, wire.CodeBadJSON, false},
		{"empty body", "/api/rooms/general/messages", bob, `{"body":"  "}`, nil, 400, wire.CodeInvalidBody, false},
		{"bad room", "/api/rooms/Bad.Room/messages", bob, `{"body":"x"}`, nil, 400, wire.CodeInvalidRoom, false},
		{"bad cid", "/api/rooms/general/messages", bob, `{"body":"x","cid":"a b"}`, nil, 400, wire.CodeInvalidCID, false},
		{"too big", "/api/rooms/general/messages", bob, `{"body":"` + strings.Repeat("x", api.MaxPostBytes) + `"}`, nil, 413, wire.CodeInvalidBody, false},
		{"forbidden", "/api/rooms/general/messages", map[string]string{"X-User": "bob", "X-Rooms": "other"}, `{"body":"x"}`, nil, 403, wire.CodeForbidden, false},
		{"edge busy", "/api/rooms/general/messages", bob, `{"body":"x"}`, func(f *fixture) { f.Publisher.Refuse(publish.ErrBusy) }, 503, wire.CodeUnavailable, true},
		{"over the user budget", "/api/rooms/general/messages", bob, `{"body":"x"}`, func(f *fixture) {
			f.env.Users = userlimit.New(userlimit.Config{Rates: userlimit.Rates{MessageRate: 0.001, MessageBurst: 1}})
			f.env.Users.AllowMessage("bob")
		}, 429, wire.CodeRateLimited, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.setup)
			f.Publisher.AutoAck()
			resp, body := f.do(t, "POST", tt.path, tt.hdr, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.status)
			}
			if got := resp.Header.Get("Retry-After") != ""; got != tt.retry {
				t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
			if tt.code == "" {
				var pr wire.PostReply
				if err := json.Unmarshal([]byte(body), &pr); err != nil || pr.ID != 1 || pr.CID != "p1" {
					t.Fatalf("reply %s", body)
				}
				return
			}
			var ef wire.ErrorFrame
			if err := json.Unmarshal([]byte(body), &ef); err != nil || ef.Code != tt.code {
				t.Fatalf("body %s, want code %s", body, tt.code)
			}
			if n := len(f.Publisher.Posts()); n != 0 {
				t.Fatalf("a refused post reached the publisher (%d posts)", n)
			}
		})
	}
}

// A post whose PubAck never comes answers 503, like the unavailable
// error a WebSocket client gets; a post without a cid gets one.
func TestPostNotStored(t *testing.T) {
	f := newFixture(t, nil)
	type result struct {
		status int
		body   string
	}
	out := make(chan result, 1)
	go func() {
		resp, body := f.do(t, "POST", "/api/rooms/general/messages", map[string]string{"X-User": "bob"}, `{"body":"x"}`)
		out <- result{resp.StatusCode, body}
	}()
	sessiontest.Eventually(t, "the post to wait for its PubAck", func() bool { return f.Publisher.Waiting() == 1 })
	if cid := f.Publisher.Posts()[0].CID; !wire.ValidCID(cid) {
		t.Fatalf("generated cid %q", cid)
	}
	f.Publisher.Fail(nreq.ErrUnavailable)
	if r := <-out; r.status != 503 || !strings.Contains(r.body, wire.CodeUnavailable) {
		t.Fatalf("post without a PubAck: %d %s", r.status, r.body)
	}
}

func TestStatus(t *testing.T) {
	for code, want := range map[string]int{
		wire.CodeInvalidBody: 400, wire.CodeBadJSON: 400, wire.CodeInvalidRoom: 400, wire.CodeInvalidCID: 400,
		wire.CodeForbidden: 403, wire.CodeRateLimited: 429, wire.CodeTooManyRooms: 429,
		wire.CodeUnavailable: 503, wire.CodeInternal: 500,
		wire.CodeNotFound: 404, wire.CodeInvalidEmoji: 400, wire.CodeInvalidID: 400,
	} {
		if got := api.Status(code); got != want {
			t.Errorf("Status(%s) = %d, want %d", code, got, want)
		}
	}
}

func TestReads(t *testing.T) {
	f := newFixture(t, nil)
	f.be.lobby = wire.LobbyReply{Rooms: []wire.RoomSummary{{Room: "a"}, {Room: "b"}}}
	f.be.counts = map[string]int{"a": 3, "b": 1}
	f.be.page = wire.Page{Items: []wire.Message{{ID: 5}}}
	tests := []struct {
		name, path string
		hdr        map[string]string
		status     int
		want       string
	}{
		{"lobby", "/api/lobby", map[string]string{"X-User": "u"}, 200, `"online":3`},
		{"lobby restricted", "/api/lobby", map[string]string{"X-User": "u", "X-Rooms": "b"}, 200, `{"rooms":[{"room":"b"`},
		{"messages", "/api/rooms/a/messages?limit=5", map[string]string{"X-User": "u"}, 200, `"id":5`},
		{"messages limit", "/api/rooms/a/messages?limit=0", map[string]string{"X-User": "u"}, 400, wire.CodeInvalidLimit},
		{"messages forbidden", "/api/rooms/a/messages", map[string]string{"X-User": "u", "X-Rooms": "b"}, 403, wire.CodeForbidden},
		{"presence", "/api/rooms/a/presence", map[string]string{"X-User": "u"}, 200, `"users":["alice"]`},
		{"unauthenticated", "/api/rooms/a/presence", nil, 401, wire.CodeAuthRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, "GET", tt.path, tt.hdr, "")
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %s, want %d with %s", resp.StatusCode, body, tt.status, tt.want)
			}
		})
	}
	f.be.mu.Lock()
	f.be.err = nreq.ErrUnavailable
	f.be.mu.Unlock()
	if resp, body := f.do(t, "GET", "/api/rooms/a/messages", map[string]string{"X-User": "u"}, ""); resp.StatusCode != 503 {
		t.Fatalf("messages with history down: %d %s", resp.StatusCode, body)
	}
}

type sseEvent struct{ id, event, data string }

// openStream opens a room's event stream; cancel ends it.
func (f *fixture) openStream(t *testing.T, room string, hdr map[string]string) (*http.Response, <-chan sseEvent, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/api/rooms/"+room+"/events", nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return resp, ch, cancel
}

func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return sseEvent{}
}

// streamSink is the sink the hub was given for the stream's join.
func (f *fixture) streamSink(t *testing.T) session.Sink {
	t.Helper()
	sessiontest.Eventually(t, "the stream's join", func() bool { return len(f.Hub.Joins()) == 1 })
	return f.Hub.Joins()[0].Sink.(session.Sink)
}

// An SSE stream is a session: it joins with Last-Event-ID, registers
// presence, writes what the hub sends, and releases everything when the
// client goes (guarantee 8).
func TestEventsStream(t *testing.T) {
	f := newFixture(t, nil)
	resp, events, cancel := f.openStream(t, "General", map[string]string{"X-User": "sse", "Last-Event-ID": "41"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if ev := next(t, events); ev.event != wire.TypeHistory {
		t.Fatalf("first event %+v", ev)
	}
	joins := f.Hub.Joins()
	if joins[0].Room != "general" || joins[0].Since == nil || *joins[0].Since != 41 || joins[0].User != "sse" {
		t.Fatalf("join %+v", joins[0])
	}
	msg := frame.Must(wire.TypeMessage, wire.MessageFrame{Type: wire.TypeMessage, Room: "general", Message: wire.Message{ID: 42}}, frame.Essential)
	msg.ID = 42
	f.streamSink(t).Send(msg)
	if ev := next(t, events); ev.event != wire.TypeMessage || ev.id != "42" {
		t.Fatalf("message event %+v", ev)
	}
	f.Presence.Confirm(context.Background())
	if ev := next(t, events); ev.event != wire.TypeRoster {
		t.Fatalf("roster event %+v", ev)
	}
	if f.Presence.In() != 1 || f.gate.Held() != 1 || f.env.Users.Users() != 1 || f.Obs.Count("opened") != 1 {
		t.Fatalf("while streaming: presence %v, tickets %d, users %d", f.Presence.Events(), f.gate.Held(), f.env.Users.Users())
	}
	cancel()
	sessiontest.Eventually(t, "the stream's release", func() bool {
		return f.Presence.In() == 0 && f.Hub.Live() == 0 && f.gate.Held() == 0 && f.env.Users.Users() == 0 && f.Obs.Count("closed:client") == 1
	})
}

// Refusals before the stream starts are plain HTTP answers; nothing is
// held afterwards.
func TestEventsRefused(t *testing.T) {
	tests := []struct {
		name   string
		hdr    map[string]string
		setup  func(*fixture)
		status int
		code   string
	}{
		{"unauthenticated", nil, nil, 401, wire.CodeAuthRequired},
		{"forbidden", map[string]string{"X-User": "u", "X-Rooms": "other"}, nil, 403, wire.CodeForbidden},
		{"bad Last-Event-ID", map[string]string{"X-User": "u", "Last-Event-ID": "x"}, nil, 400, wire.CodeBadJSON},
		{"history and stream down", map[string]string{"X-User": "u"}, func(f *fixture) { f.Hub.FailJoins(nreq.ErrUnavailable) }, 503, wire.CodeUnavailable},
		{"user at the connection cap", map[string]string{"X-User": "u"}, func(f *fixture) {
			f.env.Users = userlimit.New(userlimit.Config{MaxConns: 1})
			if _, err := f.env.Users.Acquire("u"); err != nil {
				panic(err) // cannot fail: the first connection of a fresh user
			}
		}, 429, wire.CodeRateLimited},
		{"edge full", map[string]string{"X-User": "u"}, func(f *fixture) {
			for f.gate.Held() < f.gate.Config().MaxConns {
				if _, err := f.gate.Acquire(httptest.NewRequest("GET", "/", nil)); err != nil {
					break
				}
			}
		}, 503, wire.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.setup)
			held := f.gate.Held()
			resp, body := f.do(t, "GET", "/api/rooms/general/events", tt.hdr, "")
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.code) {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
			if f.gate.Held() != held || f.Presence.In() != 0 || f.Obs.Count("opened") != 0 {
				t.Fatalf("after a refusal: tickets %d (was %d), presence %v, opened %d", f.gate.Held(), held, f.Presence.Events(), f.Obs.Count("opened"))
			}
		})
	}
}

// Draining ends streams (counted as restart closes); a stream whose
// queue passes its bound is cut off (slow_consumer); a session Close ends
// the stream too.
func TestEventsEnd(t *testing.T) {
	tests := []struct {
		name   string
		end    func(f *fixture, sink session.Sink)
		reason string
	}{
		{"drain", func(f *fixture, _ session.Sink) { close(f.done) }, "restart"},
		{"slow consumer", func(_ *fixture, sink session.Sink) {
			big := frame.Must(wire.TypeMessage, wire.MessageFrame{Type: wire.TypeMessage, Message: wire.Message{Body: strings.Repeat("x", 2048)}}, frame.Essential)
			for sink.Send(big) {
			}
		}, "slow_consumer"},
		{"closed", func(_ *fixture, sink session.Sink) { sink.Close(1012, "restart") }, "restart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(f *fixture) { f.cfg.SSEQueue = 4096 })
			_, events, _ := f.openStream(t, "general", map[string]string{"X-User": "u"})
			next(t, events) // history: the stream is live
			tt.end(f, f.streamSink(t))
			sessiontest.Eventually(t, "the stream to end", func() bool {
				return f.Obs.Count("closed:"+tt.reason) == 1 && f.Presence.In() == 0 && f.gate.Held() == 0
			})
			for range events {
			}
		})
	}
}
