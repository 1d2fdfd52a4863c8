package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/services/history/internal/store/storetest"
	"github.com/hubbub-chat/hubbub/services/history/pgtest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func openSQLite(t *testing.T) store.Store   { return openSQLiteTB(t) }
func openPostgres(t *testing.T) store.Store { return openPostgresTB(t) }

func openSQLiteTB(t testing.TB) store.Store {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	return s
}

func openPostgresTB(t testing.TB) store.Store {
	url, _ := pgtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, store.Options{DatabaseURL: url})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	return s
}

func TestConformanceSQLite(t *testing.T)   { storetest.Run(t, openSQLite) }
func TestConformancePostgres(t *testing.T) { storetest.Run(t, openPostgres) }

// TestReopen checks that data, identity and schema survive closing and
// reopening, and that migrations are not re-applied.
func TestReopen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pgURL, _ := pgtest.Database(t)
	for _, o := range []store.Options{{DataDir: t.TempDir()}, {DatabaseURL: pgURL}} {
		name := "sqlite"
		if o.DatabaseURL != "" {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			id := store.Identity{Stream: "CHAT", Created: time.Unix(1700000000, 42)}
			s, err := store.Open(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Bind(ctx, id); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Insert(ctx, []wire.Message{{ID: 7, Room: "r", User: "u", Body: "b", Kind: wire.KindMessage, TS: 1}}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = store.Open(ctx, o)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer func() { _ = s.Close() }()
			if _, err := s.Bind(ctx, store.Identity{Stream: "CHAT", Created: time.Unix(1700000001, 0)}); !errors.Is(err, store.ErrStreamMismatch) {
				t.Fatalf("bind other stream after reopen: %v", err)
			}
			if fresh, err := s.Bind(ctx, id); err != nil || fresh {
				t.Fatalf("bind after reopen: fresh %v, %v", fresh, err)
			}
			p, err := s.Recent(ctx, "r", 0, 10)
			if err != nil || len(p.Items) != 1 || p.Items[0].ID != 7 {
				t.Fatalf("recent after reopen: %+v %v", p, err)
			}
		})
	}
}

func TestOpenOptions(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		o    store.Options
	}{
		{"no dir no url", store.Options{}},
		{"mysql url", store.Options{DatabaseURL: "mysql://x"}},
	}
	for _, c := range cases {
		if _, err := store.Open(ctx, c.o); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", c.name, err)
		}
	}
	dir := t.TempDir()
	s, err := store.Open(ctx, store.Options{DataDir: filepath.Join(dir, "nested", "dir")})
	if err != nil {
		t.Fatalf("open in nested dir: %v", err)
	}
	_ = s.Close()
	// URI-special characters in the path (a file: URI is opened).
	odd := filepath.Join(dir, "50% #1?x")
	s, err = store.Open(ctx, store.Options{DataDir: odd})
	if err != nil {
		t.Fatalf("open in %s: %v", odd, err)
	}
	_ = s.Close()
	if _, err := os.Stat(store.SQLitePath(odd)); err != nil {
		t.Fatalf("database not at %s: %v", store.SQLitePath(odd), err)
	}
	if got := store.SQLitePath(dir); got != filepath.Join(dir, "history.db") {
		t.Errorf("SQLitePath = %s", got)
	}
	for _, u := range []string{"postgres://a/b", "postgresql://a/b"} {
		if !store.IsPostgresURL(u) {
			t.Errorf("IsPostgresURL(%s) = false", u)
		}
	}
}

// oldDatabase is a database of each kind with a way to run raw SQL on it.
type oldDatabase struct {
	name string
	o    store.Options
	exec func(t *testing.T, sql string)
}

