// Package backend is the edge's client for everything behind it: posting
// messages to the CHAT stream, the history service and the presence
// service. Every call is bounded by a timeout so an unavailable service
// yields ErrUnavailable instead of a hung connection.
package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrUnavailable means the service did not answer in time or has no
// responders.
var ErrUnavailable = errors.New("service unavailable")

// ServiceError is an error reply from a micro service.
type ServiceError struct {
	Subject     string
	Code        int
	Description string
}

// Error implements error.
func (e *ServiceError) Error() string {
	return fmt.Sprintf("%s: service error %d: %s", e.Subject, e.Code, e.Description)
}

// DefaultTimeout bounds each request.
const DefaultTimeout = 3 * time.Second

// Client talks to JetStream, history and presence over one NATS connection.
// It remembers every connection it registered with presence (Join without
// a Leave yet), so that Rejoin can register them again after presence lost
// them (the edge's lease expired).
type Client struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration

	regMu       sync.Mutex
	regs        map[regKey]*registration
	regGen      uint64
	unconfirmed map[regKey]struct{} // registrations the registrar retries
	givenUp     map[regKey]struct{} // unconfirmed after RegisterAttempts
	registering bool                // the registrar goroutine runs
}

// regKey names one connection's presence in one room.
type regKey struct{ conn, room string }

// registration is what Rejoin needs to register a connection again, and
// the state of its background registration.
type registration struct {
	user, edge string
	gen        uint64 // distinguishes a key's successive registrations
	confirmed  bool   // presence acknowledged it
	attempts   int    // failed background attempts
	due        time.Time
	joined     func(context.Context) // runs once after the first success
}

// Background registration retries: RegisterAttempts attempts at most,
// the first at once, then after RegisterBackoff doubling up to
// RegisterMaxBackoff.
const (
	RegisterAttempts   = 8
	RegisterBackoff    = 250 * time.Millisecond
	RegisterMaxBackoff = 10 * time.Second
)

// New returns a Client; timeout ≤ 0 means DefaultTimeout.
func New(nc *nats.Conn, timeout time.Duration) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{nc: nc, js: js, timeout: timeout, regs: make(map[regKey]*registration), unconfirmed: make(map[regKey]struct{}), givenUp: make(map[regKey]struct{})}, nil
}

// JetStream returns the JetStream handle the client uses.
func (c *Client) JetStream() jetstream.JetStream { return c.js }

// Conn returns the NATS connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// MsgID is the de-duplication id of a user message: scoped per room and
// user so one user's cid never suppresses another's message.
func MsgID(room, user, cid string) string {
	return room + "/" + names.UserToken(user) + "/" + cid
}

// PostResult is the outcome of Post.
type PostResult struct {
	// ID is the message id (stream sequence); for a duplicate, the
	// original message's id.
	ID uint64
	// Duplicate is true when the cid was already stored.
	Duplicate bool
}

