package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// trimTx is one database's statements of a retention batch (Store.Trim),
// in one transaction; trimBatch is the batch's logic, written once.
type trimTx interface {
	// head returns up to batch of the oldest messages, by id.
	head(ctx context.Context, batch int) ([]wire.Message, error)
	// deleteThrough deletes the messages with ids up to id and returns
	// the per-room tallies of the rows it deleted and their number.
	deleteThrough(ctx context.Context, id uint64) (map[string]roomTrim, int, error)
	// raise raises room's watermark to rt.through and subtracts rt.count
	// from its message count.
	raise(ctx context.Context, room string, rt roomTrim) error
}

// trimBatch deletes, in tx, the oldest messages older than cutoff among
// the batch oldest, raises their rooms' watermarks and returns how many
// rows it deleted.
func trimBatch(ctx context.Context, tx trimTx, cutoff time.Time, batch int) (int, error) {
	ms, err := tx.head(ctx, batch)
	if err != nil {
		return 0, err
	}
	k := trimPrefix(ms, cutoff)
	if k == 0 {
		return 0, nil
	}
	// The rows actually deleted (RETURNING) drive the watermarks and the
	// lobby counts, so they stay exact even if a concurrent ingest
	// committed an older id after the read above.
	tally, n, err := tx.deleteThrough(ctx, ms[k-1].ID)
	if err != nil {
		return 0, err
	}
	for _, room := range slices.Sorted(maps.Keys(tally)) { // a fixed lock order
		if err := tx.raise(ctx, room, tally[room]); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// trimPrefix returns how many of rows (oldest first) are older than cutoff
// before the first that is not.
func trimPrefix(rows []wire.Message, cutoff time.Time) int {
	ms := cutoff.UnixMilli()
	for i, r := range rows {
		if r.TS >= ms {
			return i
		}
	}
	return len(rows)
}

// roomTrim is what one retention batch deleted from a room: the newest
// id (the room's new watermark) and how many rows (subtracted from the
// room's message count).
type roomTrim struct {
	through uint64
	count   int64
}

// tallyTrim adds one deleted row to the per-room tally (the count is of
// chat messages, as the room summary's).
func tallyTrim(t map[string]roomTrim, room string, id uint64, kind string) {
	rt := t[room]
	rt.through = max(rt.through, id)
	if kind == wire.KindMessage {
		rt.count++
	}
	t[room] = rt
}

// tallyDeleted reads the (room, id, kind) rows a trim deleted into per-room
// tallies and returns them with the number of rows.
func tallyDeleted(rs resultRows, what string) (map[string]roomTrim, int, error) {
	tally := map[string]roomTrim{}
	n := 0
	for rs.Next() {
		var room, kind string
		var id int64
		if err := rs.Scan(&room, &id, &kind); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", what, err)
		}
		tallyTrim(tally, room, uint64(id), kind)
		n++
	}
	if err := rs.Err(); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", what, err)
	}
	return tally, n, nil
}
