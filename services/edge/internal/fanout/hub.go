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
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
)

// The hub's parts, each in the file named after its role:
//
//   - subscriptions.go: hosting a room. The first Join of a room
//     subscribes its three subjects and then learns its newest id
//     (acquire, room.start); the last Leave unsubscribes (release).
//     Rooms and LastID report on the hosted rooms.
//   - catchup.go: a joining member's catch-up (catchUp): history pages,
//     then the live messages buffered meanwhile, handed over with no gap
//     and no duplicate; pace.go paces it on the sink's backlog
//     (Backlogged) and gives up a sink that stopped reading (ErrStalled).
//   - dispatch.go: Run routes each NATS message from the shared channel to
//     its room, whose worker (room.go, one goroutine while events are
//     queued) handles it by kind.
//   - live.go: a live message is decoded by the room log's rule, a gap
//     before it filled (gapfill.go), then delivered to the active members
//     and buffered for the joining ones; typing and presence are
//     broadcast.
//   - frames.go encodes message and history frames; config.go holds
//     Config and its defaults; observer.go the metrics hooks; deps.go what
//     the hub needs behind it (Backend).

// ErrClosed is returned by Join after Close.
var ErrClosed = errors.New("fanout: hub closed")

// Sink receives frames for one member. Send must not block; it returns
// false when the frame was not queued (shed, or the sink is closing).
type Sink interface {
	Send(f *frame.Frame) bool
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
		r.removeActiveLocked(m)
	}
	m.buf = nil
	r.mu.Unlock()
	r.hub.release(r)
}
