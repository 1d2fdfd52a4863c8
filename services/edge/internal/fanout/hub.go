// Package fanout delivers room traffic to the members connected to this
// edge. A room is hosted while it has local members: the hub then holds
// NATS subscriptions on chat.live.<room>, chat.typing.<room> and
// chat.presence.<room>, all feeding one shared channel, so the number of
// goroutines does not grow with the number of rooms.
//
// Delivery is gapless: each hosted room tracks the id of the last message
// it delivered, and a live message whose prev is not that id triggers a
// fill from history's since endpoint before it is delivered. A joining
// member buffers live messages while its history is fetched, then gets the
// history frame followed by exactly the buffered messages it had not seen
// (the room log's catch-up merge rule: roomlog.Unseen, roomlog.Handover).
// Live messages, history's pages and the stream fallback are all decoded by
// the room log's rule (roomlog.Decoder), so a room looks the same whichever
// of them a member's view came from.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrClosed is returned by Join after Close.
var ErrClosed = errors.New("fanout: hub closed")

// Sink receives frames for one member. Send must not block; it returns
// false when the frame was not queued (shed, or the sink is closing).
type Sink interface {
	Send(f *frame.Frame) bool
}

// Backlogged is implemented by sinks that can tell how many bytes wait in
// their outbound queue. A long catch-up sends its next page only once the
// backlog is below Config.PaceBytes, so a healthy reader is never pushed
// past its queue's hard bound; sinks without it are not paced.
type Backlogged interface {
	QueuedBytes() int
}

// ErrStalled is returned by Join when the sink's backlog did not drain
// during a catch-up for Config.StallTimeout.
var ErrStalled = errors.New("fanout: member stopped reading during catch-up")

// Observer receives fan-out events for metrics. Methods must not block.
type Observer interface {
	// Delivered counts n frames of type typ handed to sinks.
	Delivered(typ string, n int)
	// GapFilled counts messages recovered from history after a live gap.
	GapFilled(n int)
	// Dropped counts NATS messages the hub could not process (reason).
	Dropped(reason string)
}

type nopObserver struct{}

func (nopObserver) Delivered(string, int) {}
func (nopObserver) GapFilled(int)         {}
func (nopObserver) Dropped(string)        {}

// Config tunes the hub. Zero values take defaults.
type Config struct {
	// JoinPage is how many recent messages a join without since gets (50).
	JoinPage int
	// PageSize is the page size of since requests, and so the most items
	// one catch-up history frame carries (200).
	PageSize int
	// FrameBytes bounds the JSON size of one history frame (256 KiB): a
	// page of long messages is split over several frames.
	FrameBytes int
	// PaceBytes paces a long catch-up: the next page is fetched and sent
	// only once the sink's outbound backlog (see Backlogged) is below it
	// (64 KiB, the WebSocket soft bound by default).
	PaceBytes int
	// StallTimeout gives up a catch-up whose sink's backlog stays above
	// PaceBytes this long (30 s): that reader is not healthy.
	StallTimeout time.Duration
	// JoinBuffer bounds the live messages buffered for one member while it
	// catches up (1024); beyond it the buffer is dropped and the member
	// catches up from history instead, so memory stays bounded however
	// long the catch-up takes.
	JoinBuffer int
	// Inbox bounds the shared NATS channel (65536 messages).
	Inbox int
	// RoomBacklog bounds a room's unprocessed events (8192); beyond it
	// events are dropped (live messages are recovered by the gap fill).
	RoomBacklog int
	// MaxBody is the body limit of the room log's message rule
	// (roomlog.Decoder, wire.CheckPost) applied to live messages and to
	// pages read from the stream (wire.DefaultMaxBody): a message that
	// fails it, published by something other than an edge, is not
	// delivered, as history does not keep it.
	MaxBody int
}