// oldDatabases returns one fresh SQLite and one fresh Postgres database.
func oldDatabases(t *testing.T, ctx context.Context) []oldDatabase {
	pgURL, _ := pgtest.Database(t)
	dir := t.TempDir()
	return []oldDatabase{
		{"sqlite", store.Options{DataDir: dir}, func(t *testing.T, q string) {
			t.Helper()
			db, err := sql.Open("sqlite", store.SQLitePath(dir))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = db.Close() }()
			if _, err = db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}},
		{"postgres", store.Options{DatabaseURL: pgURL}, func(t *testing.T, q string) {
			t.Helper()
			c, err := pgx.Connect(ctx, pgURL)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close(ctx) }()
			if _, err = c.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}},
	}
}

// TestMigrationRecountsRooms opens a database as a build before migration
// 0002 left it (counts of every message ever stored, some since trimmed)
// and checks that opening it recounts the rooms from the messages held.
func TestMigrationRecountsRooms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range oldDatabases(t, ctx) {
		t.Run(c.name, func(t *testing.T) {
			if err := store.MigrateTo(ctx, c.o, 1); err != nil {
				t.Fatal(err)
			}
			for i := range 7 {
				c.exec(t, fmt.Sprintf(`INSERT INTO messages (id, room, user_id, body, kind, ts) VALUES (%d, '%s', 'u', 'b', 'message', 1)`,
					i+1, []string{"a", "b"}[i%2]))
			}
			c.exec(t, `INSERT INTO rooms (room, last_id, last_ts, message_count, last_user, last_body, last_kind)
				VALUES ('a', 7, 1, 104, 'u', 'b', 'message'), ('b', 6, 1, 103, 'u', 'b', 'message')`)
			s, err := store.Open(ctx, c.o)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer func() { _ = s.Close() }()
			lobby, err := s.Lobby(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, r := range lobby {
				got[r.Room] = r.Messages
			}
			if got["a"] != 4 || got["b"] != 3 || len(got) != 2 {
				t.Fatalf("counts after migration %v, want a:4 b:3", got)
			}
		})
	}
}

// TestMigrationFrom0003 opens a database a build of schema version 3 left
// (messages and system messages, summaries counting both) and checks the
// upgrade: summaries of chat messages only, the old rows readable with the
// new columns, and changes folding into them.
func TestMigrationFrom0003(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, c := range oldDatabases(t, ctx) {
		t.Run(c.name, func(t *testing.T) {
			if err := store.MigrateTo(ctx, c.o, 3); err != nil {
				t.Fatal(err)
			}
			c.exec(t, `INSERT INTO messages (id, room, user_id, body, kind, ts, cid) VALUES
				(1, 'a', 'alice', 'hello', 'message', 1000, 'c1'),
				(2, 'a', 'bob', 'hi alice', 'message', 2000, 'c2'),
				(3, 'a', 'carol', 'carol joined', 'system', 3000, ''),
				(4, 'b', 'dave', 'dave joined', 'system', 4000, '')`)
			c.exec(t, `INSERT INTO rooms (room, last_id, last_ts, message_count, last_user, last_body, last_kind, last_cid) VALUES
				('a', 3, 3000, 3, 'carol', 'carol joined', 'system', ''),
				('b', 4, 4000, 1, 'dave', 'dave joined', 'system', '')`)
			s, err := store.Open(ctx, c.o)
			if err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			defer func() { _ = s.Close() }()
			lobby, err := s.Lobby(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(lobby) != 1 || lobby[0].Room != "a" || lobby[0].Messages != 2 || lobby[0].LastID != 2 ||
				lobby[0].LastActivity != 2000 || lobby[0].LastMessage == nil || lobby[0].LastMessage.Body != "hi alice" {
				t.Fatalf("lobby after upgrade: %+v, want room a only, 2 messages, last id 2 (bob's)", lobby)
			}
			p, err := s.Recent(ctx, "a", 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Items) != 3 || p.Last != 3 || p.Items[2].Kind != wire.KindSystem || p.Items[0].Body != "hello" {
				t.Fatalf("recent after upgrade: %+v", p)
			}
			on := true
			if _, err := s.Insert(ctx, []wire.Message{
				{ID: 5, Room: "a", User: "alice", Body: "hello!", Kind: wire.KindEdit, TS: 5000, Target: 1},
				{ID: 6, Room: "a", User: "bob", Kind: wire.KindReaction, TS: 6000, Target: 1, Emoji: "👍", On: &on},
			}); err != nil {
				t.Fatal(err)
			}
			m, err := s.Message(ctx, "a", 1)
			if err != nil {
				t.Fatal(err)
			}
			if m.Body != "hello!" || m.Edited != 5000 || len(m.Reactions) != 1 || m.Reactions[0].Users[0] != "bob" {
				t.Fatalf("old message after changes: %+v", m)
			}
			// The database is at the newest version: opening it again
			// migrates nothing.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = store.Open(ctx, c.o); err != nil {
				t.Fatalf("reopen: %v", err)
			}
		})
	}
}

