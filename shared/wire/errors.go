package wire

import "fmt"

// Error codes carried by ErrorFrame.Code.
const (
	CodeBadJSON       = "bad_json"
	CodeUnknownType   = "unknown_type"
	CodeInvalidRoom   = "invalid_room"
	CodeInvalidBody   = "invalid_body"
	CodeInvalidCID    = "invalid_cid"
	CodeInvalidState  = "invalid_state"
	CodeInvalidLimit  = "invalid_limit"
	CodeBinaryFrame   = "binary_frame"
	CodeNotJoined     = "not_joined"
	CodeTooManyRooms  = "too_many_rooms"
	CodeRateLimited   = "rate_limited"
	CodeForbidden     = "forbidden"
	CodeUnavailable   = "unavailable"
	CodeInternal      = "internal"
	CodeNotFound      = "not_found"
	CodeAuthRequired  = "auth_required"
	CodeAuthInvalid   = "auth_invalid"
	CodeOriginRefused = "origin_refused"
	CodeInvalidEmoji  = "invalid_emoji"
	CodeInvalidID     = "invalid_id"
)

// Error is a client-visible refusal: a code from the list above and a
// human-readable message.
type Error struct {
	Code    string
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Frame turns the error into the frame sent to the client.
func (e *Error) Frame(cid, room string) ErrorFrame {
	return ErrorFrame{Type: TypeError, Code: e.Code, Message: e.Message, CID: cid, Room: room}
}
