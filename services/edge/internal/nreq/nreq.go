// Package nreq makes the edge's NATS requests to the services behind it
// (history, presence): each is bounded by a timeout, carries the id of the
// client request it serves, and decodes the micro service error envelope.
// A service that does not answer in time, or has no responders, yields
// ErrUnavailable instead of a hung connection.
package nreq

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
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// ErrUnavailable means the service did not answer in time or has no
// responders.
var ErrUnavailable = errors.New("service unavailable")

// ServiceError is an error reply from a micro service.
type ServiceError struct {
	// Subject is the request's subject.
	Subject string
	// Code is the service's status code (Nats-Service-Error-Code).
	Code int
	// Description is the service's message (Nats-Service-Error).
	Description string
}

// Error implements error.
func (e *ServiceError) Error() string {
	return fmt.Sprintf("%s: service error %d: %s", e.Subject, e.Code, e.Description)
}

// Refusal reports whether err is a service's refusal of the request itself
// (a 4xx ServiceError): asking again, or elsewhere, gets the same answer.
func Refusal(err error) bool {
	var se *ServiceError
	return errors.As(err, &se) && se.Code >= 400 && se.Code < 500
}

// DefaultTimeout bounds each request.
const DefaultTimeout = 3 * time.Second

// Client makes bounded requests over one NATS connection.
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
}

// New returns a Client on nc; timeout ≤ 0 means DefaultTimeout.
func New(nc *nats.Conn, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{nc: nc, timeout: timeout}
}

// Conn returns the NATS connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// Timeout is the bound of each request.
func (c *Client) Timeout() time.Duration { return c.timeout }

// Flush waits until the server has processed everything sent so far
// (e.g. new subscriptions).
func (c *Client) Flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return Classify("flush", err)
	}
	return nil
}

// Request sends req (JSON) to subject through c and decodes the reply as
// a Rep. A service's error envelope is a *ServiceError; a transport
// failure wraps ErrUnavailable.
func Request[Rep any](ctx context.Context, c *Client, subject string, req any) (Rep, error) {
	var reply Rep
	data, err := json.Marshal(req)
	if err != nil {
		return reply, fmt.Errorf("marshal %s request: %w", subject, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out := &nats.Msg{Subject: subject, Data: data}
	if id := RequestID(ctx); id != "" {
		out.Header = nats.Header{subjects.HeaderRequestID: []string{id}}
	}
	msg, err := c.nc.RequestMsgWithContext(ctx, out)
	if err != nil {
		return reply, Classify(subject, err)
	}
	if err := microsvc.Decode(msg, &reply); err != nil {
		var se *microsvc.Error
		if errors.As(err, &se) {
			code, _ := strconv.Atoi(se.Code)
			return reply, &ServiceError{Subject: subject, Code: code, Description: se.Description}
		}
		return reply, fmt.Errorf("%s: %w", subject, err)
	}
	return reply, nil
}

// Classify wraps err, a failure of an operation on subject, and maps
// transport failures (no responders, deadlines, a connection down) to
// ErrUnavailable.
func Classify(subject string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting):
		return fmt.Errorf("%s: %w: %w", subject, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", subject, err)
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