func (c Config) withDefaults() Config {
	if c.JoinPage <= 0 {
		c.JoinPage = wire.DefaultPage
	}
	if c.PageSize <= 0 {
		c.PageSize = wire.DefaultMaxPage
	}
	if c.FrameBytes <= 0 {
		c.FrameBytes = 256 << 10
	}
	if c.PaceBytes <= 0 {
		c.PaceBytes = 64 << 10
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = 30 * time.Second
	}
	if c.JoinBuffer <= 0 {
		c.JoinBuffer = 1024
	}
	if c.Inbox <= 0 {
		c.Inbox = 1 << 16
	}
	if c.RoomBacklog <= 0 {
		c.RoomBacklog = 8192
	}
	if c.MaxBody <= 0 {
		c.MaxBody = wire.DefaultMaxBody
	}
	return c
}

// Hub maps hosted rooms to their local members.
type Hub struct {
	cfg Config
	be  Backend
	dec roomlog.Decoder // the room log's rule, under cfg.MaxBody
	nc  *nats.Conn
	log *slog.Logger
	obs Observer
	ch  chan *nats.Msg

	ctx    context.Context // ends on Close; bounds gap fills
	cancel context.CancelFunc

	mu     sync.RWMutex
	rooms  map[string]*room
	closed bool
}

// New returns a hub; call Run to start dispatching. obs may be nil.
func New(cfg Config, be Backend, log *slog.Logger, obs Observer) *Hub {
	if obs == nil {
		obs = nopObserver{}
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		cfg: cfg, be: be, dec: roomlog.Decoder{MaxBody: cfg.MaxBody}, nc: be.Conn(), log: log, obs: obs,
		ch: make(chan *nats.Msg, cfg.Inbox), ctx: ctx, cancel: cancel,
		rooms: make(map[string]*room),
	}
}

// Run routes NATS messages to hosted rooms until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-h.ch:
			h.dispatch(m)
		}
	}
}

// Close unsubscribes every room and refuses further joins. Members that
// are still joined stop receiving.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	rooms := h.rooms
	h.rooms = make(map[string]*room)
	h.mu.Unlock()
	h.cancel()
	for _, r := range rooms {
		r.unsubscribe()
	}
}

// Rooms is the number of hosted rooms.
func (h *Hub) Rooms() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.rooms)
}

