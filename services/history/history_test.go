package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/services/history/pgtest"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// env is one embedded NATS server with the stream provisioned.
type env struct {
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream

	mu    sync.Mutex
	rooms map[string][]uint64 // ids published per room, in order
	body  map[uint64]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, nc: nc, js: js, rooms: map[string][]uint64{}, body: map[uint64]string{}}
}

// publish posts one message to room with timestamp ts (ms) and records its id.
func (e *env) publish(t testing.TB, room string, ts int64) uint64 {
	t.Helper()
	body := fmt.Sprintf("msg %d in %s", rand.Int64(), room)
	p := wire.Post{Room: room, User: "user-" + room, Body: body, Kind: wire.KindMessage, TS: ts, CID: strconv.Itoa(rand.Int())}
	data, _ := json.Marshal(p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := e.js.Publish(ctx, subjects.Room(room), data)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	e.mu.Lock()
	e.rooms[room] = append(e.rooms[room], ack.Sequence)
	e.body[ack.Sequence] = body
	e.mu.Unlock()
	return ack.Sequence
}

// publishMany posts n messages spread at random over rooms.
func (e *env) publishMany(t testing.TB, n int, rooms ...string) {
	t.Helper()
	for range n {
		e.publish(t, rooms[rand.IntN(len(rooms))], time.Now().UnixMilli())
	}
}

func (e *env) ids(room string) []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]uint64(nil), e.rooms[room]...)
}

func (e *env) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ids := range e.rooms {
		n += len(ids)
	}
	return n
}

// running is a service started by start.
type running struct {
	svc    *history.Service
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, once done
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("run: %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("service did not stop")
	}
}

func start(t *testing.T, e *env, cfg history.Config) *running {
	t.Helper()
	return startWith(t, e, cfg, nil)
}

// startWith starts a service registering its metrics on reg (none: nil).
func startWith(t *testing.T, e *env, cfg history.Config, reg prometheus.Registerer) *running {
	t.Helper()
	svc, err := history.New(cfg, history.Deps{NC: e.nc, Log: testLog(t), Registry: reg})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{svc: svc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = svc.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
		}
	})
	eventually(t, 10*time.Second, func() error { return svc.Ready() })
	return r
}

// testLog logs through t when HUBBUB_TEST_LOG is set.
func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("HUBBUB_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(time.Now().Format("15:04:05.000 ") + string(p)))
	return len(p), nil
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

func call[T any](t *testing.T, nc *nats.Conn, subject string, req any) T {
	t.Helper()
	var out T
	data, _ := json.Marshal(req)
	msg, err := nc.Request(subject, data, 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("request %s %s: error %s %s", subject, data, code, msg.Header.Get(micro.ErrorHeader))
	}
	if err := json.Unmarshal(msg.Data, &out); err != nil {
		t.Fatalf("reply %s: %v", msg.Data, err)
	}
	return out
}

func recent(t *testing.T, nc *nats.Conn, room string, before uint64, limit int) wire.Page {
	t.Helper()
	return call[wire.Page](t, nc, subjects.HistoryRecent, wire.RecentRequest{Room: room, Before: before, Limit: limit})
}

func since(t *testing.T, nc *nats.Conn, room string, after uint64, limit int) wire.Page {
	t.Helper()
	return call[wire.Page](t, nc, subjects.HistorySince, wire.SinceRequest{Room: room, After: after, Limit: limit})
}

// sinceAll pages forward from after to the end.
func sinceAll(t *testing.T, nc *nats.Conn, room string, after uint64) []wire.Message {
	t.Helper()
	var all []wire.Message
	for {
		p := since(t, nc, room, after, 200)
		if !p.Recovered {
			t.Fatalf("since %d: recovered false", after)
		}
		all = append(all, p.Items...)
		if !p.HasMore {
			return all
		}
		after = p.Items[len(p.Items)-1].ID
	}
}

// checkChain verifies msgs are exactly ids with prev links, the first
// linking to firstPrev.
func checkChain(t *testing.T, what string, msgs []wire.Message, ids []uint64, firstPrev uint64) {
	t.Helper()
	if len(msgs) != len(ids) {
		t.Fatalf("%s: %d messages, want %d", what, len(msgs), len(ids))
	}
	p := firstPrev
	for i, m := range msgs {
		if m.ID != ids[i] || m.Prev != p {
			t.Fatalf("%s: item %d is id %d prev %d, want id %d prev %d", what, i, m.ID, m.Prev, ids[i], p)
		}
		p = m.ID
	}
}

// storeOf opens a second handle on a service's database, for checks.
func storeOf(t *testing.T, cfg history.Config) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, cfg.StoreConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// storedExactly checks the database holds each published message once:
// room chains equal the published ids and lobby counts equal their number.
func storedExactly(t *testing.T, e *env, st store.Store) error {
	ctx := context.Background()
	e.mu.Lock()
	rooms := map[string][]uint64{}
	for r, ids := range e.rooms {
		rooms[r] = append([]uint64(nil), ids...)
	}
	e.mu.Unlock()
	lobby, err := st.Lobby(ctx, 1000)
	if err != nil {
		return err
	}
	counts := map[string]int64{}
	for _, r := range lobby {
		counts[r.Room] = r.Messages
	}
	for room, ids := range rooms {
		if counts[room] != int64(len(ids)) {
			return fmt.Errorf("room %s: lobby count %d, want %d", room, counts[room], len(ids))
		}
		var got []uint64
		after := uint64(0)
		for {
			p, err := st.Since(ctx, room, after, 200)
			if err != nil {
				return err
			}
			for _, m := range p.Items {
				got = append(got, m.ID)
			}
			if !p.HasMore {
				break
			}
			after = p.Items[len(p.Items)-1].ID
		}
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			return fmt.Errorf("room %s: stored %d ids, want %d", room, len(got), len(ids))
		}
	}
	return nil
}

