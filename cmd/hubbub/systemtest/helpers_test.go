package systemtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/services/presence"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// env is one embedded NATS server with the stream and buckets provisioned
// and a connection to it (natstest.Env), for one test.
type env struct {
	*natstest.Env
	t       *testing.T
	edgeBin string // the hubbub-edge binary, once built (fault tests)
}

// newEnv is an env with the typing and lease TTLs of these tests.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, provision.Config{TypingTTL: 2 * time.Second, LeaseTTL: 3 * time.Second})
}

// newEnvWith is an env provisioned with pc.
func newEnvWith(t *testing.T, pc provision.Config) *env {
	t.Helper()
	return &env{Env: natstest.Provisioned(t, pc), t: t}
}

// newSystem is an env with real presence and history running.
func newSystem(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.startPresence()
	e.startHistory()
	return e
}

// startPresence runs the real presence service.
func (e *env) startPresence() {
	e.t.Helper()
	e.startPresenceWith(presence.Config{Grace: 500 * time.Millisecond, TypingTTL: 2 * time.Second, LeaseTTL: 3 * time.Second, SweepInterval: 100 * time.Millisecond})
}

// startPresenceWith runs the real presence service with cfg.
func (e *env) startPresenceWith(cfg presence.Config) {
	e.t.Helper()
	svc, err := presence.New(cfg, presence.Deps{NC: e.Connect(), Log: logging.Discard()})
	if err != nil {
		e.t.Fatalf("presence: %v", err)
	}
	natstest.Serve(e.t, "presence", svc)
}

// startHistory runs the real history service on SQLite in a temp dir.
func (e *env) startHistory() *history.Service {
	e.t.Helper()
	svc, err := history.New(history.Config{StoreConfig: history.StoreConfig{DataDir: e.t.TempDir()},
		IngestConfig: history.IngestConfig{BatchWait: 5 * time.Millisecond}, MarksInterval: 50 * time.Millisecond},
		history.Deps{NC: e.Connect(), Log: logging.Discard()})
	if err != nil {
		e.t.Fatalf("history: %v", err)
	}
	natstest.Serve(e.t, "history", svc)
	return svc
}

// testEdge is a running edge.
type testEdge struct {
	*edge.Service
	reg  *prometheus.Registry
	stop func()
}

func (te *testEdge) wsURL(user string) string {
	return "ws://" + te.Addr() + "/ws?user=" + user
}

func (te *testEdge) httpURL(path string) string { return "http://" + te.Addr() + path }

// startEdge runs an edge on 127.0.0.1:0 with test-friendly settings.
func (e *env) startEdge(mod func(*edge.Config)) *testEdge {
	e.t.Helper()
	return e.startEdgeWith(e.Connect(), mod)
}

// startEdgeWith runs an edge on its own NATS connection nc.
func (e *env) startEdgeWith(nc *nats.Conn, mod func(*edge.Config)) *testEdge {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := edge.Config{
		Listener:       ln,
		RequestTimeout: time.Second,
		DrainPeriod:    300 * time.Millisecond,
		LeaseTTL:       3 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	svc, err := edge.New(cfg, edge.Deps{NC: nc, Log: testLogger(e.t), Registry: reg})
	if err != nil {
		e.t.Fatalf("edge.New: %v", err)
	}
	return &testEdge{Service: svc, reg: reg, stop: natstest.Serve(e.t, "edge", svc)}
}

// conn is a test client that never loses a frame: frames skipped while
// awaiting a match are stashed and returned first by later calls.
type conn struct {
	t     *testing.T
	c     *client.Client
	stash []client.Frame
}

// dialRaw opens a client without awaiting the welcome frame.
func dialRaw(t *testing.T, url string) *conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &conn{t: t, c: c}
}

