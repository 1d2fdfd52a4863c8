// Package microsvc is the request/reply contract plus the serving rules
// every Hubbub service follows, on top of nats.go/micro.
//
// The contract: a request is a JSON body on an endpoint subject, with an
// optional Hubbub-Request-Id header; the answer is a JSON body, or the
// error envelope (Error: micro's Nats-Service-Error-Code and
// Nats-Service-Error headers, an optional body). Services answer through
// Server; requesters decode through Decode.
//
// The serving rules, which Server enforces so that no service writes them
// again:
//
//   - micro's handler goroutine never blocks on work: a request is handed
//     to a worker at once (Endpoint.Inline is for cheap in-memory reads
//     only). At most Config.Workers handlers run at a time; requests with
//     the same Endpoint.Key are served one at a time, in arrival order.
//   - The queue is bounded: beyond Config.MaxQueued waiting requests one is
//     refused at once (ErrOverloaded), and one that waited longer than
//     Config.MaxQueueWait for a worker is answered without being served
//     (ErrExpired), since its requester is about to give up.
//   - Stop is a gate: micro drains its subscriptions asynchronously, so its
//     handler is still called after micro's Stop returned. Server.Stop
//     refuses every request from its start on (ErrShuttingDown), answers
//     or refuses every request admitted before, and returns only once no
//     handler runs, nor ever will.
//   - One error envelope: a handler returns an *Error to choose its answer;
//     any other error is mapped by Config.Envelope (DefaultEnvelope when
//     nil), and an unclassified one is logged and answered 500.
//
// Adding an endpoint is one Endpoint value (a name, a subject and a
// Handler that decodes the body and returns the reply value) in the list
// a service passes to Start.
package microsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/shared/defaults"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// Request is one request as a handler sees it. Its fields stay valid
// after micro's handler returned.
type Request struct {
	// Endpoint is the endpoint's name.
	Endpoint string
	// Data is the request body.
	Data []byte
	// Header holds the request's headers (nil for none).
	Header nats.Header
	// Arrived is when micro handed the request over.
	Arrived time.Time
	// Value is what the endpoint's Key decoded for the handler (nil
	// without Key).
	Value any
}

// ID is the request id the requester sent (Hubbub-Request-Id), "" if none.
func (r *Request) ID() string { return r.Header.Get(subjects.HeaderRequestID) }

// Handler serves one request: it returns the reply value, encoded as JSON
// (an Appender encodes itself), or an error, answered with the error
// envelope. ctx ends after Config.RequestTimeout, or when Stop's context
// ends.
type Handler func(ctx context.Context, req *Request) (any, error)

// Appender is a reply value that appends its own JSON encoding (for
// replies encoded often enough that reflection shows: history's pages).
type Appender interface {
	AppendJSON(dst []byte) []byte
}

// Endpoint is one micro endpoint.
type Endpoint struct {
	// Name is the endpoint's micro name (and its label in metrics).
	Name string
	// Subject is the subject it answers.
	Subject string
	// Handle serves its requests, on a worker unless Inline.
	Handle Handler
	// Inline serves requests on micro's handler goroutine, outside the
	// queue and the worker bound: for cheap answers from memory that never
	// block. Stop gates them like the others.
	Inline bool
	// Key, when set, orders the endpoint's requests: those with the same
	// key are served one at a time in arrival order (on one of
	// Config.Workers lanes). It runs on micro's handler goroutine before
	// the request is queued; it may decode the body into req.Value for
	// Handle, and its error is answered at once (usually a BadRequest).
	Key func(req *Request) (string, error)
}

// Outcome is what became of one request, for Config.Observe.
type Outcome struct {
	// Endpoint is the endpoint's name.
	Endpoint string
	// Err is nil when the reply was sent; otherwise the refusal
	// (ErrShuttingDown, ErrOverloaded, ErrExpired), the handler's or Key's
	// error, or a failed send of the reply (wrapping micro.ErrRespond).
	Err error
	// Reply is the error envelope sent (nil when none was).
	Reply *Error
	// Ran is true when the handler ran; Took is then how long it and the
	// sending of its answer took.
	Ran  bool
	Took time.Duration
}

