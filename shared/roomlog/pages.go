package roomlog

// Pages: a room's pages (recent, since) as gapless chains from a store that
// may lag the stream — history's database.
//
// Ingest acknowledges a message only after its row is committed, so every
// message at or below the consumer's ack floor (the "stored watermark") is
// in the database. Above it, rows may be missing or present out of order
// (several replicas insert concurrently), so the part of a room above the
// watermark is read from the stream itself, and the two parts are joined
// into one chain with each Prev computed in sequence (Link).

import (
	"context"
	"errors"
	"fmt"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrCatchingUp is returned when answering would mean reading more of the
// stream than MaxScan allows: the database is far behind; retry later.
var ErrCatchingUp = errors.New("history is catching up with the stream")

// ErrNotFound is returned by Message (and a Store's Message) when the id
// is not a message (KindMessage, KindSystem) of the room that is kept.
var ErrNotFound = errors.New("message not found")

// Marks are the positions a page is computed against.
type Marks struct {
	// Stored is a watermark at or below which every message is stored:
	// the consumer's ack floor, read before the database is queried.
	Stored uint64
	// First is the stream's first sequence (0 when unknown).
	First uint64
}

// Store is the stored part of a room log: history's database (its
// store.Store has these methods).
type Store interface {
	// Recent returns the newest limit messages of room with id < before
	// (before 0: no bound) in ascending order, Prev filled in, HasMore
	// when older messages are stored.
	Recent(ctx context.Context, room string, before uint64, limit int) (wire.Page, error)
	// Since returns the oldest limit messages of room with id > after in
	// ascending order, Prev filled in, HasMore when more follow; when
	// after is older than what is kept, the newest page with Recovered
	// false.
	Since(ctx context.Context, room string, after uint64, limit int) (wire.Page, error)
	// Prev returns the id of the newest stored message of room with id <
	// below, or the room's retention watermark if none is stored (0 for a
	// room never trimmed).
	Prev(ctx context.Context, room string, below uint64) (uint64, error)
}

// RoomScanner reads a room's messages from the stream; *Reader is one
// (see Reader.ScanRoom).
type RoomScanner interface {
	// ScanRoom calls fn with every message of room at or after from that
	// dec accepts, in order, until fn returns false; reading more than
	// maxScan (> 0) stream messages fails with ErrScanLimit.
	ScanRoom(ctx context.Context, dec Decoder, room string, from uint64, maxScan int, fn func(wire.Message) bool) error
}

// Pages joins a store with the stream above its watermark.
type Pages struct {
	// Store holds messages up to Marks().Stored.
	Store Store
	// Stream reads messages above it.
	Stream RoomScanner
	// Marks returns the current marks. A stale (lower) Stored is always
	// safe: more is read from the stream.
	Marks func() Marks
	// Decoder decodes stream messages as ingest does: what ingest parks
	// (undecodable or invalid messages) is skipped, so a room read from
	// the stream is the room the database will hold.
	Decoder Decoder
	// MaxScan bounds how many stream messages one request may read.
	MaxScan int
	// OnStreamRead, if set, is told how many messages a request served
	// from the stream.
	OnStreamRead func(n int)
}

// scan reads room's messages from the stream starting at from, calling fn
// with each decodable one until fn returns false.
func (r *Pages) scan(ctx context.Context, room string, from uint64, fn func(wire.Message) bool) error {
	err := r.Stream.ScanRoom(ctx, r.Decoder, room, from, r.MaxScan, fn)
	if errors.Is(err, ErrScanLimit) {
		return fmt.Errorf("%w: room %s has more than %d unstored messages", ErrCatchingUp, room, r.MaxScan)
	}
	if err != nil {
		return fmt.Errorf("read %s from stream: %w", room, err)
	}
	return nil
}

// Recent answers a recent request: the newest limit messages of room below
// before (0: the newest page).
func (r *Pages) Recent(ctx context.Context, room string, before uint64, limit int) (wire.Page, error) {
	m := r.Marks()
	w := m.Stored
	if before != 0 && before-1 <= w {
		return r.Store.Recent(ctx, room, before, limit)
	}
	// The stream part: every message in (w, before), keeping the newest
	// limit+1 (the extra one is the first item's prev and proves has_more).
	var ring []wire.Message
	err := r.scan(ctx, room, w+1, func(msg wire.Message) bool {
		if before != 0 && msg.ID >= before {
			return false
		}
		if len(ring) == limit+1 {
			ring = append(ring[:0], ring[1:]...)
		}
		ring = append(ring, msg)
		return true
	})
	if err != nil {
		return wire.Page{}, err
	}
	page := wire.Page{Room: room, Items: []wire.Message{}, Recovered: true}
	if len(ring) == limit+1 {
		page.Items = Link(ring[1:], ring[0].ID)
		page.HasMore = true
		r.counted(len(page.Items))
		return page, nil
	}
	if len(ring) == 0 {
		r.counted(0)
		return r.Store.Recent(ctx, room, w+1, limit)
	}
	// The database part: the newest rows at or below w.
	want := limit - len(ring)
	db, err := r.Store.Recent(ctx, room, w+1, max(want, 1))
	if err != nil {
		return wire.Page{}, err
	}
	var floor uint64
	switch {
	case want == 0:
		page.HasMore = len(db.Items) > 0
		if len(db.Items) > 0 {
			floor = db.Items[len(db.Items)-1].ID
		}
	case len(db.Items) > 0:
		page.Items = db.Items
		page.HasMore = db.HasMore
		floor = db.Items[len(db.Items)-1].ID
	default:
		if floor, err = r.Store.Prev(ctx, room, w+1); err != nil {
			return wire.Page{}, err
		}
	}
	page.Items = append(page.Items, Link(ring, floor)...)
	r.counted(len(ring))
	return page, nil
}

// Since answers a since request: the oldest limit messages of room after
// after, or the newest page with Recovered false when after is older than
// what is kept.
func (r *Pages) Since(ctx context.Context, room string, after uint64, limit int) (wire.Page, error) {
	m := r.Marks()
	w := m.Stored
	db, err := r.Store.Since(ctx, room, after, limit)
	if err != nil {
		return wire.Page{}, err
	}
	lo := max(after, w)
	if !db.Recovered || (m.First > 1 && lo+1 < m.First) {
		// Retention (the database's, or the stream's for what the
		// database does not hold) removed messages after `after`.
		page, err := r.Recent(ctx, room, 0, limit)
		page.Recovered = false
		return page, err
	}
	items := make([]wire.Message, 0, limit+1)
	for _, it := range db.Items {
		if it.ID <= w {
			items = append(items, it)
		}
	}
	if len(items) == limit && db.HasMore {
		return wire.Page{Room: room, Items: items, HasMore: true, Recovered: true}, nil
	}
	var prev uint64
	if len(items) > 0 {
		prev = items[len(items)-1].ID
	} else if prev, err = r.Store.Prev(ctx, room, min(after, w)+1); err != nil {
		return wire.Page{}, err
	}
	streamed := 0
	err = r.scan(ctx, room, w+1, func(msg wire.Message) bool {
		if msg.ID <= after {
			prev = msg.ID
			return true
		}
		msg.Prev = prev
		prev = msg.ID
		items = append(items, msg)
		streamed++
		return len(items) <= limit
	})
	if err != nil {
		return wire.Page{}, err
	}
	page := wire.Page{Room: room, Items: items, Recovered: true}
	if len(items) > limit {
		page.Items = items[:limit]
		page.HasMore = true
		streamed--
	}
	r.counted(streamed)
	return page, nil
}

func (r *Pages) counted(n int) {
	if r.OnStreamRead != nil && n > 0 {
		r.OnStreamRead(n)
	}
}
