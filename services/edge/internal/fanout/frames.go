package fanout

import (
	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// MessageFrame encodes a stored message as a "message" frame.
func MessageFrame(msg wire.Message) *frame.Frame {
	f := frame.Must(wire.TypeMessage, wire.MessageFrame{Type: wire.TypeMessage, Room: msg.Room, Message: msg}, frame.Essential)
	f.ID = msg.ID
	return f
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
