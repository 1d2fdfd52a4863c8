package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Postgres is the production store. It keeps two connection pools: a
// small one for writes (ingest batches, retention, binding) and one for
// reads. Connected directly (PoolerNone), the read pool's sessions run
// with plan_cache_mode=force_generic_plan: the read statements are
// prepared once per connection and each has one sensible plan (an index
// range scan on (room, id) or a key lookup), so re-planning them for every
// execution, as Postgres otherwise does when it estimates a custom plan
// cheaper, would only spend CPU (about as much as executing them). Behind
// a transaction pooler (PoolerTransaction) nothing is prepared and no
// session state is relied on; see OpenPostgresWith.
type Postgres struct {
	pages // Recent, Since, Prev over the queries below

	w *pgxpool.Pool
	r *pgxpool.Pool

	// newest queries (every recent page) wait here for a pipeliner.
	newestq chan *newestReq
	stop    chan struct{}
	wg      sync.WaitGroup
}

var _ Store = (*Postgres)(nil)

// Pool sizes. pool_max_conns in the URL overrides the read pool's.
const (
	pgReadConns  = 8
	pgWriteConns = 4
)

// Values of PostgresOptions.Pooler: what sits between history and Postgres.
const (
	// PoolerNone connects to Postgres itself (the default; "" means the
	// same): statements are prepared once per connection and cached.
	PoolerNone = "none"
	// PoolerTransaction is a connection pooler in transaction pooling mode,
	// such as PgBouncer with pool_mode=transaction (how CloudNativePG's
	// Pooler runs it): consecutive transactions of one client connection may
	// run on different server connections. It is also the right value for
	// PgBouncer in session mode, which refuses the startup parameter
	// PoolerNone sends. Statement pooling is not supported (ingest, binding
	// and retention run multi-statement transactions).
	PoolerTransaction = "transaction"
)

// PostgresOptions configure OpenPostgresWith.
type PostgresOptions struct {
	// Pooler is PoolerNone (or empty) or PoolerTransaction.
	Pooler string
}

// OpenPostgres connects to url directly (PoolerNone) and migrates the
// schema; see OpenPostgresWith.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	return OpenPostgresWith(ctx, url, PostgresOptions{})
}

// OpenPostgresWith connects to url and migrates the schema. Concurrent
// openers (replicas starting together) serialise on a transaction-level
// advisory lock taken in the migration's transaction, which works through
// a transaction pooler too (a session-level lock would not: its session
// is a server connection the pooler hands to other clients).
//
// With o.Pooler set to PoolerTransaction, statements run in pgx's
// QueryExecModeExec unless the URL's default_query_exec_mode picks another
// safe mode (exec, simple_protocol or cache_describe):
//
//   - pgx's default, cache_statement, prepares named statements
//     (stmtcache_…) on the server connection: behind a transaction pooler
//     the next transaction may run on another server connection, where the
//     statement does not exist, or where another client already prepared
//     the same name ("prepared statement … already exists"). It is
//     replaced by exec.
//   - describe_exec asks for the statement's description in one round
//     trip and binds the unnamed statement in a second one, which the
//     pooler may send to another server connection: refused.
//   - exec sends Parse (of the unnamed statement), Bind, Execute and Sync
//     in one round trip, so the pooler keeps them on one server connection;
//     parameters travel separately from the SQL and nothing is cached that
//     a schema change could invalidate.
//   - cache_describe is as safe against the pooler, but caches result and
//     parameter types per connection, so a migration that changes a column
//     under a running replica may break its next queries.
//   - simple_protocol interpolates the parameters into the SQL on the
//     client; exec does the same work without that.
//
// No startup parameter is sent (PgBouncer refuses unknown ones:
// "unsupported startup parameter: plan_cache_mode"), and plan_cache_mode is
// not set at all: it chooses between a generic and a custom plan for a
// statement executed again and again, and in these modes every execution
// parses and plans anew, so there is nothing to save (forcing the generic
// plan of a one-shot statement could only make it worse). The store keeps
// no other session state either: no LISTEN/NOTIFY, no temporary tables,
// no SET outside a transaction, no session-level advisory locks.
func OpenPostgresWith(ctx context.Context, url string, o PostgresOptions) (*Postgres, error) {
	return openPostgres(ctx, url, o, 0)
}