// LastID is the id of the last message delivered in a hosted room (false
// when the room is not hosted here).
func (h *Hub) LastID(room string) (uint64, bool) {
	h.mu.RLock()
	r := h.rooms[room]
	h.mu.RUnlock()
	if r == nil {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastID, r.started
}

func (h *Hub) dispatch(m *nats.Msg) {
	name := subjects.RoomFromSubject(m.Subject)
	h.mu.RLock()
	r := h.rooms[name]
	h.mu.RUnlock()
	if r == nil {
		return
	}
	r.push(m)
}

// acquire returns the hosted room, subscribing first if needed.
func (h *Hub) acquire(ctx context.Context, name string) (*room, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	r := h.rooms[name]
	if r != nil {
		r.refs++
		h.mu.Unlock()
		select {
		case <-r.ready:
		case <-ctx.Done():
			h.release(r)
			return nil, fmt.Errorf("join %s: %w", name, ctx.Err())
		}
		if r.err != nil {
			h.release(r)
			return nil, r.err
		}
		return r, nil
	}
	r = &room{hub: h, name: name, ready: make(chan struct{}), refs: 1, joining: make(map[*Member]struct{})}
	h.rooms[name] = r
	h.mu.Unlock()
	r.err = r.start(ctx)
	close(r.ready)
	if r.err != nil {
		h.release(r)
		return nil, r.err
	}
	return r, nil
}

// release drops one reference; the last one unsubscribes.
func (h *Hub) release(r *room) {
	h.mu.Lock()
	r.refs--
	last := r.refs == 0
	if last && h.rooms[r.name] == r {
		delete(h.rooms, r.name)
	}
	h.mu.Unlock()
	if last {
		r.unsubscribe()
	}
}

// JoinRequest describes a member joining a room.
type JoinRequest struct {
	// Room is a normalised room name.
	Room string
	// User is the member's user id (typing frames of this user are not
	// delivered to it).
	User string
	// Since asks for every message after this id instead of the newest page.
	Since *uint64
	// Sink receives the history frame and then live frames.
	Sink Sink
}

// Member is one sink's membership in a hosted room.
type Member struct {
	room *room
	sink Sink
	user string

	// Guarded by room.mu.
	last    uint64
	idx     int
	joining bool
	// While joining, buf holds every message delivered to the room with an
	// id above bufFrom, at most Config.JoinBuffer of them.
	buf     []*frame.Frame
	bufFrom uint64
	left    bool
}

// Room is the member's room name.
func (m *Member) Room() string { return m.room.name }

// Join makes sink a member of a room: it subscribes the room if needed,
// sends the history (read from the stream when history does not answer)
// and then live frames, with no gap and no duplicate between them. When
// neither answers, Join fails and the sink got no live frame.
//
// With Since, the history is every message after it, however many: one or
// more consecutive history frames (each at most Config.PageSize items,
// ascending, chained by prev), paced on the sink's backlog, followed by the
// live messages that arrived meanwhile. Join returns once the member is
// live. An error means the member was not joined.
func (h *Hub) Join(ctx context.Context, req JoinRequest) (*Member, error) {
	r, err := h.acquire(ctx, req.Room)
	if err != nil {
		return nil, err
	}
	m := &Member{room: r, sink: req.Sink, user: req.User, joining: true, idx: -1}
	r.mu.Lock()
	m.bufFrom = r.lastID // everything after it reaches m.buf
	r.joining[m] = struct{}{}
	r.mu.Unlock()

	c := &catchUp{h: h, r: r, m: m}
	if err := c.run(ctx, req.Since); err != nil {
		m.Leave()
		return nil, fmt.Errorf("join %s: %w", req.Room, err)
	}
	return m, nil
}

// Leave removes m from its room (idempotent).
func (m *Member) Leave() {
	r := m.room
	r.mu.Lock()
	if m.left {
		r.mu.Unlock()
		return
	}
	m.left = true
	if m.joining {
		delete(r.joining, m)
	} else if m.idx >= 0 {
		last := len(r.active) - 1
		r.active[m.idx] = r.active[last]
		r.active[m.idx].idx = m.idx
		r.active[last] = nil
		r.active = r.active[:last]
		m.idx = -1
	}
	m.buf = nil
	r.mu.Unlock()
	r.hub.release(r)
}

// flushLocked is how many buffered live messages are handed over while
// holding the room lock when a member goes live; a longer buffer is sent
// paced, outside the lock, first.
const flushLocked = 64

// catchUp brings one joining member from its starting point to the room's
// live position: history frames first (the newest page, or everything
// after since, page by page), then the live messages buffered meanwhile.
type catchUp struct {
	h    *Hub
	r    *room
	m    *Member
	last uint64 // end of the member's view: the last id sent to it
	live bool   // message frames were sent: later catch-up items go as message frames too
	sent int    // frames sent so far
}

func (c *catchUp) run(ctx context.Context, since *uint64) error {
	more, err := c.first(ctx, since)
	for {
		if err != nil {
			// Neither history nor the stream answered: the join fails
			// and the member is removed.
			return err
		}
		if more {
			more, _, err = c.next(ctx)
			continue
		}
		done, behind, ferr := c.flush(ctx)
		switch {
		case ferr != nil:
			return ferr
		case done:
			return nil
		case behind:
			var progressed bool
			more, progressed, err = c.next(ctx)
			if err == nil && !progressed {
				c.r.mu.Lock()
				c.h.log.Warn("history cannot reach the room's live position; joining with a hole", "room", c.r.name, "have", c.last, "want", c.m.bufFrom)
				c.last = max(c.last, c.m.bufFrom)
				c.r.mu.Unlock()
			}
		}
	}
}

// first sends the first history frame(s): the newest page, or the first
// page after since. more reports that history has further pages.
func (c *catchUp) first(ctx context.Context, since *uint64) (more bool, err error) {
	if since == nil {
		p, err := c.recent(ctx)
		if err != nil {
			return false, err
		}
		return false, c.sendHistory(ctx, p.Items, p.HasMore, p.HasMore, true)
	}
	c.r.mu.Lock()
	newest := c.m.bufFrom // the room's newest id when the join began
	c.r.mu.Unlock()
	if *since > newest {
		// A cursor beyond anything this room holds (another room's, or
		// another deployment's): following it would drop every live
		// message up to it. Reset the member's view to the newest page.
		p, err := c.recent(ctx)
		if err != nil {
			return false, err
		}
		return false, c.sendHistory(ctx, p.Items, p.HasMore, p.HasMore, false)
	}
	c.last = *since
	p, err := c.since(ctx, *since)
	if err != nil {
		return false, err
	}
	if !p.Recovered {
		// since is older than what history keeps: the newest page
		// instead, and the member resets its view.
		c.last = 0
		return false, c.sendHistory(ctx, p.Items, p.HasMore, p.HasMore, false)
	}
	items := roomlog.Unseen(p.Items, c.last, roomlog.MessageID)
	return p.HasMore && len(items) > 0, c.sendHistory(ctx, items, p.HasMore, true, true)
}

// recent is the room's newest page: from history, or read from the
// stream while history does not answer.
func (c *catchUp) recent(ctx context.Context) (wire.Page, error) {
	h, room := c.h, c.r.name
	p, err := h.be.Recent(ctx, wire.RecentRequest{Room: room, Limit: h.cfg.JoinPage})
	if err == nil {
		return p, nil
	}
	h.log.Warn("history unavailable: join served from the stream", "room", room, "err", err)
	p, serr := h.be.StreamRecent(ctx, h.dec, room, h.cfg.JoinPage)
	if serr != nil {
		return wire.Page{}, fmt.Errorf("history: %w; stream: %w", err, serr)
	}
	return p, nil
}

// since is the page after id: from history, or read from the stream
// while history does not answer.
func (c *catchUp) since(ctx context.Context, id uint64) (wire.Page, error) {
	h, room := c.h, c.r.name
	p, err := h.be.Since(ctx, wire.SinceRequest{Room: room, After: id, Limit: h.cfg.PageSize})
	if err == nil {
		return p, nil
	}
	h.log.Warn("history unavailable: catch-up served from the stream", "room", room, "after", id, "err", err)
	p, serr := h.be.StreamSince(ctx, h.dec, room, id, h.cfg.PageSize)
	if serr != nil {
		return wire.Page{}, fmt.Errorf("history: %w; stream: %w", err, serr)
	}
	return p, nil
}

// next sends the next page after the member's view.
func (c *catchUp) next(ctx context.Context) (more, progressed bool, err error) {
	if err := c.pace(ctx); err != nil {
		return false, false, err
	}
	p, err := c.since(ctx, c.last)
	if err != nil {
		return false, false, err
	}
	items := roomlog.Unseen(p.Items, c.last, roomlog.MessageID)
	if !p.Recovered || len(items) == 0 {
		return false, false, nil
	}
	if err := c.sendHistory(ctx, items, p.HasMore, true, true); err != nil {
		return false, false, err
	}
	return p.HasMore, true, nil
}

// flush hands the buffered live messages to the member. With few of them
// it makes the member live (done). With many, it sends them paced outside
// the room lock and returns to be called again. behind means the member's
// view ends before what the buffer covers: fetch from history first.
func (c *catchUp) flush(ctx context.Context) (done, behind bool, err error) {
	r, m := c.r, c.m
	r.mu.Lock()
	if m.left {
		r.mu.Unlock()
		return false, false, ErrClosed
	}
	pending, ok := roomlog.Handover(c.last, m.bufFrom, m.buf, frameID)
	if !ok {
		r.mu.Unlock()
		return false, true, nil
	}
	if len(pending) <= flushLocked {
		delete(r.joining, m)
		for _, f := range pending {
			m.sink.Send(f)
		}
		c.h.obs.Delivered(wire.TypeMessage, len(pending))
		if n := len(pending); n > 0 {
			c.last = pending[n-1].ID
		}
		m.last = c.last
		m.buf = nil
		m.joining = false
		m.idx = len(r.active)
		r.active = append(r.active, m)
		r.mu.Unlock()
		return true, false, nil
	}
	m.buf = nil
	m.bufFrom = pending[len(pending)-1].ID
	r.mu.Unlock()
	c.live = true
	for len(pending) > 0 {
		n := min(len(pending), c.h.cfg.PageSize)
		if err := c.pace(ctx); err != nil {
			return false, false, err
		}
		for _, f := range pending[:n] {
			if err := c.send(ctx, f); err != nil {
				return false, false, err
			}
		}
		c.h.obs.Delivered(wire.TypeMessage, n)
		c.last = pending[n-1].ID
		pending = pending[n:]
	}
	return false, false, nil
}

// sendHistory sends items (ascending, after the member's view): as history
// frames of at most FrameBytes each while the catch-up is in its history
// part, as message frames once live messages went out. hasMore is the
// last frame's has_more, splitMore that of the frames before it.
func (c *catchUp) sendHistory(ctx context.Context, items []wire.Message, hasMore, splitMore, recovered bool) error {
	if c.live {
		for _, it := range items {
			if err := c.send(ctx, MessageFrame(it)); err != nil {
				return err
			}
		}
		c.h.obs.Delivered(wire.TypeMessage, len(items))
	} else {
		frames := c.h.historyFrames(c.r.name, items, hasMore, splitMore, recovered)
		for _, f := range frames {
			if err := c.send(ctx, f); err != nil {
				return err
			}
		}
		c.h.obs.Delivered(wire.TypeHistory, len(frames))
	}
	if n := len(items); n > 0 {
		c.last = items[n-1].ID
	}
	return nil
}

// send paces (except for the first frame) and hands f to the sink.
func (c *catchUp) send(ctx context.Context, f *frame.Frame) error {
	if c.sent > 0 {
		if err := c.pace(ctx); err != nil {
			return err
		}
	}
	if !c.m.sink.Send(f) {
		return ErrClosed
	}
	c.sent++
	return nil
}

// pace waits until the sink's backlog is below PaceBytes.
func (c *catchUp) pace(ctx context.Context) error {
	b, ok := c.m.sink.(Backlogged)
	if !ok || b.QueuedBytes() < c.h.cfg.PaceBytes {
		return nil
	}
	deadline := time.Now().Add(c.h.cfg.StallTimeout)
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.h.ctx.Done():
			return ErrClosed
		case <-t.C:
		}
		if b.QueuedBytes() < c.h.cfg.PaceBytes {
			return nil
		}
		if time.Now().After(deadline) {
			return ErrStalled
		}
		wait = min(2*wait, 50*time.Millisecond)
		t.Reset(wait)
	}
}