// Post stores a user message in the CHAT stream and waits for the PubAck.
// room must be normalised, body validated.
func (c *Client) Post(ctx context.Context, room, user, body, cid string) (PostResult, error) {
	data, err := json.Marshal(wire.Post{Room: room, User: user, Body: body, Kind: wire.KindMessage, TS: time.Now().UnixMilli(), CID: cid})
	if err != nil {
		return PostResult{}, fmt.Errorf("marshal post: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	msg := &nats.Msg{Subject: subjects.Room(room), Data: data, Header: nats.Header{}}
	msg.Header.Set(subjects.HeaderMsgID, MsgID(room, user, cid))
	ack, err := c.js.PublishMsg(ctx, msg)
	if err != nil {
		return PostResult{}, classify(subjects.Room(room), err)
	}
	return PostResult{ID: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Flush waits until the server has processed everything sent so far
// (e.g. new subscriptions).
func (c *Client) Flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return classify("flush", err)
	}
	return nil
}

// LastID returns the id of the newest message of room in the stream (0
// when it has none).
func (c *Client) LastID(ctx context.Context, room string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, err := c.js.Stream(ctx, subjects.Stream)
	if err != nil {
		return 0, classify(subjects.Stream, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subjects.Room(room))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, classify(subjects.Room(room), err)
	}
	return m.Sequence, nil
}

// Recent asks history for a page of messages before req.Before.
func (c *Client) Recent(ctx context.Context, req wire.RecentRequest) (wire.Page, error) {
	var p wire.Page
	err := c.request(ctx, subjects.HistoryRecent, req, &p)
	return p, err
}

// Since asks history for messages after req.After.
func (c *Client) Since(ctx context.Context, req wire.SinceRequest) (wire.Page, error) {
	var p wire.Page
	err := c.request(ctx, subjects.HistorySince, req, &p)
	return p, err
}

// Lobby asks history for the most recently active rooms.
func (c *Client) Lobby(ctx context.Context, req wire.LobbyRequest) (wire.LobbyReply, error) {
	var r wire.LobbyReply
	err := c.request(ctx, subjects.HistoryLobby, req, &r)
	return r, err
}

// Join registers a connection in a room with presence. The registration
// is remembered (even when the request fails) until Leave, for Rejoin.
func (c *Client) Join(ctx context.Context, ev wire.ConnEvent) (wire.ConnReply, error) {
	c.regMu.Lock()
	c.regGen++
	c.regs[regKey{ev.Conn, ev.Room}] = &registration{user: ev.User, edge: ev.Edge, gen: c.regGen, confirmed: true}
	c.regMu.Unlock()
	return c.join(ctx, ev)
}

func (c *Client) join(ctx context.Context, ev wire.ConnEvent) (wire.ConnReply, error) {
	var r wire.ConnReply
	err := c.request(ctx, subjects.PresenceJoin, ev, &r)
	return r, err
}

// Leave removes a connection from a room.
func (c *Client) Leave(ctx context.Context, ev wire.ConnEvent) (wire.ConnReply, error) {
	c.regMu.Lock()
	delete(c.regs, regKey{ev.Conn, ev.Room})
	delete(c.unconfirmed, regKey{ev.Conn, ev.Room})
	delete(c.givenUp, regKey{ev.Conn, ev.Room})
	c.regMu.Unlock()
	var r wire.ConnReply
	err := c.request(ctx, subjects.PresenceLeave, ev, &r)
	return r, err
}

// Registrations is the number of connection-room pairs registered with
// presence through this client.
func (c *Client) Registrations() int {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	return len(c.regs)
}

// rejoinWorkers bounds the presence requests Rejoin has in flight.
const rejoinWorkers = 16

// Rejoin registers every remembered connection with presence again, e.g.
// after the edge's lease was lost and presence removed its connections.
// A connection that leaves meanwhile is removed again, so none is left
// behind. It returns how many registrations succeeded and the first error.
func (c *Client) Rejoin(ctx context.Context) (int, error) {
	type item struct {
		key regKey
		reg registration
	}
	c.regMu.Lock()
	items := make([]item, 0, len(c.regs))
	for k, r := range c.regs {
		items = append(items, item{k, *r})
	}
	c.regMu.Unlock()

	var (
		mu       sync.Mutex
		ok       int
		firstErr error
		wg       sync.WaitGroup
	)
	work := make(chan item)
	for range min(rejoinWorkers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				err := c.attempt(ctx, it.key, it.reg)
				mu.Lock()
				if err == nil {
					ok++
				} else if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, it := range items {
		select {
		case work <- it:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return ok, firstErr
}

// Roster asks presence for one page of a room's online users.
func (c *Client) Roster(ctx context.Context, req wire.RosterRequest) (wire.RosterReply, error) {
	var r wire.RosterReply
	err := c.request(ctx, subjects.PresenceRoster, req, &r)
	return r, err
}

// Counts asks presence for online counts.
func (c *Client) Counts(ctx context.Context, req wire.CountsRequest) (wire.CountsReply, error) {
	var r wire.CountsReply
	err := c.request(ctx, subjects.PresenceCounts, req, &r)
	return r, err
}

// Typing publishes a typing event (core NATS, fire and forget).
func (c *Client) Typing(ev wire.TypingEvent) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("marshal typing: %w", err)
	}
	if err := c.nc.Publish(subjects.Typing(ev.Room), data); err != nil {
		return fmt.Errorf("publish typing: %w", err)
	}
	return nil
}

// requestIDKey is the context key of a request id.
type requestIDKey struct{}

// WithRequestID returns ctx carrying id, the id of the client request that
// the NATS requests made under ctx serve; they send it in the
// Hubbub-Request-Id header.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request id ctx carries ("" if none).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func (c *Client) request(ctx context.Context, subject string, req, reply any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("marshal %s request: %w", subject, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out := &nats.Msg{Subject: subject, Data: data}
	if id := RequestID(ctx); id != "" {
		out.Header = nats.Header{subjects.HeaderRequestID: []string{id}}
	}
	msg, err := c.nc.RequestMsgWithContext(ctx, out)
	if err != nil {
		return classify(subject, err)
	}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		code, _ := strconv.Atoi(msg.Header.Get(micro.ErrorCodeHeader))
		return &ServiceError{Subject: subject, Code: code, Description: desc}
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("%s: decode reply: %w", subject, err)
	}
	return nil
}

// classify maps transport failures to ErrUnavailable.
func classify(subject string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting):
		return fmt.Errorf("%s: %w: %w", subject, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", subject, err)
}

// Register registers a connection in a room with presence in the
// background, so that chat never waits for presence: the first attempt
// starts at once, failures are retried with backoff (RegisterAttempts at
// most; after that the registration is retried once presence answers
// another registration of this client, or by Rejoin). joined,
// if not nil, runs once after the first successful registration (on a
// registrar goroutine; it may make requests bounded by its ctx). Like
// Join, the registration is remembered until Leave.
func (c *Client) Register(ev wire.ConnEvent, joined func(context.Context)) {
	key := regKey{ev.Conn, ev.Room}
	c.regMu.Lock()
	defer c.regMu.Unlock()
	c.regGen++
	c.regs[key] = &registration{user: ev.User, edge: ev.Edge, gen: c.regGen, due: time.Now(), joined: joined}
	c.unconfirmed[key] = struct{}{}
	if !c.registering {
		c.registering = true
		go c.registrar()
	}
}

// Pending is the number of registrations presence has not confirmed yet.
func (c *Client) Pending() int {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	return len(c.unconfirmed)
}

// registrar runs while registrations wait for a (re)try: each pass
// attempts every due one, rejoinWorkers at a time.
func (c *Client) registrar() {
	type item struct {
		key regKey
		reg registration
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		var due []item
		var next time.Time
		c.regMu.Lock()
		for k := range c.unconfirmed {
			r := c.regs[k]
			switch {
			case r == nil || r.confirmed:
				delete(c.unconfirmed, k)
			case r.attempts >= RegisterAttempts:
				// Retried again once presence answers another
				// registration, or by Rejoin.
				delete(c.unconfirmed, k)
				c.givenUp[k] = struct{}{}
			case !r.due.After(now):
				due = append(due, item{k, *r})
			case next.IsZero() || r.due.Before(next):
				next = r.due
			}
		}
		if len(due) == 0 && next.IsZero() {
			c.registering = false
			c.regMu.Unlock()
			return
		}
		c.regMu.Unlock()

		if len(due) == 0 {
			timer.Reset(time.Until(next))
			<-timer.C
			continue
		}
		work := make(chan item)
		var wg sync.WaitGroup
		for range min(rejoinWorkers, len(due)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for it := range work {
					_ = c.attempt(context.Background(), it.key, it.reg)
				}
			}()
		}
		for _, it := range due {
			work <- it
		}
		close(work)
		wg.Wait()
	}
}