// Config configures a Server.
type Config struct {
	// Name, Version, Description and QueueGroup are micro's
	// (micro.Config); Name also prefixes the kit's log lines and default
	// error descriptions.
	Name, Version, Description, QueueGroup string
	// Workers bounds the handlers running at once (not counting Inline
	// ones); it is also the number of lanes of keyed endpoints. Required.
	Workers int
	// MaxQueued bounds the requests waiting for a worker (16 × Workers
	// when ≤ 0); beyond it a request is refused with ErrOverloaded.
	MaxQueued int
	// MaxQueueWait is how long a request may wait for a worker; one that
	// waited longer is refused with ErrExpired. ≤ 0: no limit.
	MaxQueueWait time.Duration
	// RequestTimeout bounds one handler's context (5s when ≤ 0).
	RequestTimeout time.Duration
	// Drain makes Stop serve the requests already queued (joins and
	// leaves: an answer beats a retry); without it Stop refuses them with
	// ErrShuttingDown at once (pages: the requester has a fallback).
	// Either way, running handlers finish.
	Drain bool
	// Envelope maps a handler's or the kit's error that carries no *Error
	// to the error reply; nil, or a nil result, is DefaultEnvelope.
	Envelope func(err error) *Error
	// Observe, when set, is told every request's outcome (metrics). It
	// runs on the answering goroutine and must not block.
	Observe func(Outcome)
	// Log receives the kit's log lines (discarded when nil): a debug line
	// per request with its request id, failed sends, unclassified errors.
	Log *slog.Logger
}

// maxPooledReply is the largest reply buffer kept for reuse.
const maxPooledReply = 1 << 20

// Server is a running micro service with the serving rules. Start it,
// Stop it once.
type Server struct {
	cfg   Config
	nc    *nats.Conn
	svc   micro.Service
	log   *slog.Logger
	sem   chan struct{} // worker slots
	lanes []*lane       // for keyed endpoints
	bufs  sync.Pool     // *[]byte reply buffers

	queued atomic.Int64 // requests waiting for a worker

	mu       sync.Mutex
	closed   bool           // under mu: admit no more
	admitted sync.WaitGroup // requests admitted and not yet answered

	stopping   chan struct{} // closed when Stop begins
	quit       chan struct{} // closed once every admitted request is answered
	workCtx    context.Context
	cancelWork context.CancelFunc
	lanesDone  sync.WaitGroup
	stopOnce   sync.Once
	stopErr    error
}

// Start registers the micro service and its endpoints on nc and serves
// them until Stop.
func Start(nc *nats.Conn, cfg Config, endpoints []Endpoint) (*Server, error) {
	if err := check(nc, cfg, endpoints); err != nil {
		return nil, err
	}
	defaults.Positive(&cfg.MaxQueued, 16*cfg.Workers)
	defaults.Positive(&cfg.RequestTimeout, 5*time.Second)
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, nc: nc, log: log, sem: make(chan struct{}, cfg.Workers),
		stopping: make(chan struct{}), quit: make(chan struct{})}
	s.workCtx, s.cancelWork = context.WithCancel(context.Background())
	for _, e := range endpoints {
		if e.Key != nil && s.lanes == nil {
			s.startLanes()
		}
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name: cfg.Name, Version: cfg.Version, Description: cfg.Description, QueueGroup: cfg.QueueGroup,
	})
	if err != nil {
		s.shutLanes()
		return nil, fmt.Errorf("%s micro service: %w", cfg.Name, err)
	}
	s.svc = svc
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.Name, s.handler(e), micro.WithEndpointSubject(e.Subject)); err != nil {
			_ = svc.Stop()
			s.shutLanes()
			return nil, fmt.Errorf("%s endpoint %s: %w", cfg.Name, e.Name, err)
		}
	}
	return s, nil
}

// check validates Start's arguments.
func check(nc *nats.Conn, cfg Config, endpoints []Endpoint) error {
	switch {
	case nc == nil:
		return fmt.Errorf("%w: no NATS connection", ErrConfig)
	case cfg.Name == "":
		return fmt.Errorf("%w: Config.Name is required", ErrConfig)
	case cfg.Workers < 1:
		return fmt.Errorf("%w: %s: Config.Workers must be at least 1", ErrConfig, cfg.Name)
	}
	for _, e := range endpoints {
		switch {
		case e.Name == "" || e.Subject == "" || e.Handle == nil:
			return fmt.Errorf("%w: %s: endpoint %q needs a name, a subject and a handler", ErrConfig, cfg.Name, e.Name)
		case e.Inline && e.Key != nil:
			return fmt.Errorf("%w: %s: endpoint %s is inline and keyed", ErrConfig, cfg.Name, e.Name)
		}
	}
	return nil
}

