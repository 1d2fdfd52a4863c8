package presence

import (
	"encoding/json"
	"unicode"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Decoding and checking the room requests (untrusted input: they arrive
// over NATS; FuzzRoomRequests covers them).

// parseCreate decodes a create request.
func parseCreate(data []byte) (wire.CreateRoomRequest, *wire.Error) {
	r, werr := decodeInRoom(data, "create request", func(r *wire.CreateRoomRequest) string { return r.Room })
	if werr == nil {
		werr = firstError(checkUser("by", r.By), checkText("title", r.Title, wire.MaxTitleLen), checkText("topic", r.Topic, wire.MaxTopicLen))
	}
	return r, werr
}

// parseDM decodes a dm request.
func parseDM(data []byte) (wire.DMRequest, *wire.Error) {
	var r wire.DMRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return r, wire.Errorf(wire.CodeBadJSON, "dm request: %v", err)
	}
	return r, firstError(checkUser("by", r.By), checkUser("user", r.User))
}

// parseRoomUser decodes an invite request.
func parseRoomUser(data []byte) (wire.RoomUserRequest, *wire.Error) {
	r, werr := decodeInRoom(data, "invite request", func(r *wire.RoomUserRequest) string { return r.Room })
	if werr == nil {
		werr = firstError(checkUser("by", r.By), checkUser("user", r.User))
	}
	return r, werr
}

// parseRole decodes a role request: moderator or member.
func parseRole(data []byte) (wire.RoleRequest, *wire.Error) {
	r, werr := decodeInRoom(data, "role request", func(r *wire.RoleRequest) string { return r.Room })
	if werr == nil {
		werr = firstError(checkUser("by", r.By), checkUser("user", r.User))
	}
	if werr == nil && r.Role != wire.RoleModerator && r.Role != wire.RoleMember {
		werr = wire.Errorf(wire.CodeBadJSON, "role must be %q or %q", wire.RoleModerator, wire.RoleMember)
	}
	return r, werr
}

// parseModerate decodes a moderation request: kick, ban, unban, mute,
// unmute.
func parseModerate(data []byte) (wire.ModerateRequest, *wire.Error) {
	r, werr := decodeInRoom(data, "moderate request", func(r *wire.ModerateRequest) string { return r.Room })
	if werr == nil {
		werr = firstError(checkUser("by", r.By), checkUser("user", r.User))
	}
	if werr == nil {
		switch r.Action {
		case wire.ActionKick, wire.ActionBan, wire.ActionUnban, wire.ActionMute, wire.ActionUnmute:
		default:
			werr = wire.Errorf(wire.CodeBadJSON, "action must be kick, ban, unban, mute or unmute")
		}
	}
	return r, werr
}

// parseTopic decodes a topic request.
func parseTopic(data []byte) (wire.TopicRequest, *wire.Error) {
	r, werr := decodeInRoom(data, "topic request", func(r *wire.TopicRequest) string { return r.Room })
	if werr == nil {
		werr = checkUser("by", r.By)
	}
	if werr == nil && r.Topic != nil {
		werr = checkText("topic", *r.Topic, wire.MaxTopicLen)
	}
	if werr == nil && r.Title != nil {
		werr = checkText("title", *r.Title, wire.MaxTitleLen)
	}
	return r, werr
}

// parseAccess decodes an access request.
func parseAccess(data []byte) (wire.AccessRequest, *wire.Error) {
	r, werr := decodeInRoom(data, "access request", func(r *wire.AccessRequest) string { return r.Room })
	if werr == nil {
		werr = checkUser("user", r.User)
	}
	return r, werr
}

// parseRooms decodes a rooms request.
func parseRooms(data []byte) (wire.RoomsRequest, *wire.Error) {
	var r wire.RoomsRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return r, wire.Errorf(wire.CodeBadJSON, "rooms request: %v", err)
	}
	if len(r.Rooms) > wire.MaxDescribeRooms {
		return r, wire.Errorf(wire.CodeInvalidLimit, "at most %d rooms to describe", wire.MaxDescribeRooms)
	}
	for _, room := range r.Rooms {
		if werr := checkRoom(room); werr != nil {
			return r, werr
		}
	}
	return r, checkUser("user", r.User)
}

// checkUser refuses a user id (field what) names.User refuses.
func checkUser(what, user string) *wire.Error {
	if _, err := names.User(user); err != nil {
		return wire.Errorf(wire.CodeBadJSON, "%s: %v", what, err)
	}
	return nil
}

// checkText refuses a title or topic longer than limit characters, not
// valid UTF-8, or with control or format characters (line breaks, bidi
// overrides).
func checkText(what, s string, limit int) *wire.Error {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > limit {
		return wire.Errorf(wire.CodeInvalidBody, "%s: at most %d characters of valid UTF-8", what, limit)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return wire.Errorf(wire.CodeInvalidBody, "%s: control and format characters are not allowed", what)
		}
	}
	return nil
}

// firstError is the first non-nil error.
func firstError(errs ...*wire.Error) *wire.Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
