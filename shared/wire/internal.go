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
// ascending id order and form a chain (each Prev is the previous Item's ID).
// For recent, HasMore means older messages exist; for since, it means newer
// messages follow (ask again after the last item). Recovered is false when a
// since request reached back past what retention keeps: Items is then the
// newest page instead.
type Page struct {
	Room      string    `json:"room"`
	Items     []Message `json:"items"`
	HasMore   bool      `json:"has_more"`
	Recovered bool      `json:"recovered"`
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
}

// LobbyReply lists rooms, most recently active first.
type LobbyReply struct {
	Rooms []RoomSummary `json:"rooms"`
}

// ConnEvent registers (PresenceJoin) or removes (PresenceLeave) one
// connection of User in Room. Conn is unique per connection and Edge names
// the edge holding it (its lease key).
type ConnEvent struct {
	Room string `json:"room"`
	User string `json:"user"`
	Conn string `json:"conn"`
	Edge string `json:"edge"`
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