// historyFrames encodes items as one history frame, or several when the
// encoding passes FrameBytes. Every frame but the last carries splitMore
// as has_more, the last hasMore. Each frame's ID is its last item's id
// (the SSE event id), 0 when empty.
func (h *Hub) historyFrames(room string, items []wire.Message, hasMore, splitMore, recovered bool) []*frame.Frame {
	if items == nil {
		items = []wire.Message{}
	}
	f := frame.Must(wire.TypeHistory, wire.History{Type: wire.TypeHistory, Room: room, Items: items, HasMore: hasMore, Recovered: recovered}, frame.Essential)
	if n := len(items); n > 0 {
		f.ID = items[n-1].ID
	}
	if len(f.JSON) <= h.cfg.FrameBytes || len(items) < 2 {
		return []*frame.Frame{f}
	}
	half := len(items) / 2
	return append(h.historyFrames(room, items[:half], splitMore, splitMore, recovered),
		h.historyFrames(room, items[half:], hasMore, splitMore, recovered)...)
}

// frameID is the id of a buffered message frame, for roomlog.Handover.
func frameID(f *frame.Frame) uint64 { return f.ID }

// kindOf tells which subscription a subject belongs to.
func kindOf(subject string) string {
	switch {
	case strings.HasPrefix(subject, subjects.LivePrefix):
		return wire.TypeMessage
	case strings.HasPrefix(subject, subjects.TypingPrefix):
		return wire.TypeTyping
	case strings.HasPrefix(subject, subjects.PresencePrefix):
		return wire.TypePresence
	}
	return ""
}