// openPostgres is OpenPostgresWith migrating up to version upTo (0: all).
func openPostgres(ctx context.Context, url string, o PostgresOptions, upTo int) (*Postgres, error) {
	pooled, err := pooler(o.Pooler)
	if err != nil {
		return nil, err
	}
	rcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	if pooled {
		if err := forTransactionPooler(rcfg.ConnConfig); err != nil {
			return nil, err
		}
	}
	wcfg := rcfg.Copy()
	if !strings.Contains(url, "pool_max_conns") {
		rcfg.MaxConns = pgReadConns
	}
	wcfg.MaxConns = pgWriteConns
	if !pooled {
		rcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	w, err := pgxpool.NewWithConfig(ctx, wcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres connect: %w", err)
	}
	p := &Postgres{w: w}
	p.pages = pages{p}
	if err := p.migrate(ctx, upTo); err != nil {
		w.Close()
		return nil, poolerHint(pooled, err)
	}
	if p.r, err = pgxpool.NewWithConfig(ctx, rcfg); err != nil {
		w.Close()
		return nil, fmt.Errorf("postgres connect: %w", err)
	}
	// The read pool connects lazily: try it now, so that a refused
	// connection (such as a startup parameter the server does not accept)
	// stops the start with its reason instead of failing every request.
	if err := p.r.Ping(ctx); err != nil {
		p.r.Close()
		w.Close()
		return nil, poolerHint(pooled, fmt.Errorf("postgres connect (read pool): %w", err))
	}
	p.newestq, p.stop = make(chan *newestReq), make(chan struct{})
	for range rcfg.MaxConns {
		p.wg.Go(p.pipeline)
	}
	return p, nil
}

// pooler reads PostgresOptions.Pooler: whether a transaction pooler sits
// in front of Postgres.
func pooler(v string) (bool, error) {
	switch v {
	case "", PoolerNone:
		return false, nil
	case PoolerTransaction:
		return true, nil
	}
	return false, fmt.Errorf("%w: postgres pooler %q: want %q or %q", ErrInvalidArgument, v, PoolerNone, PoolerTransaction)
}

// forTransactionPooler makes cc safe behind a transaction pooler (see
// OpenPostgresWith for why each mode is kept, replaced or refused).
func forTransactionPooler(cc *pgx.ConnConfig) error {
	switch cc.DefaultQueryExecMode {
	case pgx.QueryExecModeCacheStatement:
		cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	case pgx.QueryExecModeDescribeExec:
		return fmt.Errorf("%w: postgres url: default_query_exec_mode=describe_exec is not safe behind a transaction pooler "+
			"(it binds in a second round trip, which may reach another server connection): use exec", ErrInvalidArgument)
	}
	cc.StatementCacheCapacity = 0
	if cc.DefaultQueryExecMode != pgx.QueryExecModeCacheDescribe {
		cc.DescriptionCacheCapacity = 0
	}
	return nil
}

// poolerHint adds what to do to the errors a transaction pooler gives a
// store opened as if connected to Postgres itself: PgBouncer refuses the
// plan_cache_mode startup parameter, and named prepared statements meet
// server connections that lack them (26000 invalid_sql_statement_name) or
// already have them from another client (42P05 duplicate_prepared_statement).
func poolerHint(pooled bool, err error) error {
	if pooled {
		return err
	}
	var pe *pgconn.PgError
	if strings.Contains(err.Error(), "unsupported startup parameter") ||
		errors.As(err, &pe) && (pe.Code == "26000" || pe.Code == "42P05") {
		return fmt.Errorf("%w (behind PgBouncer or another transaction pooler? set HUBBUB_PG_POOLER=%s)", err, PoolerTransaction)
	}
	return err
}

// PoolStats reports the statistics of the connection pools, by name
// ("read", "write"), for the pool metrics.
func (p *Postgres) PoolStats() map[string]*pgxpool.Stat {
	return map[string]*pgxpool.Stat{"read": p.r.Stat(), "write": p.w.Stat()}
}

// newestReq is one newest query waiting to be pipelined.
type newestReq struct {
	room   string
	before int64
	n      int
	out    chan newestRes // buffered: the pipeliner never blocks on it
}

type newestRes struct {
	msgs []wire.Message
	last uint64
	err  error
}

// Pipelining of newest queries.
const (
	// pipelineMax is the most queries sent in one round trip.
	pipelineMax = 16
	// pipelineTimeout bounds one round trip.
	pipelineTimeout = 10 * time.Second
)

const pgNewest = newestA + `$1 AND id < $2` + newestB + `$3` + newestC + `$1 AND id < $2` + newestD

// pipeline serves newest queries until Close: it takes one, adds
// whatever others are already waiting (never waiting for more), and sends
// them to Postgres in one round trip (one write, one Sync) on one
// connection. Under load this divides the per-query syscalls and
// transaction overhead of both sides by the batch size; when idle, a
// query goes out alone at once.
func (p *Postgres) pipeline() {
	batch := make([]*newestReq, 0, pipelineMax)
	for {
		select {
		case <-p.stop:
			return
		case r := <-p.newestq:
			batch = append(batch[:0], r)
		}
	gather:
		for len(batch) < pipelineMax {
			select {
			case r := <-p.newestq:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		p.sendNewest(batch)
	}
}

func (p *Postgres) sendNewest(batch []*newestReq) {
	ctx, cancel := context.WithTimeout(context.Background(), pipelineTimeout)
	defer cancel()
	b := &pgx.Batch{}
	for _, r := range batch {
		b.Queue(pgNewest, r.room, r.before, r.n)
	}
	br := p.r.SendBatch(ctx, b)
	for _, r := range batch {
		rows, err := br.Query()
		if err != nil {
			r.out <- newestRes{err: fmt.Errorf("postgres recent: %w", err)}
			continue
		}
		msgs, last, err := readNewest(rows, "postgres recent")
		rows.Close()
		r.out <- newestRes{msgs: msgs, last: last, err: err}
	}
	_ = br.Close()
}

func (p *Postgres) migrate(ctx context.Context, upTo int) error {
	ms, err := migrations("postgres")
	if err != nil {
		return err
	}
	if upTo > 0 {
		ms = ms[:min(upTo, len(ms))]
	}
	return pgx.BeginFunc(ctx, p.w, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('hubbub_history_migrate'))`); err != nil {
			return fmt.Errorf("postgres migrate lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("postgres migrations table: %w", err)
		}
		var cur int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
			return fmt.Errorf("postgres schema version: %w", err)
		}
		return upgrade("postgres", ms, cur, func(m migration) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
	})
}

// Close implements Store.
func (p *Postgres) Close() error {
	if p.stop != nil {
		close(p.stop)
		p.wg.Wait()
	}
	p.r.Close()
	p.w.Close()
	return nil
}

// Ping implements Store.
func (p *Postgres) Ping(ctx context.Context) error {
	if err := p.r.Ping(ctx); err != nil {
		return fmt.Errorf("postgres ping: %w", err)
	}
	return nil
}

// Bind implements Store.
func (p *Postgres) Bind(ctx context.Context, id Identity) (bool, error) {
	var fresh bool
	err := pgx.BeginFunc(ctx, p.w, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2), ($3, $4)
			ON CONFLICT (key) DO NOTHING`, metaStream, id.Stream, metaCreated, formatCreated(id.Created))
		if err != nil {
			return fmt.Errorf("postgres bind: %w", err)
		}
		fresh = tag.RowsAffected() == 2
		var name, created string
		if err := tx.QueryRow(ctx, `SELECT
				(SELECT value FROM meta WHERE key = $1), (SELECT value FROM meta WHERE key = $2)`,
			metaStream, metaCreated).Scan(&name, &created); err != nil {
			return fmt.Errorf("postgres bind: %w", err)
		}
		return checkIdentity(name, created, id)
	})
	if err != nil {
		return false, err
	}
	return fresh, nil
}

