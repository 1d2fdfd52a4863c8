package presence

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Roster paging limits.
const (
	// DefaultRosterLimit is the page size when a roster request names none.
	DefaultRosterLimit = 100
	// MaxRosterLimit caps the page size of a roster request.
	MaxRosterLimit = 1000
	// MaxIDLen bounds connection and edge ids.
	MaxIDLen = 256
	// MaxCountsRooms bounds the rooms one counts request may list.
	MaxCountsRooms = 10000
)

// parseConnEvent decodes and checks a join/leave request.
func parseConnEvent(data []byte) (wire.ConnEvent, *wire.Error) {
	ev, werr := decodeInRoom(data, "conn event", func(ev *wire.ConnEvent) string { return ev.Room })
	if werr != nil {
		return ev, werr
	}
	if _, err := names.User(ev.User); err != nil {
		return ev, wire.Errorf(wire.CodeBadJSON, "user: %v", err)
	}
	if !validID(ev.Conn) {
		return ev, wire.Errorf(wire.CodeBadJSON, "conn must be 1-%d printable characters", MaxIDLen)
	}
	if !validEdge(ev.Edge) {
		return ev, wire.Errorf(wire.CodeBadJSON, "edge must be a KV key of 1-%d characters [-_=/.A-Za-z0-9]", MaxIDLen)
	}
	return ev, nil
}

// validID accepts 1..MaxIDLen bytes of valid UTF-8 without control
// characters.
func validID(s string) bool {
	if s == "" || len(s) > MaxIDLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// validEdge accepts ids usable as a key of the edges bucket.
func validEdge(s string) bool {
	if s == "" || len(s) > MaxIDLen || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '=' || c == '/':
		case c == '.' && s[i-1] != '.':
		default:
			return false
		}
	}
	return true
}

// parseRosterRequest decodes a roster request and normalises its limit.
func parseRosterRequest(data []byte) (wire.RosterRequest, *wire.Error) {
	req, werr := decodeInRoom(data, "roster request", func(r *wire.RosterRequest) string { return r.Room })
	if werr != nil {
		return req, werr
	}
	switch {
	case req.Limit < 0:
		return req, wire.Errorf(wire.CodeInvalidLimit, "limit must not be negative")
	case req.Limit == 0:
		req.Limit = DefaultRosterLimit
	case req.Limit > MaxRosterLimit:
		req.Limit = MaxRosterLimit
	}
	return req, nil
}

// parseCountsRequest decodes a counts request.
func parseCountsRequest(data []byte) (wire.CountsRequest, *wire.Error) {
	var req wire.CountsRequest
	if len(data) == 0 {
		return req, nil
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return req, wire.Errorf(wire.CodeBadJSON, "counts request: %v", err)
	}
	if len(req.Rooms) > MaxCountsRooms {
		return req, wire.Errorf(wire.CodeInvalidLimit, "at most %d rooms per request", MaxCountsRooms)
	}
	for _, r := range req.Rooms {
		if werr := checkRoom(r); werr != nil {
			return req, werr
		}
	}
	return req, nil
}

// parseTypingRequest decodes a typing state request.
func parseTypingRequest(data []byte) (wire.TypingStateRequest, *wire.Error) {
	return decodeInRoom(data, "typing request", func(r *wire.TypingStateRequest) string { return r.Room })
}

// decodeInRoom decodes a request (what names it in the error) whose room,
// read by room, must be a valid room name.
func decodeInRoom[T any](data []byte, what string, room func(*T) string) (T, *wire.Error) {
	var req T
	if err := json.Unmarshal(data, &req); err != nil {
		return req, wire.Errorf(wire.CodeBadJSON, "%s: %v", what, err)
	}
	return req, checkRoom(room(&req))
}

// checkRoom refuses a room name that is not valid.
func checkRoom(room string) *wire.Error {
	if !names.ValidRoom(room) {
		return wire.Errorf(wire.CodeInvalidRoom, "room %q is not a valid room name", room)
	}
	return nil
}
