package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the pure-Go "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrSchemaTooNew is returned when the database was migrated by a newer
// build than this one.
var ErrSchemaTooNew = errors.New("database schema is newer than this build")

// SQLite is the embedded store: one file in WAL mode, a single writer
// connection (SQLite admits one writer at a time anyway) and a small pool of
// read-only connections that read concurrently with the writer.
type SQLite struct {
	pages // Recent, Since, Prev over the queries below

	w *sql.DB // one connection: every write goes through it
	r *sql.DB // read-only pool

	// Read statements, prepared once (per pooled connection, by
	// database/sql): parsing SQL on every request cost a sixth of the
	// CPU of a recent page.
	qNewest, qOldest, qBelow, qTrimmed, qReactions, qUnreadCount, qUnreadMentions *sql.Stmt
}

// SQLite read statements.
const (
	sqlNewest = newestA + `?1 AND id < ?2` + newestB + `?3` + newestC + `?1 AND id < ?2` + newestD
	// One statement, one snapshot: the newest row at or below after (for
	// the first row's prev) and the page above it.
	sqlOldest = `SELECT * FROM (SELECT ` + messageCols + ` FROM messages
			WHERE room = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1)
		UNION ALL
		SELECT * FROM (SELECT ` + messageCols + ` FROM messages
			WHERE room = ?1 AND id > ?2 ORDER BY id LIMIT ?3)`
	sqlBelow   = `SELECT MAX(id) FROM messages WHERE room = ? AND id < ?`
	sqlTrimmed = `SELECT trimmed_through FROM rooms WHERE room = ?`
)

var _ Store = (*SQLite)(nil)

// SQLitePath is the database file inside dataDir.
func SQLitePath(dataDir string) string { return filepath.Join(dataDir, "history.db") }

const sqliteReaders = 4

// OpenSQLite opens or creates the database file at path and migrates it.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	return openSQLite(ctx, path, 0)
}

// openSQLite is OpenSQLite migrating up to version upTo (0: all).
func openSQLite(ctx context.Context, path string, upTo int) (*SQLite, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	// The path goes into a file: URI: %, ? and # in it are escaped.
	uriPath := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))
	base := "file:" + uriPath + "?_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)"
	w, err := sql.Open("sqlite", base+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &SQLite{w: w}
	s.pages = pages{s}
	if err := s.migrate(ctx, upTo); err != nil {
		_ = w.Close()
		return nil, err
	}
	if upTo > 0 {
		return s, nil // an old schema: this build's reads would not prepare; only Close is valid
	}
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(sqliteReaders)
	r.SetMaxIdleConns(sqliteReaders)
	s.r = r
	for _, q := range []struct {
		stmt **sql.Stmt
		sql  string
	}{{&s.qNewest, sqlNewest}, {&s.qOldest, sqlOldest}, {&s.qBelow, sqlBelow}, {&s.qTrimmed, sqlTrimmed},
		{&s.qReactions, sqlReactions}, {&s.qUnreadCount, sqlUnreadCount}, {&s.qUnreadMentions, sqlUnreadMentions}} {
		if *q.stmt, err = r.PrepareContext(ctx, q.sql); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("prepare sqlite read: %w", err)
		}
	}
	return s, nil
}

func (s *SQLite) migrate(ctx context.Context, upTo int) error {
	ms, err := migrations("sqlite")
	if err != nil {
		return err
	}
	if upTo > 0 {
		ms = ms[:min(upTo, len(ms))]
	}
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite migrations table: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("sqlite schema version: %w", err)
	}
	if err := upgrade("sqlite", ms, cur, func(m migration) error {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixMilli())
		return err
	}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite migrate commit: %w", err)
	}
	return nil
}

// Close implements Store.
func (s *SQLite) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.qNewest, s.qOldest, s.qBelow, s.qTrimmed, s.qReactions, s.qUnreadCount, s.qUnreadMentions} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

// Ping implements Store.
func (s *SQLite) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlite ping: %w", err)
	}
	return nil
}

// Bind implements Store.
func (s *SQLite) Bind(ctx context.Context, id Identity) (bool, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite bind: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var name, created sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT
			(SELECT value FROM meta WHERE key = ?), (SELECT value FROM meta WHERE key = ?)`,
		metaStream, metaCreated).Scan(&name, &created); err != nil {
		return false, fmt.Errorf("sqlite bind: %w", err)
	}
	if name.Valid && created.Valid {
		return false, checkIdentity(name.String, created.String, id)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?), (?, ?)`,
		metaStream, id.Stream, metaCreated, formatCreated(id.Created)); err != nil {
		return false, fmt.Errorf("sqlite bind: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite bind commit: %w", err)
	}
	return true, nil
}