// pgInsert stores a batch and updates room summaries in one statement:
// rows already stored (or below the room's retention watermark) are
// skipped, and only rows actually inserted count towards the summaries,
// which are of chat messages (kind message) only: a room whose inserted
// rows hold none gets (or keeps) its row with a zero summary. It returns
// the ids inserted.
const pgInsert = `
WITH input AS (
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
			$8::bigint[], $9::bigint[], $10::text[], $11::bigint[], $12::text[])
		AS u(id, room, user_id, body, kind, ts, cid, reply_to, target, emoji, react_on, mentions)
), ins AS (
	INSERT INTO messages (id, room, user_id, body, kind, ts, cid, reply_to, target, emoji, react_on, mentions)
	SELECT u.id, u.room, u.user_id, u.body, u.kind, u.ts, u.cid, u.reply_to, u.target, u.emoji, u.react_on, u.mentions
	FROM input u
	WHERE NOT EXISTS (SELECT 1 FROM rooms r WHERE r.room = u.room AND r.trimmed_through >= u.id)
	ORDER BY u.id
	ON CONFLICT (id) DO NOTHING
	RETURNING id, room, user_id, body, kind, ts, cid
), agg AS (
	SELECT DISTINCT ON (room) room,
		CASE WHEN kind = 'message' THEN id ELSE 0 END AS id,
		CASE WHEN kind = 'message' THEN ts ELSE 0 END AS ts,
		CASE WHEN kind = 'message' THEN user_id ELSE '' END AS user_id,
		CASE WHEN kind = 'message' THEN body ELSE '' END AS body,
		CASE WHEN kind = 'message' THEN kind ELSE '' END AS kind,
		CASE WHEN kind = 'message' THEN cid ELSE '' END AS cid,
		count(*) FILTER (WHERE kind = 'message') OVER (PARTITION BY room) AS n
	FROM ins ORDER BY room, (kind = 'message') DESC, id DESC
), up AS (
	INSERT INTO rooms AS r (room, last_id, last_ts, message_count, last_user, last_body, last_kind, last_cid)
	SELECT room, id, ts, n, user_id, body, kind, cid FROM agg ORDER BY room
	ON CONFLICT (room) DO UPDATE SET
		message_count = r.message_count + excluded.message_count,
		last_ts   = CASE WHEN excluded.last_id > r.last_id THEN excluded.last_ts   ELSE r.last_ts   END,
		last_user = CASE WHEN excluded.last_id > r.last_id THEN excluded.last_user ELSE r.last_user END,
		last_body = CASE WHEN excluded.last_id > r.last_id THEN excluded.last_body ELSE r.last_body END,
		last_kind = CASE WHEN excluded.last_id > r.last_id THEN excluded.last_kind ELSE r.last_kind END,
		last_cid  = CASE WHEN excluded.last_id > r.last_id THEN excluded.last_cid  ELSE r.last_cid  END,
		last_id   = GREATEST(r.last_id, excluded.last_id)
	RETURNING 1
)
SELECT COALESCE((SELECT array_agg(id) FROM ins), '{}'::bigint[]), (SELECT count(*) FROM up)`

