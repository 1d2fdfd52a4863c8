package fanout

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Pages answers the hub's reads of a room's log (pages.Log is one): it
// decides where a page comes from — history, else the stream — so the hub
// never does.
type Pages interface {
	// LastID is the id of the newest message of room in the stream (0:
	// none).
	LastID(ctx context.Context, room string) (uint64, error)
	// Recent is a room's newest page.
	Recent(ctx context.Context, req wire.RecentRequest) (wire.Page, error)
	// Since is the page of messages after req.After.
	Since(ctx context.Context, req wire.SinceRequest) (wire.Page, error)
}

// Backend is what the hub needs behind it: the NATS connection its rooms
// subscribe on, and the room log's pages (the edge passes its pages.Log
// with its nreq.Client).
type Backend interface {
	Pages
	// Conn is the connection the rooms' subscriptions are made on.
	Conn() *nats.Conn
	// Flush waits until the server has processed the subscriptions made.
	Flush(ctx context.Context) error
}