// Insert implements Store.
func (s *SQLite) Insert(ctx context.Context, msgs []wire.Message) ([]wire.Message, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if err := validateBatch(msgs); err != nil {
		return nil, err
	}
	msgs = sortedUnique(msgs)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite insert: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	trimmed := map[string]uint64{}
	tstmt, err := tx.PrepareContext(ctx, `SELECT trimmed_through FROM rooms WHERE room = ?`)
	if err != nil {
		return nil, fmt.Errorf("sqlite insert: %w", err)
	}
	defer func() { _ = tstmt.Close() }()
	for _, m := range msgs {
		if _, ok := trimmed[m.Room]; ok {
			continue
		}
		var t int64
		if err := tstmt.QueryRowContext(ctx, m.Room).Scan(&t); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("sqlite insert: %w", err)
		}
		trimmed[m.Room] = uint64(t)
	}

	istmt, err := tx.PrepareContext(ctx, `INSERT INTO messages (id, room, user_id, body, kind, ts, cid,
			reply_to, target, emoji, react_on, mentions)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
	if err != nil {
		return nil, fmt.Errorf("sqlite insert: %w", err)
	}
	defer func() { _ = istmt.Close() }()
	inserted := make([]wire.Message, 0, len(msgs))
	for _, m := range msgs {
		if m.ID <= trimmed[m.Room] {
			continue
		}
		res, err := istmt.ExecContext(ctx, int64(m.ID), m.Room, m.User, m.Body, m.Kind, m.TS, m.CID,
			idArg(m.ReplyTo), idArg(m.Target), m.Emoji, onCol(m.On), mentionsCol(m.Mentions))
		if err != nil {
			return nil, fmt.Errorf("sqlite insert %d: %w", m.ID, classifySQLite(err))
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("sqlite insert %d: %w", m.ID, err)
		} else if n == 1 {
			inserted = append(inserted, m)
		}
	}
	for _, u := range aggregate(inserted) {
		l := u.last
		if _, err := tx.ExecContext(ctx, `INSERT INTO rooms
			(room, last_id, last_ts, message_count, last_user, last_body, last_kind, last_cid)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (room) DO UPDATE SET
				message_count = rooms.message_count + excluded.message_count,
				last_ts   = CASE WHEN excluded.last_id > rooms.last_id THEN excluded.last_ts   ELSE rooms.last_ts   END,
				last_user = CASE WHEN excluded.last_id > rooms.last_id THEN excluded.last_user ELSE rooms.last_user END,
				last_body = CASE WHEN excluded.last_id > rooms.last_id THEN excluded.last_body ELSE rooms.last_body END,
				last_kind = CASE WHEN excluded.last_id > rooms.last_id THEN excluded.last_kind ELSE rooms.last_kind END,
				last_cid  = CASE WHEN excluded.last_id > rooms.last_id THEN excluded.last_cid  ELSE rooms.last_cid  END,
				last_id   = MAX(rooms.last_id, excluded.last_id)`,
			u.room, int64(l.ID), l.TS, u.count, l.User, l.Body, l.Kind, l.CID); err != nil {
			return nil, fmt.Errorf("sqlite insert room %s: %w", u.room, classifySQLite(err))
		}
	}
	if err := afterInsert(ctx, sqliteTx{tx}, inserted); err != nil {
		return nil, fmt.Errorf("sqlite insert: %w", classifySQLite(err))
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite insert commit: %w", err)
	}
	return inserted, nil
}

// sqliteTx is SQLite's writeTx.
type sqliteTx struct{ tx *sql.Tx }

func (t sqliteTx) exec(ctx context.Context, q string, args ...any) error {
	_, err := t.tx.ExecContext(ctx, q, args...)
	return err
}

func (t sqliteTx) query(ctx context.Context, q string, fn func(resultRows) error, args ...any) error {
	rows, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	err = fn(rows)
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

// classifySQLite wraps err in ErrRejected when SQLite refused a statement
// for the data it carried: a constraint other than the primary key or a
// unique index (a trigger's RAISE(ABORT), CHECK, NOT NULL), a value over
// a limit (SQLITE_TOOBIG) or of the wrong type (SQLITE_MISMATCH). Busy
// and locked databases, I/O errors, a full disk and a cancelled context
// stay transient: they are retried.
func classifySQLite(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch code := se.Code(); code & 0xff {
	case sqlite3.SQLITE_CONSTRAINT:
		if code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || code == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
			return err // inserts skip conflicting ids: not the row's fault
		}
		return fmt.Errorf("%w: %w", ErrRejected, err)
	case sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH:
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return err
}

// Park implements Store.
func (s *SQLite) Park(ctx context.Context, letters []DeadLetter) error {
	letters, err := prepareDeadLetters(letters)
	if err != nil || len(letters) == 0 {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite park: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO dead_letters (seq, room, subject, payload, reason, detail, parked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("sqlite park: %w", err)
	}
	defer func() { _ = stmt.Close() }()
	for _, l := range letters {
		if _, err := stmt.ExecContext(ctx, int64(l.Seq), l.Room, l.Subject, l.Payload, l.Reason, l.Detail,
			l.ParkedAt.UnixMilli()); err != nil {
			return fmt.Errorf("sqlite park %d: %w", l.Seq, classifySQLite(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite park commit: %w", err)
	}
	return nil
}

// DeadLetters implements Store.
func (s *SQLite) DeadLetters(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalidArgument, limit)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT seq, room, subject, payload, reason, detail, parked_at
		FROM dead_letters WHERE seq > ? ORDER BY seq LIMIT ?`, idArg(after), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite dead letters: %w", err)
	}
	defer func() { _ = rows.Close() }()
	return readRows(rows, "sqlite dead letters", []DeadLetter{}, func(rs resultRows, l *DeadLetter) error {
		var (
			seq, at int64
			payload []byte
		)
		if err := rs.Scan(&seq, &l.Room, &l.Subject, &payload, &l.Reason, &l.Detail, &at); err != nil {
			return err
		}
		l.Seq, l.Payload, l.ParkedAt = uint64(seq), append([]byte{}, payload...), time.UnixMilli(at)
		return nil
	})
}