// testIngest is the tests' ingest: small, quick batches.
func testIngest() history.IngestConfig {
	return history.IngestConfig{BatchSize: 50, BatchWait: 5 * time.Millisecond}
}

func sqliteConfig(t *testing.T) history.Config {
	return history.Config{StoreConfig: history.StoreConfig{DataDir: t.TempDir()}, IngestConfig: testIngest(), MarksInterval: 50 * time.Millisecond}
}

func postgresConfig(t *testing.T) (history.Config, string) {
	url, name := pgtest.Database(t)
	return history.Config{StoreConfig: history.StoreConfig{DatabaseURL: url}, IngestConfig: testIngest(), MarksInterval: 50 * time.Millisecond}, name
}

// backends runs f against SQLite and Postgres.
func backends(t *testing.T, f func(t *testing.T, cfg history.Config)) {
	t.Run("sqlite", func(t *testing.T) { f(t, sqliteConfig(t)) })
	t.Run("postgres", func(t *testing.T) {
		cfg, _ := postgresConfig(t)
		f(t, cfg)
	})
}

func TestIngestAndServe(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		r := start(t, e, cfg)
		rooms := []string{"general", "engineering", "random"}
		e.publishMany(t, 300, rooms...)
		// An undecodable message must not block the stream.
		if _, err := e.js.Publish(context.Background(), subjects.Room("general"), []byte("not json")); err != nil {
			t.Fatal(err)
		}
		e.publishMany(t, 30, rooms...)
		st := storeOf(t, cfg)
		eventually(t, 20*time.Second, func() error { return storedExactly(t, e, st) })

		for _, room := range rooms {
			ids := e.ids(room)
			checkChain(t, "since all "+room, sinceAll(t, e.nc, room, 0), ids, 0)
			p := recent(t, e.nc, room, 0, 10)
			checkChain(t, "recent "+room, p.Items, ids[len(ids)-10:], ids[len(ids)-11])
			if !p.HasMore || !p.Recovered || p.Room != room {
				t.Fatalf("recent %s: has_more %v recovered %v room %q", room, p.HasMore, p.Recovered, p.Room)
			}
			p = recent(t, e.nc, room, ids[5], 0) // default limit
			checkChain(t, "recent before "+room, p.Items, ids[:5], 0)
			if p.HasMore {
				t.Fatalf("recent before ids[5]: has_more")
			}
			p = since(t, e.nc, room, ids[3], 4)
			checkChain(t, "since "+room, p.Items, ids[4:8], ids[3])
			for _, m := range p.Items {
				if m.Body != e.body[m.ID] || m.User != "user-"+room || m.Kind != wire.KindMessage || m.Room != room {
					t.Fatalf("message %+v", m)
				}
			}
		}
		lobby := call[wire.LobbyReply](t, e.nc, subjects.HistoryLobby, wire.LobbyRequest{})
		if len(lobby.Rooms) != len(rooms) {
			t.Fatalf("lobby: %+v", lobby)
		}
		for i, s := range lobby.Rooms {
			ids := e.ids(s.Room)
			if s.Messages != int64(len(ids)) || s.LastID != ids[len(ids)-1] || s.LastMessage == nil ||
				s.LastMessage.Prev != ids[len(ids)-2] {
				t.Fatalf("lobby room %+v, want %d messages, last %d", s, len(ids), ids[len(ids)-1])
			}
			if i > 0 && s.LastID > lobby.Rooms[i-1].LastID {
				t.Fatalf("lobby not ordered by activity")
			}
		}
		// Empty room: items is an empty list, not null.
		msg, err := e.nc.Request(subjects.HistoryRecent, []byte(`{"room":"empty"}`), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(msg.Data), `"items":[]`) {
			t.Fatalf("recent on empty room: %s", msg.Data)
		}
		// Bad requests: micro error 400 with a message.
		for _, c := range []struct{ subject, body string }{
			{subjects.HistoryRecent, `{"room":"a.b"}`},
			{subjects.HistoryRecent, `nope`},
			{subjects.HistorySince, `{"room":"general","limit":-1}`},
			{subjects.HistoryLobby, `[`},
		} {
			msg, err := e.nc.Request(c.subject, []byte(c.body), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Header.Get(micro.ErrorCodeHeader) != "400" || msg.Header.Get(micro.ErrorHeader) == "" {
				t.Fatalf("%s %s: headers %v", c.subject, c.body, msg.Header)
			}
		}
		if err := r.svc.Ready(); err != nil {
			t.Fatalf("ready: %v", err)
		}
		r.stop(t)
		if err := r.svc.Ready(); err == nil {
			t.Fatal("ready after stop")
		}
	})
}

