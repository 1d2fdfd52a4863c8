// Package wire defines Hubbub's wire types: the client protocol v1 frames
// exchanged over WebSocket/SSE, the payload published to room subjects, and
// the request/reply and event bodies exchanged between services over NATS.
// All are JSON.
package wire

// ProtocolVersion is the client protocol version announced in welcome.
const ProtocolVersion = 1

// Message kinds.
const (
	KindMessage = "message"
	KindSystem  = "system"
)

// Client frame types (client → server).
const (
	TypeJoin    = "join"
	TypeMessage = "message"
	TypeTyping  = "typing"
	TypeHistory = "history"
	TypeLeave   = "leave"
)

// Server frame types (server → client) not already listed above.
const (
	TypeWelcome  = "welcome"
	TypeAck      = "ack"
	TypeRoster   = "roster"
	TypePresence = "presence"
	TypeError    = "error"
)

// Typing states.
const (
	TypingOn  = "on"
	TypingOff = "off"
)

// Presence events.
const (
	EventJoin  = "join"
	EventLeave = "leave"
)

// Message is a stored chat or system message as clients see it. ID is the
// CHAT stream sequence; Prev is the ID of the previous message in the same
// room (0 for the first).
type Message struct {
	ID   uint64 `json:"id"`
	Prev uint64 `json:"prev"`
	Room string `json:"room"`
	User string `json:"user"`
	Body string `json:"body"`
	Kind string `json:"kind"`
	TS   int64  `json:"ts"`
	CID  string `json:"cid,omitempty"`
}

// Post is the payload published to chat.room.<room>. It becomes a Message
// once JetStream assigns it a sequence.
type Post struct {
	Room string `json:"room"`
	User string `json:"user"`
	Body string `json:"body"`
	Kind string `json:"kind"`
	TS   int64  `json:"ts"`
	CID  string `json:"cid,omitempty"`
}

// Stored turns a post into the message stored at seq with predecessor prev.
func (p Post) Stored(seq, prev uint64) Message {
	return Message{ID: seq, Prev: prev, Room: p.Room, User: p.User, Body: p.Body, Kind: p.Kind, TS: p.TS, CID: p.CID}
}

// ClientFrame is any frame a client sends. Which fields are meaningful
// depends on Type; ParseClientFrame validates them.
type ClientFrame struct {
	Type   string  `json:"type"`
	Room   string  `json:"room,omitempty"`
	Since  *uint64 `json:"since,omitempty"`
	Body   string  `json:"body,omitempty"`
	CID    string  `json:"cid,omitempty"`
	State  string  `json:"state,omitempty"`
	Before uint64  `json:"before,omitempty"`
	Limit  int     `json:"limit,omitempty"`
}

// Welcome is the first frame on every connection.
type Welcome struct {
	Type     string `json:"type"`
	User     string `json:"user"`
	Protocol int    `json:"protocol"`
}

// History carries a page of messages: on join (newest page or everything
// after since) and in answer to a history request (a page before an id).
type History struct {
	Type      string    `json:"type"`
	Room      string    `json:"room"`
	Items     []Message `json:"items"`
	HasMore   bool      `json:"has_more"`
	Recovered bool      `json:"recovered"`
}

// MessageFrame delivers one live message.
type MessageFrame struct {
	Type    string  `json:"type"`
	Room    string  `json:"room"`
	Message Message `json:"message"`
}

// Ack confirms to the sending connection that a message is stored.
type Ack struct {
	Type string `json:"type"`
	CID  string `json:"cid"`
	ID   uint64 `json:"id"`
}

// Typing tells room members that a user started or stopped typing.
type Typing struct {
	Type  string `json:"type"`
	Room  string `json:"room"`
	User  string `json:"user"`
	State string `json:"state"`
}

// Roster lists a room's online users once after join. Users is capped;
// Online is the full count and More tells whether Users was truncated.
type Roster struct {
	Type   string   `json:"type"`
	Room   string   `json:"room"`
	Users  []string `json:"users"`
	Online int      `json:"online"`
	More   bool     `json:"more,omitempty"`
}

// Presence is a roster diff: one user joined or left a room.
type Presence struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Event  string `json:"event"`
	User   string `json:"user"`
	Online int    `json:"online"`
}

// ErrorFrame reports a refused request; the connection stays usable.
type ErrorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	CID     string `json:"cid,omitempty"`
	Room    string `json:"room,omitempty"`
}

// PostReply answers POST /api/rooms/{room}/messages: the stored id, the
// client's cid, and whether the message had been stored before.
type PostReply struct {
	ID        uint64 `json:"id"`
	CID       string `json:"cid"`
	Duplicate bool   `json:"duplicate,omitempty"`
}
