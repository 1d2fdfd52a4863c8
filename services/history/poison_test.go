package history_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/services/history/internal/ingest"
	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// publishRaw publishes data to room's subject as the edge does (with a
// Nats-Msg-Id), bypassing the edge's checks, as the nats CLI could. The
// message is not recorded as one history must store.
func (e *env) publishRaw(t *testing.T, subject string, data []byte) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(subjects.HeaderMsgID, fmt.Sprintf("raw-%d-%d", time.Now().UnixNano(), len(data)))
	ack, err := e.js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatalf("publish raw: %v", err)
	}
	return ack.Sequence
}

// poison is a message history must park.
type poison struct {
	seq     uint64
	room    string
	subject string
	payload []byte
	reason  string
}

func (e *env) publishPoison(t *testing.T, room, reason string, p wire.Post) poison {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return e.publishPoisonRaw(t, room, reason, data)
}

func (e *env) publishPoisonRaw(t *testing.T, room, reason string, data []byte) poison {
	t.Helper()
	subj := subjects.Room(room)
	return poison{seq: e.publishRaw(t, subj, data), room: room, subject: subj, payload: data, reason: reason}
}

// drained waits until the history consumer has nothing pending or
// unacknowledged.
func drained(t *testing.T, e *env) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := e.js.Consumer(ctx, subjects.Stream, ingest.Durable)
		if err != nil {
			return err
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if ci.NumPending != 0 || ci.NumAckPending != 0 {
			return fmt.Errorf("consumer not drained: num_pending %d, num_ack_pending %d, ack floor %d",
				ci.NumPending, ci.NumAckPending, ci.AckFloor.Stream)
		}
		return nil
	})
}

// metricValue reads one counter or gauge from reg (0 if absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// checkParked checks the dead-letter table holds exactly want, payloads
// byte for byte.
func checkParked(t *testing.T, st store.Store, want []poison) error {
	got, err := st.DeadLetters(context.Background(), 0, 1000)
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d dead letters, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Seq != w.seq || g.Room != w.room || g.Subject != w.subject || string(g.Payload) != string(w.payload) ||
			g.Reason != w.reason || g.Detail == "" || g.ParkedAt.IsZero() {
			return fmt.Errorf("dead letter %d: %+v (payload %q), want %+v (payload %q)", i, g, g.Payload, w, w.payload)
		}
	}
	return nil
}