// TrimDeadLetters implements Store.
func (s *SQLite) TrimDeadLetters(ctx context.Context, cutoff time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM dead_letters WHERE parked_at < ?`, cutoff.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("sqlite trim dead letters: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite trim dead letters: %w", err)
	}
	return int(n), nil
}

// scanSQLite reads rows of messageCols.
func scanSQLite(rows *sql.Rows) ([]wire.Message, error) {
	defer func() { _ = rows.Close() }()
	return readRows(rows, "sqlite", nil, scanMessage)
}

// bound turns "before 0 = no bound" into an id bound.
func bound(before uint64) int64 {
	if before == 0 || before > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(before)
}

// idArg caps an id for a signed BIGINT parameter.
func idArg(id uint64) int64 {
	if id > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(id)
}

func (s *SQLite) newest(ctx context.Context, room string, before uint64, n int) ([]wire.Message, uint64, error) {
	rows, err := s.qNewest.QueryContext(ctx, room, bound(before), n)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite recent: %w", err)
	}
	defer func() { _ = rows.Close() }()
	return readNewest(rows, "sqlite recent")
}

func (s *SQLite) reactions(ctx context.Context, room string, lo, hi uint64) (map[uint64][]wire.Reaction, error) {
	rows, err := s.qReactions.QueryContext(ctx, room, idArg(lo), idArg(hi))
	if err != nil {
		return nil, fmt.Errorf("sqlite reactions: %w", err)
	}
	defer func() { _ = rows.Close() }()
	return readReactions(rows)
}

func (s *SQLite) rows(ctx context.Context, room string, ids []uint64) (map[uint64]wire.Message, error) {
	q := `SELECT ` + messageCols + ` FROM messages WHERE room = ? AND kind IN ('message', 'system') AND id IN (?` +
		strings.Repeat(", ?", len(ids)-1) + `)`
	args := make([]any, 0, len(ids)+1)
	args = append(args, room)
	for _, id := range ids {
		args = append(args, idArg(id))
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite messages: %w", err)
	}
	ms, err := scanSQLite(rows)
	if err != nil {
		return nil, err
	}
	return byID(ms), nil
}

func (s *SQLite) unread(ctx context.Context, user string, mark wire.ReadMark) (int, int, error) {
	var c, n int
	if err := s.qUnreadCount.QueryRowContext(ctx, mark.Room, idArg(mark.Read), user, wire.MaxUnread).Scan(&c); err != nil {
		return 0, 0, fmt.Errorf("sqlite unread: %w", err)
	}
	if err := s.qUnreadMentions.QueryRowContext(ctx, user, mark.Room, idArg(mark.Read), wire.MaxUnread).Scan(&n); err != nil {
		return 0, 0, fmt.Errorf("sqlite unread mentions: %w", err)
	}
	return c, n, nil
}

func (s *SQLite) oldest(ctx context.Context, room string, after uint64, n int) (uint64, []wire.Message, error) {
	rows, err := s.qOldest.QueryContext(ctx, room, idArg(after), n)
	if err != nil {
		return 0, nil, fmt.Errorf("sqlite since: %w", err)
	}
	ms, err := scanSQLite(rows)
	if err != nil {
		return 0, nil, err
	}
	var floor uint64
	out := ms[:0]
	for _, m := range ms {
		if m.ID <= after {
			floor = m.ID
			continue
		}
		out = append(out, m)
	}
	return floor, out, nil
}

func (s *SQLite) below(ctx context.Context, room string, id uint64) (uint64, error) {
	var p sql.NullInt64
	if err := s.qBelow.QueryRowContext(ctx, room, bound(id)).Scan(&p); err != nil {
		return 0, fmt.Errorf("sqlite prev: %w", err)
	}
	return uint64(p.Int64), nil
}

func (s *SQLite) trimmed(ctx context.Context, room string) (uint64, error) {
	var t int64
	err := s.qTrimmed.QueryRowContext(ctx, room).Scan(&t)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sqlite watermark: %w", err)
	}
	return uint64(t), nil
}

// Lobby implements Store.
func (s *SQLite) Lobby(ctx context.Context, limit int) ([]wire.RoomSummary, error) {
	limit = clampLimit(limit, lobbyDefault, lobbyMax)
	rows, err := s.r.QueryContext(ctx, lobbyQuery("?"), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite lobby: %w", err)
	}
	defer func() { _ = rows.Close() }()
	return readRows(rows, "sqlite lobby", []wire.RoomSummary{}, scanSummary)
}

// Trim implements Store.
func (s *SQLite) Trim(ctx context.Context, cutoff time.Time, batch int) (int, error) {
	if batch <= 0 {
		return 0, fmt.Errorf("%w: batch %d", ErrInvalidArgument, batch)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite trim: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	n, err := trimBatch(ctx, sqliteTrim{tx}, cutoff, batch)
	if err != nil || n == 0 {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite trim commit: %w", err)
	}
	return n, nil
}

// sqliteTrim is SQLite's trimTx.
type sqliteTrim struct{ tx *sql.Tx }

func (t sqliteTrim) head(ctx context.Context, batch int) ([]wire.Message, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT `+messageCols+` FROM messages ORDER BY id LIMIT ?`, batch)
	if err != nil {
		return nil, fmt.Errorf("sqlite trim: %w", err)
	}
	return scanSQLite(rows)
}

