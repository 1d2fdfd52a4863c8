package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/names"
)

// Limits bounds what ParseClientFrame accepts.
type Limits struct {
	// MaxBody is the longest message body in characters (runes) after
	// trimming. Zero means DefaultMaxBody.
	MaxBody int
	// MaxPage is the largest history page a client may ask for. Zero means
	// DefaultMaxPage.
	MaxPage int
}

// Defaults for Limits.
const (
	DefaultMaxBody = 2000
	DefaultMaxPage = 200
	DefaultPage    = 50
	MaxCIDLen      = 64
)

// ParseClientFrame decodes and validates one client frame. On success the
// room is normalised, the body trimmed and Limit defaulted; on failure the
// returned *Error carries the code to send back. The frame's CID and Room are
// filled in as far as they could be read, so an error frame can echo them.
func ParseClientFrame(data []byte, lim Limits) (ClientFrame, *Error) {
	var f ClientFrame
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		// JSON null, arrays, strings and numbers decode into a struct
		// without error (null leaves it zero): only an object is a frame.
		return ClientFrame{}, Errorf(CodeBadJSON, "frame is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return ClientFrame{}, Errorf(CodeBadJSON, "frame is not a JSON object: %v", err)
	}
	if dec.More() {
		return ClientFrame{}, Errorf(CodeBadJSON, "trailing data after JSON object")
	}
	return CheckClientFrame(f, lim)
}

// CheckClientFrame validates a decoded client frame by the rule of its
// type and normalises it (room, trimmed body, default limit), exactly as
// ParseClientFrame does after decoding: a transport that receives a frame's
// fields another way (an HTTP post) applies the same rule with it. On
// failure the frame is returned as far as it was read, for the error frame
// to echo.
//
// The switch below is the list of client frame types: adding one is a
// case here (with its fields on ClientFrame), a method in the edge's
// session and the docs.
func CheckClientFrame(f ClientFrame, lim Limits) (ClientFrame, *Error) {
	if lim.MaxBody <= 0 {
		lim.MaxBody = DefaultMaxBody
	}
	if lim.MaxPage <= 0 {
		lim.MaxPage = DefaultMaxPage
	}
	switch f.Type {
	case TypeJoin, TypeLeave:
		e := f.checkRoom()
		return f, e
	case TypeMessage:
		if e := f.checkRoom(); e != nil {
			return f, e
		}
		if e := validCID(f.CID); e != nil {
			return f, e
		}
		f.Body = strings.TrimSpace(f.Body)
		return f, CheckBody(f.Body, lim.MaxBody)
	case TypeTyping:
		if e := f.checkRoom(); e != nil {
			return f, e
		}
		if f.State != TypingOn && f.State != TypingOff {
			return f, Errorf(CodeInvalidState, `typing state must be "on" or "off"`)
		}
		return f, nil
	case TypeHistory:
		if e := f.checkRoom(); e != nil {
			return f, e
		}
		if f.Limit == 0 {
			f.Limit = DefaultPage
		}
		if f.Limit < 0 || f.Limit > lim.MaxPage {
			return f, Errorf(CodeInvalidLimit, "limit must be 1-%d", lim.MaxPage)
		}
		return f, nil
	case "":
		return f, Errorf(CodeUnknownType, "frame has no type")
	default:
		return f, Errorf(CodeUnknownType, "unknown frame type %q", truncate(f.Type, 32))
	}
}

// checkRoom normalises f.Room (invalid_room when it breaks the rule).
func (f *ClientFrame) checkRoom() *Error {
	room, err := names.Room(f.Room)
	if err != nil {
		return Errorf(CodeInvalidRoom, "room must match ^[a-z0-9][a-z0-9_-]{0,63}$")
	}
	f.Room = room
	return nil
}

// CheckBody applies the body rule every tier shares (guarantee 9): a body
// is 1 to maxBody characters (runes) of valid UTF-8 with no control
// characters other than tab, line feed and carriage return. U+0000 in
// particular is refused here, at the edge, because PostgreSQL text
// cannot hold it; history applies the same rule to whatever reaches the
// stream by other means and parks what fails it. maxBody <= 0 means
// DefaultMaxBody. The body is expected to be trimmed already.
func CheckBody(body string, maxBody int) *Error {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if body == "" {
		return Errorf(CodeInvalidBody, "message body is empty")
	}
	if !utf8.ValidString(body) {
		return Errorf(CodeInvalidBody, "message body is not valid UTF-8")
	}
	n := 0
	for _, r := range body {
		n++
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x7f && r < 0xa0) {
			return Errorf(CodeInvalidBody, "message body contains control character %U", r)
		}
	}
	if n > maxBody {
		return Errorf(CodeInvalidBody, "message body is %d characters, the limit is %d", n, maxBody)
	}
	return nil
}

// CheckPost applies the message rule to a post read back from the stream
// (whoever published it): the trimmed body passes CheckBody and the user
// and cid hold no U+0000. History parks, and the edge does not deliver, a
// post that fails it, so every read path presents the same room.
func CheckPost(p Post, maxBody int) *Error {
	if e := CheckBody(strings.TrimSpace(p.Body), maxBody); e != nil {
		return e
	}
	if strings.IndexByte(p.User, 0) >= 0 || strings.IndexByte(p.CID, 0) >= 0 {
		return Errorf(CodeInvalidBody, "user or cid contains U+0000")
	}
	return nil
}

// validCID accepts 1-64 printable ASCII characters.
func validCID(cid string) *Error {
	if cid == "" || len(cid) > MaxCIDLen {
		return Errorf(CodeInvalidCID, "cid must be 1-%d printable ASCII characters", MaxCIDLen)
	}
	for i := 0; i < len(cid); i++ {
		if cid[i] < 0x21 || cid[i] > 0x7e {
			return Errorf(CodeInvalidCID, "cid must be 1-%d printable ASCII characters", MaxCIDLen)
		}
	}
	return nil
}

// ValidCID reports whether cid is acceptable as a client message id.
func ValidCID(cid string) bool { return validCID(cid) == nil }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
