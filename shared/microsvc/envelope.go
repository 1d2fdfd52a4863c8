package microsvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Status codes of the error envelope (the Nats-Service-Error-Code header),
// HTTP-like as micro's convention is.
const (
	// CodeBadRequest: the request can never be served; do not retry it.
	CodeBadRequest = "400"
	// CodeInternal: the service failed.
	CodeInternal = "500"
	// CodeUnavailable: shutting down, overloaded or not caught up; retry,
	// maybe elsewhere.
	CodeUnavailable = "503"
)

// The kit's refusals: what a request is answered with (through
// Config.Envelope or DefaultEnvelope) when no handler serves it.
var (
	// ErrShuttingDown refuses a request that arrived, or was still
	// queued, once Stop began.
	ErrShuttingDown = errors.New("shutting down")
	// ErrOverloaded refuses a request beyond Config.MaxQueued.
	ErrOverloaded = errors.New("overloaded")
	// ErrExpired refuses a request that waited longer than
	// Config.MaxQueueWait for a worker (an *ExpiredError says how long).
	ErrExpired = errors.New("queued too long")
	// ErrConfig reports an unusable Config or Endpoint to Start.
	ErrConfig = errors.New("microsvc: invalid configuration")
)

// ExpiredError is the refusal of a request that waited Waited for a
// worker; errors.Is(err, ErrExpired) holds for it.
type ExpiredError struct {
	Waited time.Duration
}

// Error implements error.
func (e *ExpiredError) Error() string {
	return fmt.Sprintf("request waited %s for a worker", e.Waited.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrExpired) hold.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// Error is the error envelope: a reply whose headers
// Nats-Service-Error-Code (Code) and Nats-Service-Error (Description) mark
// it as an error, with an optional body (presence sends a wire.ErrorFrame;
// history none). A handler returns one to choose its answer; any other
// error goes through Config.Envelope. Requesters decode replies with
// Decode, which returns the envelope as an *Error.
type Error struct {
	// Code is the status: CodeBadRequest, CodeInternal, CodeUnavailable.
	Code string
	// Description says what went wrong; micro requires it non-empty.
	Description string
	// Body is the reply body; nil for none.
	Body []byte
	// Err is the cause (nil when decoded from a reply).
	Err error
}

// Error implements error.
func (e *Error) Error() string { return "service error " + e.Code + ": " + e.Description }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// BadRequest is the 400 envelope of err, its description err's text.
func BadRequest(err error) *Error {
	return &Error{Code: CodeBadRequest, Description: err.Error(), Err: err}
}

// Unavailable is the 503 envelope of err, its description err's text.
func Unavailable(err error) *Error {
	return &Error{Code: CodeUnavailable, Description: err.Error(), Err: err}
}

// DefaultEnvelope is the envelope of err for the service named service
// when Config.Envelope gives none: an *Error in err's chain as it is; the
// kit's refusals as 503 "<service> is shutting down", "<service> is
// overloaded" and "<service> is overloaded (request waited 2.1s)";
// anything else 500 "<service>: internal error" (the cause is logged, not
// sent).
func DefaultEnvelope(service string, err error) *Error {
	var e *Error
	var expired *ExpiredError
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrShuttingDown):
		return &Error{Code: CodeUnavailable, Description: service + " is shutting down", Err: err}
	case errors.As(err, &expired):
		return &Error{Code: CodeUnavailable, Err: err,
			Description: fmt.Sprintf("%s is overloaded (request waited %s)", service, expired.Waited.Round(time.Millisecond))}
	case errors.Is(err, ErrOverloaded), errors.Is(err, ErrExpired):
		return &Error{Code: CodeUnavailable, Description: service + " is overloaded", Err: err}
	default:
		return &Error{Code: CodeInternal, Description: service + ": internal error", Err: err}
	}
}

// msg is the envelope as a reply to subject.
func (e *Error) msg(subject string) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: e.Body, Header: nats.Header{
		micro.ErrorHeader:     []string{e.description()},
		micro.ErrorCodeHeader: []string{e.code()},
	}}
}

// code is Code, CodeInternal when empty (micro requires one).
func (e *Error) code() string {
	if e.Code == "" {
		return CodeInternal
	}
	return e.Code
}

// description is Description, the code when empty (micro requires one).
func (e *Error) description() string {
	if e.Description == "" {
		return "error " + e.code()
	}
	return e.Description
}

// ReplyError returns the error envelope msg carries, or nil when msg is a
// reply.
func ReplyError(msg *nats.Msg) *Error {
	desc, code := msg.Header.Get(micro.ErrorHeader), msg.Header.Get(micro.ErrorCodeHeader)
	if desc == "" && code == "" {
		return nil
	}
	return &Error{Code: code, Description: desc, Body: msg.Data}
}

// Decode decodes a reply into v: an error envelope is returned as an
// *Error, a body that is not v's JSON as an error wrapping the decoder's.
func Decode(msg *nats.Msg, v any) error {
	if e := ReplyError(msg); e != nil {
		return e
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		return fmt.Errorf("decode reply: %w", err)
	}
	return nil
}
