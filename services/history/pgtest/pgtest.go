// Package pgtest gives each test its own Postgres database, created on the
// server named by $HUBBUB_TEST_DATABASE_URL and dropped when the test ends.
//
// When the variable is unset the test fails, unless
// HUBBUB_TEST_SKIP_POSTGRES=1 explicitly asks to skip Postgres tests.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding the admin URL of the test server.
const EnvURL = "HUBBUB_TEST_DATABASE_URL"

// EnvSkip names the variable that, set to 1, skips Postgres tests.
const EnvSkip = "HUBBUB_TEST_SKIP_POSTGRES"

// AdminURL returns the server URL from the environment, failing (or
// skipping, when explicitly asked) the test if it is missing.
func AdminURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		if os.Getenv(EnvSkip) == "1" {
			tb.Skipf("%s=1: Postgres tests skipped on request", EnvSkip)
		}
		tb.Fatalf("%s is not set: Postgres tests need a server, e.g. "+
			"%s=postgres://hubbub:hubbub@127.0.0.1:5432/hubbub?sslmode=disable "+
			"(or set %s=1 to skip them explicitly)", EnvURL, EnvURL, EnvSkip)
	}
	return u
}

// Database creates a fresh database named after the test, drops it (and
// any connections to it) in Cleanup, and returns its URL and name.
func Database(tb testing.TB) (dbURL, name string) {
	tb.Helper()
	admin := AdminURL(tb)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, strings.ToLower(tb.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	name = "t_" + name + "_" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect to %s: %v", EnvURL, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("drop database %s: %v", name, err)
			return
		}
		defer func() { _ = c.Close(context.Background()) }()
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("parse %s: %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String(), name
}

// Exec runs sql on the admin connection (for fault injection such as
// pg_terminate_backend).
func Exec(tb testing.TB, sql string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL(tb))
	if err != nil {
		tb.Fatalf("connect admin: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("admin exec %q: %v", sql, err)
	}
}

// TerminateBackends ends every connection to database name, as a crash or
// restart of Postgres would, and reports how many it ended.
func TerminateBackends(tb testing.TB, name string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL(tb))
	if err != nil {
		tb.Fatalf("connect admin: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, name).Scan(&n); err != nil {
		tb.Fatalf("terminate backends: %v", err)
	}
	return n
}
