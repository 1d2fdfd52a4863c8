// Package wire defines Hubbub's wire types: the client protocol v1 frames
// exchanged over WebSocket/SSE, the payload published to room subjects, and
// the request/reply and event bodies exchanged between services over NATS.
// All are JSON.
package wire

// ProtocolVersion is the client protocol version announced in welcome.
const ProtocolVersion = 1

// Message kinds.
//
// A message or system message is conversation: a page shows it. An edit, a
// delete and a reaction are change events: they travel the room's chain
// like a message (own id, prev), and history folds them into their Target.
const (
	KindMessage  = "message"
	KindSystem   = "system"
	KindEdit     = "edit"
	KindDelete   = "delete"
	KindReaction = "reaction"
)

// IsChange reports whether kind is a change event (edit, delete, reaction)
// rather than a message a page shows.
func IsChange(kind string) bool {
	return kind == KindEdit || kind == KindDelete || kind == KindReaction
}

// Client frame types (client → server).
const (
	TypeJoin    = "join"
	TypeMessage = "message"
	TypeTyping  = "typing"
	TypeHistory = "history"
	TypeLeave   = "leave"
	TypeEdit    = "edit"
	TypeDelete  = "delete"
	TypeReact   = "react"
	TypeRead    = "read"
)

// Server frame types (server → client) not already listed above.
const (
	TypeWelcome  = "welcome"
	TypeAck      = "ack"
	TypeRoster   = "roster"
	TypePresence = "presence"
	TypeError    = "error"
	TypeUnread   = "unread"
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

// Message is one event of a room's chain as clients see it: a chat or
// system message, or a change event (Kind edit, delete, reaction) with
// Target the id it changes. ID is the CHAT stream sequence; Prev is the ID
// of the previous event in the same room (0 for the first).
//
// A message in a page (join, history, GET …/messages) has its changes
// folded in: Edited, Deleted, Reactions, and Reply (a preview of the
// message ReplyTo names). Live delivery and since pages carry events as
// they were published, changes included.
type Message struct {
	ID   uint64 `json:"id"`
	Prev uint64 `json:"prev"`
	Room string `json:"room"`
	User string `json:"user"`
	Body string `json:"body"`
	Kind string `json:"kind"`
	TS   int64  `json:"ts"`
	CID  string `json:"cid,omitempty"`

	// ReplyTo is the id of the message (same room) this one answers.
	ReplyTo uint64 `json:"reply_to,omitempty"`
	// Mentions are the users named by @user tokens in Body, resolved when
	// the message was sent (see Mentions).
	Mentions []string `json:"mentions,omitempty"`
	// Target is the id a change event changes.
	Target uint64 `json:"target,omitempty"`
	// Emoji is a reaction's emoji.
	Emoji string `json:"emoji,omitempty"`
	// On is a reaction's direction: true adds it, false takes it back.
	On *bool `json:"on,omitempty"`

	// Edited is when the message was last edited (ms; folded pages only).
	Edited int64 `json:"edited,omitempty"`
	// Deleted marks a tombstone: the message was deleted, Body is empty
	// (folded pages only; the text is gone from the history store).
	Deleted bool `json:"deleted,omitempty"`
	// Reactions are the message's reactions, one per emoji in the order
	// each was first given (folded pages only).
	Reactions []Reaction `json:"reactions,omitempty"`
	// Reply previews the message ReplyTo names, so a client can quote it
	// without another request (folded pages only; nil when that message
	// is not kept).
	Reply *Quote `json:"reply,omitempty"`
}

// Reaction is one emoji on a message: how many users gave it and who.
type Reaction struct {
	Emoji string   `json:"emoji"`
	Count int      `json:"count"`
	Users []string `json:"users"`
}

// Quote is the short preview of a replied-to message.
type Quote struct {
	ID      uint64 `json:"id"`
	User    string `json:"user"`
	Body    string `json:"body"`
	Deleted bool   `json:"deleted,omitempty"`
}

// QuoteLen is the longest Quote.Body in characters (runes); a longer body
// is cut there and ends with "…".
const QuoteLen = 140

// Bounds on change events.
const (
	// MaxReactionKinds is how many distinct emoji one message may carry;
	// a reaction with a new emoji beyond it is refused (invalid_emoji).
	MaxReactionKinds = 20
	// MaxMentions is how many distinct users one message may mention;
	// further @user tokens stay text.
	MaxMentions = 20
	// MaxUnread caps the unread and mention counts history computes; a
	// client shows MaxUnread as "MaxUnread or more".
	MaxUnread = 1000
)

// Post is the payload published to chat.room.<room>. It becomes a Message
// once JetStream assigns it a sequence. The fields after CID are those of
// Message with the same names.
type Post struct {
	Room string `json:"room"`
	User string `json:"user"`
	Body string `json:"body"`
	Kind string `json:"kind"`
	TS   int64  `json:"ts"`
	CID  string `json:"cid,omitempty"`

	ReplyTo  uint64   `json:"reply_to,omitempty"`
	Mentions []string `json:"mentions,omitempty"`
	Target   uint64   `json:"target,omitempty"`
	Emoji    string   `json:"emoji,omitempty"`
	On       *bool    `json:"on,omitempty"`
}

// Stored turns a post into the message stored at seq with predecessor prev.
func (p Post) Stored(seq, prev uint64) Message {
	return Message{
		ID: seq, Prev: prev, Room: p.Room, User: p.User, Body: p.Body, Kind: p.Kind, TS: p.TS, CID: p.CID,
		ReplyTo: p.ReplyTo, Mentions: p.Mentions, Target: p.Target, Emoji: p.Emoji, On: p.On,
	}
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
	// ReplyTo (message) is the id answered; ID (edit, delete, react,
	// read) is the message changed or read up to; Emoji and On (react)
	// are the reaction.
	ReplyTo uint64 `json:"reply_to,omitempty"`
	ID      uint64 `json:"id,omitempty"`
	Emoji   string `json:"emoji,omitempty"`
	On      *bool  `json:"on,omitempty"`
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
	// Last is the chain cursor after this page: the newest event id it
	// accounts for, folded or not. A client continues the chain (expects
	// the next live event's prev, or resumes with since) from Last, never
	// from the last item's id.
	Last uint64 `json:"last"`
}

// MessageFrame delivers one live message.
type MessageFrame struct {
	Type    string  `json:"type"`
	Room    string  `json:"room"`
	Message Message `json:"message"`
}

// Unread is a user's read state in a room, pushed to every connection of
// the user when it changes: Read is the last message id read, Count the
// messages after it by others (capped at MaxUnread), Mentions those of
// them that mention the user.
type Unread struct {
	Type     string `json:"type"`
	Room     string `json:"room"`
	Read     uint64 `json:"read"`
	Count    int    `json:"count"`
	Mentions int    `json:"mentions"`
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