// TestRejectedByDatabase injects a rule the database enforces and the
// store does not know about (a CHECK constraint in Postgres, a trigger in
// SQLite): a batch holding a row that breaks it fails with ErrRejected,
// the database's own error still in the chain, while a database that
// cannot be reached fails without ErrRejected.
func TestRejectedByDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pgURL, pgName := pgtest.Database(t)
	dir := t.TempDir()
	row := func(id uint64, body string) wire.Message {
		return wire.Message{ID: id, Room: "r", User: "u", Body: body, Kind: wire.KindMessage, TS: 1}
	}
	batch := []wire.Message{row(1, "fine"), row(2, "refused"), row(3, "fine too")}
	t.Run("postgres", func(t *testing.T) {
		s, err := store.Open(ctx, store.Options{DatabaseURL: pgURL})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close() }()
		c, err := pgx.Connect(ctx, pgURL)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Exec(ctx, `ALTER TABLE messages ADD CONSTRAINT no_refused CHECK (body <> 'refused')`)
		_ = c.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Insert(ctx, batch)
		var pe *pgconn.PgError
		if !errors.Is(err, store.ErrRejected) || !errors.As(err, &pe) || pe.Code != "23514" {
			t.Fatalf("insert breaking a CHECK: %v, want ErrRejected wrapping SQLSTATE 23514", err)
		}
		if n, err := s.Insert(ctx, []wire.Message{batch[0], batch[2]}); err != nil || len(n) != 2 {
			t.Fatalf("insert the other rows: %d %v", len(n), err)
		}

		db := pgx.Identifier{pgName}.Sanitize()
		pgtest.Exec(t, "ALTER DATABASE "+db+" ALLOW_CONNECTIONS false")
		defer pgtest.Exec(t, "ALTER DATABASE "+db+" ALLOW_CONNECTIONS true")
		pgtest.TerminateBackends(t, pgName)
		_, err = s.Insert(ctx, []wire.Message{row(4, "fine")})
		if err == nil || errors.Is(err, store.ErrRejected) {
			t.Fatalf("insert with the database unreachable: %v, want a transient error", err)
		}
		if err := s.Park(ctx, []store.DeadLetter{{Seq: 4, Reason: "x"}}); err == nil || errors.Is(err, store.ErrRejected) {
			t.Fatalf("park with the database unreachable: %v, want a transient error", err)
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		s, err := store.Open(ctx, store.Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close() }()
		db, err := sql.Open("sqlite", store.SQLitePath(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = db.Close() }()
		if _, err := db.ExecContext(ctx, `CREATE TRIGGER no_refused BEFORE INSERT ON messages
			WHEN NEW.body = 'refused' BEGIN SELECT RAISE(ABORT, 'refused body'); END`); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Insert(ctx, batch); !errors.Is(err, store.ErrRejected) {
			t.Fatalf("insert refused by a trigger: %v, want ErrRejected", err)
		}
		if n, err := s.Insert(ctx, []wire.Message{batch[0], batch[2]}); err != nil || len(n) != 2 {
			t.Fatalf("insert the other rows: %d %v", len(n), err)
		}
		// A database locked by another writer is busy, not a bad row.
		lock, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = lock.Close() }()
		if _, err := lock.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = lock.ExecContext(context.Background(), `ROLLBACK`) }()
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := s.Insert(short, []wire.Message{row(4, "fine")}); err == nil || errors.Is(err, store.ErrRejected) {
			t.Fatalf("insert into a locked database: %v, want a transient error", err)
		}
	})
}