// TestRestart stops the service while messages keep flowing and starts a
// new one on the same database: every message ends up stored once.
func TestRestart(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		st := storeOf(t, cfg)
		r := start(t, e, cfg)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.publishMany(t, 600, "a", "b", "c", "d")
		}()
		eventually(t, 20*time.Second, func() error {
			if p, err := st.Recent(context.Background(), "a", 0, 1); err != nil || len(p.Items) == 0 {
				return fmt.Errorf("nothing stored yet: %v", err)
			}
			return nil
		})
		r.stop(t)
		r2 := start(t, e, cfg)
		wg.Wait()
		eventually(t, 30*time.Second, func() error { return storedExactly(t, e, st) })
		for _, room := range []string{"a", "b", "c", "d"} {
			checkChain(t, "since all "+room, sinceAll(t, e.nc, room, 0), e.ids(room), 0)
		}
		r2.stop(t)
	})
}

// TestReplicas runs two services on one consumer and one database.
func TestReplicas(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		st := storeOf(t, cfg)
		a := start(t, e, cfg)
		b := start(t, e, cfg)
		e.publishMany(t, 800, "a", "b", "c")
		eventually(t, 30*time.Second, func() error { return storedExactly(t, e, st) })
		// Both replicas answer: enough requests reach each through the queue group.
		for range 20 {
			checkChain(t, "since", sinceAll(t, e.nc, "a", 0), e.ids("a"), 0)
		}
		a.stop(t)
		e.publishMany(t, 100, "a", "b", "c")
		eventually(t, 30*time.Second, func() error { return storedExactly(t, e, st) })
		b.stop(t)
	})
}

