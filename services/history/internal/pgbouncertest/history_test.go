package pgbouncertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/services/history/internal/pgbouncertest"
	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/services/history/pgtest"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestHistoryBehindPgBouncer runs the history service, configured as an
// operator would (HUBBUB_DATABASE_URL pointing at the pooler,
// HUBBUB_PG_POOLER=transaction), through a real PgBouncer in transaction
// pooling mode with 2 server connections: it migrates, ingests (insert
// batches), answers recent, since and lobby requests arriving at once, is
// ready, and exports its pool metrics.
func TestHistoryBehindPgBouncer(t *testing.T) {
	b := pgbouncertest.Start(t, pgtest.AdminURL(t), pgbouncertest.Config{DefaultPoolSize: 2})
	_, name := pgtest.Database(t)
	env := map[string]string{
		"HUBBUB_DATABASE_URL":       b.URL(name),
		"HUBBUB_PG_POOLER":          "transaction",
		"HUBBUB_HISTORY_BATCH_SIZE": "20", // many small batches
		"HUBBUB_HISTORY_BATCH_WAIT": "2ms",
		"HUBBUB_HISTORY_INSERTS":    "4",
	}
	var cfg history.Config
	f := config.NewWithLookup("hubbub-history", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	cfg.RegisterFlags(f)
	if err := f.Parse(nil); err != nil {
		t.Fatalf("flags: %v", err)
	}
	if cfg.Pooler != store.PoolerTransaction {
		t.Fatalf("HUBBUB_PG_POOLER read as %q", cfg.Pooler)
	}

	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	svc, err := history.New(cfg, history.Deps{NC: nc, Registry: reg})
	if err != nil {
		t.Fatalf("history behind pgbouncer: %v\npgbouncer log:\n%s", err, b.Log())
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("history did not stop")
		}
	})
	eventually(t, 30*time.Second, svc.Ready)

	// Publish while requests keep arriving, from several clients at once.
	rooms := []string{"alpha", "beta", "gamma"}
	const perRoom = 80
	want := map[string][]uint64{}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	publishing := make(chan struct{})
	for r := range 6 {
		room := rooms[r%len(rooms)]
		wg.Go(func() {
			for {
				select {
				case <-publishing:
					return
				default:
				}
				for _, subj := range []string{subjects.HistoryRecent, subjects.HistorySince, subjects.HistoryLobby} {
					var req any = wire.RecentRequest{Room: room, Limit: 10}
					switch subj {
					case subjects.HistorySince:
						req = wire.SinceRequest{Room: room, Limit: 10}
					case subjects.HistoryLobby:
						req = wire.LobbyRequest{Limit: 10}
					}
					// 503 (catching up: the database has not stored what the
					// stream holds yet) is an answer; 500 would be a failed query.
					if err := request(nc, subj, req, nil); err != nil && !strings.Contains(err.Error(), ": error 503 ") {
						mu.Lock()
						errs = append(errs, err.Error())
						mu.Unlock()
						return
					}
				}
			}
		})
	}
	for i := range perRoom * len(rooms) {
		room := rooms[i%len(rooms)]
		data, _ := json.Marshal(wire.Post{Room: room, User: "u-" + room, Body: fmt.Sprintf("message %d", i), Kind: wire.KindMessage,
			TS: time.Now().UnixMilli(), CID: fmt.Sprint(i)})
		ack, err := js.Publish(ctx, subjects.Room(room), data)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		want[room] = append(want[room], ack.Sequence)
	}

	// Every message reaches the database (read back through the pooler).
	st, err := store.OpenPostgresWith(ctx, b.URL(name), store.PostgresOptions{Pooler: store.PoolerTransaction})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, room := range rooms {
		eventually(t, 60*time.Second, func() error {
			p, err := st.Since(ctx, room, 0, 1000)
			if err != nil {
				return err
			}
			if len(p.Items) != len(want[room]) {
				return fmt.Errorf("room %s: %d of %d messages stored", room, len(p.Items), len(want[room]))
			}
			return nil
		})
	}
	close(publishing)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("requests during ingest failed: %s\npgbouncer log:\n%s", strings.Join(errs, "; "), b.Log())
	}

	// The service answers from the database.
	for _, room := range rooms {
		var recent wire.Page
		if err := request(nc, subjects.HistoryRecent, wire.RecentRequest{Room: room, Limit: 5}, &recent); err != nil {
			t.Fatal(err)
		}
		if w := want[room]; len(recent.Items) != 5 || recent.Items[4].ID != w[len(w)-1] {
			t.Fatalf("recent %s: %d items, want the last 5 ending at %d", room, len(recent.Items), w[len(w)-1])
		}
		var since wire.Page
		if err := request(nc, subjects.HistorySince, wire.SinceRequest{Room: room, After: want[room][9], Limit: 200}, &since); err != nil {
			t.Fatal(err)
		}
		if len(since.Items) != perRoom-10 || !since.Recovered {
			t.Fatalf("since %s: %d items (recovered %v), want %d", room, len(since.Items), since.Recovered, perRoom-10)
		}
	}
	var lobby wire.LobbyReply
	if err := request(nc, subjects.HistoryLobby, wire.LobbyRequest{Limit: 10}, &lobby); err != nil {
		t.Fatal(err)
	}
	if len(lobby.Rooms) != len(rooms) {
		t.Fatalf("lobby lists %d rooms, want %d", len(lobby.Rooms), len(rooms))
	}
	for _, r := range lobby.Rooms {
		if w := want[r.Room]; r.Messages != int64(len(w)) || r.LastID != w[len(w)-1] {
			t.Fatalf("lobby %s: %d messages, last %d; want %d and %d", r.Room, r.Messages, r.LastID, len(w), w[len(w)-1])
		}
	}
	if err := svc.Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if strings.Contains(b.Log(), "prepared statement") {
		t.Fatalf("pgbouncer logged prepared statement errors:\n%s", b.Log())
	}

	// The pool metrics are on the service's registry.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	acquires := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "hubbub_history_db_pool_acquires_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pool" {
					acquires[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if acquires["read"] <= 0 || acquires["write"] <= 0 {
		t.Fatalf("hubbub_history_db_pool_acquires_total by pool: %v, want read and write > 0", acquires)
	}
}

// request sends req to subject and decodes the reply into out (unless nil).
func request(nc *nats.Conn, subject string, req, out any) error {
	data, _ := json.Marshal(req)
	msg, err := nc.Request(subject, data, 10*time.Second)
	if err != nil {
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("request %s %s: error %s %s", subject, data, code, msg.Header.Get(micro.ErrorHeader))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		return fmt.Errorf("reply %s: %w", msg.Data, err)
	}
	return nil
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
