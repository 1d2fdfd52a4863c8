package store_test

import (
	"context"
	"database/sql"
	"errors"
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
	if got := store.SQLitePath(dir); got != filepath.Join(dir, "history.db") {
		t.Errorf("SQLitePath = %s", got)
	}
	for _, u := range []string{"postgres://a/b", "postgresql://a/b"} {
		if !store.IsPostgresURL(u) {
			t.Errorf("IsPostgresURL(%s) = false", u)
		}
	}
}

// TestMigrationRecountsRooms opens a database as a build before migration
// 0002 left it (counts of every message ever stored, some since trimmed)
// and checks that opening it recounts the rooms from the messages held.
func TestMigrationRecountsRooms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pgURL, _ := pgtest.Database(t)
	dir := t.TempDir()
	cases := []struct {
		name string
		o    store.Options
		exec func(sql string) error
	}{
		{"sqlite", store.Options{DataDir: dir}, func(q string) error {
			db, err := sql.Open("sqlite", store.SQLitePath(dir))
			if err != nil {
				return err
			}
			defer func() { _ = db.Close() }()
			_, err = db.ExecContext(ctx, q)
			return err
		}},
		{"postgres", store.Options{DatabaseURL: pgURL}, func(q string) error {
			c, err := pgx.Connect(ctx, pgURL)
			if err != nil {
				return err
			}
			defer func() { _ = c.Close(ctx) }()
			_, err = c.Exec(ctx, q)
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := store.Open(ctx, c.o)
			if err != nil {
				t.Fatal(err)
			}
			var ms []wire.Message
			for i := range 7 {
				room := []string{"a", "b"}[i%2]
				ms = append(ms, wire.Message{ID: uint64(i + 1), Room: room, User: "u", Body: "b", Kind: wire.KindMessage, TS: 1})
			}
			if _, err := s.Insert(ctx, ms); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				`UPDATE rooms SET message_count = message_count + 100`,
				`DELETE FROM schema_migrations WHERE version >= 2`,
			} {
				if err := c.exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			s, err = store.Open(ctx, c.o)
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
		if n, err := s.Insert(ctx, []wire.Message{batch[0], batch[2]}); err != nil || n != 2 {
			t.Fatalf("insert the other rows: %d %v", n, err)
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
		if n, err := s.Insert(ctx, []wire.Message{batch[0], batch[2]}); err != nil || n != 2 {
			t.Fatalf("insert the other rows: %d %v", n, err)
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
