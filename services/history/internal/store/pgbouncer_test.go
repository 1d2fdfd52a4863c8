package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/history/internal/metrics"
	"github.com/hubbub-chat/hubbub/services/history/internal/pgbouncertest"
	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/services/history/internal/store/storetest"
	"github.com/hubbub-chat/hubbub/services/history/pgtest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// bouncerPoolSize is the bouncer's server connections per database: fewer
// than one store's pools hold (8 read + 4 write), so the store's client
// connections share server connections and really get shuffled.
const bouncerPoolSize = 2

// openBehind opens a fresh database through b as a transaction pooler.
func openBehind(t testing.TB, b *pgbouncertest.Bouncer) (*store.Postgres, string) {
	t.Helper()
	_, name := pgtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.OpenPostgresWith(ctx, b.URL(name), store.PostgresOptions{Pooler: store.PoolerTransaction})
	if err != nil {
		t.Fatalf("open postgres behind pgbouncer: %v\npgbouncer log:%s", err, tail(b.Log()))
	}
	return s, name
}

// TestConformancePgBouncer runs the conformance suite through a real
// PgBouncer in transaction pooling mode.
func TestConformancePgBouncer(t *testing.T) {
	b := pgbouncertest.Start(t, pgtest.AdminURL(t), pgbouncertest.Config{DefaultPoolSize: bouncerPoolSize})
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openBehind(t, b)
		return s
	})
}

// TestPgBouncerShuffle runs history's store behind PgBouncer (transaction
// pooling, 2 server connections per database) with several replicas
// migrating at once and many concurrent writers and readers, so that each
// client connection's statements run on whichever server connection is
// free: nothing may fail, least of all with "prepared statement" errors,
// and everything written must be read back.
//
// It runs in the default mode (exec) and in the other query modes a URL
// may ask for behind a pooler (default_query_exec_mode).
func TestPgBouncerShuffle(t *testing.T) {
	b := pgbouncertest.Start(t, pgtest.AdminURL(t), pgbouncertest.Config{DefaultPoolSize: bouncerPoolSize})
	for _, mode := range []string{"default", "simple_protocol", "cache_describe"} {
		t.Run(mode, func(t *testing.T) {
			_, name := pgtest.Database(t)
			dsn := b.URL(name)
			if mode != "default" {
				dsn += "&default_query_exec_mode=" + mode
			}
			shuffle(t, b, dsn)
		})
	}
}

