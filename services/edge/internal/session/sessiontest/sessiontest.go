// Package sessiontest holds in-memory fakes of a session's sink and
// collaborators (hub, presence, pages, typing, publisher, observer), for
// unit tests of the session package and of the transports built on it.
// Every fake is safe for concurrent use.
package sessiontest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/pages"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Fakes is a full set of collaborators; Env wires them into a session.Env.
type Fakes struct {
	Hub       *Hub
	Presence  *Presence
	Pages     *Pages
	Typing    *Typist
	Publisher *Publisher
	Obs       *Observer
}

// New returns fresh fakes.
func New() *Fakes {
	return &Fakes{Hub: &Hub{}, Presence: &Presence{}, Pages: &Pages{}, Typing: &Typist{}, Publisher: &Publisher{}, Obs: NewObserver()}
}

// Env returns a session.Env on the fakes with cfg (defaults filled).
func (f *Fakes) Env(cfg session.Config) *session.Env {
	n := 0
	var mu sync.Mutex
	return &session.Env{
		Config: cfg.WithDefaults(),
		Hub:    f.Hub, Presence: f.Presence, Pages: f.Pages, Typing: f.Typing, Publisher: f.Publisher,
		NewID: func() string {
			mu.Lock()
			defer mu.Unlock()
			n++
			return "conn-" + strconv.Itoa(n)
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Obs: f.Obs,
	}
}

// Sink records what a session sends.
type Sink struct {
	mu     sync.Mutex
	frames []*frame.Frame
	queued int
	code   uint16
	closed bool
}

// Send implements session.Sink; it refuses frames once closed.
func (s *Sink) Send(f *frame.Frame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.frames = append(s.frames, f)
	return true
}

// QueuedBytes implements session.Sink (what SetQueued set).
func (s *Sink) QueuedBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued
}

// SetQueued sets what QueuedBytes reports.
func (s *Sink) SetQueued(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued = n
}

// Close implements session.Sink.
func (s *Sink) Close(code uint16, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.code = true, code
}

// CloseCode is the code Close was called with (0: not closed).
func (s *Sink) CloseCode() uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.code
}

// Frames returns the frames sent so far.
func (s *Sink) Frames() []*frame.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*frame.Frame(nil), s.frames...)
}

// Await returns the first frame of type typ after the first skip ones
// of that type, waiting up to 5 s for it (t fails otherwise).
func (s *Sink) Await(t testing.TB, typ string, skip int) *frame.Frame {
	t.Helper()
	var got *frame.Frame
	Eventually(t, "a "+typ+" frame", func() bool {
		n := 0
		for _, f := range s.Frames() {
			if f.Type == typ {
				if n == skip {
					got = f
					return true
				}
				n++
			}
		}
		return false
	})
	return got
}

// Count is the number of frames of type typ sent so far.
func (s *Sink) Count(typ string) int {
	n := 0
	for _, f := range s.Frames() {
		if f.Type == typ {
			n++
		}
	}
	return n
}

// Error decodes f as an error frame.
func Error(t testing.TB, f *frame.Frame) wire.ErrorFrame {
	t.Helper()
	var ef wire.ErrorFrame
	if err := json.Unmarshal(f.JSON, &ef); err != nil || f.Type != wire.TypeError {
		t.Fatalf("not an error frame: %s %s (%v)", f.Type, f.JSON, err)
	}
	return ef
}

// Eventually polls cond until it holds, failing t after 5 s.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Hub is a fake fanout hub: Join records the request and, unless Err is
// set, sends an empty history frame to the sink and returns a Member.
type Hub struct {
	mu      sync.Mutex
	err     error
	joins   []fanout.JoinRequest
	members []*Member
}

// FailJoins makes every later Join fail with err (nil: succeed).
func (h *Hub) FailJoins(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err = err
}