func (t sqliteTrim) deleteThrough(ctx context.Context, id uint64) (map[string]roomTrim, int, error) {
	for _, q := range []string{`DELETE FROM reactions WHERE target <= ?`, `DELETE FROM mentions WHERE id <= ?`} {
		if _, err := t.tx.ExecContext(ctx, q, int64(id)); err != nil {
			return nil, 0, fmt.Errorf("sqlite trim delete: %w", err)
		}
	}
	del, err := t.tx.QueryContext(ctx, `DELETE FROM messages WHERE id <= ? RETURNING room, id, kind`, int64(id))
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite trim delete: %w", err)
	}
	tally, n, err := tallyDeleted(del, "sqlite trim delete")
	if cerr := del.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("sqlite trim delete: %w", cerr)
	}
	if err != nil {
		return nil, 0, err
	}
	return tally, n, nil
}

func (t sqliteTrim) raise(ctx context.Context, room string, rt roomTrim) error {
	if _, err := t.tx.ExecContext(ctx, `UPDATE rooms SET trimmed_through = MAX(trimmed_through, ?),
		message_count = MAX(message_count - ?, 0) WHERE room = ?`,
		int64(rt.through), rt.count, room); err != nil {
		return fmt.Errorf("sqlite trim watermark: %w", err)
	}
	return nil
}

// String describes the store for logs.
func (s *SQLite) String() string { return "sqlite" }