// dial opens a client and reads its welcome.
func dial(t *testing.T, url string) *conn {
	t.Helper()
	c := dialRaw(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.c.Welcome(ctx); err != nil {
		t.Fatalf("welcome: %v", err)
	}
	return c
}

// smallRcvBuf is a dialer whose sockets have a receive buffer of size
// bytes, so that a peer's writes to a client that stops reading block soon.
func smallRcvBuf(size int) *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		}); err != nil {
			return err
		}
		return serr
	}}
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (c *conn) send(v any) {
	c.t.Helper()
	if err := c.c.Send(v); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next returns the next frame (stash first).
func (c *conn) next() (client.Frame, error) {
	if len(c.stash) > 0 {
		f := c.stash[0]
		c.stash = c.stash[1:]
		return f, nil
	}
	return c.c.Next(tctx(c.t))
}

// await returns the first frame matching, keeping the others for later.
func (c *conn) await(what string, match func(client.Frame) bool) client.Frame {
	c.t.Helper()
	for i, f := range c.stash {
		if match(f) {
			c.stash = append(c.stash[:i:i], c.stash[i+1:]...)
			return f
		}
	}
	ctx := tctx(c.t)
	for {
		f, err := c.c.Next(ctx)
		if err != nil {
			c.t.Fatalf("awaiting %s: %v", what, err)
		}
		if match(f) {
			return f
		}
		c.stash = append(c.stash, f)
	}
}

func isType(typ string) func(client.Frame) bool {
	return func(f client.Frame) bool { return f.Type == typ }
}

func decode[T any](t *testing.T, f client.Frame) T {
	t.Helper()
	var v T
	if err := f.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// join joins a room and returns the history frame (fails on an error frame).
func (c *conn) join(room string, since *uint64) wire.History {
	c.t.Helper()
	c.send(wire.ClientFrame{Type: wire.TypeJoin, Room: room, Since: since})
	f := c.await("history of "+room, func(f client.Frame) bool {
		return (f.Type == wire.TypeHistory || f.Type == wire.TypeError) && strings.Contains(string(f.Raw), `"room":"`+room+`"`)
	})
	if f.Type == wire.TypeError {
		c.t.Fatalf("join %s: %s", room, f.Raw)
	}
	return decode[wire.History](c.t, f)
}

// joinLive joins a room; without a history service the join answers an
// "unavailable" error frame and continues live, which is accepted here.
func (c *conn) joinLive(room string) {
	c.t.Helper()
	c.send(wire.ClientFrame{Type: wire.TypeJoin, Room: room})
	f := c.await("history of "+room, func(f client.Frame) bool {
		return (f.Type == wire.TypeHistory || f.Type == wire.TypeError) && strings.Contains(string(f.Raw), `"room":"`+room+`"`)
	})
	if f.Type == wire.TypeError {
		if ef := decode[wire.ErrorFrame](c.t, f); ef.Code != wire.CodeUnavailable {
			c.t.Fatalf("join %s: %s", room, f.Raw)
		}
	}
}

// say sends a message and returns the acked id (fails on an error frame).
func (c *conn) say(room, body, cid string) uint64 {
	c.t.Helper()
	id, ef := c.trySay(room, body, cid)
	if ef != nil {
		c.t.Fatalf("say %q: error %s: %s", body, ef.Code, ef.Message)
	}
	return id
}

func (c *conn) trySay(room, body, cid string) (uint64, *wire.ErrorFrame) {
	c.t.Helper()
	c.send(wire.ClientFrame{Type: wire.TypeMessage, Room: room, Body: body, CID: cid})
	f := c.await("ack of "+cid, func(f client.Frame) bool {
		return (f.Type == wire.TypeAck || f.Type == wire.TypeError) && strings.Contains(string(f.Raw), `"cid":"`+cid+`"`)
	})
	if f.Type == wire.TypeError {
		ef := decode[wire.ErrorFrame](c.t, f)
		return 0, &ef
	}
	return decode[wire.Ack](c.t, f).ID, nil
}

// message waits for the message frame of id.
func (c *conn) message(id uint64) wire.Message {
	c.t.Helper()
	f := c.await(fmt.Sprintf("message %d", id), func(f client.Frame) bool {
		var mf wire.MessageFrame
		return f.Type == wire.TypeMessage && f.Decode(&mf) == nil && mf.Message.ID == id
	})
	return decode[wire.MessageFrame](c.t, f).Message
}

// nextMessage returns the next message frame's message.
func (c *conn) nextMessage() wire.Message {
	c.t.Helper()
	return decode[wire.MessageFrame](c.t, c.await("a message", isType(wire.TypeMessage))).Message
}

// errorFrame waits for an error frame and checks its code.
func (c *conn) errorFrame(code string) wire.ErrorFrame {
	c.t.Helper()
	f := c.await("error "+code, isType(wire.TypeError))
	ef := decode[wire.ErrorFrame](c.t, f)
	if ef.Code != code {
		c.t.Fatalf("got error %s, want %s", f.Raw, code)
	}
	return ef
}

// closed waits for the server to close and returns the close code.
func (c *conn) closed() gws.StatusCode {
	c.t.Helper()
	code, err := c.c.WaitClosed(tctx(c.t))
	if err != nil {
		c.t.Fatalf("waiting for close: %v", err)
	}
	return code
}

// roomMessages returns every stored message of room with kind "message".
func (e *env) roomMessages(room string) []wire.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.JS.Stream(ctx, subjects.Stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subjects.Room(room)))
	if err != nil {
		e.t.Fatal(err)
	}
	n := info.State.Subjects[subjects.Room(room)]
	if n == 0 {
		return nil
	}
	cons, err := e.JS.OrderedConsumer(ctx, subjects.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjects.Room(room)}})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []wire.Message
	for got := uint64(0); got < n; {
		batch, err := cons.Fetch(int(n-got), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			e.t.Fatal(err)
		}
		for m := range batch.Messages() {
			got++
			var p wire.Post
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				e.t.Fatal(err)
			}
			md, _ := m.Metadata()
			if p.Kind == wire.KindMessage {
				out = append(out, p.Stored(md.Sequence.Stream, 0))
			}
		}
		if err := batch.Error(); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

// publish stores a user message directly (as another edge would).
func (e *env) publish(room, user, body, cid string) uint64 {
	e.t.Helper()
	data, _ := json.Marshal(wire.Post{Room: room, User: user, Body: body, Kind: wire.KindMessage, TS: time.Now().UnixMilli(), CID: cid})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: subjects.Room(room), Data: data, Header: nats.Header{}}
	msg.Header.Set(subjects.HeaderMsgID, fmt.Sprintf("%s/test/%s", room, cid))
	ack, err := e.JS.PublishMsg(ctx, msg)
	if err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	return ack.Sequence
}

// httpGet returns the status and body of GET url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	return do(t, http.MethodGet, url, nil, "")
}

// do sends a request and returns its status and body.
func do(t *testing.T, method, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body) // a body cut short is returned as far as it came
	return resp.StatusCode, string(b)
}

// testLogger logs to the test output when HUBBUB_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("HUBBUB_TEST_LOG") == "" {
		return logging.Discard()
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