// Join implements session.Hub.
func (h *Hub) Join(ctx context.Context, req fanout.JoinRequest) (session.Member, error) {
	h.mu.Lock()
	h.joins = append(h.joins, req)
	err := h.err
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req.Sink.Send(frame.Must(wire.TypeHistory, wire.History{Type: wire.TypeHistory, Room: req.Room, Items: []wire.Message{}, Recovered: true}, frame.Essential))
	m := &Member{Room: req.Room}
	h.mu.Lock()
	h.members = append(h.members, m)
	h.mu.Unlock()
	return m, nil
}

// Joins returns the join requests so far.
func (h *Hub) Joins() []fanout.JoinRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]fanout.JoinRequest(nil), h.joins...)
}

// Live is the number of members that have not left.
func (h *Hub) Live() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.members {
		if !m.Left() {
			n++
		}
	}
	return n
}

// Member is a fake hub membership.
type Member struct {
	// Room is the member's room.
	Room string
	mu   sync.Mutex
	left int
}

// Leave implements session.Member.
func (m *Member) Leave() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.left++
}

// Left reports whether Leave was called.
func (m *Member) Left() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.left > 0
}

// Presence is a fake presence registry: it records the wanted state per
// connection and room; Confirm runs the pending joined callbacks.
type Presence struct {
	mu      sync.Mutex
	in      map[string]wire.ConnEvent // conn/room → event
	pending []func(context.Context)
	roster  wire.RosterReply
	events  []string
}

// SetRoster sets what Roster answers.
func (p *Presence) SetRoster(r wire.RosterReply) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.roster = r
}

// Register implements session.Presence.
func (p *Presence) Register(ev wire.ConnEvent, joined func(context.Context)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.in == nil {
		p.in = make(map[string]wire.ConnEvent)
	}
	p.in[ev.Conn+"/"+ev.Room] = ev
	p.events = append(p.events, "register "+ev.Room)
	if joined != nil {
		p.pending = append(p.pending, joined)
	}
}

// Unregister implements session.Presence.
func (p *Presence) Unregister(ev wire.ConnEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.in, ev.Conn+"/"+ev.Room)
	p.events = append(p.events, "unregister "+ev.Room)
}

// Roster implements session.Presence.
func (p *Presence) Roster(_ context.Context, req wire.RosterRequest) (wire.RosterReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.roster
	r.Room = req.Room
	return r, nil
}

// Confirm runs the joined callbacks of the registrations so far.
func (p *Presence) Confirm(ctx context.Context) {
	p.mu.Lock()
	fs := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, f := range fs {
		f(ctx)
	}
}

// In is the number of (connection, room) registrations wanted in.
func (p *Presence) In() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.in)
}

// Events lists "register <room>" and "unregister <room>" in order.
func (p *Presence) Events() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.events...)
}

// Pages is a fake history: Recent answers Page, or fails with Err;
// Message answers the messages Put (pages.ErrNotFound for others).
type Pages struct {
	mu   sync.Mutex
	page wire.Page
	err  error
	reqs []wire.RecentRequest
	msgs map[uint64]wire.Message
}

// Put makes Message answer m for its room and id.
func (p *Pages) Put(m wire.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.msgs == nil {
		p.msgs = make(map[uint64]wire.Message)
	}
	p.msgs[m.ID] = m
}

// Message implements session.Pages.
func (p *Pages) Message(_ context.Context, room string, id uint64) (wire.Message, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return wire.Message{}, p.err
	}
	m, ok := p.msgs[id]
	if !ok || m.Room != room {
		return wire.Message{}, fmt.Errorf("sessiontest: %d in %s: %w", id, room, pages.ErrNotFound)
	}
	return m, nil
}

// Set sets what Recent answers.
func (p *Pages) Set(page wire.Page, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.page, p.err = page, err
}

// Recent implements session.Pages.
func (p *Pages) Recent(_ context.Context, req wire.RecentRequest) (wire.Page, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = append(p.reqs, req)
	return p.page, p.err
}

// Requests returns the requests so far.
func (p *Pages) Requests() []wire.RecentRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]wire.RecentRequest(nil), p.reqs...)
}