// attempt registers reg (a copy of the registration of key) with
// presence once and records the outcome. A registration that was left
// (or replaced) meanwhile is undone, in case this join reached presence
// after its leave.
func (c *Client) attempt(ctx context.Context, key regKey, reg registration) error {
	ev := wire.ConnEvent{Room: key.room, User: reg.user, Conn: key.conn, Edge: reg.edge}
	_, err := c.join(ctx, ev)
	c.regMu.Lock()
	cur := c.regs[key]
	if cur == nil {
		c.regMu.Unlock()
		var r wire.ConnReply
		_ = c.request(context.WithoutCancel(ctx), subjects.PresenceLeave, ev, &r)
		return err
	}
	var joined func(context.Context)
	if cur.gen == reg.gen {
		if err == nil {
			cur.confirmed = true
			joined, cur.joined = cur.joined, nil
			delete(c.unconfirmed, key)
			delete(c.givenUp, key)
			c.reviveLocked()
		} else if !cur.confirmed {
			cur.attempts++
			cur.due = time.Now().Add(registerBackoff(cur.attempts))
		}
	}
	c.regMu.Unlock()
	if joined != nil {
		joined(ctx)
	}
	return err
}

// reviveLocked schedules the registrations given up on again: presence
// answered, so it is back. regMu must be held.
func (c *Client) reviveLocked() {
	if len(c.givenUp) == 0 {
		return
	}
	now := time.Now()
	for k := range c.givenUp {
		if r := c.regs[k]; r != nil && !r.confirmed {
			r.attempts, r.due = 0, now
			c.unconfirmed[k] = struct{}{}
		}
		delete(c.givenUp, k)
	}
	if !c.registering {
		c.registering = true
		go c.registrar()
	}
}

// registerBackoff is the wait before retry number n (n ≥ 1).
func registerBackoff(n int) time.Duration {
	d := RegisterBackoff
	for i := 1; i < n && d < RegisterMaxBackoff; i++ {
		d *= 2
	}
	return min(d, RegisterMaxBackoff)
}
