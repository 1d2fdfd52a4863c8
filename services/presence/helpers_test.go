package presence_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/services/presence"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// env is one embedded JetStream server, provisioned, and a client
// connection playing the edges.
type env struct {
	t   testing.TB
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t testing.TB, pc provision.Config) *env {
	t.Helper()
	srv := natstest.Start(t)
	e := &env{t: t, srv: srv}
	e.nc = e.connect()
	var err error
	if e.js, err = jetstream.New(e.nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := provision.Ensure(ctx, e.js, pc); err != nil {
		t.Fatalf("provision: %v", err)
	}
	e.holdLeases("edge-a", "edge-b", "edge-x", "edge-y")
	return e
}

// holdLeases keeps the leases of edges alive, as running edges do, until
// the test ends.
func (e *env) holdLeases(edges ...string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.t.Cleanup(func() { cancel(); wg.Wait() })
	kv, err := e.js.KeyValue(ctx, subjects.BucketEdges)
	if err != nil {
		e.t.Fatal(err)
	}
	put := func() {
		for _, edge := range edges {
			b, _ := json.Marshal(wire.EdgeLease{Edge: edge, Started: time.Now().UnixMilli()})
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			_, _ = kv.Put(pctx, edge, b) // failures (server restarting) are retried next tick
			pcancel()
		}
	}
	put()
	wg.Go(func() {
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				put()
			}
		}
	})
}

func (e *env) connect() *nats.Conn {
	e.t.Helper()
	nc, err := nats.Connect(e.srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		e.t.Fatalf("connect: %v", err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// replica is one running presence Service with its own connection.
type replica struct {
	svc    *presence.Service
	cancel context.CancelFunc
	done   chan error
}

// start runs a presence replica and waits until it is ready.
func (e *env) start(cfg presence.Config) *replica {
	e.t.Helper()
	svc, err := presence.New(cfg, presence.Deps{NC: e.connect(), Log: testLog(e.t)})
	if err != nil {
		e.t.Fatalf("presence.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{svc: svc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	poll(e.t, 10*time.Second, "presence ready", func() error { return svc.Ready() })
	return r
}

// stop ends the replica and checks Run returned nil.
func (r *replica) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("Run did not return after cancel")
	}
}

// poll retries check until it returns nil or the deadline passes.
func poll(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serviceError is a micro error reply.
type serviceError struct{ code, desc string }

func (e *serviceError) Error() string { return e.code + " " + e.desc }

// request sends v to subject and decodes the reply into out.
func (e *env) request(subject string, v, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	msg, err := e.nc.Request(subject, b, 10*time.Second)
	if err != nil {
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return &serviceError{code: code, desc: msg.Header.Get(micro.ErrorHeader)}
	}
	return json.Unmarshal(msg.Data, out)
}

func (e *env) join(room, user, conn, edge string) wire.ConnReply {
	e.t.Helper()
	var rep wire.ConnReply
	if err := e.request(subjects.PresenceJoin, wire.ConnEvent{Room: room, User: user, Conn: conn, Edge: edge}, &rep); err != nil {
		e.t.Fatalf("join %s/%s/%s: %v", room, user, conn, err)
	}
	return rep
}

// leave removes a connection as a closing tab does (not an explicit leave).
func (e *env) leave(room, user, conn, edge string) wire.ConnReply {
	e.t.Helper()
	return e.leaveEvent(wire.ConnEvent{Room: room, User: user, Conn: conn, Edge: edge})
}

// leaveRoom removes a connection as the user's leave frame does: an
// explicit leave, ending the membership.
func (e *env) leaveRoom(room, user, conn, edge string) wire.ConnReply {
	e.t.Helper()
	return e.leaveEvent(wire.ConnEvent{Room: room, User: user, Conn: conn, Edge: edge, Explicit: true})
}

func (e *env) leaveEvent(ev wire.ConnEvent) wire.ConnReply {
	e.t.Helper()
	var rep wire.ConnReply
	if err := e.request(subjects.PresenceLeave, ev, &rep); err != nil {
		e.t.Fatalf("leave %+v: %v", ev, err)
	}
	return rep
}

func (e *env) roster(room, after string, limit int) (wire.RosterReply, error) {
	var rep wire.RosterReply
	err := e.request(subjects.PresenceRoster, wire.RosterRequest{Room: room, After: after, Limit: limit}, &rep)
	return rep, err
}

// recorder collects the presence events of one room.
type recorder struct {
	mu     sync.Mutex
	events []wire.PresenceEvent
	sub    *nats.Subscription
}

func (e *env) record(room string) *recorder {
	e.t.Helper()
	r := &recorder{}
	sub, err := e.nc.Subscribe(subjects.Presence(room), func(m *nats.Msg) {
		var ev wire.PresenceEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			e.t.Errorf("bad presence event %q: %v", m.Data, err)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	r.sub = sub
	return r
}

// count returns how many events of kind (join/leave) were seen for user
// ("" = any user).
func (r *recorder) count(event, user string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.Event == event && (user == "" || ev.User == user) {
			n++
		}
	}
	return n
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// stored reads every message stored in room from the CHAT stream.
func (e *env) stored(room string) []wire.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, subjects.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjects.Room(room)}})
	if err != nil {
		e.t.Fatalf("ordered consumer: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		e.t.Fatalf("consumer info: %v", err)
	}
	var out []wire.Message
	pending := int(info.NumPending)
	for len(out) < pending {
		batch, err := cons.Fetch(min(pending-len(out), 500), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			e.t.Fatalf("fetch: %v", err)
		}
		for m := range batch.Messages() {
			var p wire.Post
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				e.t.Fatalf("bad post %q: %v", m.Data(), err)
			}
			md, err := m.Metadata()
			if err != nil {
				e.t.Fatal(err)
			}
			out = append(out, p.Stored(md.Sequence.Stream, 0))
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			e.t.Fatalf("fetch: %v", err)
		}
	}
	return out
}

// systemCounts counts "<user> joined" and "<user> left" system messages
// (membership changes; presence stores nothing).
func systemCounts(msgs []wire.Message) (joined, left map[string]int) {
	joined, left = map[string]int{}, map[string]int{}
	for _, m := range msgs {
		if m.Kind != wire.KindSystem {
			continue
		}
		switch {
		case m.Body == m.User+" joined":
			joined[m.User]++
		case m.Body == m.User+" left":
			left[m.User]++
		}
	}
	return joined, left
}

// hold waits d: the window in which something must NOT happen.
func hold(d time.Duration) { time.Sleep(d) }

func short() presence.Config {
	return presence.Config{Grace: 600 * time.Millisecond, SweepInterval: 50 * time.Millisecond,
		TypingTTL: time.Second, LeaseTTL: time.Second}
}

func shortProvision() provision.Config {
	return provision.Config{TypingTTL: time.Second, LeaseTTL: time.Second}
}

func errIs(err error, code string) bool {
	var se *serviceError
	return errors.As(err, &se) && strings.HasPrefix(se.code, code)
}

type natsMsg = nats.Msg

func decodeTyping(b []byte) (wire.TypingEvent, error) {
	var ev wire.TypingEvent
	err := json.Unmarshal(b, &ev)
	return ev, err
}

func (e *env) publishTyping(ev wire.TypingEvent) {
	e.t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Publish(subjects.Typing(ev.Room), b); err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

// testLog logs through t when HUBBUB_TEST_LOG is set, else discards.
func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("HUBBUB_TEST_LOG") == "" {
		return logging.Discard()
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
