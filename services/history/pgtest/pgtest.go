// Package pgtest gives each test its own Postgres database, created on a
// test server and dropped when the test ends.
//
// The server is the one named by $HUBBUB_TEST_DATABASE_URL (an admin URL
// whose role may CREATE DATABASE). When the variable is unset, pgtest starts
// a throwaway server itself from the installed PostgreSQL binaries, once per
// test binary, on first use: initdb into a temporary directory (as the
// unprivileged user "postgres" or "nobody" when the tests run as root), a
// free port on 127.0.0.1, Unix sockets in that directory. Without the
// binaries the test fails with one line saying what to install; it never
// skips, unless HUBBUB_TEST_SKIP_POSTGRES=1 explicitly asks to.
//
// A package whose tests use pgtest stops that server at the end with
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Without it the server still dies with the test binary (parent-death
// signal) and a later run removes its directory.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding the admin URL of the test server.
const EnvURL = "HUBBUB_TEST_DATABASE_URL"

// EnvSkip names the variable that, set to 1, skips Postgres tests.
const EnvSkip = "HUBBUB_TEST_SKIP_POSTGRES"

// local is this test binary's throwaway server, started by the first
// AdminURL call that needs it.
var local struct {
	mu      sync.Mutex
	started bool
	srv     *server
	err     error
}

// AdminURL returns the admin URL of the test server: $HUBBUB_TEST_DATABASE_URL,
// or the throwaway server, started on first use. It fails the test when no
// server can be had (or skips it when HUBBUB_TEST_SKIP_POSTGRES=1).
func AdminURL(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	if os.Getenv(EnvSkip) == "1" {
		tb.Skipf("%s=1: Postgres tests skipped on request", EnvSkip)
	}
	local.mu.Lock()
	defer local.mu.Unlock()
	if !local.started {
		local.started = true
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		local.srv, local.err = startServer(ctx)
		cancel()
		if local.err == nil {
			tb.Logf("pgtest: %s unset: started a throwaway %s as user %s in %s (%v)",
				EnvURL, local.srv.version, local.srv.who(), local.srv.dir, time.Since(t0).Round(time.Millisecond))
		}
	}
	if local.err != nil {
		tb.Fatal(local.err)
	}
	return local.srv.url
}

// Stop stops the throwaway server, if this test binary started one, and
// removes its directory. Main calls it; a package with its own TestMain
// calls it after m.Run.
func Stop() {
	local.mu.Lock()
	defer local.mu.Unlock()
	if local.srv != nil {
		local.srv.stop()
		local.srv = nil
		local.err = fmt.Errorf("pgtest: the throwaway server was stopped (pgtest.Stop)")
	}
}

// Main runs the package's tests, stops the throwaway server and exits:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
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
		tb.Fatalf("connect to the test server: %v", err)
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
		tb.Fatalf("parse the test server URL: %v", err)
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
