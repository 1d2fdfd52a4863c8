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
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/microsvc"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
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
// It keeps every connection's presence in each room it joined (see
// Register and Unregister) and brings presence to it in the background.
type Client struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration

	presence registry
}

// New returns a Client using the JetStream of domain (natsconn.NewJetStream);
// timeout ≤ 0 means DefaultTimeout.
func New(nc *nats.Conn, domain string, timeout time.Duration) (*Client, error) {
	js, err := natsconn.NewJetStream(nc, domain)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := &Client{nc: nc, js: js, timeout: timeout}
	c.presence.init()
	return c, nil
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

// PostResult is the outcome of Lane.Post.
type PostResult struct {
	// ID is the message id (stream sequence); for a duplicate, the
	// original message's id.
	ID uint64
	// Duplicate is true when the cid was already stored.
	Duplicate bool
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
	if err := microsvc.Decode(msg, reply); err != nil {
		var se *microsvc.Error
		if errors.As(err, &se) {
			code, _ := strconv.Atoi(se.Code)
			return &ServiceError{Subject: subject, Code: code, Description: se.Description}
		}
		return fmt.Errorf("%s: %w", subject, err)
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
