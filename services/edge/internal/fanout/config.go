package fanout

import (
	"time"

	"github.com/hubbub-chat/hubbub/shared/defaults"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

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

// Defaults for Config (JoinPage and PageSize default to the protocol's
// wire.DefaultPage and wire.DefaultMaxPage, MaxBody to wire.DefaultMaxBody).
const (
	DefaultFrameBytes   = 256 << 10
	DefaultPaceBytes    = 64 << 10
	DefaultStallTimeout = 30 * time.Second
	DefaultJoinBuffer   = 1024
	DefaultInbox        = 1 << 16
	DefaultRoomBacklog  = 8192
)

func (c Config) withDefaults() Config {
	defaults.Positive(&c.JoinPage, wire.DefaultPage)
	defaults.Positive(&c.PageSize, wire.DefaultMaxPage)
	defaults.Positive(&c.FrameBytes, DefaultFrameBytes)
	defaults.Positive(&c.PaceBytes, DefaultPaceBytes)
	defaults.Positive(&c.StallTimeout, DefaultStallTimeout)
	defaults.Positive(&c.JoinBuffer, DefaultJoinBuffer)
	defaults.Positive(&c.Inbox, DefaultInbox)
	defaults.Positive(&c.RoomBacklog, DefaultRoomBacklog)
	defaults.Positive(&c.MaxBody, wire.DefaultMaxBody)
	return c
}