// Typist records typing events.
type Typist struct {
	mu     sync.Mutex
	events []wire.TypingEvent
}

// Typing implements session.Typist.
func (t *Typist) Typing(ev wire.TypingEvent) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, ev)
	return nil
}

// Events returns the typing events so far.
func (t *Typist) Events() []wire.TypingEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]wire.TypingEvent(nil), t.events...)
}

// Publisher is a fake publisher. Posts wait until Complete or Fail
// reports their outcome (in post order), unless AutoAck is set; Refuse
// makes Post fail at once (e.g. with publish.ErrBusy, the edge's bound).
type Publisher struct {
	mu      sync.Mutex
	auto    bool
	refuse  error
	seq     uint64
	posts   []Post
	waiting []Post
}

// Post is one recorded post.
type Post struct {
	wire.Post
	done publish.PostDone
}

// AutoAck makes every later post succeed at once (ids 1, 2, …).
func (p *Publisher) AutoAck() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.auto = true
}

// Refuse makes later posts fail at once with err (nil: accept).
func (p *Publisher) Refuse(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = err
}

// NewLane implements session.Publisher.
func (p *Publisher) NewLane() session.Lane { return lane{p} }

type lane struct{ p *Publisher }

func (l lane) Post(post wire.Post, done publish.PostDone) error {
	p := l.p
	p.mu.Lock()
	if p.refuse != nil {
		err := p.refuse
		p.mu.Unlock()
		return err
	}
	pp := Post{Post: post, done: done}
	p.posts = append(p.posts, pp)
	if !p.auto {
		p.waiting = append(p.waiting, pp)
		p.mu.Unlock()
		return nil
	}
	p.seq++
	id := p.seq
	p.mu.Unlock()
	go done(publish.PostResult{ID: id}, nil)
	return nil
}

// Posts returns the posts so far.
func (p *Publisher) Posts() []Post {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Post(nil), p.posts...)
}

// Waiting is the number of posts awaiting an outcome.
func (p *Publisher) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiting)
}

// Complete acks the oldest waiting post with id; false if none waits.
func (p *Publisher) Complete(id uint64) bool {
	return p.finish(publish.PostResult{ID: id}, nil)
}

// Fail fails the oldest waiting post with err; false if none waits.
func (p *Publisher) Fail(err error) bool {
	if err == nil {
		err = errors.New("sessiontest: failed")
	}
	return p.finish(publish.PostResult{}, err)
}

func (p *Publisher) finish(res publish.PostResult, err error) bool {
	p.mu.Lock()
	if len(p.waiting) == 0 {
		p.mu.Unlock()
		return false
	}
	pp := p.waiting[0]
	p.waiting = p.waiting[1:]
	p.mu.Unlock()
	pp.done(res, err)
	return true
}

// Observer counts session and transport events.
type Observer struct {
	mu     sync.Mutex
	counts map[string]int
}

// NewObserver returns an empty Observer.
func NewObserver() *Observer { return &Observer{counts: make(map[string]int)} }

func (o *Observer) add(k string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[k]++
}

// Count is how often event k was seen: "in:<type>", "out:<type>",
// "error:<code>", "published", "opened", "closed:<reason>",
// "refused:<reason>".
func (o *Observer) Count(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[k]
}

// FrameIn implements session.Observer.
func (o *Observer) FrameIn(typ string) { o.add("in:" + typ) }

// FrameOut implements session.Observer.
func (o *Observer) FrameOut(typ string) { o.add("out:" + typ) }

// ErrorSent implements session.Observer.
func (o *Observer) ErrorSent(code string) { o.add("error:" + code) }

// Published implements session.Observer.
func (o *Observer) Published(time.Duration) { o.add("published") }

// ConnOpened implements session.Observer.
func (o *Observer) ConnOpened() { o.add("opened") }

// ConnClosed implements session.Observer.
func (o *Observer) ConnClosed(reason string) { o.add("closed:" + reason) }

// ConnRefused implements api.Observer.
func (o *Observer) ConnRefused(reason string) { o.add("refused:" + reason) }