func shuffle(t *testing.T, b *pgbouncertest.Bouncer, dsn string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Three replicas open (and migrate) at once: the migration lock is
	// transaction-level, so it serialises them through the pooler.
	const replicas = 3
	stores := make([]*store.Postgres, replicas)
	var openWG sync.WaitGroup
	openErrs := make([]error, replicas)
	for i := range stores {
		openWG.Go(func() {
			stores[i], openErrs[i] = store.OpenPostgresWith(ctx, dsn, store.PostgresOptions{Pooler: store.PoolerTransaction})
		})
	}
	openWG.Wait()
	for i, err := range openErrs {
		if err != nil {
			t.Fatalf("replica %d: open: %v\npgbouncer log:%s", i, err, tail(b.Log()))
		}
	}
	for _, s := range stores {
		t.Cleanup(func() { _ = s.Close() })
	}
	id := store.Identity{Stream: "CHAT", Created: time.Unix(1700000000, 0)}
	for i, s := range stores {
		if _, err := s.Bind(ctx, id); err != nil {
			t.Fatalf("replica %d: bind: %v", i, err)
		}
	}

	// Writers insert disjoint id ranges in batches (some repeated, as
	// redeliveries are); readers page, look up, list and ping meanwhile.
	rooms := []string{"alpha", "beta", "gamma", "delta"}
	const writers, batches, perBatch, readers = 6, 15, 20, 12
	var (
		mu   sync.Mutex
		errs []error
	)
	fail := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	var wg sync.WaitGroup
	for w := range writers {
		s := stores[w%replicas]
		wg.Go(func() {
			for k := range batches {
				msgs := make([]wire.Message, perBatch)
				for j := range msgs {
					n := uint64(1 + (w*batches+k)*perBatch + j)
					msgs[j] = wire.Message{ID: n, Room: rooms[n%uint64(len(rooms))], User: "u", Body: fmt.Sprintf("m%d", n),
						Kind: wire.KindMessage, TS: int64(n)}
				}
				if _, err := s.Insert(ctx, msgs); err != nil {
					fail("insert", err)
					return
				}
				if k%3 == 0 { // a redelivered batch is skipped, not an error
					if _, err := s.Insert(ctx, msgs); err != nil {
						fail("insert again", err)
						return
					}
				}
			}
		})
	}
	for r := range readers {
		s := stores[r%replicas]
		room := rooms[r%len(rooms)]
		wg.Go(func() {
			for range 25 {
				if _, err := s.Recent(ctx, room, 0, 10); err != nil {
					fail("recent", err)
					return
				}
				if _, err := s.Since(ctx, room, 5, 10); err != nil {
					fail("since", err)
					return
				}
				if _, err := s.Prev(ctx, room, 50); err != nil {
					fail("prev", err)
					return
				}
				if _, err := s.Lobby(ctx, 10); err != nil {
					fail("lobby", err)
					return
				}
				if _, err := s.DeadLetters(ctx, 0, 10); err != nil {
					fail("dead letters", err)
					return
				}
				if err := s.Ping(ctx); err != nil {
					fail("ping", err)
					return
				}
			}
		})
	}
	// Retention runs its transaction meanwhile (nothing is old enough).
	wg.Go(func() {
		for range 10 {
			if _, err := stores[0].Trim(ctx, time.Unix(0, 0), 50); err != nil {
				fail("trim", err)
				return
			}
		}
	})
	wg.Wait()
	for _, err := range errs {
		if strings.Contains(err.Error(), "prepared statement") {
			t.Errorf("prepared statements behind a transaction pooler: %v", err)
		} else {
			t.Errorf("%v", err)
		}
	}
	if t.Failed() {
		t.Fatalf("pgbouncer log:%s", tail(b.Log()))
	}

	// Everything written is read back, from every replica, in order.
	total := writers * batches * perBatch
	want := map[string][]uint64{}
	for n := uint64(1); n <= uint64(total); n++ {
		r := rooms[n%uint64(len(rooms))]
		want[r] = append(want[r], n)
	}
	for i, s := range stores {
		for _, room := range rooms {
			var got []uint64
			var after uint64
			for {
				p, err := s.Since(ctx, room, after, 200)
				if err != nil {
					t.Fatalf("replica %d: since %s: %v", i, room, err)
				}
				for _, m := range p.Items {
					got = append(got, m.ID)
				}
				if !p.HasMore || len(p.Items) == 0 {
					break
				}
				after = p.Items[len(p.Items)-1].ID
			}
			if fmt.Sprint(got) != fmt.Sprint(want[room]) {
				t.Fatalf("replica %d: room %s holds %d messages, want %d", i, room, len(got), len(want[room]))
			}
			p, err := s.Recent(ctx, room, 0, 5)
			if err != nil {
				t.Fatalf("replica %d: recent %s: %v", i, room, err)
			}
			if w := want[room]; len(p.Items) != 5 || p.Items[4].ID != w[len(w)-1] {
				t.Fatalf("replica %d: recent %s: %v, want the last 5 ending at %d", i, room, ids(p.Items), w[len(w)-1])
			}
		}
		lobby, err := s.Lobby(ctx, 10)
		if err != nil {
			t.Fatalf("replica %d: lobby: %v", i, err)
		}
		if len(lobby) != len(rooms) {
			t.Fatalf("replica %d: lobby lists %d rooms, want %d", i, len(lobby), len(rooms))
		}
		for _, r := range lobby {
			if w := want[r.Room]; r.Messages != int64(len(w)) || r.LastID != w[len(w)-1] {
				t.Fatalf("replica %d: lobby room %s: %d messages, last %d, want %d and %d", i, r.Room, r.Messages, r.LastID, len(w), w[len(w)-1])
			}
		}
	}

	// The client connections outnumbered the bouncer's server connections,
	// so statements really ran on server connections other clients used.
	clients := 0
	for _, s := range stores {
		for _, st := range s.PoolStats() {
			clients += int(st.TotalConns())
		}
	}
	if clients <= bouncerPoolSize {
		t.Fatalf("only %d client connections for %d server connections: nothing was shuffled", clients, bouncerPoolSize)
	}

	// The pools' statistics are exported on the history registry.
	reg := prometheus.NewPedanticRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Pools.Observe(stores[0])
	got := gatherPools(t, reg)
	for _, c := range []struct {
		metric, pool string
		check        func(float64) bool
		want         string
	}{
		{"hubbub_history_db_pool_max_conns", "read", func(v float64) bool { return v == 8 }, "8"},
		{"hubbub_history_db_pool_max_conns", "write", func(v float64) bool { return v == 4 }, "4"},
		{"hubbub_history_db_pool_acquires_total", "read", func(v float64) bool { return v > 0 }, "> 0"},
		{"hubbub_history_db_pool_acquires_total", "write", func(v float64) bool { return v > 0 }, "> 0"},
		{"hubbub_history_db_pool_total_conns", "read", func(v float64) bool { return v >= 1 && v <= 8 }, "1..8"},
		{"hubbub_history_db_pool_acquired_conns", "read", func(v float64) bool { return v == 0 }, "0 (idle now)"},
		{"hubbub_history_db_pool_new_conns_total", "read", func(v float64) bool { return v >= 1 }, ">= 1"},
		{"hubbub_history_db_pool_idle_conns", "write", func(v float64) bool { return v >= 0 }, "present"},
		{"hubbub_history_db_pool_acquire_seconds_total", "read", func(v float64) bool { return v >= 0 }, "present"},
		{"hubbub_history_db_pool_empty_acquires_total", "read", func(v float64) bool { return v >= 0 }, "present"},
		{"hubbub_history_db_pool_empty_acquire_wait_seconds_total", "read", func(v float64) bool { return v >= 0 }, "present"},
		{"hubbub_history_db_pool_canceled_acquires_total", "read", func(v float64) bool { return v >= 0 }, "present"},
	} {
		v, ok := got[c.metric+"/"+c.pool]
		if !ok || !c.check(v) {
			t.Errorf("%s{pool=%q} = %v (present %v), want %s", c.metric, c.pool, v, ok, c.want)
		}
	}
}

