package session

import (
	"context"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Sink is a transport's outbound side: everything a session writes to its
// client goes through it. A WebSocket connection (ws.Conn) and an SSE
// stream are sinks; the fan-out hub writes room traffic to the same sink.
// Every method must be safe for concurrent use and must never block (Send
// is called under a room's lock).
type Sink interface {
	// Send queues f for the client; false means f was shed or the sink is
	// closing.
	Send(f *frame.Frame) bool
	// QueuedBytes is how many bytes wait to be written (catch-ups are
	// paced on it).
	QueuedBytes() int
	// Close starts closing the transport with a close code (1012 on
	// drain, …) and a reason.
	Close(code uint16, reason string)
}

// Hub puts a session's sink in a room's live traffic (fanout.Hub, through
// FanoutHub).
type Hub interface {
	// Join sends the room's history to req.Sink and makes it live; see
	// fanout.Hub.Join.
	Join(ctx context.Context, req fanout.JoinRequest) (Member, error)
}

// Member is a sink's place in a room; Leave stops deliveries (idempotent).
type Member interface {
	Leave()
}

// FanoutHub adapts a fanout.Hub to Hub.
func FanoutHub(h *fanout.Hub) Hub { return fanoutHub{h} }

type fanoutHub struct{ h *fanout.Hub }

func (f fanoutHub) Join(ctx context.Context, req fanout.JoinRequest) (Member, error) {
	m, err := f.h.Join(ctx, req)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return m, nil
}

// Presence keeps a connection's presence in the rooms it joined
// (registry.Presence implements it).
type Presence interface {
	// Register wants ev's connection in its room, in the background;
	// joined, if not nil, runs once presence confirmed it.
	Register(ev wire.ConnEvent, joined func(context.Context))
	// Unregister wants it gone (retried until presence confirms).
	Unregister(ev wire.ConnEvent)
	// Roster is one page of a room's online users.
	Roster(ctx context.Context, req wire.RosterRequest) (wire.RosterReply, error)
}

// Pages reads a room's log (pages.Log implements it: history, else the
// stream).
type Pages interface {
	// Recent is a page of a room's messages before req.Before.
	Recent(ctx context.Context, req wire.RecentRequest) (wire.Page, error)
	// Message is one message of room, folded; pages.ErrNotFound when id
	// is not a message (KindMessage, KindSystem) of room.
	Message(ctx context.Context, room string, id uint64) (wire.Message, error)
}

// Typist publishes typing events (publish.Typist implements it).
type Typist interface {
	// Typing publishes ev, fire and forget.
	Typing(ev wire.TypingEvent) error
}

// Publisher stores chat messages (publish.Publisher, through
// PublisherLanes).
type Publisher interface {
	// NewLane returns a lane for one client's posts.
	NewLane() Lane
}

// Lane publishes one client's events (messages and changes) without
// waiting; outcomes arrive in publish order (see publish.Lane.Post). Post
// fails at once with publish.ErrBusy when the edge's pending bound is
// reached.
type Lane interface {
	// Post publishes p; done gets its outcome.
	Post(p wire.Post, done publish.PostDone) error
}

// PublisherLanes adapts a publish.Publisher to Publisher.
func PublisherLanes(p *publish.Publisher) Publisher { return publisherLanes{p} }

type publisherLanes struct{ p *publish.Publisher }

func (p publisherLanes) NewLane() Lane { return p.p.NewLane() }

// Observer receives session events for metrics (metrics.Metrics
// implements it). Methods must not block.
type Observer interface {
	// FrameIn counts one client frame of type typ ("invalid" if unparsable).
	FrameIn(typ string)
	// FrameOut counts one frame sent to this connection only.
	FrameOut(typ string)
	// ErrorSent counts an error frame by code.
	ErrorSent(code string)
	// Published records the latency of one acked publish.
	Published(d time.Duration)
	// ConnOpened counts a connection that started being served.
	ConnOpened()
	// ConnClosed counts a served connection that ended, and why.
	ConnClosed(reason string)
}