// Insert implements Store. The batch travels as arrays in one statement
// (one round trip); when it inserts chat messages with mentions or change
// events, their mentions rows and folds follow in the same transaction.
func (p *Postgres) Insert(ctx context.Context, msgs []wire.Message) ([]wire.Message, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if err := validateBatch(msgs); err != nil {
		return nil, err
	}
	msgs = sortedUnique(msgs)
	n := len(msgs)
	ids, tss, replies, targets, ons := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	rooms, users, bodies, kinds, cids := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	emojis, mentions := make([]string, n), make([]string, n)
	for i, m := range msgs {
		ids[i], rooms[i], users[i], bodies[i], kinds[i], tss[i], cids[i] = int64(m.ID), m.Room, m.User, m.Body, m.Kind, m.TS, m.CID
		replies[i], targets[i], emojis[i], ons[i], mentions[i] = idArg(m.ReplyTo), idArg(m.Target), m.Emoji, onCol(m.On), mentionsCol(m.Mentions)
	}
	var inserted []wire.Message
	run := func(ctx context.Context, q querier, tx writeTx) error {
		var (
			got     []int64
			updated int64
		)
		if err := q.QueryRow(ctx, pgInsert, ids, rooms, users, bodies, kinds, tss, cids,
			replies, targets, emojis, ons, mentions).Scan(&got, &updated); err != nil {
			return err
		}
		slices.Sort(got)
		inserted = make([]wire.Message, 0, len(got))
		for i, j := 0, 0; i < len(msgs) && j < len(got); i++ {
			if int64(msgs[i].ID) == got[j] {
				inserted = append(inserted, msgs[i])
				j++
			}
		}
		if tx == nil {
			return nil
		}
		return afterInsert(ctx, tx, inserted)
	}
	var err error
	if slices.ContainsFunc(msgs, needsFold) {
		err = pgx.BeginFunc(ctx, p.w, func(tx pgx.Tx) error { return run(ctx, tx, pgTx{tx}) })
	} else {
		// Nothing to do after the insert: one statement, its own
		// transaction, one round trip.
		err = run(ctx, p.w, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres insert: %w", classifyPG(err))
	}
	return inserted, nil
}

// querier runs the insert statement: the pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgTx is Postgres's writeTx.
type pgTx struct{ tx pgx.Tx }

func (t pgTx) exec(ctx context.Context, q string, args ...any) error {
	_, err := t.tx.Exec(ctx, dollar(q), args...)
	return err
}

func (t pgTx) query(ctx context.Context, q string, fn func(resultRows) error, args ...any) error {
	rows, err := t.tx.Query(ctx, dollar(q), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	return fn(rows)
}

// classifyPG wraps err in ErrRejected when PostgreSQL refused a statement
// for the data it carried, by SQLSTATE class: 22 (data exception: a value
// the column cannot hold, such as 22021 for U+0000 in text), 23
// (integrity constraint violation: CHECK, NOT NULL, foreign key) except
// 23505 unique_violation (inserts skip existing ids with ON CONFLICT, so
// a unique violation is a race with another writer, retried and then
// skipped), and 54 (program limit exceeded: a row over an index or
// statement limit). Everything else stays transient and is retried:
// errors that are not a *pgconn.PgError (connection refused or lost,
// context deadline, pool closed), and server errors of the database
// rather than the row — 08 connection, 40 serialization failure or
// deadlock, 53 insufficient resources, 57 operator intervention (admin
// shutdown, query cancelled), 42 (a missing table or column: a schema
// problem that would otherwise park every message), XX internal.
func classifyPG(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch class := pe.Code[:min(2, len(pe.Code))]; {
	case class == "22", class == "54", class == "23" && pe.Code != "23505":
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return err
}

// pgPark records dead letters; a sequence already parked is skipped.
const pgPark = `INSERT INTO dead_letters (seq, room, subject, payload, reason, detail, parked_at)
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[], $7::timestamptz[])
	ORDER BY 1
	ON CONFLICT (seq) DO NOTHING`

// Park implements Store.
func (p *Postgres) Park(ctx context.Context, letters []DeadLetter) error {
	letters, err := prepareDeadLetters(letters)
	if err != nil || len(letters) == 0 {
		return err
	}
	n := len(letters)
	seqs, payloads, at := make([]int64, n), make([][]byte, n), make([]time.Time, n)
	rooms, subjects, reasons, details := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, l := range letters {
		seqs[i], rooms[i], subjects[i], payloads[i] = int64(l.Seq), l.Room, l.Subject, l.Payload
		reasons[i], details[i], at[i] = l.Reason, l.Detail, l.ParkedAt
	}
	if _, err := p.w.Exec(ctx, pgPark, seqs, rooms, subjects, payloads, reasons, details, at); err != nil {
		return fmt.Errorf("postgres park: %w", classifyPG(err))
	}
	return nil
}

// DeadLetters implements Store.
func (p *Postgres) DeadLetters(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalidArgument, limit)
	}
	rows, err := p.r.Query(ctx, `SELECT seq, room, subject, payload, reason, detail, parked_at
		FROM dead_letters WHERE seq > $1 ORDER BY seq LIMIT $2`, idArg(after), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres dead letters: %w", err)
	}
	defer rows.Close()
	return readRows(rows, "postgres dead letters", []DeadLetter{}, func(rs resultRows, l *DeadLetter) error {
		var seq int64
		if err := rs.Scan(&seq, &l.Room, &l.Subject, &l.Payload, &l.Reason, &l.Detail, &l.ParkedAt); err != nil {
			return err
		}
		l.Seq = uint64(seq)
		return nil
	})
}

// TrimDeadLetters implements Store.
func (p *Postgres) TrimDeadLetters(ctx context.Context, cutoff time.Time) (int, error) {
	tag, err := p.w.Exec(ctx, `DELETE FROM dead_letters WHERE parked_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("postgres trim dead letters: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// scanPG reads rows of messageCols.
func scanPG(rows pgx.Rows) ([]wire.Message, error) {
	defer rows.Close()
	return readRows(rows, "postgres", nil, scanMessage)
}

func (p *Postgres) newest(ctx context.Context, room string, before uint64, n int) ([]wire.Message, uint64, error) {
	r := &newestReq{room: room, before: bound(before), n: n, out: make(chan newestRes, 1)}
	select {
	case p.newestq <- r:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("postgres recent: %w", ctx.Err())
	}
	select {
	case res := <-r.out:
		return res.msgs, res.last, res.err
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("postgres recent: %w", ctx.Err())
	}
}

func (p *Postgres) reactions(ctx context.Context, room string, lo, hi uint64) (map[uint64][]wire.Reaction, error) {
	rows, err := p.r.Query(ctx, dollar(sqlReactions), room, idArg(lo), idArg(hi))
	if err != nil {
		return nil, fmt.Errorf("postgres reactions: %w", err)
	}
	defer rows.Close()
	return readReactions(rows)
}

func (p *Postgres) rows(ctx context.Context, room string, ids []uint64) (map[uint64]wire.Message, error) {
	args := make([]int64, len(ids))
	for i, id := range ids {
		args[i] = idArg(id)
	}
	rows, err := p.r.Query(ctx, `SELECT `+messageCols+` FROM messages
		WHERE room = $1 AND kind IN ('message', 'system') AND id = ANY($2::bigint[])`, room, args)
	if err != nil {
		return nil, fmt.Errorf("postgres messages: %w", err)
	}
	ms, err := scanPG(rows)
	if err != nil {
		return nil, err
	}
	return byID(ms), nil
}

func (p *Postgres) unread(ctx context.Context, user string, mark wire.ReadMark) (int, int, error) {
	var c, n int
	if err := p.r.QueryRow(ctx, dollar(sqlUnreadCount),
		mark.Room, idArg(mark.Read), user, wire.MaxUnread).Scan(&c); err != nil {
		return 0, 0, fmt.Errorf("postgres unread: %w", err)
	}
	if err := p.r.QueryRow(ctx, dollar(sqlUnreadMentions), user, mark.Room, idArg(mark.Read), wire.MaxUnread).Scan(&n); err != nil {
		return 0, 0, fmt.Errorf("postgres unread mentions: %w", err)
	}
	return c, n, nil
}

func (p *Postgres) oldest(ctx context.Context, room string, after uint64, n int) (uint64, []wire.Message, error) {
	rows, err := p.r.Query(ctx, `(SELECT `+messageCols+` FROM messages
			WHERE room = $1 AND id <= $2 ORDER BY id DESC LIMIT 1)
		UNION ALL
		(SELECT `+messageCols+` FROM messages WHERE room = $1 AND id > $2 ORDER BY id LIMIT $3)`,
		room, idArg(after), n)
	if err != nil {
		return 0, nil, fmt.Errorf("postgres since: %w", err)
	}
	ms, err := scanPG(rows)
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
	slices.SortFunc(out, func(a, b wire.Message) int { return cmpID(a.ID, b.ID) })
	return floor, out, nil
}

func cmpID(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (p *Postgres) below(ctx context.Context, room string, id uint64) (uint64, error) {
	var v *int64
	if err := p.r.QueryRow(ctx, `SELECT MAX(id) FROM messages WHERE room = $1 AND id < $2`,
		room, bound(id)).Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres prev: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return uint64(*v), nil
}

func (p *Postgres) trimmed(ctx context.Context, room string) (uint64, error) {
	var t int64
	err := p.r.QueryRow(ctx, `SELECT trimmed_through FROM rooms WHERE room = $1`, room).Scan(&t)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("postgres watermark: %w", err)
	}
	return uint64(t), nil
}

// Lobby implements Store.
func (p *Postgres) Lobby(ctx context.Context, limit int) ([]wire.RoomSummary, error) {
	limit = clampLimit(limit, lobbyDefault, lobbyMax)
	rows, err := p.r.Query(ctx, lobbyQuery("$1"), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres lobby: %w", err)
	}
	defer rows.Close()
	return readRows(rows, "postgres lobby", []wire.RoomSummary{}, scanSummary)
}

// Trim implements Store.
func (p *Postgres) Trim(ctx context.Context, cutoff time.Time, batch int) (int, error) {
	if batch <= 0 {
		return 0, fmt.Errorf("%w: batch %d", ErrInvalidArgument, batch)
	}
	var n int
	err := pgx.BeginFunc(ctx, p.w, func(tx pgx.Tx) error {
		var err error
		n, err = trimBatch(ctx, pgTrim{tx}, cutoff, batch)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// pgTrim is Postgres's trimTx.
type pgTrim struct{ tx pgx.Tx }

func (t pgTrim) head(ctx context.Context, batch int) ([]wire.Message, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+messageCols+` FROM messages ORDER BY id LIMIT $1`, batch)
	if err != nil {
		return nil, fmt.Errorf("postgres trim: %w", err)
	}
	return scanPG(rows)
}

func (t pgTrim) deleteThrough(ctx context.Context, id uint64) (map[string]roomTrim, int, error) {
	for _, q := range []string{`DELETE FROM reactions WHERE target <= $1`, `DELETE FROM mentions WHERE id <= $1`} {
		if _, err := t.tx.Exec(ctx, q, int64(id)); err != nil {
			return nil, 0, fmt.Errorf("postgres trim delete: %w", err)
		}
	}
	del, err := t.tx.Query(ctx, `DELETE FROM messages WHERE id <= $1 RETURNING room, id, kind`, int64(id))
	if err != nil {
		return nil, 0, fmt.Errorf("postgres trim delete: %w", err)
	}
	defer del.Close()
	return tallyDeleted(del, "postgres trim delete")
}

func (t pgTrim) raise(ctx context.Context, room string, rt roomTrim) error {
	if _, err := t.tx.Exec(ctx, `UPDATE rooms SET trimmed_through = GREATEST(trimmed_through, $1),
		message_count = GREATEST(message_count - $2, 0) WHERE room = $3`,
		int64(rt.through), rt.count, room); err != nil {
		return fmt.Errorf("postgres trim watermark: %w", err)
	}
	return nil
}

// String describes the store for logs.
func (p *Postgres) String() string { return "postgres" }
