package wire

// RecentRequest asks history for the newest Limit messages of Room with an
// id below Before (0: the newest page).
type RecentRequest struct {
	Room   string `json:"room"`
	Before uint64 `json:"before,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// SinceRequest asks history for the oldest Limit messages of Room with an id
// above After, in order.
type SinceRequest struct {
	Room  string `json:"room"`
	After uint64 `json:"after"`
	Limit int    `json:"limit,omitempty"`
}

// Page is history's answer to RecentRequest and SinceRequest. Items are in
// ascending id order.
//
// A since page holds the room's events raw (messages and change events)
// and forms a chain (each Prev is the previous Item's ID); HasMore means
// newer events follow (ask again after Last). A recent page is folded: it
// holds messages (KindMessage, KindSystem) only, each with its changes
// applied (Edited, Deleted, Reactions, Reply), so its Prev values skip the
// change events; HasMore means older messages exist.
//
// Last is the chain cursor after the page: the newest event id at or
// below the page's end that the page accounts for (folded or not), 0 for
// an empty room. Recovered is false when a since request reached back
// past what retention keeps: Items is then the newest (folded) page.
type Page struct {
	Room      string    `json:"room"`
	Items     []Message `json:"items"`
	HasMore   bool      `json:"has_more"`
	Recovered bool      `json:"recovered"`
	Last      uint64    `json:"last"`
}

// MessageRequest asks history for one message of Room, folded: what a page
// would show for it. History answers not_found when ID is not a message
// (KindMessage or KindSystem) of Room that it keeps.
type MessageRequest struct {
	Room string `json:"room"`
	ID   uint64 `json:"id"`
}

// ReadMark is where a user has read a room up to.
type ReadMark struct {
	Room string `json:"room"`
	Read uint64 `json:"read"`
}

// UnreadRequest asks history, for User, how many messages of each room
// follow its read mark.
type UnreadRequest struct {
	User  string     `json:"user"`
	Rooms []ReadMark `json:"rooms"`
}

// UnreadCount is a room's unread state for one user: Count messages
// (KindMessage, by other users) with an id above Read, Mentions of them
// mentioning the user; both capped at MaxUnread.
type UnreadCount struct {
	Room     string `json:"room"`
	Read     uint64 `json:"read"`
	Count    int    `json:"count"`
	Mentions int    `json:"mentions"`
}

// UnreadReply answers UnreadRequest, one entry per requested room.
type UnreadReply struct {
	Rooms []UnreadCount `json:"rooms"`
}

// ReadState is the value of a user's key in the reads bucket
// (subjects.ReadKey): the last message id the user has read in Room.
type ReadState struct {
	Room string `json:"room"`
	User string `json:"user"`
	Read uint64 `json:"read"`
	TS   int64  `json:"ts"`
}

// MentionEvent travels on chat.mention.<usertoken> (core NATS) once
// history has stored a message that mentions User: edges holding the
// user's connections push them a fresh Unread for Room.
type MentionEvent struct {
	Room string `json:"room"`
	ID   uint64 `json:"id"`
	User string `json:"user"`
	By   string `json:"by"`
}

// Membership is the value of a user's key in the members bucket
// (subjects.MemberKey): the user has joined Room (first join at Since,
// ms) and not left it since.
type Membership struct {
	Room  string `json:"room"`
	User  string `json:"user"`
	Since int64  `json:"since"`
}

// LobbyRequest asks history for the most recently active rooms.
type LobbyRequest struct {
	Limit int `json:"limit,omitempty"`
}

// RoomSummary describes one room in the lobby.
type RoomSummary struct {
	Room         string   `json:"room"`
	LastID       uint64   `json:"last_id"`
	LastActivity int64    `json:"last_activity"`
	Messages     int64    `json:"messages"`
	Online       int      `json:"online"`
	LastMessage  *Message `json:"last_message,omitempty"`
	// Unread and Mentions are the caller's unread state (GET /api/lobby
	// fills them for the signed-in user; history's lobby leaves them 0).
	Unread   int `json:"unread"`
	Mentions int `json:"mentions"`
}

// LobbyReply lists rooms, most recently active first.
type LobbyReply struct {
	Rooms []RoomSummary `json:"rooms"`
}

// ConnEvent registers (PresenceJoin) or removes (PresenceLeave) one
// connection of User in Room. Conn is unique per connection and room
// membership (a leave and a rejoin of the same room on one connection use
// a new one), so presence can refuse a join that arrives after its leave;
// Edge names the edge holding it (its lease key). Explicit marks a
// PresenceLeave the user asked for (a leave frame): it ends the user's
// membership of the room, which a connection closing never does.
type ConnEvent struct {
	Room     string `json:"room"`
	User     string `json:"user"`
	Conn     string `json:"conn"`
	Edge     string `json:"edge"`
	Explicit bool   `json:"explicit,omitempty"`
}

// ConnReply answers a ConnEvent with the room's online count afterwards.
type ConnReply struct {
	Online int `json:"online"`
}

// RosterRequest pages through a room's online users in sorted order,
// starting after After.
type RosterRequest struct {
	Room  string `json:"room"`
	After string `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// RosterReply is one page of a room's roster. Next is the cursor for the
// following page ("" when this is the last).
type RosterReply struct {
	Room   string   `json:"room"`
	Users  []string `json:"users"`
	Online int      `json:"online"`
	Next   string   `json:"next,omitempty"`
}

// CountsRequest asks for online counts of Rooms (all rooms when empty).
type CountsRequest struct {
	Rooms []string `json:"rooms,omitempty"`
}

// CountsReply maps room to online users.
type CountsReply struct {
	Counts map[string]int `json:"counts"`
}

// TypingEvent travels on chat.typing.<room>: published by edges when a user
// types, and by presence with State "off" when a typing entry expires.
type TypingEvent struct {
	Room  string `json:"room"`
	User  string `json:"user"`
	State string `json:"state"`
	Conn  string `json:"conn,omitempty"`
}

// PresenceEvent travels on chat.presence.<room>: a user's first connection
// joined (EventJoin) or last connection left (EventLeave).
type PresenceEvent struct {
	Room   string `json:"room"`
	Event  string `json:"event"`
	User   string `json:"user"`
	Online int    `json:"online"`
}

// TypingStateRequest asks who is typing in Room now.
type TypingStateRequest struct {
	Room string `json:"room"`
}

// TypingStateReply lists the users typing in Room.
type TypingStateReply struct {
	Room  string   `json:"room"`
	Users []string `json:"users"`
}

// EdgeLease is the value of an edge's key in the edges bucket.
type EdgeLease struct {
	Edge    string `json:"edge"`
	Addr    string `json:"addr,omitempty"`
	Started int64  `json:"started"`
}
