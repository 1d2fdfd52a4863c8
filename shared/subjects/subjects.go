// Package subjects names every NATS subject, stream, KV bucket and service
// that Hubbub uses. Room names reaching these functions must already be
// validated with names.Room: a valid room is exactly one subject token.
//
// Room traffic lives under "chat.", control traffic under "hubbub.", so no
// room name can ever collide with a control subject.
package subjects

// Stream and subject layout of room traffic.
const (
	// Stream is the JetStream stream that stores every room message.
	Stream = "CHAT"
	// RoomPrefix prefixes the subject a message is published to.
	RoomPrefix = "chat.room."
	// RoomAll matches every room subject; the stream captures it.
	RoomAll = "chat.room.*"
	// LivePrefix prefixes the subject the stream republishes each stored
	// message to, with Nats-Sequence and Nats-Last-Sequence headers.
	LivePrefix = "chat.live."
	// LiveAll matches every live subject.
	LiveAll = "chat.live.*"
	// TypingPrefix prefixes core-NATS typing events.
	TypingPrefix = "chat.typing."
	// TypingAll matches every typing subject.
	TypingAll = "chat.typing.*"
	// PresencePrefix prefixes roster diff events published by presence.
	PresencePrefix = "chat.presence."
	// PresenceAll matches every presence event subject.
	PresenceAll = "chat.presence.*"
	// MentionPrefix prefixes core-NATS mention events (wire.MentionEvent),
	// one subject per mentioned user: chat.mention.<usertoken>.
	MentionPrefix = "chat.mention."
	// MentionAll matches every mention subject.
	MentionAll = "chat.mention.*"
)

// Mention is the subject mentions of the user with userToken travel on.
func Mention(userToken string) string { return MentionPrefix + userToken }

// Room is the subject messages for room are published to.
func Room(room string) string { return RoomPrefix + room }

// Live is the subject stored messages of room are republished to.
func Live(room string) string { return LivePrefix + room }

// Typing is the subject typing events of room travel on.
func Typing(room string) string { return TypingPrefix + room }

// Presence is the subject roster diffs of room travel on.
func Presence(room string) string { return PresencePrefix + room }

// RoomFromSubject returns the last token of a chat.<kind>.<room> subject.
func RoomFromSubject(subject string) string {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			return subject[i+1:]
		}
	}
	return subject
}

// KV buckets.
const (
	// BucketRoster holds one key per (room, user): "<room>.<usertoken>",
	// valued with the user's connections in that room.
	BucketRoster = "hubbub_roster"
	// BucketTyping holds "<room>.<usertoken>" while a user types; entries
	// expire by TTL and the expiry is observable (LimitMarkerTTL).
	BucketTyping = "hubbub_typing"
	// BucketEdges holds one lease per live edge: "<edgeid>".
	BucketEdges = "hubbub_edges"
	// BucketMembers holds one key per room member: "<room>.<usertoken>",
	// valued with wire.Membership, from a user's first join of the room
	// until an explicit leave.
	BucketMembers = "hubbub_members"
	// BucketReads holds each user's read state: "<usertoken>.<room>",
	// valued with wire.ReadState (watch one user's with
	// `nats kv watch hubbub_reads '<usertoken>.>'`).
	BucketReads = "hubbub_reads"
)

// MemberKey is the key of user's membership of room in BucketMembers.
func MemberKey(room, userToken string) string { return room + "." + userToken }

// ReadKey is the key of user's read state in room in BucketReads: the
// user first, so one user's rooms are one wildcard.
func ReadKey(userToken, room string) string { return userToken + "." + room }

// RosterKey is the key of user's entry in room, in BucketRoster and
// BucketTyping. userToken comes from names.UserToken.
func RosterKey(room, userToken string) string { return room + "." + userToken }

// Request-reply services (nats.go/micro).
const (
	// HistoryService is the micro service name of history.
	HistoryService = "history"
	// HistoryConsumer is the durable consumer through which history
	// stores the CHAT stream.
	HistoryConsumer = "history"
	// HistoryRecent answers wire.RecentRequest with wire.Page.
	HistoryRecent = "hubbub.history.recent"
	// HistorySince answers wire.SinceRequest with wire.Page.
	HistorySince = "hubbub.history.since"
	// HistoryLobby answers wire.LobbyRequest with wire.LobbyReply.
	HistoryLobby = "hubbub.history.lobby"
	// HistoryMessage answers wire.MessageRequest with one folded
	// wire.Message.
	HistoryMessage = "hubbub.history.message"
	// HistoryUnread answers wire.UnreadRequest with wire.UnreadReply.
	HistoryUnread = "hubbub.history.unread"

	// PresenceService is the micro service name of presence.
	PresenceService = "presence"
	// PresenceJoin registers a connection in a room (wire.ConnEvent).
	PresenceJoin = "hubbub.presence.join"
	// PresenceLeave removes a connection from a room (wire.ConnEvent).
	PresenceLeave = "hubbub.presence.leave"
	// PresenceRoster answers wire.RosterRequest with wire.RosterReply.
	PresenceRoster = "hubbub.presence.roster"
	// PresenceCounts answers wire.CountsRequest with wire.CountsReply.
	PresenceCounts = "hubbub.presence.counts"
	// PresenceTyping answers wire.TypingStateRequest with wire.TypingStateReply.
	PresenceTyping = "hubbub.presence.typing"
)

