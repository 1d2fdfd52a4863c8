package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Private rooms, direct messages, roles and moderation (DESIGN §3a). The
// records live in the rooms bucket (subjects.BucketRooms) and change only
// through presence's room endpoints; every request names its caller in By
// (or User), which the edge authenticated (edges are trusted).

// Roles in a room, highest first. The empty role is no role: a user who
// is neither owner, moderator nor member (nor invited).
const (
	RoleOwner     = "owner"
	RoleModerator = "moderator"
	RoleMember    = "member"
)

// Moderation actions (ModerateRequest.Action), also AccessEvent.Action
// with the other changes of access below.
const (
	ActionKick   = "kick"
	ActionBan    = "ban"
	ActionUnban  = "unban"
	ActionMute   = "mute"
	ActionUnmute = "unmute"

	ActionCreate = "create"
	ActionDM     = "dm"
	ActionInvite = "invite"
	ActionRole   = "role"
	ActionTopic  = "topic"
)

// TypeRoom is the type of RoomFrame, the answer to create and dm frames.
const TypeRoom = "room"

// Limits of room records.
const (
	// MaxTitleLen bounds a room's display name, in characters.
	MaxTitleLen = 80
	// MaxTopicLen bounds a room's topic, in characters.
	MaxTopicLen = 250
)

// DMPrefix starts every direct message room's name (DMRoom); no other
// room may be created or joined under it.
const DMPrefix = "dm-"

// RoomRecord is the value of a room's key in the rooms bucket
// (subjects.RoomKey). A public room that was only joined has none.
type RoomRecord struct {
	Room    string `json:"room"`
	Private bool   `json:"private,omitempty"`
	DM      bool   `json:"dm,omitempty"`
	// Owner created the room ("" for a DM: its two members are equal).
	Owner   string `json:"owner,omitempty"`
	Title   string `json:"title,omitempty"`
	Topic   string `json:"topic,omitempty"`
	Created int64  `json:"created"`
	// Members are a DM's two users, sorted (one for a note to self).
	Members []string `json:"members,omitempty"`
}

// RoomGrant is the value of a user's key in a room in the rooms bucket
// (subjects.GrantKey): what the user may do there beyond the room's
// defaults, kept across leaves and rejoins, and the last moderation
// action concerning them, with who did it (the audit trail itself is the
// system messages on the room's chain).
type RoomGrant struct {
	Room string `json:"room"`
	User string `json:"user"`
	// Role is owner (the room's creator), moderator, member or "".
	Role    string `json:"role,omitempty"`
	Invited bool   `json:"invited,omitempty"`
	Banned  bool   `json:"banned,omitempty"`
	Muted   bool   `json:"muted,omitempty"`
	// Action is the last change of this grant (an Action constant), By who
	// made it and At when (ms).
	Action string `json:"action,omitempty"`
	By     string `json:"by,omitempty"`
	At     int64  `json:"at,omitempty"`
	// Rev is the grant's revision in the rooms bucket (replies only).
	Rev uint64 `json:"rev,omitempty"`
}

// RoomQuota is the value of a user's creation counter in the rooms bucket
// (subjects.QuotaKey).
type RoomQuota struct {
	User    string `json:"user"`
	Created int    `json:"created"`
}

// RoomFrame describes a room to a user: the answer to create, dm and topic
// requests (the server → client "room" frame, Type "room"), and each item
// of RoomsReply.
type RoomFrame struct {
	Type    string   `json:"type"`
	Room    string   `json:"room"`
	Private bool     `json:"private,omitempty"`
	DM      bool     `json:"dm,omitempty"`
	Role    string   `json:"role,omitempty"`
	Owner   string   `json:"owner,omitempty"`
	Title   string   `json:"title,omitempty"`
	Topic   string   `json:"topic,omitempty"`
	Members []string `json:"members,omitempty"`
}

// CreateRoomRequest creates Room with By as its owner.
type CreateRoomRequest struct {
	By      string `json:"by"`
	Room    string `json:"room"`
	Private bool   `json:"private,omitempty"`
	Title   string `json:"title,omitempty"`
	Topic   string `json:"topic,omitempty"`
}

// DMRequest opens (creating it on first use) the direct message room of
// By and User; By == User is a note-to-self room.
type DMRequest struct {
	By   string `json:"by"`
	User string `json:"user"`
}

