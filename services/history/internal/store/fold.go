package store

// Folding on insert: every change event (edit, delete, reaction) a batch
// inserts is applied, in id order and in the batch's transaction, to the
// row of the message it targets with roomlog.Apply — the one fold rule —
// and the result written back: the message row (body, edited, deleted,
// mentions), its reactions and mentions rows, and the room summary when it
// shows that message. The statements are written once, with ?
// placeholders, over either database's transaction (writeTx).
//
// Concurrent batches never fold into one message at the same time: a
// change event is in its target's room, and inserting it takes that
// room's summary row first (SQLite has a single writer; Postgres's insert
// statement upserts the batch's room rows, in room order, and holds their
// locks to commit), so folds into one room run one transaction after the
// other, each reading what the previous committed.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// writeTx is one write transaction of either database. Statements use ?
// placeholders (Postgres's are rewritten to $n).
type writeTx interface {
	exec(ctx context.Context, q string, args ...any) error
	// query runs q and calls fn with its rows, then closes them.
	query(ctx context.Context, q string, fn func(resultRows) error, args ...any) error
}

// dollar rewrites the ? placeholders of q to $1, $2, … (q holds no ?
// inside a literal).
func dollar(q string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// Encodings of the conversation columns.
func onCol(on *bool) int64 {
	switch {
	case on == nil:
		return 0
	case *on:
		return 1
	}
	return 2
}

func onOf(v int64) *bool {
	switch v {
	case 1:
		t := true
		return &t
	case 2:
		f := false
		return &f
	}
	return nil
}

func mentionsCol(ms []string) string { return strings.Join(ms, "\n") }

func mentionsOf(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// afterInsert does, in tx, what a batch's inserted rows (in id order)
// need beyond their own rows: the mentions rows of its chat messages, then
// each change event folded into its target.
func afterInsert(ctx context.Context, tx writeTx, inserted []wire.Message) error {
	for _, m := range inserted {
		if m.Kind == wire.KindMessage {
			if err := putMentions(ctx, tx, m); err != nil {
				return err
			}
		}
	}
	for _, ev := range inserted {
		if !wire.IsChange(ev.Kind) || ev.Target == 0 || ev.Target >= ev.ID {
			continue
		}
		if err := foldChange(ctx, tx, ev); err != nil {
			return fmt.Errorf("fold %s %d into %d: %w", ev.Kind, ev.ID, ev.Target, err)
		}
	}
	return nil
}

// needsFold reports whether inserting m calls for afterInsert's work.
func needsFold(m wire.Message) bool {
	return wire.IsChange(m.Kind) || (m.Kind == wire.KindMessage && len(m.Mentions) > 0)
}

// putMentions records whom m mentions (its author excepted).
func putMentions(ctx context.Context, tx writeTx, m wire.Message) error {
	for _, u := range slices.Compact(slices.Sorted(slices.Values(m.Mentions))) {
		if u == m.User || u == "" {
			continue
		}
		if err := tx.exec(ctx, `INSERT INTO mentions (id, user_id, room) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			idArg(m.ID), u, m.Room); err != nil {
			return fmt.Errorf("mentions of %d: %w", m.ID, err)
		}
	}
	return nil
}

// loadTarget reads message id of room (any kind) with its reactions and
// each emoji's epos; ok is false when no such row is stored.
func loadTarget(ctx context.Context, tx writeTx, room string, id uint64) (m wire.Message, epos map[string]int64, ok bool, err error) {
	err = tx.query(ctx, `SELECT `+messageCols+` FROM messages WHERE id = ? AND room = ?`, func(rs resultRows) error {
		for rs.Next() {
			if err := scanMessage(rs, &m); err != nil {
				return err
			}
			ok = true
		}
		return rs.Err()
	}, idArg(id), room)
	if err != nil || !ok {
		return m, nil, false, err
	}
	epos = map[string]int64{}
	err = tx.query(ctx, `SELECT emoji, user_id, epos FROM reactions WHERE target = ? ORDER BY epos, upos`, func(rs resultRows) error {
		for rs.Next() {
			var emoji, user string
			var e int64
			if err := rs.Scan(&emoji, &user, &e); err != nil {
				return err
			}
			if _, seen := epos[emoji]; !seen {
				epos[emoji] = e
				m.Reactions = append(m.Reactions, wire.Reaction{Emoji: emoji})
			}
			r := &m.Reactions[len(m.Reactions)-1]
			r.Users = append(r.Users, user)
			r.Count = len(r.Users)
		}
		return rs.Err()
	}, idArg(id))
	return m, epos, err == nil, err
}

// foldChange applies the change event ev (already inserted) to its target
// and writes the result back. A target not stored, or a change Apply
// refuses, changes nothing — except that an edit of a tombstone loses its
// text too (a deleted message's text is gone from the store).
func foldChange(ctx context.Context, tx writeTx, ev wire.Message) error {
	t, epos, ok, err := loadTarget(ctx, tx, ev.Room, ev.Target)
	if err != nil || !ok {
		return err
	}
	superseded, err := supersededBy(ctx, tx, ev)
	if err != nil {
		return err
	}
	if superseded || !roomlog.Apply(&t, ev) {
		if ev.Kind == wire.KindEdit && t.Deleted {
			return tx.exec(ctx, `UPDATE messages SET body = '', mentions = '' WHERE id = ?`, idArg(ev.ID))
		}
		return nil
	}
	id := idArg(t.ID)
	switch ev.Kind {
	case wire.KindEdit:
		if err := tx.exec(ctx, `UPDATE messages SET body = ?, edited = ?, mentions = ? WHERE id = ?`,
			t.Body, t.Edited, mentionsCol(t.Mentions), id); err != nil {
			return err
		}
		if err := tx.exec(ctx, `DELETE FROM mentions WHERE id = ?`, id); err != nil {
			return err
		}
		if err := putMentions(ctx, tx, t); err != nil {
			return err
		}
		return tx.exec(ctx, `UPDATE rooms SET last_body = ? WHERE room = ? AND last_id = ?`, t.Body, t.Room, id)
	case wire.KindDelete:
		// Edited is that of the last edit before the delete (a later one,
		// committed first by another batch, was never part of the message).
		if err := tx.exec(ctx, `UPDATE messages SET edited = COALESCE((SELECT e.ts FROM messages e
			WHERE e.target = ? AND e.kind = 'edit' AND e.user_id = ? AND e.id < ? ORDER BY e.id DESC LIMIT 1), 0) WHERE id = ?`,
			id, t.User, idArg(ev.ID), id); err != nil {
			return err
		}
		for _, q := range []string{
			`UPDATE messages SET body = '', deleted = 1, mentions = '' WHERE id = ?`,
			// The text of every edit of the message goes with it.
			`UPDATE messages SET body = '', mentions = '' WHERE target = ? AND kind = 'edit'`,
			`DELETE FROM mentions WHERE id = ?`,
			`DELETE FROM reactions WHERE target = ?`,
		} {
			if err := tx.exec(ctx, q, id); err != nil {
				return err
			}
		}
		return tx.exec(ctx, `UPDATE rooms SET last_body = '' WHERE room = ? AND last_id = ?`, t.Room, id)
	case wire.KindReaction:
		if !*ev.On {
			return tx.exec(ctx, `DELETE FROM reactions WHERE target = ? AND emoji = ? AND user_id = ?`, id, ev.Emoji, ev.User)
		}
		e, had := epos[ev.Emoji]
		if !had {
			e = idArg(ev.ID)
		}
		return tx.exec(ctx, `INSERT INTO reactions (target, emoji, user_id, room, epos, upos) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`, id, ev.Emoji, ev.User, t.Room, e, idArg(ev.ID))
	}
	return nil
}

// supersededBy reports whether a newer event already stored makes ev
// moot: batches commit out of id order (concurrent inserts, several
// replicas), so an edit is applied only if no later edit of its target by
// the same user is stored, and a reaction only if no later reaction of
// the same user with the same emoji is — the state is then the one the
// events give in id order.
func supersededBy(ctx context.Context, tx writeTx, ev wire.Message) (bool, error) {
	var q string
	args := []any{idArg(ev.Target), ev.User, idArg(ev.ID)}
	switch ev.Kind {
	case wire.KindEdit:
		q = `SELECT count(*) FROM messages WHERE target = ? AND kind = 'edit' AND user_id = ? AND id > ?`
	case wire.KindReaction:
		q = `SELECT count(*) FROM messages WHERE target = ? AND kind = 'reaction' AND user_id = ? AND id > ? AND emoji = ?`
		args = append(args, ev.Emoji)
	default:
		return false, nil
	}
	var n int64
	err := tx.query(ctx, q, func(rs resultRows) error {
		for rs.Next() {
			if err := rs.Scan(&n); err != nil {
				return err
			}
		}
		return rs.Err()
	}, args...)
	return n > 0, err
}

// decorator is what the page reads need beyond the message rows: their
// reactions and the rows they reply to.
type decorator interface {
	// reactions returns the reactions of room's messages with ids in
	// [lo, hi], by message id, each in order.
	reactions(ctx context.Context, room string, lo, hi uint64) (map[uint64][]wire.Reaction, error)
	// rows returns the messages of room (kinds message and system) with
	// the given ids, by id.
	rows(ctx context.Context, room string, ids []uint64) (map[uint64]wire.Message, error)
}

// byID indexes messages by id (the rows a decorator reads).
func byID(ms []wire.Message) map[uint64]wire.Message {
	out := make(map[uint64]wire.Message, len(ms))
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

// decorate completes folded messages (ascending ids, of room) read from
// their rows: their reactions, and the quote of the message each replies
// to (from items when it is one of them, else read in one query).
func decorate(ctx context.Context, d decorator, room string, items []wire.Message) error {
	if len(items) == 0 {
		return nil
	}
	rs, err := d.reactions(ctx, room, items[0].ID, items[len(items)-1].ID)
	if err != nil {
		return err
	}
	at := make(map[uint64]int, len(items))
	var missing []uint64
	for i := range items {
		at[items[i].ID] = i
		if !items[i].Deleted {
			items[i].Reactions = rs[items[i].ID]
		}
	}
	for _, m := range items {
		if _, ok := at[m.ReplyTo]; m.ReplyTo != 0 && !m.Deleted && !ok {
			missing = append(missing, m.ReplyTo)
		}
	}
	var quoted map[uint64]wire.Message
	if len(missing) > 0 {
		slices.Sort(missing)
		if quoted, err = d.rows(ctx, room, slices.Compact(missing)); err != nil {
			return err
		}
	}
	for i := range items {
		m := &items[i]
		if m.ReplyTo == 0 || m.Deleted {
			continue
		}
		if j, ok := at[m.ReplyTo]; ok {
			q := roomlog.QuoteOf(items[j])
			m.Reply = &q
		} else if r, ok := quoted[m.ReplyTo]; ok {
			q := roomlog.QuoteOf(r)
			m.Reply = &q
		}
	}
	return nil
}

// readReactions reads rows of (target, emoji, user_id), ordered by
// target, epos, upos, into reactions by target.
func readReactions(rs resultRows) (map[uint64][]wire.Reaction, error) {
	out := map[uint64][]wire.Reaction{}
	for rs.Next() {
		var target int64
		var emoji, user string
		if err := rs.Scan(&target, &emoji, &user); err != nil {
			return nil, fmt.Errorf("reactions scan: %w", err)
		}
		id := uint64(target)
		l := out[id]
		if len(l) == 0 || l[len(l)-1].Emoji != emoji {
			l = append(l, wire.Reaction{Emoji: emoji})
		}
		r := &l[len(l)-1]
		r.Users = append(r.Users, user)
		r.Count = len(r.Users)
		out[id] = l
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("reactions rows: %w", err)
	}
	return out, nil
}

// Read statements of the conversation, ? placeholders.
const (
	sqlReactions = `SELECT target, emoji, user_id FROM reactions
		WHERE room = ? AND target >= ? AND target <= ? ORDER BY target, epos, upos`
	// sqlUnreadCount and sqlUnreadMentions count at most wire.MaxUnread
	// rows each (a LIMIT subquery): the cost is bounded however far
	// behind the read mark is.
	sqlUnreadCount = `SELECT count(*) FROM (SELECT 1 FROM messages
		WHERE room = ? AND id > ? AND kind = 'message' AND user_id <> ? AND deleted = 0 LIMIT ?) u`
	sqlUnreadMentions = `SELECT count(*) FROM (SELECT 1 FROM mentions
		WHERE user_id = ? AND room = ? AND id > ? LIMIT ?) u`
)

// MaxUnreadRooms is the most read marks one Unread call answers.
const MaxUnreadRooms = 1000

// checkUnread validates an Unread call.
func checkUnread(user string, marks []wire.ReadMark) error {
	if user == "" {
		return fmt.Errorf("%w: empty user", ErrInvalidArgument)
	}
	if len(marks) > MaxUnreadRooms {
		return fmt.Errorf("%w: %d rooms, at most %d", ErrInvalidArgument, len(marks), MaxUnreadRooms)
	}
	for _, m := range marks {
		if m.Room == "" {
			return fmt.Errorf("%w: empty room", ErrInvalidArgument)
		}
	}
	return nil
}