// gatherPools returns the pool metrics on reg by "name/pool".
func gatherPools(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "hubbub_history_db_pool_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			pool := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "pool" {
					pool = l.GetValue()
				}
			}
			v := m.GetGauge().GetValue()
			if c := m.GetCounter(); c != nil {
				v = c.GetValue()
			}
			out[mf.GetName()+"/"+pool] = v
		}
	}
	return out
}

// TestPgBouncerNeedsPoolerSetting checks that a store opened as if
// connected to Postgres itself stops at once behind PgBouncer, saying
// which setting to use, instead of failing request after request.
func TestPgBouncerNeedsPoolerSetting(t *testing.T) {
	b := pgbouncertest.Start(t, pgtest.AdminURL(t), pgbouncertest.Config{DefaultPoolSize: bouncerPoolSize})
	_, name := pgtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.OpenPostgres(ctx, b.URL(name))
	if err == nil {
		_ = s.Close()
		t.Fatal("opened without the pooler setting behind pgbouncer; want a refusal naming HUBBUB_PG_POOLER")
	}
	if !strings.Contains(err.Error(), "HUBBUB_PG_POOLER=transaction") {
		t.Fatalf("error %q does not name HUBBUB_PG_POOLER=transaction", err)
	}
}

// TestPoolerOption checks the values of PostgresOptions.Pooler and the
// query modes refused behind a transaction pooler (before connecting).
func TestPoolerOption(t *testing.T) {
	ctx := context.Background()
	if _, err := store.OpenPostgresWith(ctx, "postgres://u:p@127.0.0.1:1/db", store.PostgresOptions{Pooler: "session-ish"}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("unknown pooler: %v, want ErrInvalidArgument", err)
	}
	u := "postgres://u:p@127.0.0.1:1/db?" + url.Values{"default_query_exec_mode": {"describe_exec"}}.Encode()
	_, err := store.OpenPostgresWith(ctx, u, store.PostgresOptions{Pooler: store.PoolerTransaction})
	if !errors.Is(err, store.ErrInvalidArgument) || !strings.Contains(err.Error(), "describe_exec") {
		t.Errorf("describe_exec behind a pooler: %v, want ErrInvalidArgument naming it", err)
	}
}

// ids lists the ids of msgs.
func ids(msgs []wire.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// tail returns the last lines of a log.
func tail(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "\n" + strings.Join(lines, "\n")
}
