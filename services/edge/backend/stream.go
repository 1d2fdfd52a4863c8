package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// StreamRecentWindow is how many stream sequences before a room's newest
// message StreamRecent scans, per message asked for.
const StreamRecentWindow = 20

// StreamSince reads up to limit messages of room after id directly from
// the CHAT stream: the fallback while history does not answer. The page
// is chained from after (its first item's prev is after) and recovered,
// unless the stream no longer holds the messages right after after: then
// it is the newest page with Recovered false.
func (c *Client) StreamSince(ctx context.Context, room string, after uint64, limit int) (wire.Page, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	st, err := c.js.Stream(ctx, subjects.Stream)
	if err != nil {
		return wire.Page{}, classify(subjects.Stream, err)
	}
	if first := st.CachedInfo().State.FirstSeq; after+1 < first && after > 0 {
		// The stream no longer has what follows after: like history,
		// answer the newest page, not recovered.
		p, err := c.StreamRecent(ctx, room, limit)
		p.Recovered = false
		return p, err
	}
	items, pending, err := c.streamRead(ctx, room, after+1, limit)
	if err != nil {
		return wire.Page{}, err
	}
	prev := after
	for i := range items {
		items[i].Prev, prev = prev, items[i].ID
	}
	return wire.Page{Room: room, Items: items, HasMore: pending > 0, Recovered: true}, nil
}

// StreamRecent reads the newest messages of room (at most limit) directly
// from the CHAT stream: the fallback while history does not answer. It
// scans at most StreamRecentWindow×limit sequences back from the room's
// newest message, so in a busy stream the page may hold fewer; HasMore
// then says earlier messages may exist. The first item's prev is 0
// (unknown).
func (c *Client) StreamRecent(ctx context.Context, room string, limit int) (wire.Page, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	last, err := c.LastID(ctx, room)
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
	items, _, err := c.streamRead(ctx, room, start, int(window))
	if err != nil {
		return wire.Page{}, err
	}
	hasMore := start > 1
	if len(items) > limit {
		items, hasMore = items[len(items)-limit:], true
	}
	for i := range items {
		if i > 0 {
			items[i].Prev = items[i-1].ID
		}
	}
	return wire.Page{Room: room, Items: items, HasMore: hasMore, Recovered: true}, nil
}

// streamRead reads up to limit messages of room from sequence start on,
// with an ephemeral consumer that is deleted afterwards; pending is how
// many more the room has after them.
func (c *Client) streamRead(ctx context.Context, room string, start uint64, limit int) ([]wire.Message, uint64, error) {
	subj := subjects.Room(room)
	cons, err := c.js.CreateConsumer(ctx, subjects.Stream, jetstream.ConsumerConfig{
		FilterSubject:     subj,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return nil, 0, classify(subj, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		_ = c.js.DeleteConsumer(dctx, subjects.Stream, cons.CachedInfo().Name)
	}()
	items := []wire.Message{}
	var pending uint64
	if cons.CachedInfo().NumPending == 0 {
		return items, 0, nil
	}
	for len(items) < limit {
		want := min(limit-len(items), 256)
		batch, err := cons.FetchNoWait(want)
		if err != nil {
			return nil, 0, classify(subj, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, 0, fmt.Errorf("%s: metadata: %w", subj, err)
			}
			var p wire.Post
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				continue // not a message: skip, as history does
			}
			items = append(items, p.Stored(md.Sequence.Stream, 0))
			pending = md.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, 0, classify(subj, err)
		}
		if n == 0 || pending == 0 {
			break
		}
	}
	return items, pending, nil
}