// Info is the micro service's info (its id, endpoints).
func (s *Server) Info() micro.Info { return s.svc.Info() }

// Stop refuses new requests, stops the micro service, and waits until
// every admitted request is answered: the running handlers finish, the
// queued requests are served (Config.Drain) or refused. When ctx ends
// first, the handlers' contexts are cancelled and Stop waits for them to
// return. Once Stop returned no handler runs; later calls return the first
// call's result.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stopping)
		if err := s.svc.Stop(); err != nil {
			s.stopErr = fmt.Errorf("%s: stop micro service: %w", s.cfg.Name, err)
		}
		done := make(chan struct{})
		go func() { s.admitted.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancelWork()
			<-done
		}
		s.shutLanes()
	})
	return s.stopErr
}

// shutLanes ends the lanes' goroutines and the work context.
func (s *Server) shutLanes() {
	s.cancelWork()
	close(s.quit)
	s.lanesDone.Wait()
}

// admit admits a request unless Stop began; an admitted request must be
// answered and then released with s.admitted.Done.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.admitted.Add(1)
	return true
}

// call is an admitted request on its way to a worker.
type call struct {
	ep    *Endpoint
	req   *Request
	reply replier
}

// handler is micro's handler of endpoint e: it never blocks on work.
func (s *Server) handler(e Endpoint) micro.HandlerFunc {
	return func(mr micro.Request) {
		req := &Request{Endpoint: e.Name, Data: mr.Data(), Header: nats.Header(mr.Headers()), Arrived: time.Now()}
		if !s.admit() {
			s.answer(inHandler{mr}, req, nil, ErrShuttingDown, false, time.Time{})
			return
		}
		if e.Inline {
			defer s.admitted.Done()
			s.run(&call{ep: &e, req: req, reply: inHandler{mr}})
			return
		}
		var key string
		if e.Key != nil {
			var err error
			if key, err = e.Key(req); err != nil {
				s.answer(inHandler{mr}, req, nil, err, false, time.Time{})
				s.admitted.Done()
				return
			}
		}
		if s.queued.Add(1) > int64(s.cfg.MaxQueued) {
			s.queued.Add(-1)
			s.answer(inHandler{mr}, req, nil, ErrOverloaded, false, time.Time{})
			s.admitted.Done()
			return
		}
		// micro.Request must not be used once the handler returned (micro
		// reads its error state for stats), so workers reply straight to
		// the reply subject, in micro's format.
		c := &call{ep: &e, req: req, reply: detached{nc: s.nc, subject: mr.Reply()}}
		if e.Key != nil {
			s.laneOf(key).push(c)
			return
		}
		go s.serveQueued(c)
	}
}

// serveQueued waits for a worker slot, then serves c, and releases it.
func (s *Server) serveQueued(c *call) {
	defer s.admitted.Done()
	if !s.acquire(c) {
		return
	}
	defer func() { <-s.sem }()
	s.run(c)
}

// acquire takes a worker slot for a queued call, or refuses it when the
// server stops (at once without Config.Drain; when Stop's context ends
// with it).
func (s *Server) acquire(c *call) bool {
	var stopping <-chan struct{}
	if !s.cfg.Drain {
		stopping = s.stopping
	}
	select {
	case s.sem <- struct{}{}:
		s.queued.Add(-1)
		return true
	case <-stopping:
	case <-s.workCtx.Done():
	}
	s.queued.Add(-1)
	s.answer(c.reply, c.req, nil, ErrShuttingDown, false, time.Time{})
	return false
}

