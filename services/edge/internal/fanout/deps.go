package fanout

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Pages answers the hub's reads of a room's log: history's pages, and the
// same pages read from the stream while history does not answer
// (pages.Sources is one: the two sources apart, the hub choosing).
type Pages interface {
	// LastID is the id of the newest message of room in the stream (0:
	// none).
	LastID(ctx context.Context, room string) (uint64, error)
	// Recent asks history for a room's newest page.
	Recent(ctx context.Context, req wire.RecentRequest) (wire.Page, error)
	// Since asks history for the messages after req.After.
	Since(ctx context.Context, req wire.SinceRequest) (wire.Page, error)
	// StreamRecent reads the newest page from the stream, decoded by dec.
	StreamRecent(ctx context.Context, dec roomlog.Decoder, room string, limit int) (wire.Page, error)
	// StreamSince reads the page after after from the stream, decoded by
	// dec.
	StreamSince(ctx context.Context, dec roomlog.Decoder, room string, after uint64, limit int) (wire.Page, error)
}

// Backend is what the hub needs behind it: the NATS connection its rooms
// subscribe on, and the room log's pages (the edge passes pages.Sources
// with its nreq.Client).
type Backend interface {
	Pages
	// Conn is the connection the rooms' subscriptions are made on.
	Conn() *nats.Conn
	// Flush waits until the server has processed the subscriptions made.
	Flush(ctx context.Context) error
}
