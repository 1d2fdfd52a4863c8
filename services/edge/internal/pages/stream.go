package pages

import (
	"context"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// StreamRecentWindow is how many stream sequences before a room's newest
// message StreamRecent scans, per message asked for.
const StreamRecentWindow = 20

// The stream fallback below reads the CHAT stream as the room log
// (shared/roomlog) reads it, the way history reads what its database has
// not stored yet: JetStream direct gets ("next message by subject",
// batched: $JS.API.DIRECT.GET.CHAT under the handle's domain), decoded by
// history's rule, never with a consumer: the edge's NATS user may read CHAT but not create
// consumers on it (deploy/nats/auth.conf), and a read creates no server
// state. Direct gets may be answered by any replica of the stream, so a
// page can end a message or two before the leader's newest one; the
// edge's gap filling covers that as it covers any gap.

// StreamSince reads up to limit events of room after id directly from
// the CHAT stream, raw (messages and change events, as a since page is):
// the fallback while history does not answer. Last is the newest event
// read (after when none). Stored messages dec refuses are skipped, as history skips them (dec must be
// history's decoder: the body limit is the edges' MaxBody). The page
// is chained from after (its first item's prev is after) and recovered,
// unless the stream no longer holds the messages right after after: then
// it is the newest page with Recovered false.
func (l *Log) StreamSince(ctx context.Context, dec roomlog.Decoder, room string, after uint64, limit int) (wire.Page, error) {
	ctx, cancel := context.WithTimeout(ctx, l.req.Timeout())
	defer cancel()
	st, err := l.js.Stream(ctx, subjects.Stream)
	if err != nil {
		return wire.Page{}, nreq.Classify(subjects.Stream, err)
	}
	if first := st.CachedInfo().State.FirstSeq; after+1 < first && after > 0 {
		// The stream no longer has what follows after: like history,
		// answer the newest page, not recovered.
		p, err := l.StreamRecent(ctx, dec, room, limit)
		p.Recovered = false
		return p, err
	}
	items, more, err := l.streamRead(ctx, dec, room, after+1, limit)
	if err != nil {
		return wire.Page{}, err
	}
	last := after
	if n := len(items); n > 0 {
		last = items[n-1].ID
	}
	return wire.Page{Room: room, Items: roomlog.Link(items, after), HasMore: more, Recovered: true, Last: last}, nil
}

// StreamRecent reads the newest messages of room (at most limit) directly
// from the CHAT stream: the fallback while history does not answer,
// decoded by dec as StreamSince decodes, and folded as history folds
// (roomlog.Fold: the page holds messages with the changes of the run
// applied; a change whose target is older than the run is not shown). It
// scans at most StreamRecentWindow×limit sequences back from the room's
// newest event, so in a busy stream the page may hold fewer; HasMore then
// says earlier messages may exist. Last is the newest event read. Each
// item's prev is the event before it in the room (changes included), the
// run's first event's 0 (unknown).
func (l *Log) StreamRecent(ctx context.Context, dec roomlog.Decoder, room string, limit int) (wire.Page, error) {
	ctx, cancel := context.WithTimeout(ctx, l.req.Timeout())
	defer cancel()
	last, err := l.LastID(ctx, room)
	if err != nil {
		return wire.Page{}, err
	}
	if last == 0 {
		return wire.Page{Room: room, Items: []wire.Message{}, Recovered: true}, nil
	}
	window := uint64(limit) * StreamRecentWindow
	start := uint64(1)
	if last > window {
		start = last - window + 1
	}
	events, _, err := l.streamRead(ctx, dec, room, start, int(window))
	if err != nil {
		return wire.Page{}, err
	}
	items, folded := roomlog.Fold(roomlog.Link(events, 0))
	hasMore := start > 1
	if len(items) > limit {
		items, hasMore = items[len(items)-limit:], true
	}
	return wire.Page{Room: room, Items: items, HasMore: hasMore, Recovered: true, Last: folded}, nil
}

// streamRead reads up to limit messages of room from sequence start on
// with direct gets (roomlog.Reader.ScanRoom); more is true when the room
// has more after them. What dec refuses is skipped, as history skips it.
func (l *Log) streamRead(ctx context.Context, dec roomlog.Decoder, room string, start uint64, limit int) ([]wire.Message, bool, error) {
	items := []wire.Message{}
	more := false
	err := roomlog.NewReader(l.req.Conn(), l.js, subjects.Stream).ScanRoom(ctx, dec, room, start, 0, func(m wire.Message) bool {
		if len(items) >= limit {
			more = true
			return false
		}
		items = append(items, m)
		return true
	})
	if err != nil {
		return nil, false, nreq.Classify(subjects.Room(room), err)
	}
	return items, more, nil
}