// RoomUserRequest is an action of By on User in Room (invite).
type RoomUserRequest struct {
	By   string `json:"by"`
	Room string `json:"room"`
	User string `json:"user"`
}

// RoleRequest sets User's Role (moderator or member) in Room; only the
// owner may.
type RoleRequest struct {
	By   string `json:"by"`
	Room string `json:"room"`
	User string `json:"user"`
	Role string `json:"role"`
}

// ModerateRequest is a moderation Action (kick, ban, unban, mute, unmute)
// of By on User in Room.
type ModerateRequest struct {
	By     string `json:"by"`
	Room   string `json:"room"`
	User   string `json:"user"`
	Action string `json:"action"`
}

// TopicRequest sets Room's topic and/or its display name (nil: left as it
// is; "" clears it); owner or moderator.
type TopicRequest struct {
	By    string  `json:"by"`
	Room  string  `json:"room"`
	Topic *string `json:"topic,omitempty"`
	Title *string `json:"title,omitempty"`
}

// AccessRequest asks what User may do in Room.
type AccessRequest struct {
	User string `json:"user"`
	Room string `json:"room"`
}

// Access is presence's decision on one user in one room. Rev is the rooms
// bucket revision of the newest record it was decided from (the room's
// record or the user's grant): a cached decision stays valid until an
// AccessEvent for the room (and that user, or none) with a higher Rev.
type Access struct {
	Room string `json:"room"`
	User string `json:"user"`
	// Exists: the room has a record (created, or a DM). A public room that
	// was only joined has none and is open to all.
	Exists  bool   `json:"exists"`
	Private bool   `json:"private"`
	DM      bool   `json:"dm"`
	Role    string `json:"role,omitempty"`
	// Member: the user has joined the room and not left it (members
	// bucket). Informational: joins and leaves announce no access event
	// and do not change Rev, so a cached Member may be stale; the May*
	// decisions do not depend on it.
	Member  bool `json:"member"`
	Invited bool `json:"invited"`
	Muted   bool `json:"muted"`
	Banned  bool `json:"banned"`
	// MayRead: join, history, events, lobby. MayWrite: post, edit, react,
	// type (MayRead and not muted). MayModerate: delete others' messages,
	// kick, ban, mute (owner or moderator, never in a DM).
	MayRead     bool   `json:"may_read"`
	MayWrite    bool   `json:"may_write"`
	MayModerate bool   `json:"may_moderate"`
	Rev         uint64 `json:"rev"`
}

// RoomsRequest lists the private rooms and DMs User may read and, for
// the lobby's titles and topics, describes the rooms named in Rooms that
// have a record and User may read (at most MaxDescribeRooms).
type RoomsRequest struct {
	User  string   `json:"user"`
	Rooms []string `json:"rooms,omitempty"`
}

// MaxDescribeRooms bounds RoomsRequest.Rooms.
const MaxDescribeRooms = 500

// RoomsReply lists rooms, each with the caller's role.
type RoomsReply struct {
	Rooms []RoomFrame `json:"rooms"`
}

// AccessEvent is published (core NATS, subjects.Access(room)) after every
// change of a room's access: User is whom it concerns ("" for the whole
// room: created, topic), Action what changed, By who did it, Rev the rooms
// bucket revision written. On a kick or ban an edge ends User's
// subscriptions of the room at once; on any event it drops its cached
// decisions for (Room, User), or all of Room's when User is "".
type AccessEvent struct {
	Room   string `json:"room"`
	User   string `json:"user,omitempty"`
	Action string `json:"action"`
	By     string `json:"by,omitempty"`
	Rev    uint64 `json:"rev"`
}

// DMRoom is the name of the direct message room of users a and b: DMPrefix
// and the first 40 hex digits of the SHA-256 of the sorted pair, the same
// from both sides; DMRoom(a, a) is a's note-to-self room. The result is a
// valid room name (names.Room).
func DMRoom(a, b string) string {
	if b < a {
		a, b = b, a
	}
	h := sha256.New()
	// Length-prefixed, so no pair of ids can produce another pair's input.
	_, _ = fmt.Fprintf(h, "%d:%s%d:%s", len(a), a, len(b), b)
	return DMPrefix + hex.EncodeToString(h.Sum(nil))[:40]
}
