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

// histPage is a page as the catch-up sends it: its items (after the
// member's view), its chain cursor (wire.Page.Last) and its flags. Every
// frame but the last of a split page carries splitMore as has_more, the
// last hasMore.
type histPage struct {
	items                         []wire.Message
	last                          uint64
	hasMore, splitMore, recovered bool
}

// historyFrames encodes p as one history frame, or several when the
// encoding passes FrameBytes. Each frame's last, and its ID (the SSE event
// id, from which a stream resumes), is the chain cursor after what it
// accounts for: the page's Last for the last frame, the last item's id
// for the frames before it.
func (h *Hub) historyFrames(room string, p histPage) []*frame.Frame {
	items := p.items
	if items == nil {
		items = []wire.Message{}
	}
	f := frame.Must(wire.TypeHistory, wire.History{Type: wire.TypeHistory, Room: room, Items: items, HasMore: p.hasMore, Recovered: p.recovered, Last: p.last}, frame.Essential)
	f.ID = p.last
	if len(f.JSON) <= h.cfg.FrameBytes || len(items) < 2 {
		return []*frame.Frame{f}
	}
	half := len(items) / 2
	head, tail := p, p
	head.items, head.last, head.hasMore = items[:half], items[half-1].ID, p.splitMore
	tail.items = items[half:]
	return append(h.historyFrames(room, head), h.historyFrames(room, tail)...)
}
