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
	// Recent returns the newest limit messages (KindMessage, KindSystem)
	// of room with id < before (before 0: no bound) in ascending order,
	// folded (every stored change applied, replies quoted), Prev filled
	// in, HasMore when older messages are stored, Last the newest stored
	// event id below before.
	Recent(ctx context.Context, room string, before uint64, limit int) (wire.Page, error)
	// Since returns the oldest limit events (every kind) of room with
	// id > after in ascending order, Prev filled in, HasMore when more
	// follow; when after is older than what is kept, the newest (Recent)
	// page with Recovered false.
	Since(ctx context.Context, room string, after uint64, limit int) (wire.Page, error)
	// Message returns message id of room folded as Recent shows it, or an
	// error wrapping ErrNotFound when it is not a stored message of room.
	Message(ctx context.Context, room string, id uint64) (wire.Message, error)
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
// before (0: the newest page), folded. The stream part (above the
// watermark) is raw events: it is folded (Fold), and its changes are
// applied (Apply) to the stored messages of the page too; a reply whose
// target is in the page, or stored, is quoted. Last is the newest event id
// below before that the page accounts for (stored or streamed).
func (r *Pages) Recent(ctx context.Context, room string, before uint64, limit int) (wire.Page, error) {
	m := r.Marks()
	w := m.Stored
	dbBefore := w + 1 // the stored part is below dbBefore
	if before != 0 && before-1 <= w {
		dbBefore = before
	}
	// The stream part: every event above w (at most MaxScan), less the
	// messages at or after before; the changes after before count too (a
	// stored page shows every change stored, whatever its id). A page
	// wholly below the watermark usually finds nothing there: one round
	// trip.
	var (
		evs  []wire.Message
		last uint64
	)
	err := r.scan(ctx, room, w+1, func(ev wire.Message) bool {
		if before != 0 && ev.ID >= before {
			if wire.IsChange(ev.Kind) {
				evs = append(evs, ev)
			}
			return true
		}
		last = ev.ID
		evs = append(evs, ev)
		return true
	})
	if err != nil {
		return wire.Page{}, err
	}
	folded, _ := Fold(evs)
	page := wire.Page{Room: room, Items: []wire.Message{}, Recovered: true, Last: last}
	if len(folded) > limit {
		n := len(folded) - limit
		page.Items = Link(folded[n:], folded[n-1].ID)
		page.HasMore = true
		if err := r.joinFolds(ctx, room, w, page.Items, 0, evs); err != nil {
			return wire.Page{}, err
		}
		r.counted(len(evs))
		return page, nil
	}
	// The database part: the newest messages at or below w.
	want := limit - len(folded)
	db, err := r.Store.Recent(ctx, room, dbBefore, max(want, 1))
	if err != nil {
		return wire.Page{}, err
	}
	page.Last = max(page.Last, db.Last)
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
		if floor, err = r.Store.Prev(ctx, room, dbBefore); err != nil {
			return wire.Page{}, err
		}
	}
	stored := len(page.Items)
	page.Items = append(page.Items, Link(folded, floor)...)
	if err := r.joinFolds(ctx, room, w, page.Items, stored, evs); err != nil {
		return wire.Page{}, err
	}
	r.counted(len(evs))
	return page, nil
}

