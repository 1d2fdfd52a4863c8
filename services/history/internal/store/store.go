// Package store persists room messages for the history service. A Store
// keeps every message exactly once (idempotent by id, the CHAT stream
// sequence), a per-room summary updated in the same transaction (so the
// lobby never scans messages), the identity of the stream the ids belong to
// and a per-room retention watermark.
//
// Two implementations sit behind the Store interface: SQLite (pure Go,
// embedded default) and Postgres (pgx). Both pass the same conformance
// suite (package storetest).
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrStreamMismatch is returned by Bind when the database already holds
// messages of a different stream instance (another name or creation time):
// mixing two id spaces would corrupt every chain.
var ErrStreamMismatch = errors.New("store belongs to a different stream")

// ErrInvalidArgument is returned for a request no store can answer (an
// empty room, a non-positive limit).
var ErrInvalidArgument = errors.New("invalid store argument")

// ErrNotFound is returned by Message when the id is not a message of the
// room that the store keeps (roomlog.ErrNotFound: Pages answers the same).
var ErrNotFound = roomlog.ErrNotFound

// ErrRejected marks a write the database refused because of the data it
// carried: a value no column of that type can hold (U+0000 or invalid
// UTF-8 in text, PostgreSQL's data exceptions), a violated constraint or
// a row over a database limit. The same write can never succeed, so
// retrying it is pointless; a batch holding such a row fails as a whole,
// and the caller isolates the row by inserting smaller batches. Failures
// of the database rather than of the data — connection refused or lost,
// timeouts, lock and serialization conflicts, a full disk, a missing
// table — never wrap ErrRejected: they are retried. Callers branch with
// errors.Is; the database's own error stays in the chain.
var ErrRejected = errors.New("rejected by the database")

// DeadLetter is a stream message ingest parked instead of storing: it is
// not a room message, it breaks the message rule (wire.CheckBody), or
// the database rejected its row (ErrRejected). Its id stays unused: the
// room's chain links the messages before and after it directly.
type DeadLetter struct {
	// Seq is the message's stream sequence (the id it would have had).
	Seq uint64
	// Room is the room named by the subject ("" when it names none).
	Room string
	// Subject is the subject the message was published to.
	Subject string
	// Payload is the message as published, byte for byte.
	Payload []byte
	// Reason is a short class (the metric label): undecodable, invalid or
	// rejected.
	Reason string
	// Detail is the error that parked the message.
	Detail string
	// ParkedAt is when the message was parked.
	ParkedAt time.Time
}

// Identity names the stream instance whose sequences are the stored ids.
type Identity struct {
	// Stream is the stream name (CHAT).
	Stream string
	// Created is the stream's creation time; a re-created stream restarts
	// its sequence at 1 and has a new creation time.
	Created time.Time
}

// String renders the identity for logs and errors.
func (id Identity) String() string {
	return id.Stream + "@" + id.Created.UTC().Format(time.RFC3339Nano)
}

