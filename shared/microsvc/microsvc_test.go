package microsvc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/microsvc"
	"github.com/hubbub-chat/hubbub/shared/natstest"
)

// env is an embedded server with a connection for the service and one for
// requesters.
type env struct {
	srv     *natstest.Server
	svc, rq *nats.Conn
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Start(t)
	return &env{srv: srv, svc: srv.Connect(), rq: srv.Connect()}
}

// start starts a server with cfg's name defaulted, stopped when the test ends.
func (e *env) start(t *testing.T, cfg microsvc.Config, eps ...microsvc.Endpoint) *microsvc.Server {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "kit"
	}
	if cfg.Version == "" {
		cfg.Version = "1.0.0"
	}
	s, err := microsvc.Start(e.svc, cfg, eps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	if err := e.svc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// send publishes a request and returns the channel its reply arrives on.
func (e *env) send(t *testing.T, subject, body string) <-chan *nats.Msg {
	t.Helper()
	out := make(chan *nats.Msg, 1)
	inbox := nats.NewInbox()
	sub, err := e.rq.ChanSubscribe(inbox, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.rq.PublishRequest(subject, inbox, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := e.rq.Flush(); err != nil {
		t.Fatal(err)
	}
	return out
}

func await(t *testing.T, what string, ch <-chan *nats.Msg) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no reply to %s", what)
		return nil
	}
}

// wantError checks that m is the error envelope code with a description
// containing desc.
func wantError(t *testing.T, what string, m *nats.Msg, code, desc string) *microsvc.Error {
	t.Helper()
	var v any
	err := microsvc.Decode(m, &v)
	var e *microsvc.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: %v (%s), want the error envelope %s", what, err, m.Data, code)
	}
	if e.Code != code || !strings.Contains(e.Description, desc) {
		t.Fatalf("%s: %s %q, want %s containing %q", what, e.Code, e.Description, code, desc)
	}
	return e
}

func wantReply(t *testing.T, what string, m *nats.Msg, want string) {
	t.Helper()
	var got string
	if err := microsvc.Decode(m, &got); err != nil || got != want {
		t.Fatalf("%s: %q %v, want %q", what, got, err, want)
	}
}

// blocker is a handler that holds its worker until released.
type blocker struct {
	release chan struct{}
	running atomic.Int64
	maxRun  atomic.Int64
	ran     atomic.Int64
}

func newBlocker() *blocker { return &blocker{release: make(chan struct{})} }