// joinFolds completes a page joined from stored items (items[:stored],
// folded by the store) and streamed ones (folded among themselves): the
// stream's changes evs are applied to the stored items they target, and
// every reply is quoted again from the page (its target may have changed)
// or, for a streamed reply to an older message, from the store.
func (r *Pages) joinFolds(ctx context.Context, room string, w uint64, items []wire.Message, stored int, evs []wire.Message) error {
	at := make(map[uint64]int, len(items))
	for i, it := range items {
		at[it.ID] = i
	}
	if stored > 0 {
		for _, ev := range evs {
			if i, ok := at[ev.Target]; ok && wire.IsChange(ev.Kind) && i < stored {
				Apply(&items[i], ev)
			}
		}
	}
	for i := range items {
		it := &items[i]
		if it.ReplyTo == 0 || it.Deleted {
			continue
		}
		if j, ok := at[it.ReplyTo]; ok {
			q := QuoteOf(items[j])
			it.Reply = &q
			continue
		}
		if it.ReplyTo > w || (i < stored && !changes(evs, it.ReplyTo)) {
			continue // Fold or the store quoted it (or its target is not kept)
		}
		t, err := r.Store.Message(ctx, room, it.ReplyTo)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if wire.IsChange(ev.Kind) && ev.Target == t.ID {
				Apply(&t, ev)
			}
		}
		q := QuoteOf(t)
		it.Reply = &q
	}
	return nil
}

// changes reports whether evs holds a change event of message id.
func changes(evs []wire.Message, id uint64) bool {
	for _, ev := range evs {
		if ev.Target == id && wire.IsChange(ev.Kind) {
			return true
		}
	}
	return false
}

// Message answers a message request: message id of room (KindMessage or
// KindSystem) folded as a page shows it — stored or, above the watermark,
// read from the stream, with the stream's changes applied either way — or
// an error wrapping ErrNotFound.
func (r *Pages) Message(ctx context.Context, room string, id uint64) (wire.Message, error) {
	w := r.Marks().Stored
	var evs []wire.Message
	err := r.scan(ctx, room, w+1, func(ev wire.Message) bool {
		evs = append(evs, ev)
		return true
	})
	if err != nil {
		return wire.Message{}, err
	}
	r.counted(len(evs))
	m, err := r.resolve(ctx, room, id, w, evs)
	if err != nil {
		return wire.Message{}, err
	}
	if m.ReplyTo != 0 && !m.Deleted && (id > w || m.ReplyTo > w || len(evs) > 0) {
		m.Reply = nil
		t, err := r.resolve(ctx, room, m.ReplyTo, w, evs)
		switch {
		case err == nil:
			q := QuoteOf(t)
			m.Reply = &q
		case !errors.Is(err, ErrNotFound):
			return wire.Message{}, err
		}
	}
	return m, nil
}

// resolve returns message id of room, stored (id <= w) or among the
// stream events evs above w, with the changes of evs applied; its Reply
// is the store's (stale when evs changed its target).
func (r *Pages) resolve(ctx context.Context, room string, id, w uint64, evs []wire.Message) (wire.Message, error) {
	var (
		m     wire.Message
		found bool
	)
	if id <= w {
		var err error
		if m, err = r.Store.Message(ctx, room, id); err != nil {
			return wire.Message{}, err
		}
		found = true
	}
	for _, ev := range evs {
		switch {
		case !found && ev.ID == id && !wire.IsChange(ev.Kind):
			m, found = ev, true
			m.Prev = 0
		case found && wire.IsChange(ev.Kind) && ev.Target == id:
			Apply(&m, ev)
		}
	}
	if !found {
		return wire.Message{}, fmt.Errorf("%w: message %d of room %s", ErrNotFound, id, room)
	}
	return m, nil
}

// Since answers a since request: the oldest limit events of room after
// after, raw (changes included), Last the last one's id (after when
// none), or the newest (folded) page with Recovered false when after is
// older than what is kept.
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
		return wire.Page{Room: room, Items: items, HasMore: true, Recovered: true, Last: items[len(items)-1].ID}, nil
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
	page := wire.Page{Room: room, Items: items, Recovered: true, Last: after}
	if len(items) > limit {
		page.Items = items[:limit]
		page.HasMore = true
		streamed--
	}
	if len(page.Items) > 0 {
		page.Last = page.Items[len(page.Items)-1].ID
	}
	r.counted(streamed)
	return page, nil
}

func (r *Pages) counted(n int) {
	if r.OnStreamRead != nil && n > 0 {
		r.OnStreamRead(n)
	}
}
