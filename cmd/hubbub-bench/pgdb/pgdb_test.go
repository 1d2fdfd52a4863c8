package pgdb

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hubbub-chat/hubbub/services/history/pgtest"
)

func TestFreshCreatesAndDrops(t *testing.T) {
	admin := pgtest.AdminURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := "hubbub_pgdb_test_" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "_")
	dbURL, drop, err := Fresh(ctx, admin, name)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to the fresh database: %v", err)
	}
	var got string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&got); err != nil || got != name {
		t.Fatalf("current_database() = %q, %v; want %q", got, err, name)
	}
	_ = conn.Close(ctx)
	if err := drop(); err != nil {
		t.Fatalf("drop: %v", err)
	}
	if _, err := pgx.Connect(ctx, dbURL); err == nil {
		t.Fatal("database still there after drop")
	}
}

func TestRedactHidesPassword(t *testing.T) {
	if got := Redact("postgres://u:secret@h:5432/db"); strings.Contains(got, "secret") {
		t.Fatalf("Redact = %q", got)
	}
}