// TestPoisonMessages publishes, straight to the room subjects, bodies the
// edge refuses (U+0000 — which PostgreSQL text cannot hold — a control
// character, an over-long body) and a payload that is not a post, among
// ordinary messages in several rooms. On both stores every ordinary
// message is stored and served with gapless chains, the consumer drains,
// the poison is in the dead-letter table byte for byte, counted by reason,
// and history stays ready. Before the fix Postgres retried the NUL batch
// forever (two of them wedged both insert slots: nothing more stored,
// consumer never drained) and SQLite stored the NUL bodies.
func TestPoisonMessages(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		reg := prometheus.NewRegistry()
		r := startWith(t, e, cfg, reg)
		st := storeOf(t, cfg)
		rooms := []string{"a", "b", "c"}
		now := time.Now().UnixMilli()
		e.publishMany(t, 40, rooms...)
		var bad []poison
		bad = append(bad, e.publishPoison(t, "a", ingest.ReasonInvalid, wire.Post{Room: "a", User: "mallory", Body: "a\x00b", Kind: wire.KindMessage, TS: now, CID: "n1"}))
		e.publishMany(t, 3, rooms...)
		bad = append(bad, e.publishPoison(t, "b", ingest.ReasonInvalid, wire.Post{Room: "b", User: "mallory", Body: "\x00", TS: now, CID: "n2"}))
		bad = append(bad, e.publishPoison(t, "a", ingest.ReasonInvalid, wire.Post{Room: "a", User: "mallory", Body: "ding\a", TS: now, CID: "n3"}))
		e.publishMany(t, 3, rooms...)
		bad = append(bad, e.publishPoison(t, "b", ingest.ReasonInvalid, wire.Post{Room: "b", User: "mal\x00lory", Body: "hello", TS: now, CID: "n4"}))
		bad = append(bad, e.publishPoison(t, "c", ingest.ReasonInvalid, wire.Post{Room: "c", User: "mallory", Body: strings.Repeat("x", wire.DefaultMaxBody+1), TS: now}))
		bad = append(bad, e.publishPoisonRaw(t, "b", ingest.ReasonUndecodable, []byte("not json \x00")))
		e.publishMany(t, 60, rooms...)
		// The newest message of room c is poison.
		lastC := e.publishPoison(t, "c", ingest.ReasonInvalid, wire.Post{Room: "c", User: "mallory", Body: "bye\x00", TS: now, CID: "n5"})
		bad = append(bad, lastC)

		eventually(t, 30*time.Second, func() error { return storedExactly(t, e, st) })
		drained(t, e)
		eventually(t, 10*time.Second, func() error { return checkParked(t, st, bad) })
		counts := map[string]float64{}
		for _, p := range bad {
			counts[p.reason]++
		}
		for _, reason := range []string{ingest.ReasonInvalid, ingest.ReasonUndecodable, ingest.ReasonRejected} {
			got := metricValue(t, reg, "hubbub_history_ingest_parked_total", map[string]string{"reason": reason})
			if got != counts[reason] {
				t.Errorf("hubbub_history_ingest_parked_total{reason=%q} = %v, want %v", reason, got, counts[reason])
			}
		}

		// A parked id is simply not in the room: chains link across it and
		// no page claims a gap or waits for it.
		for _, room := range rooms {
			ids := e.ids(room)
			checkChain(t, "since all "+room, sinceAll(t, e.nc, room, 0), ids, 0)
			p := recent(t, e.nc, room, 0, 5)
			checkChain(t, "recent "+room, p.Items, ids[len(ids)-5:], ids[len(ids)-6])
		}
		for _, p := range bad {
			if p.seq == lastC.seq {
				continue
			}
			ids := e.ids(p.room)
			k := 0
			for k < len(ids) && ids[k] < p.seq {
				k++
			}
			var before uint64
			if k > 0 {
				before = ids[k-1]
			}
			page := since(t, e.nc, p.room, p.seq, 3)
			checkChain(t, fmt.Sprintf("since parked %d in %s", p.seq, p.room), page.Items, ids[k:k+3], before)
			page = recent(t, e.nc, p.room, p.seq+1, 2)
			checkChain(t, fmt.Sprintf("recent before parked %d in %s", p.seq, p.room), page.Items, ids[k-2:k], ids[k-3])
		}
		page := since(t, e.nc, "c", lastC.seq, 10)
		if !page.Recovered || len(page.Items) != 0 || page.HasMore {
			t.Fatalf("since the parked newest message of c: %+v", page)
		}
		if err := r.svc.Ready(); err != nil {
			t.Fatalf("ready after parking: %v", err)
		}

		// Ingest goes on after the poison.
		e.publishMany(t, 20, rooms...)
		eventually(t, 30*time.Second, func() error { return storedExactly(t, e, st) })
		drained(t, e)
		r.stop(t)
	})
}