func (b *blocker) handle(ctx context.Context, req *microsvc.Request) (any, error) {
	n := b.running.Add(1)
	defer b.running.Add(-1)
	b.ran.Add(1)
	for {
		m := b.maxRun.Load()
		if n <= m || b.maxRun.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return string(req.Data), nil
}

func TestWorkersBound(t *testing.T) {
	e := newEnv(t)
	b := newBlocker()
	e.start(t, microsvc.Config{Workers: 2}, microsvc.Endpoint{Name: "slow", Subject: "kit.slow", Handle: b.handle})
	var replies []<-chan *nats.Msg
	for i := range 6 {
		replies = append(replies, e.send(t, "kit.slow", fmt.Sprint(i)))
	}
	natstest.Eventually(t, 5*time.Second, "two handlers running", func() error {
		if n := b.running.Load(); n != 2 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	time.Sleep(50 * time.Millisecond) // a third would have started by now
	if n := b.maxRun.Load(); n != 2 {
		t.Fatalf("%d handlers ran at once, want 2", n)
	}
	close(b.release)
	for i, ch := range replies {
		wantReply(t, fmt.Sprint("request ", i), await(t, fmt.Sprint("request ", i), ch), fmt.Sprint(i))
	}
	if n := b.maxRun.Load(); n != 2 {
		t.Fatalf("%d handlers ran at once, want 2", n)
	}
}

// outcomes records what Observe is told.
type outcomes struct {
	mu   sync.Mutex
	list []microsvc.Outcome
}

func (o *outcomes) observe(x microsvc.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.list = append(o.list, x)
}

func (o *outcomes) count(target error) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, x := range o.list {
		if errors.Is(x.Err, target) {
			n++
		}
	}
	return n
}

// A request that waited past MaxQueueWait is answered 503 without its
// handler running; one beyond MaxQueued is refused at once.
func TestQueueExpiryAndOverload(t *testing.T) {
	e := newEnv(t)
	b := newBlocker()
	var seen outcomes
	e.start(t, microsvc.Config{Workers: 1, MaxQueued: 1, MaxQueueWait: 100 * time.Millisecond, Observe: seen.observe},
		microsvc.Endpoint{Name: "slow", Subject: "kit.slow", Handle: b.handle})
	held := e.send(t, "kit.slow", "held")
	natstest.Eventually(t, 5*time.Second, "the worker held", func() error {
		if b.running.Load() != 1 {
			return errors.New("not running")
		}
		return nil
	})
	queued := e.send(t, "kit.slow", "queued")
	refused := await(t, "the request beyond MaxQueued", e.send(t, "kit.slow", "refused"))
	wantError(t, "beyond MaxQueued", refused, microsvc.CodeUnavailable, "kit is overloaded")
	time.Sleep(300 * time.Millisecond) // the queued request outwaits MaxQueueWait
	close(b.release)
	wantReply(t, "held", await(t, "held", held), "held")
	wantError(t, "expired", await(t, "queued", queued), microsvc.CodeUnavailable, "kit is overloaded (request waited")
	if n := b.ran.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1 (expired and refused requests are not served)", n)
	}
	if seen.count(microsvc.ErrExpired) != 1 || seen.count(microsvc.ErrOverloaded) != 1 {
		t.Fatalf("outcomes %+v, want one expired and one overloaded", seen.list)
	}
	// Served normally again.
	wantReply(t, "after", await(t, "after", e.send(t, "kit.slow", "after")), "after")
}

func TestErrorEnvelope(t *testing.T) {
	e := newEnv(t)
	errBad := errors.New("bad thing")
	errMapped := errors.New("mapped")
	var seen outcomes
	e.start(t, microsvc.Config{Workers: 2, Observe: seen.observe,
		Envelope: func(err error) *microsvc.Error {
			if errors.Is(err, errMapped) {
				return &microsvc.Error{Code: microsvc.CodeUnavailable, Description: "try later", Body: []byte(`{"code":"later"}`), Err: err}
			}
			return nil
		}},
		microsvc.Endpoint{Name: "bad", Subject: "kit.bad", Handle: func(context.Context, *microsvc.Request) (any, error) {
			return nil, microsvc.BadRequest(fmt.Errorf("room: %w", errBad))
		}},
		microsvc.Endpoint{Name: "body", Subject: "kit.body", Inline: true, Handle: func(context.Context, *microsvc.Request) (any, error) {
			return nil, &microsvc.Error{Code: microsvc.CodeBadRequest, Description: "invalid_room: nope", Body: []byte(`{"type":"error"}`)}
		}},
		microsvc.Endpoint{Name: "mapped", Subject: "kit.mapped", Handle: func(context.Context, *microsvc.Request) (any, error) {
			return nil, errMapped
		}},
		microsvc.Endpoint{Name: "broken", Subject: "kit.broken", Handle: func(context.Context, *microsvc.Request) (any, error) {
			return nil, errors.New("disk on fire")
		}},
		microsvc.Endpoint{Name: "ok", Subject: "kit.ok", Handle: func(_ context.Context, r *microsvc.Request) (any, error) {
			return map[string]string{"id": r.ID()}, nil
		}},
	)
	wantError(t, "bad", await(t, "bad", e.send(t, "kit.bad", "")), "400", "room: bad thing")
	if got := wantError(t, "body", await(t, "body", e.send(t, "kit.body", "")), "400", "invalid_room: nope"); string(got.Body) != `{"type":"error"}` {
		t.Fatalf("body %q", got.Body)
	}
	if got := wantError(t, "mapped", await(t, "mapped", e.send(t, "kit.mapped", "")), "503", "try later"); string(got.Body) != `{"code":"later"}` {
		t.Fatalf("body %q", got.Body)
	}
	if got := wantError(t, "broken", await(t, "broken", e.send(t, "kit.broken", "")), "500", "kit: internal error"); len(got.Body) != 0 {
		t.Fatalf("internal error leaked a body %q", got.Body)
	}
	if seen.count(errBad) != 1 || seen.count(errMapped) != 1 {
		t.Fatalf("outcomes %+v lost the causes", seen.list)
	}

	msg := &nats.Msg{Subject: "kit.ok", Header: nats.Header{"Hubbub-Request-Id": []string{"edge-1.7"}}}
	m, err := e.rq.RequestMsg(msg, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := microsvc.Decode(m, &got); err != nil || got["id"] != "edge-1.7" {
		t.Fatalf("ok: %v %v", got, err)
	}
	if microsvc.ReplyError(m) != nil {
		t.Fatal("a reply read as an error")
	}
	if err := microsvc.Decode(&nats.Msg{Data: []byte("{")}, &got); err == nil || errors.As(err, new(*microsvc.Error)) {
		t.Fatalf("undecodable reply: %v", err)
	}
}

// Requests with one key are served one at a time in arrival order; other
// keys run beside them.
func TestKeyedInOrder(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	order := map[string][]string{}
	var running atomic.Int64
	var overlap atomic.Bool
	e.start(t, microsvc.Config{Workers: 4},
		microsvc.Endpoint{Name: "keyed", Subject: "kit.keyed",
			Key: func(r *microsvc.Request) (string, error) {
				k, _, ok := strings.Cut(string(r.Data), "/")
				if !ok {
					return "", microsvc.BadRequest(errors.New("no key"))
				}
				r.Value = k
				return k, nil
			},
			Handle: func(_ context.Context, r *microsvc.Request) (any, error) {
				k := r.Value.(string)
				if k == "a" && running.Add(1) > 1 {
					overlap.Store(true)
				}
				time.Sleep(time.Millisecond)
				mu.Lock()
				order[k] = append(order[k], string(r.Data))
				mu.Unlock()
				if k == "a" {
					running.Add(-1)
				}
				return "ok", nil
			}})
	wantError(t, "unkeyed", await(t, "unkeyed", e.send(t, "kit.keyed", "nokey")), "400", "no key")
	var replies []<-chan *nats.Msg
	for i := range 30 {
		replies = append(replies, e.send(t, "kit.keyed", fmt.Sprintf("a/%02d", i)), e.send(t, "kit.keyed", fmt.Sprintf("b/%02d", i)))
	}
	for i, ch := range replies {
		wantReply(t, fmt.Sprint(i), await(t, fmt.Sprint(i), ch), "ok")
	}
	if overlap.Load() {
		t.Fatal("two requests of one key ran at once")
	}
	for _, k := range []string{"a", "b"} {
		for i, got := range order[k] {
			if want := fmt.Sprintf("%s/%02d", k, i); got != want {
				t.Fatalf("key %s served %v, want in arrival order", k, order[k])
			}
		}
	}
}

// Stop serves the queued requests with Drain and refuses them without;
// either way the running one finishes.
func TestStopQueued(t *testing.T) {
	for _, drain := range []bool{false, true} {
		t.Run(fmt.Sprint("drain=", drain), func(t *testing.T) {
			e := newEnv(t)
			b := newBlocker()
			s := e.start(t, microsvc.Config{Workers: 1, Drain: drain},
				microsvc.Endpoint{Name: "slow", Subject: "kit.slow", Handle: b.handle})
			held := e.send(t, "kit.slow", "held")
			natstest.Eventually(t, 5*time.Second, "the worker held", func() error {
				if b.running.Load() != 1 {
					return errors.New("not running")
				}
				return nil
			})
			queued := e.send(t, "kit.slow", "queued")
			time.Sleep(50 * time.Millisecond) // queued reaches the server
			stopped := make(chan error, 1)
			go func() { stopped <- s.Stop(context.Background()) }()
			select {
			case err := <-stopped:
				t.Fatalf("Stop returned (%v) while a handler ran", err)
			case <-time.After(100 * time.Millisecond):
			}
			close(b.release)
			wantReply(t, "held", await(t, "held", held), "held")
			m := await(t, "queued", queued)
			if drain {
				wantReply(t, "queued", m, "queued")
			} else {
				wantError(t, "queued", m, "503", "kit is shutting down")
			}
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// When Stop's context ends, the handlers' contexts are cancelled.
func TestStopContextCancelsHandlers(t *testing.T) {
	e := newEnv(t)
	b := newBlocker()
	s := e.start(t, microsvc.Config{Workers: 1, Drain: true, RequestTimeout: time.Minute},
		microsvc.Endpoint{Name: "slow", Subject: "kit.slow", Handle: b.handle})
	held := e.send(t, "kit.slow", "held")
	natstest.Eventually(t, 5*time.Second, "the worker held", func() error {
		if b.running.Load() != 1 {
			return errors.New("not running")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	wantError(t, "held", await(t, "held", held), "500", "kit: internal error")
}

// No handler, Key included, runs after Stop returned, while requests flood
// in during Stop (micro keeps calling its handler after its own Stop):
// every request is answered, refused 503, or meets no responders.
func TestNoHandlerAfterStop(t *testing.T) {
	for round := range 4 {
		drain := round%2 == 1
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			e := newEnv(t)
			var stopped, late atomic.Bool
			var served atomic.Int64
			h := func(context.Context, *microsvc.Request) (any, error) {
				if stopped.Load() {
					late.Store(true)
				}
				served.Add(1)
				time.Sleep(100 * time.Microsecond)
				if stopped.Load() {
					late.Store(true)
				}
				return "ok", nil
			}
			key := func(*microsvc.Request) (string, error) {
				if stopped.Load() {
					late.Store(true)
				}
				return "k", nil
			}
			s := e.start(t, microsvc.Config{Workers: 2, MaxQueued: 8, Drain: drain},
				microsvc.Endpoint{Name: "pooled", Subject: "kit.pooled", Handle: h},
				microsvc.Endpoint{Name: "keyed", Subject: "kit.keyed", Handle: h, Key: key},
				microsvc.Endpoint{Name: "inline", Subject: "kit.inline", Handle: h, Inline: true})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			var answered, refused atomic.Int64
			for w := range 6 {
				nc := e.srv.Connect()
				subject := []string{"kit.pooled", "kit.keyed", "kit.inline"}[w%3]
				wg.Go(func() {
					for ctx.Err() == nil {
						m, err := nc.Request(subject, nil, 5*time.Second)
						switch {
						case errors.Is(err, nats.ErrNoResponders):
							refused.Add(1)
						case err != nil:
							t.Errorf("%s: %v", subject, err)
							return
						case microsvc.ReplyError(m) == nil:
							answered.Add(1)
						case microsvc.ReplyError(m).Code == microsvc.CodeUnavailable:
							refused.Add(1)
						default:
							t.Errorf("%s: %v", subject, microsvc.ReplyError(m))
						}
					}
				})
			}
			natstest.Eventually(t, 10*time.Second, "requests answered", func() error {
				if n := answered.Load(); n < 100 {
					return fmt.Errorf("%d answered", n)
				}
				return nil
			})
			if err := s.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			stopped.Store(true)
			n := served.Load()
			natstest.Eventually(t, 10*time.Second, "requests refused after stop", func() error {
				if refused.Load() < 10 {
					return fmt.Errorf("%d refused", refused.Load())
				}
				return nil
			})
			cancel()
			wg.Wait()
			if late.Load() || served.Load() != n {
				t.Fatalf("a handler ran after Stop returned (%d served at Stop, %d now)", n, served.Load())
			}
		})
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	e := newEnv(t)
	h := func(context.Context, *microsvc.Request) (any, error) { return nil, nil }
	for name, c := range map[string]struct {
		cfg microsvc.Config
		eps []microsvc.Endpoint
	}{
		"no name":        {microsvc.Config{Workers: 1}, nil},
		"no workers":     {microsvc.Config{Name: "kit"}, nil},
		"no handler":     {microsvc.Config{Name: "kit", Workers: 1}, []microsvc.Endpoint{{Name: "a", Subject: "a"}}},
		"inline & keyed": {microsvc.Config{Name: "kit", Workers: 1}, []microsvc.Endpoint{{Name: "a", Subject: "a", Handle: h, Inline: true, Key: func(*microsvc.Request) (string, error) { return "", nil }}}},
	} {
		if _, err := microsvc.Start(e.svc, c.cfg, c.eps); !errors.Is(err, microsvc.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}