// TestDeleteRemovesTextFromDatabase looks into the database itself: after
// a delete, no row holds the deleted message's text (its own row, its
// edits, the room summary), its mentions and reactions rows are gone, and
// retention removes the reactions and mentions rows of what it trims.
func TestDeleteRemovesTextFromDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, c := range oldDatabases(t, ctx) {
		t.Run(c.name, func(t *testing.T) {
			s, err := store.Open(ctx, c.o)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			on := true
			ev := func(id uint64, kind, user, body string, target uint64) wire.Message {
				m := wire.Message{ID: id, Room: "r", User: user, Body: body, Kind: kind, TS: int64(id), Target: target}
				if kind == wire.KindMessage || kind == wire.KindEdit {
					m.Mentions = []string{"bob"}
				}
				if kind == wire.KindReaction {
					m.Emoji, m.On = "👍", &on
				}
				return m
			}
			if _, err := s.Insert(ctx, []wire.Message{
				ev(1, wire.KindMessage, "alice", "topsecret @bob", 0),
				ev(2, wire.KindEdit, "alice", "topsecret v2 @bob", 1),
				ev(3, wire.KindReaction, "bob", "", 1),
				ev(4, wire.KindMessage, "carol", "keep @bob", 0),
				ev(5, wire.KindReaction, "bob", "", 4),
			}); err != nil {
				t.Fatal(err)
			}
			count := func(q string) int {
				t.Helper()
				var n int
				switch c.name {
				case "sqlite":
					db, err := sql.Open("sqlite", store.SQLitePath(c.o.DataDir))
					if err != nil {
						t.Fatal(err)
					}
					defer func() { _ = db.Close() }()
					err = db.QueryRowContext(ctx, q).Scan(&n)
					if err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				default:
					conn, err := pgx.Connect(ctx, c.o.DatabaseURL)
					if err != nil {
						t.Fatal(err)
					}
					defer func() { _ = conn.Close(ctx) }()
					if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				return n
			}
			const (
				text      = `SELECT count(*) FROM messages WHERE body LIKE '%topsecret%' OR mentions <> '' AND id IN (1, 2)`
				summary   = `SELECT count(*) FROM rooms WHERE last_body LIKE '%topsecret%'`
				reactions = `SELECT count(*) FROM reactions WHERE target = 1`
				mentions  = `SELECT count(*) FROM mentions WHERE id = 1`
			)
			if count(text) != 2 || count(reactions) != 1 || count(mentions) != 1 {
				t.Fatalf("before the delete: text %d reactions %d mentions %d", count(text), count(reactions), count(mentions))
			}
			if _, err := s.Insert(ctx, []wire.Message{ev(6, wire.KindDelete, "alice", "", 1)}); err != nil {
				t.Fatal(err)
			}
			if n := count(text); n != 0 {
				t.Fatalf("%d rows still hold the deleted text", n)
			}
			if count(reactions) != 0 || count(mentions) != 0 || count(summary) != 0 {
				t.Fatalf("after the delete: reactions %d mentions %d summary %d", count(reactions), count(mentions), count(summary))
			}
			if n, err := s.Trim(ctx, time.UnixMilli(100), 100); err != nil || n != 6 {
				t.Fatalf("trim: %d %v", n, err)
			}
			if n := count(`SELECT (SELECT count(*) FROM reactions) + (SELECT count(*) FROM mentions)`); n != 0 {
				t.Fatalf("%d reactions and mentions rows left after trimming their messages", n)
			}
		})
	}
}