// execOn runs one statement on the service's own database (fault
// injection that the store does not know about).
func execOn(t *testing.T, cfg history.Config, q string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cfg.DatabaseURL != "" {
		c, err := pgx.Connect(ctx, cfg.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close(context.Background()) }()
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return
	}
	db, err := sql.Open("sqlite", store.SQLitePath(cfg.DataDir)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if _, err := db.ExecContext(ctx, q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestPoisonRowRejectedByDatabase makes the database itself refuse one
// row that passes every check of history's (a CHECK constraint in
// Postgres, a trigger in SQLite): the batch holding it fails with a data
// error, ingest isolates the row, parks it with reason rejected and
// stores the rest of its batch and everything after it. Before the fix
// the batch was retried forever.
func TestPoisonRowRejectedByDatabase(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		reg := prometheus.NewRegistry()
		r := startWith(t, e, cfg, reg)
		st := storeOf(t, cfg)
		if cfg.DatabaseURL != "" {
			execOn(t, cfg, `ALTER TABLE messages ADD CONSTRAINT refuse_one CHECK (body <> 'the database refuses this')`)
		} else {
			execOn(t, cfg, `CREATE TRIGGER refuse_one BEFORE INSERT ON messages
				WHEN NEW.body = 'the database refuses this' BEGIN SELECT RAISE(ABORT, 'refused'); END`)
		}
		rooms := []string{"a", "b"}
		e.publishMany(t, 30, rooms...)
		bad := []poison{e.publishPoison(t, "a", ingest.ReasonRejected,
			wire.Post{Room: "a", User: "u", Body: "the database refuses this", Kind: wire.KindMessage, TS: time.Now().UnixMilli(), CID: "r1"})}
		e.publishMany(t, 30, rooms...)

		eventually(t, 30*time.Second, func() error { return storedExactly(t, e, st) })
		drained(t, e)
		eventually(t, 10*time.Second, func() error { return checkParked(t, st, bad) })
		if got := metricValue(t, reg, "hubbub_history_ingest_parked_total", map[string]string{"reason": ingest.ReasonRejected}); got != 1 {
			t.Errorf("parked rejected = %v, want 1", got)
		}
		// Until the stored watermark passes it, the row is still read from
		// the stream (history cannot tell that the database will refuse
		// it); from then on it is not in the room.
		eventually(t, 10*time.Second, func() error {
			got := sinceAll(t, e.nc, "a", 0)
			if len(got) != len(e.ids("a")) {
				return fmt.Errorf("room a: %d messages, want %d", len(got), len(e.ids("a")))
			}
			return nil
		})
		for _, room := range rooms {
			checkChain(t, "since all "+room, sinceAll(t, e.nc, room, 0), e.ids(room), 0)
		}
		if err := r.svc.Ready(); err != nil {
			t.Fatalf("ready: %v", err)
		}
		r.stop(t)
	})
}

// TestIngestLagMakesUnready stalls ingest while the database still answers
// (another session holds the write lock: Postgres LOCK TABLE, SQLite
// BEGIN IMMEDIATE) and messages keep arriving: once the oldest unstored
// message is older than MaxIngestLag, Ready reports ErrIngestLagging and
// the lag gauge shows it; when the lock goes, ingest catches up, nothing
// is parked (a stall is not a bad row) and Ready recovers.
func TestIngestLagMakesUnready(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		cfg.MaxIngestLag = time.Second
		reg := prometheus.NewRegistry()
		r := startWith(t, e, cfg, reg)
		st := storeOf(t, cfg)
		e.publishMany(t, 20, "a", "b")
		eventually(t, 20*time.Second, func() error { return storedExactly(t, e, st) })
		eventually(t, 10*time.Second, func() error { return r.svc.Ready() })

		unlock := lockWrites(t, cfg)
		e.publishMany(t, 20, "a", "b")
		eventually(t, 30*time.Second, func() error {
			err := r.svc.Ready()
			if !errors.Is(err, history.ErrIngestLagging) {
				return fmt.Errorf("ready while ingest is stalled: %v, want ErrIngestLagging", err)
			}
			return nil
		})
		if lag := metricValue(t, reg, "hubbub_history_ingest_lag_seconds", nil); lag < cfg.MaxIngestLag.Seconds() {
			t.Errorf("hubbub_history_ingest_lag_seconds = %v while not ready for lag", lag)
		}
		if got := metricValue(t, reg, "hubbub_history_consumer_lag", nil); got == 0 {
			t.Error("hubbub_history_consumer_lag = 0 while stalled")
		}

		unlock()
		eventually(t, 60*time.Second, func() error { return r.svc.Ready() })
		eventually(t, 30*time.Second, func() error { return storedExactly(t, e, st) })
		drained(t, e)
		if err := checkParked(t, st, nil); err != nil {
			t.Fatalf("a stall parked messages: %v", err)
		}
		eventually(t, 10*time.Second, func() error {
			if lag := metricValue(t, reg, "hubbub_history_ingest_lag_seconds", nil); lag != 0 {
				return fmt.Errorf("lag gauge %v after catching up", lag)
			}
			return nil
		})
		r.stop(t)
	})
}

// lockWrites takes the database's write lock from another session, so
// that inserts wait while reads (and Ping) go on, and returns its release.
func lockWrites(t *testing.T, cfg history.Config) (unlock func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cfg.DatabaseURL != "" {
		c, err := pgx.Connect(ctx, cfg.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE messages IN EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		done := false
		release := func() {
			if done {
				return
			}
			done = true
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = tx.Rollback(ctx)
			_ = c.Close(ctx)
		}
		t.Cleanup(release)
		return release
	}
	db, err := sql.Open("sqlite", store.SQLitePath(cfg.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	done := false
	release := func() {
		if done {
			return
		}
		done = true
		_, _ = conn.ExecContext(context.Background(), `ROLLBACK`)
		_ = conn.Close()
		_ = db.Close()
	}
	t.Cleanup(release)
	return release
}