// Reply inboxes. Each service takes its replies (request-reply answers,
// JetStream API responses and PubAcks, consumer deliveries) under a prefix
// of its own instead of the shared "_INBOX", so NATS permissions can let
// each service subscribe to its own replies only.
const (
	// EdgeInbox prefixes the edge's reply subjects.
	EdgeInbox = "_INBOX_edge"
	// HistoryInbox prefixes history's reply subjects.
	HistoryInbox = "_INBOX_history"
	// PresenceInbox prefixes presence's reply subjects.
	PresenceInbox = "_INBOX_presence"
)

// HeaderRequestID carries the id of the client request (HTTP request or
// WebSocket frame) an edge's NATS request serves, so the edge's, history's
// and presence's log lines about it can be joined ("request_id").
const HeaderRequestID = "Hubbub-Request-Id"

// Headers set by JetStream RePublish on live delivery.
const (
	HeaderSequence     = "Nats-Sequence"
	HeaderLastSequence = "Nats-Last-Sequence"
	HeaderMsgID        = "Nats-Msg-Id"
)

// Rooms: private rooms, direct messages, roles and moderation (DESIGN
// §3a), owned by presence.
const (
	// BucketRooms holds room records and per-user grants. "<room>" is the
	// room's record (wire.RoomRecord): present for rooms created with
	// PresenceRoomCreate and for DMs; a public room that was only joined
	// has none. "<room>.<usertoken>" is a user's grant in the room
	// (wire.RoomGrant: role, invite, ban, mute, the last moderation action
	// and who did it). "_quota.<usertoken>" counts the rooms a user
	// created (wire.RoomQuota). Watch one room with
	// `nats kv watch hubbub_rooms 'general.>'`.
	BucketRooms = "hubbub_rooms"
	// QuotaPrefix prefixes the creation counters in BucketRooms; it cannot
	// be a room name (rooms start with [a-z0-9]).
	QuotaPrefix = "_quota."

	// AccessPrefix prefixes core-NATS access events (wire.AccessEvent)
	// presence publishes whenever a room's access changes:
	// chat.access.<room>.
	AccessPrefix = "chat.access."
	// AccessAll matches every access event subject.
	AccessAll = "chat.access.*"

	// PresenceAccess answers wire.AccessRequest with wire.Access.
	PresenceAccess = "hubbub.presence.access"
	// PresenceRooms answers wire.RoomsRequest with wire.RoomsReply.
	PresenceRooms = "hubbub.presence.rooms"
	// PresenceRoomCreate answers wire.CreateRoomRequest with wire.RoomFrame.
	PresenceRoomCreate = "hubbub.presence.create"
	// PresenceRoomDM answers wire.DMRequest with wire.RoomFrame.
	PresenceRoomDM = "hubbub.presence.dm"
	// PresenceRoomInvite answers wire.RoomUserRequest with wire.RoomGrant.
	PresenceRoomInvite = "hubbub.presence.invite"
	// PresenceRoomRole answers wire.RoleRequest with wire.RoomGrant.
	PresenceRoomRole = "hubbub.presence.role"
	// PresenceRoomModerate answers wire.ModerateRequest (kick, ban, unban,
	// mute, unmute) with wire.RoomGrant.
	PresenceRoomModerate = "hubbub.presence.moderate"
	// PresenceRoomTopic answers wire.TopicRequest with wire.RoomFrame.
	PresenceRoomTopic = "hubbub.presence.topic"
)

// Access is the subject access events of room travel on.
func Access(room string) string { return AccessPrefix + room }

// RoomKey is the key of room's record in BucketRooms.
func RoomKey(room string) string { return room }

// GrantKey is the key of user's grant in room in BucketRooms.
func GrantKey(room, userToken string) string { return room + "." + userToken }

// QuotaKey is the key of user's room creation counter in BucketRooms.
func QuotaKey(userToken string) string { return QuotaPrefix + userToken }