// Store is the history database.
type Store interface {
	// Bind records id as the store's stream on first use (reporting
	// fresh true) and returns an error wrapping ErrStreamMismatch if the
	// store belongs to another.
	Bind(ctx context.Context, id Identity) (fresh bool, err error)
	// Insert stores msgs (every field of wire.Post, by ID; Prev and the
	// folded fields are ignored) in one transaction, skipping ids already
	// stored or already trimmed by retention, and returns the rows it
	// actually inserted, in id order. In the same transaction it folds
	// each change event it inserts (in id order, so a message and its
	// edit may share a batch) into its target with roomlog.Apply: a
	// change whose target is not stored, or that Apply refuses, is stored
	// as an event and changes nothing; an event already stored is never
	// applied again. A delete removes the target's text, that of its
	// edits, its mentions and its reactions. The room summaries count
	// chat messages (KindMessage) only.
	Insert(ctx context.Context, msgs []wire.Message) ([]wire.Message, error)
	// Recent returns the newest limit messages (KindMessage, KindSystem)
	// of room with id < before (before 0: no bound) in ascending order,
	// folded (Edited, Deleted, Reactions, Reply), each Prev the message
	// before it. HasMore is set when older messages are stored; Last is
	// the newest stored event id (any kind) below before, or the room's
	// retention watermark if none is stored. Recovered is always true.
	Recent(ctx context.Context, room string, before uint64, limit int) (wire.Page, error)
	// Since returns the oldest limit events (every kind, as stored) of
	// room with id > after in ascending order, Prev filled in; HasMore
	// when more follow; Last the last item's id (after when empty). When
	// after is older than the room's retention watermark, it returns the
	// newest (Recent) page with Recovered false instead.
	Since(ctx context.Context, room string, after uint64, limit int) (wire.Page, error)
	// Prev returns the id of the newest stored event of room with id <
	// below, or the room's retention watermark if none is stored (0 for a
	// room never trimmed).
	Prev(ctx context.Context, room string, below uint64) (uint64, error)
	// Message returns message id of room (KindMessage or KindSystem),
	// folded as Recent shows it (Prev unset), or an error wrapping
	// ErrNotFound when no such message is stored.
	Message(ctx context.Context, room string, id uint64) (wire.Message, error)
	// Unread answers, for user, each read mark: Count is the chat
	// messages (KindMessage, not deleted) by other users with an id above
	// Read, Mentions those of them that mention user, both capped at
	// wire.MaxUnread. At most MaxUnreadRooms marks.
	Unread(ctx context.Context, user string, marks []wire.ReadMark) ([]wire.UnreadCount, error)
	// Lobby returns up to limit rooms, most recently active first.
	Lobby(ctx context.Context, limit int) ([]wire.RoomSummary, error)
	// Trim deletes, in one short transaction, up to batch of the oldest
	// messages (by id) whose ts is before cutoff, stopping at the first
	// newer one, and raises the trimmed rooms' watermarks. It returns how
	// many rows it deleted; callers repeat while it returns batch.
	Trim(ctx context.Context, cutoff time.Time, batch int) (int, error)
	// Park records dead letters in one transaction, skipping sequences
	// already parked (a redelivery parks again). Text fields are stored
	// in a form every database holds (U+0000 and invalid UTF-8 replaced
	// by U+FFFD); the payload is stored byte for byte.
	Park(ctx context.Context, letters []DeadLetter) error
	// DeadLetters returns up to limit dead letters with Seq > after, in
	// sequence order.
	DeadLetters(ctx context.Context, after uint64, limit int) ([]DeadLetter, error)
	// TrimDeadLetters deletes the dead letters parked before cutoff and
	// returns how many it deleted.
	TrimDeadLetters(ctx context.Context, cutoff time.Time) (int, error)
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// Options configure Open.
type Options struct {
	// DatabaseURL selects Postgres when it starts with postgres:// or
	// postgresql://.
	DatabaseURL string
	// PostgresOptions tune the Postgres store (Pooler); with no Postgres
	// URL, Pooler must be empty or PoolerNone.
	PostgresOptions
	// DataDir holds the SQLite file history.db when DatabaseURL is empty.
	DataDir string
}

// IsPostgresURL reports whether url selects the Postgres store.
func IsPostgresURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// Open opens (creating and migrating as needed) the store selected by o.
func Open(ctx context.Context, o Options) (Store, error) {
	pg := IsPostgresURL(o.DatabaseURL)
	switch {
	case !pg && o.Pooler != "" && o.Pooler != PoolerNone:
		return nil, fmt.Errorf("%w: a Postgres pooler (%q) without a postgres:// database URL", ErrInvalidArgument, o.Pooler)
	case pg:
		return OpenPostgresWith(ctx, o.DatabaseURL, o.PostgresOptions)
	case o.DatabaseURL != "":
		return nil, fmt.Errorf("%w: database url must start with postgres:// or postgresql://", ErrInvalidArgument)
	case o.DataDir == "":
		return nil, fmt.Errorf("%w: no database url and no data dir", ErrInvalidArgument)
	default:
		return OpenSQLite(ctx, SQLitePath(o.DataDir))
	}
}

// pageQueries are the primitive reads of a room's rows and watermark that
// each database implements; the page logic built from them (pages) is
// shared.
type pageQueries interface {
	decorator
	// newest returns up to n messages (KindMessage, KindSystem) of room
	// with id < before (0: no bound), newest first, Prev unset, and the
	// newest stored id of any kind below before (0 if none).
	newest(ctx context.Context, room string, before uint64, n int) ([]wire.Message, uint64, error)
	// oldest returns up to n events of room with id > after, oldest
	// first, Prev unset, and the newest stored id <= after (0 if none).
	oldest(ctx context.Context, room string, after uint64, n int) (floor uint64, msgs []wire.Message, err error)
	// below returns the newest stored id of room below id (0 if none).
	below(ctx context.Context, room string, id uint64) (uint64, error)
	// trimmed returns the room's retention watermark.
	trimmed(ctx context.Context, room string) (uint64, error)
	// unread counts, for user, what follows mark (see Store.Unread).
	unread(ctx context.Context, user string, mark wire.ReadMark) (count, mentions int, err error)
}

func checkArgs(room string, limit int) error {
	if room == "" {
		return fmt.Errorf("%w: empty room", ErrInvalidArgument)
	}
	if limit <= 0 {
		return fmt.Errorf("%w: limit %d", ErrInvalidArgument, limit)
	}
	return nil
}

// pages implements Store's page reads (Recent, Since, Prev) once, over a
// database's pageQueries; each store embeds it, set to itself.
type pages struct{ q pageQueries }

// Recent implements Store.Recent. Rows are read before the watermark:
// retention only ever raises the watermark and deletes a prefix of ids, so
// a watermark read later that is below the oldest row proves no row older
// than it was stored when the rows were read.
func (ps pages) Recent(ctx context.Context, room string, before uint64, limit int) (wire.Page, error) {
	q := ps.q
	if err := checkArgs(room, limit); err != nil {
		return wire.Page{}, err
	}
	rows, last, err := q.newest(ctx, room, before, limit+1)
	if err != nil {
		return wire.Page{}, err
	}
	page := wire.Page{Room: room, Items: []wire.Message{}, Recovered: true, Last: last}
	var floor uint64
	if len(rows) > limit {
		page.HasMore = true
		floor = rows[limit].ID
		rows = rows[:limit]
	} else {
		t, err := q.trimmed(ctx, room)
		if err != nil {
			return wire.Page{}, err
		}
		if before == 0 || t < before {
			page.Last = max(page.Last, t)
		}
		if len(rows) == 0 {
			return page, nil
		}
		if t >= rows[len(rows)-1].ID {
			// Retention trimmed the oldest of these rows after we read
			// them (it deletes in id order): the page is what is left
			// above the watermark. Re-reading instead could lose to a
			// retention pass deleting batch after batch.
			n := 0
			for n < len(rows) && rows[n].ID > t {
				n++
			}
			rows = rows[:n]
			if n == 0 {
				return page, nil
			}
		}
		floor = t
	}
	slices.Reverse(rows)
	page.Items = chain(rows, floor)
	if err := decorate(ctx, q, room, page.Items); err != nil {
		return wire.Page{}, err
	}
	return page, nil
}

// Since implements Store.Since; see Recent for the read order argument.
func (ps pages) Since(ctx context.Context, room string, after uint64, limit int) (wire.Page, error) {
	q := ps.q
	if err := checkArgs(room, limit); err != nil {
		return wire.Page{}, err
	}
	floor, rows, err := q.oldest(ctx, room, after, limit+1)
	if err != nil {
		return wire.Page{}, err
	}
	t, err := q.trimmed(ctx, room)
	if err != nil {
		return wire.Page{}, err
	}
	if after < t {
		page, err := ps.Recent(ctx, room, 0, limit)
		page.Recovered = false
		return page, err
	}
	page := wire.Page{Room: room, Items: []wire.Message{}, Recovered: true}
	if len(rows) > limit {
		page.HasMore = true
		rows = rows[:limit]
	}
	page.Items = chain(rows, max(floor, t))
	page.Last = after
	if len(page.Items) > 0 {
		page.Last = page.Items[len(page.Items)-1].ID
	}
	return page, nil
}

// Message implements Store.Message.
func (ps pages) Message(ctx context.Context, room string, id uint64) (wire.Message, error) {
	if room == "" {
		return wire.Message{}, fmt.Errorf("%w: empty room", ErrInvalidArgument)
	}
	rows, err := ps.q.rows(ctx, room, []uint64{id})
	if err != nil {
		return wire.Message{}, err
	}
	m, ok := rows[id]
	if !ok {
		return wire.Message{}, fmt.Errorf("%w: message %d of room %s", ErrNotFound, id, room)
	}
	items := []wire.Message{m}
	if err := decorate(ctx, ps.q, room, items); err != nil {
		return wire.Message{}, err
	}
	return items[0], nil
}

// Unread implements Store.Unread.
func (ps pages) Unread(ctx context.Context, user string, marks []wire.ReadMark) ([]wire.UnreadCount, error) {
	if err := checkUnread(user, marks); err != nil {
		return nil, err
	}
	out := make([]wire.UnreadCount, 0, len(marks))
	for _, m := range marks {
		c, n, err := ps.q.unread(ctx, user, m)
		if err != nil {
			return nil, err
		}
		out = append(out, wire.UnreadCount{Room: m.Room, Read: m.Read, Count: c, Mentions: n})
	}
	return out, nil
}

// Prev implements Store.Prev.
func (ps pages) Prev(ctx context.Context, room string, id uint64) (uint64, error) {
	q := ps.q
	if room == "" {
		return 0, fmt.Errorf("%w: empty room", ErrInvalidArgument)
	}
	p, err := q.below(ctx, room, id)
	if err != nil {
		return 0, err
	}
	t, err := q.trimmed(ctx, room)
	if err != nil {
		return 0, err
	}
	if t < id {
		p = max(p, t)
	}
	return p, nil
}

// chain sets each message's Prev to the id before it, the first one's to
// floor, and returns rows.
func chain(rows []wire.Message, floor uint64) []wire.Message {
	if rows == nil {
		return []wire.Message{}
	}
	p := floor
	for i := range rows {
		rows[i].Prev = p
		p = rows[i].ID
	}
	return rows
}

// roomUpdate aggregates the rows of one insert batch for one room.
type roomUpdate struct {
	room  string
	count int64
	last  wire.Message
}

// aggregate groups inserted rows by room (count and last of the chat
// messages, KindMessage; a room with none gets a zero summary), sorted by room name so that
// concurrent writers lock room rows in the same order.
func aggregate(inserted []wire.Message) []roomUpdate {
	idx := map[string]int{}
	var out []roomUpdate
	for _, m := range inserted {
		i, ok := idx[m.Room]
		if !ok {
			i = len(out)
			idx[m.Room] = i
			out = append(out, roomUpdate{room: m.Room})
		}
		if m.Kind != wire.KindMessage {
			continue // the room's row exists (its watermark); its summary is of chat messages
		}
		out[i].count++
		if m.ID > out[i].last.ID {
			out[i].last = m
		}
	}
	slices.SortFunc(out, func(a, b roomUpdate) int { return strings.Compare(a.room, b.room) })
	return out
}

// sortedUnique returns msgs sorted by id with repeated ids dropped (a batch
// may hold a redelivery of a message it already holds).
func sortedUnique(msgs []wire.Message) []wire.Message {
	out := slices.Clone(msgs)
	slices.SortFunc(out, func(a, b wire.Message) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return slices.CompactFunc(out, func(a, b wire.Message) bool { return a.ID == b.ID })
}

// validateBatch refuses, before any database sees them, the rows no
// store can hold: both stores then refuse the same rows the same way
// (SQLite would keep U+0000 in text, PostgreSQL cannot).
func validateBatch(msgs []wire.Message) error {
	for _, m := range msgs {
		if m.ID == 0 || m.ID > 1<<63-1 {
			return fmt.Errorf("%w: %w: message id %d", ErrInvalidArgument, ErrRejected, m.ID)
		}
		if m.Room == "" {
			return fmt.Errorf("%w: %w: message %d has no room", ErrInvalidArgument, ErrRejected, m.ID)
		}
		if m.ReplyTo > 1<<63-1 || m.Target > 1<<63-1 {
			return fmt.Errorf("%w: %w: message %d: reply_to or target out of range", ErrInvalidArgument, ErrRejected, m.ID)
		}
		for _, f := range []struct{ name, v string }{
			{"room", m.Room}, {"user", m.User}, {"body", m.Body}, {"kind", m.Kind}, {"cid", m.CID},
			{"emoji", m.Emoji}, {"mentions", mentionsCol(m.Mentions)},
		} {
			if !Holdable(f.v) {
				return fmt.Errorf("%w: message %d: %s holds U+0000 or invalid UTF-8", ErrRejected, m.ID, f.name)
			}
		}
	}
	return nil
}

// Holdable reports whether every store can hold s as text: valid UTF-8
// without U+0000 (PostgreSQL text cannot hold either).
func Holdable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// holdableText returns s with invalid UTF-8 and U+0000 replaced by
// U+FFFD, so that writing it can never be rejected.
func holdableText(s string) string {
	if Holdable(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// prepareDeadLetters makes letters holdable, drops repeated sequences
// (the first is kept) and sorts them by sequence (a fixed lock order).
func prepareDeadLetters(letters []DeadLetter) ([]DeadLetter, error) {
	out := make([]DeadLetter, 0, len(letters))
	for _, l := range letters {
		if l.Seq == 0 || l.Seq > 1<<63-1 {
			return nil, fmt.Errorf("%w: dead letter sequence %d", ErrInvalidArgument, l.Seq)
		}
		l.Room, l.Subject = holdableText(l.Room), holdableText(l.Subject)
		l.Reason, l.Detail = holdableText(l.Reason), holdableText(l.Detail)
		if l.Payload == nil {
			l.Payload = []byte{}
		}
		if l.ParkedAt.IsZero() {
			l.ParkedAt = time.Now()
		}
		out = append(out, l)
	}
	slices.SortStableFunc(out, func(a, b DeadLetter) int { return cmpID(a.Seq, b.Seq) })
	return slices.CompactFunc(out, func(a, b DeadLetter) bool { return a.Seq == b.Seq }), nil
}

// Meta keys.
const (
	metaStream  = "stream_name"
	metaCreated = "stream_created"
)

// checkIdentity compares a stored identity with want.
func checkIdentity(name, created string, want Identity) error {
	got, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return fmt.Errorf("%w: stored creation time %q unreadable: %w", ErrStreamMismatch, created, err)
	}
	if name != want.Stream || !got.Equal(want.Created) {
		return fmt.Errorf("%w: database holds %s, stream is %s", ErrStreamMismatch,
			Identity{Stream: name, Created: got}, want)
	}
	return nil
}

func formatCreated(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// clampLimit bounds lobby sizes.
func clampLimit(limit, def, maxN int) int {
	if limit <= 0 {
		return def
	}
	return min(limit, maxN)
}

// summary builds a lobby row.
func summary(room string, lastID uint64, lastTS, count int64, user, body, kind, cid string, prevID uint64) wire.RoomSummary {
	return wire.RoomSummary{
		Room:         room,
		LastID:       lastID,
		LastActivity: lastTS,
		Messages:     count,
		LastMessage: &wire.Message{
			ID: lastID, Prev: prevID, Room: room, User: user, Body: body, Kind: kind, TS: lastTS, CID: cid,
		},
	}
}

// Lobby sizes.
const (
	lobbyDefault = 50
	lobbyMax     = 1000
)

// resultRows is what both drivers' result sets offer (pgx.Rows,
// *sql.Rows): the store's row readers are written once against it. The
// caller closes the rows.
type resultRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// readRows appends every row of rs, decoded by scan, to out and returns
// it (out may be nil or empty: a result without rows returns it as is).
// Errors are named after what, e.g. "postgres lobby".
func readRows[T any](rs resultRows, what string, out []T, scan func(resultRows, *T) error) ([]T, error) {
	for rs.Next() {
		var v T
		if err := scan(rs, &v); err != nil {
			return nil, fmt.Errorf("%s scan: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("%s rows: %w", what, err)
	}
	return out, nil
}

// messageCols are the columns scanMessage reads, in its order.
const messageCols = `id, room, user_id, body, kind, ts, cid, reply_to, target, emoji, react_on, edited, deleted, mentions`

// scanMessage reads one row of messageCols.
func scanMessage(rs resultRows, m *wire.Message) error {
	var c convCols
	if err := rs.Scan(&c.id, &m.Room, &m.User, &m.Body, &m.Kind, &m.TS, &m.CID,
		&c.replyTo, &c.target, &m.Emoji, &c.on, &m.Edited, &c.deleted, &c.mentions); err != nil {
		return err
	}
	c.fill(m)
	return nil
}

// convCols are the integer-coded columns of a message row.
type convCols struct {
	id, replyTo, target, on, deleted int64
	mentions                         string
}

// fill sets m's fields from c.
func (c convCols) fill(m *wire.Message) {
	m.ID, m.ReplyTo, m.Target = uint64(c.id), uint64(c.replyTo), uint64(c.target)
	m.On, m.Deleted, m.Mentions = onOf(c.on), c.deleted != 0, mentionsOf(c.mentions)
}

// The newest query selects, in one statement (one snapshot), the newest
// n messages (KindMessage, KindSystem) of a room below an id (part 0) and
// its newest event of any kind below it (part 1: the page's Last). Its
// parameters are room, bound and n.
const (
	newestA = `SELECT * FROM (SELECT 0 AS part, ` + messageCols + ` FROM messages
			WHERE room = `
	newestB = ` AND kind IN ('message', 'system') ORDER BY id DESC LIMIT `
	newestC = `) a
		UNION ALL
		SELECT * FROM (SELECT 1 AS part, ` + messageCols + ` FROM messages
			WHERE room = `
	newestD = ` ORDER BY id DESC LIMIT 1) b`
)

// readNewest reads the rows of newestQuery: the messages newest first and
// the Last id.
func readNewest(rs resultRows, what string) ([]wire.Message, uint64, error) {
	var (
		ms   []wire.Message
		last uint64
	)
	for rs.Next() {
		var (
			part int64
			m    wire.Message
			c    convCols
		)
		if err := rs.Scan(&part, &c.id, &m.Room, &m.User, &m.Body, &m.Kind, &m.TS, &m.CID,
			&c.replyTo, &c.target, &m.Emoji, &c.on, &m.Edited, &c.deleted, &c.mentions); err != nil {
			return nil, 0, fmt.Errorf("%s scan: %w", what, err)
		}
		c.fill(&m)
		if part == 1 {
			last = m.ID
			continue
		}
		ms = append(ms, m)
	}
	if err := rs.Err(); err != nil {
		return nil, 0, fmt.Errorf("%s rows: %w", what, err)
	}
	slices.SortFunc(ms, func(a, b wire.Message) int { return cmpID(b.ID, a.ID) })
	return ms, last, nil
}

// lobbyQuery selects the lobby, most recently active room first; limit
// is the placeholder of the row limit ("$1" or "?").
func lobbyQuery(limit string) string {
	return `SELECT r.room, r.last_id, r.last_ts, r.message_count,
			r.last_user, r.last_body, r.last_kind, r.last_cid,
			COALESCE((SELECT MAX(m.id) FROM messages m WHERE m.room = r.room AND m.id < r.last_id), 0),
			COALESCE((SELECT m.deleted FROM messages m WHERE m.id = r.last_id), 0)
		FROM rooms r WHERE r.last_id > 0 ORDER BY r.last_id DESC LIMIT ` + limit
}

// scanSummary reads one row of lobbyQuery.
func scanSummary(rs resultRows, s *wire.RoomSummary) error {
	var (
		room, user, body, kind, cid string
		lastID, prevID, ts, count   int64
		deleted                     int64
	)
	if err := rs.Scan(&room, &lastID, &ts, &count, &user, &body, &kind, &cid, &prevID, &deleted); err != nil {
		return err
	}
	*s = summary(room, uint64(lastID), ts, count, user, body, kind, cid, uint64(prevID))
	s.LastMessage.Deleted = deleted != 0 // a tombstone: the preview says so
	return nil
}
