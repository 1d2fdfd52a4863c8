package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

var errNotYet = errors.New("not yet")

// With its database stalled (a table lock holds the only worker's query),
// a request that waits for a worker longer than MaxQueueWait is answered
// 503 without being queried, one beyond MaxQueued is refused at once, and
// the request that held the worker completes once the database moves.
func TestOverloadedRequestsAnswered503(t *testing.T) {
	e := newEnv(t)
	cfg, _ := postgresConfig(t)
	cfg.Workers, cfg.MaxQueued, cfg.MaxQueueWait = 1, 1, 300*time.Millisecond
	start(t, e, cfg)
	id := e.publish(t, "a", time.Now().UnixMilli())
	eventually(t, 10*time.Second, func() error {
		if p := recent(t, e.nc, "a", 0, 10); len(p.Items) == 0 || p.Items[len(p.Items)-1].ID != id {
			return errNotYet
		}
		return nil
	})

	// Stall the database: an exclusive lock on messages blocks every read.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	locker, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = locker.Close(ctx) }()
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE messages IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	body, _ := json.Marshal(wire.RecentRequest{Room: "a", Limit: 10})
	request := func() <-chan *nats.Msg {
		out := make(chan *nats.Msg, 1)
		inbox := nats.NewInbox()
		sub, err := e.nc.ChanSubscribe(inbox, out)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		if err := e.nc.PublishRequest(subjects.HistoryRecent, inbox, body); err != nil {
			t.Fatal(err)
		}
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	awaitReply := func(what string, ch <-chan *nats.Msg) *nats.Msg {
		t.Helper()
		select {
		case m := <-ch:
			return m
		case <-time.After(20 * time.Second):
			t.Fatalf("no reply to %s", what)
			return nil
		}
	}

	held := request() // takes the only worker and blocks on the lock
	eventually(t, 10*time.Second, func() error {
		var waiting int
		if err := locker.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted`).Scan(&waiting); err != nil {
			return err
		}
		if waiting == 0 {
			return errNotYet
		}
		return nil
	})
	queued := request() // waits for the worker
	// One beyond MaxQueued: refused at once, while the database is stalled.
	refused := awaitReply("the request beyond MaxQueued", request())
	if code, desc := refused.Header.Get(micro.ErrorCodeHeader), refused.Header.Get(micro.ErrorHeader); code != "503" || !strings.Contains(desc, "overloaded") {
		t.Fatalf("request beyond MaxQueued: %q %q, want 503 overloaded", code, desc)
	}
	time.Sleep(2 * cfg.MaxQueueWait) // the queued request outwaits MaxQueueWait
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	m := awaitReply("the request holding the worker", held)
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("held request: error %s %s", code, m.Header.Get(micro.ErrorHeader))
	}
	var p wire.Page
	if err := json.Unmarshal(m.Data, &p); err != nil || len(p.Items) == 0 {
		t.Fatalf("held request: %s, %v", m.Data, err)
	}
	m = awaitReply("the queued request", queued)
	if code, desc := m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader); code != "503" || !strings.Contains(desc, "waited") {
		t.Fatalf("request that waited past MaxQueueWait: %q %q %s, want 503 overloaded (waited …)", code, desc, m.Data)
	}
	// Served normally again.
	if p := recent(t, e.nc, "a", 0, 10); len(p.Items) == 0 {
		t.Fatal("no page after the stall")
	}
}