// run serves c on the current goroutine: refused when it waited too long,
// otherwise handled and answered.
func (s *Server) run(c *call) {
	if !c.ep.Inline && s.cfg.MaxQueueWait > 0 {
		if waited := time.Since(c.req.Arrived); waited > s.cfg.MaxQueueWait {
			s.answer(c.reply, c.req, nil, &ExpiredError{Waited: waited}, false, time.Time{})
			return
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(s.workCtx, s.cfg.RequestTimeout)
	defer cancel()
	out, err := c.ep.Handle(ctx, c.req)
	s.answer(c.reply, c.req, out, err, true, start)
}

// answer sends the reply to req (out, or the envelope of err), logs and
// observes the outcome.
func (s *Server) answer(r replier, req *Request, out any, err error, ran bool, start time.Time) {
	o := Outcome{Endpoint: req.Endpoint, Ran: ran}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug(s.cfg.Name+": request", "endpoint", req.Endpoint, "request_id", req.ID(), "err", err)
	}
	if err == nil {
		if err = s.respond(r, out); err != nil {
			s.log.Warn(s.cfg.Name+": respond", "endpoint", req.Endpoint, "request_id", req.ID(), "err", err)
		}
	} else {
		o.Reply = s.envelope(err)
		if o.Reply.Code == CodeInternal && !errors.As(err, new(*Error)) {
			s.log.Error(s.cfg.Name+": request failed", "endpoint", req.Endpoint, "request_id", req.ID(), "err", err)
		}
		// A failed send is the requester's timeout.
		_ = r.fail(o.Reply)
	}
	o.Err = err
	if ran {
		o.Took = time.Since(start)
	}
	if s.cfg.Observe != nil {
		s.cfg.Observe(o)
	}
}

// envelope is the error reply of err.
func (s *Server) envelope(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if s.cfg.Envelope != nil {
		if e := s.cfg.Envelope(err); e != nil {
			return e
		}
	}
	return DefaultEnvelope(s.cfg.Name, err)
}

// respond encodes out and sends it: an Appender into a pooled buffer
// (the connection copies the body before the send returns), anything else
// through encoding/json.
func (s *Server) respond(r replier, out any) error {
	a, ok := out.(Appender)
	if !ok {
		body, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("%w: encode reply: %w", micro.ErrRespond, err)
		}
		return r.respond(body)
	}
	buf, _ := s.bufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	*buf = a.AppendJSON((*buf)[:0])
	err := r.respond(*buf)
	if cap(*buf) <= maxPooledReply {
		s.bufs.Put(buf)
	}
	return err
}

// replier sends the answer to one request.
type replier interface {
	respond(body []byte) error
	fail(e *Error) error
}

// inHandler answers through the micro.Request, inside micro's handler
// (micro counts its errors in the service's stats).
type inHandler struct{ r micro.Request }

func (h inHandler) respond(body []byte) error {
	if err := h.r.Respond(body); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	return nil
}

func (h inHandler) fail(e *Error) error {
	if err := h.r.Error(e.code(), e.description(), e.Body); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	return nil
}

// detached answers a request after micro's handler returned: straight to
// its reply subject, in micro's format.
type detached struct {
	nc      *nats.Conn
	subject string
}

func (d detached) respond(body []byte) error {
	if err := d.nc.Publish(d.subject, body); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	return nil
}

func (d detached) fail(e *Error) error {
	if err := d.nc.PublishMsg(e.msg(d.subject)); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	return nil
}

// lane is the FIFO of one share of the keyed requests, served by one
// goroutine (the queue is bounded by Config.MaxQueued overall).
type lane struct {
	mu   sync.Mutex
	q    []*call
	wake chan struct{} // capacity 1: something was pushed
}

func (l *lane) push(c *call) {
	l.mu.Lock()
	l.q = append(l.q, c)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *lane) pop() (*call, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.q) == 0 {
		return nil, false
	}
	c := l.q[0]
	l.q[0] = nil
	l.q = l.q[1:]
	return c, true
}

// startLanes starts Workers lanes.
func (s *Server) startLanes() {
	s.lanes = make([]*lane, s.cfg.Workers)
	for i := range s.lanes {
		l := &lane{wake: make(chan struct{}, 1)}
		s.lanes[i] = l
		s.lanesDone.Go(func() { s.runLane(l) })
	}
}

// laneOf is the lane of key.
func (s *Server) laneOf(key string) *lane {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return s.lanes[h.Sum32()%uint32(len(s.lanes))]
}

// runLane serves l's calls in order until every admitted request is
// answered after Stop (quit): only then can no more be pushed.
func (s *Server) runLane(l *lane) {
	for {
		if c, ok := l.pop(); ok {
			s.serveQueued(c)
			continue
		}
		select {
		case <-l.wake:
		case <-s.quit:
			return
		}
	}
}
