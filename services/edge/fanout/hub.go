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
// history frame followed by exactly the buffered messages it had not seen.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/edge/backend"
	"github.com/hubbub-chat/hubbub/services/edge/frame"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrClosed is returned by Join after Close.
var ErrClosed = errors.New("fanout: hub closed")

// Sink receives frames for one member. Send must not block.
type Sink interface {
	Send(f *frame.Frame) bool
}

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
	// PageSize is the page size of since requests (200).
	PageSize int
	// MaxReplay caps how many messages a join with since replays; further
	// behind, the member gets the newest page with recovered:false (1000).
	MaxReplay int
	// Inbox bounds the shared NATS channel (65536 messages).
	Inbox int
	// RoomBacklog bounds a room's unprocessed events (8192); beyond it
	// events are dropped (live messages are recovered by the gap fill).
	RoomBacklog int
}

func (c Config) withDefaults() Config {
	if c.JoinPage <= 0 {
		c.JoinPage = wire.DefaultPage
	}
	if c.PageSize <= 0 {
		c.PageSize = wire.DefaultMaxPage
	}
	if c.MaxReplay <= 0 {
		c.MaxReplay = 1000
	}
	if c.Inbox <= 0 {
		c.Inbox = 1 << 16
	}
	if c.RoomBacklog <= 0 {
		c.RoomBacklog = 8192
	}
	return c
}

// Hub maps hosted rooms to their local members.
type Hub struct {
	cfg Config
	be  *backend.Client
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
func New(cfg Config, be *backend.Client, log *slog.Logger, obs Observer) *Hub {
	if obs == nil {
		obs = nopObserver{}
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		cfg: cfg, be: be, nc: be.Conn(), log: log, obs: obs,
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
	buf     []*frame.Frame
	left    bool
}

// Room is the member's room name.
func (m *Member) Room() string { return m.room.name }

// Join makes sink a member of a room: it subscribes the room if needed,
// sends the history frame (or an "unavailable" error frame when history
// does not answer) and then live frames, with no gap and no duplicate
// between them. An error means the member was not joined.
func (h *Hub) Join(ctx context.Context, req JoinRequest) (*Member, error) {
	r, err := h.acquire(ctx, req.Room)
	if err != nil {
		return nil, err
	}
	m := &Member{room: r, sink: req.Sink, user: req.User, joining: true, idx: -1}
	r.mu.Lock()
	start := r.lastID // everything after start reaches m.buf
	r.joining[m] = struct{}{}
	r.mu.Unlock()

	hist, herr := h.history(ctx, req, start)
	var first *frame.Frame
	if herr != nil {
		h.log.Warn("join without history", "room", req.Room, "err", herr)
		first = frame.Must(wire.TypeError, wire.Errorf(wire.CodeUnavailable, "history is unavailable; live messages follow").Frame("", req.Room), frame.Essential)
		hist.last = start
	} else {
		first = frame.Must(wire.TypeHistory, wire.History{
			Type: wire.TypeHistory, Room: req.Room, Items: hist.items, HasMore: hist.hasMore, Recovered: hist.recovered,
		}, frame.Essential)
		first.ID = hist.last // SSE resumes after the newest message the history brings
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if m.left {
		return nil, fmt.Errorf("join %s: %w", req.Room, ErrClosed)
	}
	delete(r.joining, m)
	m.sink.Send(first)
	h.obs.Delivered(first.Type, 1)
	m.last = hist.last
	n := 0
	for _, f := range m.buf {
		if f.ID > m.last {
			m.sink.Send(f)
			m.last = f.ID
			n++
		}
	}
	h.obs.Delivered(wire.TypeMessage, n)
	m.buf = nil
	m.joining = false
	m.idx = len(r.active)
	r.active = append(r.active, m)
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

type history struct {
	items     []wire.Message
	hasMore   bool
	recovered bool
	last      uint64 // id of the last item, or the point the view starts from
}

// history fetches what a joining member sees first: the newest page or
// everything after since, extended (catch-up) to at least id start, the
// room's last delivered id when the member started buffering.
func (h *Hub) history(ctx context.Context, req JoinRequest, start uint64) (history, error) {
	var out history
	if req.Since != nil {
		p, err := h.replay(ctx, req.Room, *req.Since)
		if err != nil {
			return out, err
		}
		out = p
	} else {
		p, err := h.be.Recent(ctx, wire.RecentRequest{Room: req.Room, Limit: h.cfg.JoinPage})
		if err != nil {
			return out, err
		}
		out = history{items: p.Items, hasMore: p.HasMore, recovered: true}
		if n := len(p.Items); n > 0 {
			out.last = p.Items[n-1].ID
		}
	}
	// Catch up to start: history may lag the stream, and messages stored
	// before the member started buffering must not be missed.
	for pages := 0; out.last < start; pages++ {
		if pages > h.cfg.MaxReplay/h.cfg.PageSize+2 {
			h.log.Warn("history too far behind the stream; joining with a hole", "room", req.Room, "have", out.last, "want", start)
			out.last = start
			break
		}
		p, err := h.be.Since(ctx, wire.SinceRequest{Room: req.Room, After: out.last, Limit: h.cfg.PageSize})
		if err != nil {
			return out, err
		}
		if len(p.Items) == 0 || !p.Recovered {
			h.log.Warn("history cannot reach the room's last id", "room", req.Room, "have", out.last, "want", start)
			out.last = start
			break
		}
		out.items = append(out.items, p.Items...)
		out.last = p.Items[len(p.Items)-1].ID
		if len(out.items) > h.cfg.MaxReplay {
			drop := len(out.items) - h.cfg.MaxReplay
			out.items = out.items[drop:]
			out.hasMore = true
			if req.Since != nil {
				out.recovered = false
			}
		}
	}
	if out.items == nil {
		out.items = []wire.Message{}
	}
	return out, nil
}

// replay pages through everything after since, up to MaxReplay messages;
// further behind, the newest page with recovered:false.
func (h *Hub) replay(ctx context.Context, room string, since uint64) (history, error) {
	out := history{recovered: true, last: since}
	for {
		p, err := h.be.Since(ctx, wire.SinceRequest{Room: room, After: out.last, Limit: h.cfg.PageSize})
		if err != nil {
			return out, err
		}
		if !p.Recovered {
			out = history{items: p.Items, hasMore: p.HasMore, recovered: false}
			if n := len(p.Items); n > 0 {
				out.last = p.Items[n-1].ID
			}
			return out, nil
		}
		out.items = append(out.items, p.Items...)
		if n := len(p.Items); n > 0 {
			out.last = p.Items[n-1].ID
		}
		if !p.HasMore || len(p.Items) == 0 {
			return out, nil
		}
		if len(out.items) >= h.cfg.MaxReplay {
			rp, err := h.be.Recent(ctx, wire.RecentRequest{Room: room, Limit: h.cfg.JoinPage})
			if err != nil {
				return out, err
			}
			out = history{items: rp.Items, hasMore: rp.HasMore, recovered: false}
			if n := len(rp.Items); n > 0 {
				out.last = rp.Items[n-1].ID
			}
			return out, nil
		}
	}
}

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