// TestSinceWhileLagging serves since/recent from a read-only replica while
// nothing consumes: messages the database lacks come from the stream, and
// rows stored out of order above the ack floor do not break the chain.
func TestSinceWhileLagging(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		live, err := e.nc.SubscribeSync(subjects.LiveAll)
		if err != nil {
			t.Fatal(err)
		}
		st := storeOf(t, cfg)
		w := start(t, e, cfg)
		e.publishMany(t, 120, "a", "b")
		eventually(t, 20*time.Second, func() error { return storedExactly(t, e, st) })
		w.stop(t)

		// Ingest is down: these are in the stream only.
		e.publishMany(t, 90, "a", "b")
		// Simulate another replica that stored some of them out of order
		// without acknowledging yet: every third message of room a.
		ids := e.ids("a")
		var partial []wire.Message
		for i, id := range ids {
			if i%3 == 0 && i > 60 {
				partial = append(partial, wire.Message{ID: id, Room: "a", User: "user-a", Body: e.body[id], Kind: wire.KindMessage, TS: 1})
			}
		}
		if _, err := st.Insert(context.Background(), partial); err != nil {
			t.Fatal(err)
		}

		ro := cfg
		ro.ReadOnly = true
		r := start(t, e, ro)
		for _, room := range []string{"a", "b"} {
			ids := e.ids(room)
			checkChain(t, "since 0 "+room, sinceAll(t, e.nc, room, 0), ids, 0)
			for _, k := range []int{0, len(ids) / 3, len(ids) / 2, len(ids) - 2, len(ids) - 1} {
				checkChain(t, fmt.Sprintf("since ids[%d] %s", k, room), sinceAll(t, e.nc, room, ids[k]), ids[k+1:], ids[k])
			}
			p := since(t, e.nc, room, ids[10], 5)
			checkChain(t, "since page "+room, p.Items, ids[11:16], ids[10])
			if !p.HasMore || !p.Recovered {
				t.Fatalf("since page: has_more %v recovered %v", p.HasMore, p.Recovered)
			}
			for _, lim := range []int{1, 7, 50, 200} {
				p := recent(t, e.nc, room, 0, lim)
				n := min(lim, len(ids))
				var firstPrev uint64
				if n < len(ids) {
					firstPrev = ids[len(ids)-n-1]
				}
				checkChain(t, fmt.Sprintf("recent %d %s", lim, room), p.Items, ids[len(ids)-n:], firstPrev)
				if p.HasMore != (n < len(ids)) {
					t.Fatalf("recent %d: has_more %v", lim, p.HasMore)
				}
			}
			// Paging back from the newest page crosses from stream to database.
			var back []uint64
			before := uint64(0)
			for {
				p := recent(t, e.nc, room, before, 13)
				for i := len(p.Items) - 1; i >= 0; i-- {
					back = append([]uint64{p.Items[i].ID}, back...)
				}
				if !p.HasMore {
					break
				}
				before = p.Items[0].ID
			}
			if fmt.Sprint(back) != fmt.Sprint(ids) {
				t.Fatalf("paging back %s: %v, want %v", room, back, ids)
			}
		}
		// The chain matches the live headers edges see.
		for range e.total() {
			m, err := live.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			id, _ := strconv.ParseUint(m.Header.Get(subjects.HeaderSequence), 10, 64)
			prev, _ := strconv.ParseUint(m.Header.Get(subjects.HeaderLastSequence), 10, 64)
			room := subjects.RoomFromSubject(m.Subject)
			p := since(t, e.nc, room, prev, 1)
			if len(p.Items) != 1 || p.Items[0].ID != id || p.Items[0].Prev != prev {
				t.Fatalf("since %d in %s: %+v, want id %d", prev, room, p.Items, id)
			}
		}
		r.stop(t)
	})
}

// TestRetention trims old messages: since older than the watermark answers
// the newest page with recovered false.
func TestRetention(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		cfg.Retention = time.Hour
		cfg.RetentionInterval = 50 * time.Millisecond
		cfg.RetentionBatch = 7
		r := start(t, e, cfg)
		old := time.Now().Add(-2 * time.Hour).UnixMilli()
		var oldIDs []uint64
		for range 40 {
			oldIDs = append(oldIDs, e.publish(t, "r", old))
		}
		for range 10 {
			e.publish(t, "r", time.Now().UnixMilli())
		}
		ids := e.ids("r")
		kept := ids[40:]
		eventually(t, 20*time.Second, func() error {
			p := recent(t, e.nc, "r", 0, 200)
			if len(p.Items) != len(kept) || p.Items[0].ID != kept[0] {
				return fmt.Errorf("%d items, want %d", len(p.Items), len(kept))
			}
			return nil
		})
		p := recent(t, e.nc, "r", 0, 200)
		checkChain(t, "recent after trim", p.Items, kept, oldIDs[len(oldIDs)-1])
		p = since(t, e.nc, "r", oldIDs[3], 5)
		if p.Recovered {
			t.Fatal("since a trimmed id: recovered true")
		}
		checkChain(t, "newest page", p.Items, kept[len(kept)-5:], kept[len(kept)-6])
		p = since(t, e.nc, "r", 0, 5)
		if p.Recovered {
			t.Fatal("since 0 after trim: recovered true")
		}
		p = since(t, e.nc, "r", oldIDs[len(oldIDs)-1], 100)
		if !p.Recovered {
			t.Fatal("since the watermark: recovered false")
		}
		checkChain(t, "since watermark", p.Items, kept, oldIDs[len(oldIDs)-1])
		r.stop(t)
	})
}

// TestStreamMismatch refuses a database that belongs to an earlier
// instance of the stream.
func TestStreamMismatch(t *testing.T) {
	backends(t, func(t *testing.T, cfg history.Config) {
		e := newEnv(t)
		r := start(t, e, cfg)
		e.publishMany(t, 5, "a")
		st := storeOf(t, cfg)
		eventually(t, 10*time.Second, func() error { return storedExactly(t, e, st) })
		r.stop(t)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.js.DeleteStream(ctx, subjects.Stream); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // a distinct creation time
		if err := provision.Ensure(ctx, e.js, provision.Config{}); err != nil {
			t.Fatal(err)
		}
		svc, err := history.New(cfg, history.Deps{NC: e.nc})
		if err != nil {
			t.Fatal(err)
		}
		err = svc.Run(ctx)
		if !errors.Is(err, history.ErrStreamMismatch) {
			t.Fatalf("run on a database of another stream: %v, want ErrStreamMismatch", err)
		}
	})
}

// TestDatabaseOutage cuts Postgres off mid-ingest: nothing is lost or
// duplicated, Ready reports the outage and then the recovery.
func TestDatabaseOutage(t *testing.T) {
	cfg, name := postgresConfig(t)
	e := newEnv(t)
	r := start(t, e, cfg)
	st := storeOf(t, cfg)
	e.publishMany(t, 200, "a", "b")
	eventually(t, 20*time.Second, func() error { return storedExactly(t, e, st) })

	db := `"` + name + `"`
	pgtest.Exec(t, "ALTER DATABASE "+db+" ALLOW_CONNECTIONS false")
	reopened := false
	defer func() {
		if !reopened {
			pgtest.Exec(t, "ALTER DATABASE "+db+" ALLOW_CONNECTIONS true")
		}
	}()
	pgtest.TerminateBackends(t, name)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.publishMany(t, 300, "a", "b")
	}()
	eventually(t, 20*time.Second, func() error {
		if r.svc.Ready() == nil {
			return errors.New("ready during the outage")
		}
		return nil
	})
	wg.Wait()
	pgtest.TerminateBackends(t, name)
	time.Sleep(300 * time.Millisecond) // let ingest retry against the outage
	pgtest.Exec(t, "ALTER DATABASE "+db+" ALLOW_CONNECTIONS true")
	reopened = true
	eventually(t, 30*time.Second, func() error { return r.svc.Ready() })
	st2 := storeOf(t, cfg)
	eventually(t, 30*time.Second, func() error { return storedExactly(t, e, st2) })
	for _, room := range []string{"a", "b"} {
		checkChain(t, "since all "+room, sinceAll(t, e.nc, room, 0), e.ids(room), 0)
	}
	// An outage is not a bad row: nothing was parked.
	if err := checkParked(t, st2, nil); err != nil {
		t.Fatalf("the outage parked messages: %v", err)
	}
	r.stop(t)
}

// TestStopUnderRequests stops the service while requesters keep it busy:
// micro drains its subscriptions asynchronously, so requests keep arriving
// after Stop; each must get an answer or a shutdown error — never a
// request admitted after the final wait (a WaitGroup misuse -race saw) or a
// query on the closed store.
func TestStopUnderRequests(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			e := newEnv(t)
			r := start(t, e, sqliteConfig(t))
			e.publishMany(t, 50, "a")
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var answered, refused atomic.Int64
			for range 8 {
				nc, err := nats.Connect(e.srv.URL())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				body, _ := json.Marshal(wire.RecentRequest{Room: "a", Limit: 10})
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						m, err := nc.Request(subjects.HistoryRecent, body, 2*time.Second)
						switch {
						case err != nil:
							refused.Add(1) // no responders once stopped
						case m.Header.Get(micro.ErrorCodeHeader) == "":
							answered.Add(1)
						case m.Header.Get(micro.ErrorCodeHeader) == "503":
							refused.Add(1)
						default:
							t.Errorf("request failed while stopping: %s %s", m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader))
						}
					}
				}()
			}
			eventually(t, 10*time.Second, func() error {
				if answered.Load() < 50 {
					return fmt.Errorf("%d answered", answered.Load())
				}
				return nil
			})
			r.stop(t)
			cancel()
			wg.Wait()
			if answered.Load() == 0 {
				t.Fatal("no request answered")
			}
		})
	}
}
