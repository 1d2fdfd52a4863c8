// Package session speaks client protocol v1 on one WebSocket connection:
// it reads client frames, answers them (join, message, typing, history,
// leave) through the fan-out hub and the backend, and cleans up on
// disconnect (leaves the hub and presence).
package session

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	gws "github.com/gobwas/ws"
	"golang.org/x/time/rate"

	"github.com/hubbub-chat/hubbub/services/edge/backend"
	"github.com/hubbub-chat/hubbub/services/edge/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/frame"
	"github.com/hubbub-chat/hubbub/services/edge/userlimit"
	"github.com/hubbub-chat/hubbub/services/edge/ws"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Observer receives session events for metrics. Methods must not block.
type Observer interface {
	// FrameIn counts one client frame of type typ ("invalid" if unparsable).
	FrameIn(typ string)
	// FrameOut counts one frame sent to this connection only.
	FrameOut(typ string)
	// ErrorSent counts an error frame by code.
	ErrorSent(code string)
	// Published records the latency of one acked publish.
	Published(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) FrameIn(string)          {}
func (nopObserver) FrameOut(string)         {}
func (nopObserver) ErrorSent(string)        {}
func (nopObserver) Published(time.Duration) {}

// Config is shared by every session of an edge.
type Config struct {
	// EdgeID names this edge in presence connection events.
	EdgeID string
	// Limits bounds message bodies and history pages.
	Limits wire.Limits
	// MaxRooms is how many rooms one connection may join (100).
	MaxRooms int
	// RosterLimit caps the users listed in the roster frame (100).
	RosterLimit int
	// MessageRate and MessageBurst limit messages per connection
	// (default 10/s, burst 20).
	MessageRate  rate.Limit
	MessageBurst int
	// JoinRate and JoinBurst limit joins per connection (default 10/s,
	// burst 100: a reconnecting page re-joins all its rooms at once).
	JoinRate  rate.Limit
	JoinBurst int
	// TypingRate and TypingBurst limit typing frames per connection
	// (default 5/s, burst 10). A typing renewal over the limit is dropped
	// silently; other typing frames over it get rate_limited.
	TypingRate  rate.Limit
	TypingBurst int
	// MaxPendingPosts bounds one connection's messages awaiting their
	// PubAck (32); more are refused with rate_limited.
	MaxPendingPosts int
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxRooms <= 0 {
		c.MaxRooms = 100
	}
	if c.RosterLimit <= 0 {
		c.RosterLimit = 100
	}
	if c.MessageRate <= 0 {
		c.MessageRate = 10
	}
	if c.MessageBurst <= 0 {
		c.MessageBurst = 20
	}
	if c.JoinRate <= 0 {
		c.JoinRate = 10
	}
	if c.JoinBurst <= 0 {
		c.JoinBurst = 100
	}
	if c.TypingRate <= 0 {
		c.TypingRate = 5
	}
	if c.TypingBurst <= 0 {
		c.TypingBurst = 10
	}
	if c.MaxPendingPosts <= 0 {
		c.MaxPendingPosts = 32
	}
	return c
}

// Env is what sessions share: configuration and collaborators.
type Env struct {
	Config  Config
	Hub     *fanout.Hub
	Backend *backend.Client
	// Publisher stores messages without blocking the connection's reader.
	Publisher *backend.Publisher
	Log       *slog.Logger
	// Obs must not be nil (NopObserver discards).
	Obs Observer
}

// NopObserver discards session events.
func NopObserver() Observer { return nopObserver{} }

// Session is one client connection speaking protocol v1.
type Session struct {
	env   *Env
	conn  *ws.Conn
	user  string
	id    string
	rooms roomSet

	msgLimit    *rate.Limiter
	joinLimit   *rate.Limiter
	typingLimit *rate.Limiter
	// quota holds the limits shared by all of the user's connections on
	// this edge (nil: none).
	quota *userlimit.User
	// allowed lists the rooms the user's token allows (nil: all).
	allowed []string
	// posting counts messages awaiting their PubAck.
	posting atomic.Int32
	// lane orders the outcomes of this connection's posts (made on the
	// first message, so idle connections hold none).
	lane *backend.Lane
	// frames counts the client frames handled: frame n's NATS requests
	// carry request id "<conn id>.<n>".
	frames uint64
}

type membership struct {
	room   string
	m      *fanout.Member
	typing bool
}

// New returns a session for user on conn; id must be unique (it names the
// connection in presence).
func New(env *Env, conn *ws.Conn, user, id string) *Session {
	return &Session{env: env, conn: conn, user: user, id: id}
}

// SetUserLimits makes the session also obey u, the limits shared by all
// of its user's connections on this edge. Call it before Run.
func (s *Session) SetUserLimits(u *userlimit.User) { s.quota = u }

// RestrictRooms limits the rooms the session may join and read to rooms
// (normalised names; nil: every room). Joining or reading another room is
// refused with a forbidden error frame; the connection stays open. Call
// it before Run.
func (s *Session) RestrictRooms(rooms []string) { s.allowed = rooms }

// Run sends the welcome frame and serves the connection until it closes,
// then leaves every room. ctx bounds requests made on the client's behalf.
func (s *Session) Run(ctx context.Context) {
	s.Start()
	for {
		msg, err := s.conn.Read()
		if err != nil {
			break
		}
		s.Handle(ctx, msg)
	}
	s.Cleanup()
}

// Start sends the welcome frame. Start, Handle for each message and
// Cleanup do what Run does, for a caller that reads the connection
// itself (ws.Transport.Serve).
func (s *Session) Start() {
	s.send(frame.Must(wire.TypeWelcome, wire.Welcome{Type: wire.TypeWelcome, User: s.user, Protocol: wire.ProtocolVersion}, frame.Essential))
}

// Handle answers one client message.
func (s *Session) Handle(ctx context.Context, msg ws.Message) {
	if msg.Op == gws.OpBinary {
		s.env.Obs.FrameIn("binary")
		s.sendError(wire.Errorf(wire.CodeBinaryFrame, "binary frames are not supported; send JSON text frames"), "", "")
		return
	}
	s.handle(ctx, msg.Payload)
}

// Cleanup ends the session after reading ended: it stops deliveries,
// closes the socket and leaves presence (in the background, retried until
// presence confirms).
func (s *Session) Cleanup() {
	for _, ms := range s.rooms {
		ms.m.Leave()
	}
	s.conn.Finish()
	for _, ms := range s.rooms {
		if ms.typing {
			s.publishTyping(ms.room, wire.TypingOff)
		}
		s.env.Backend.Unregister(s.connEvent(ms.room))
	}
	s.rooms = nil
}

// Ping sends a WebSocket ping (the edge's pinger drives this).
func (s *Session) Ping() { s.conn.Ping() }

// Close starts closing the connection with code (e.g. 1012 on drain).
func (s *Session) Close(code uint16, reason string) { s.conn.Close(code, reason) }

func (s *Session) handle(ctx context.Context, payload []byte) {
	s.frames++
	ctx = backend.WithRequestID(ctx, s.id+"."+strconv.FormatUint(s.frames, 10))
	f, perr := wire.ParseClientFrame(payload, s.env.Config.Limits)
	if perr != nil {
		typ := "invalid"
		if perr.Code != wire.CodeBadJSON && perr.Code != wire.CodeUnknownType {
			typ = f.Type
		}
		s.env.Obs.FrameIn(typ)
		s.sendError(perr, f.CID, f.Room)
		return
	}
	s.env.Obs.FrameIn(f.Type)
	switch f.Type {
	case wire.TypeJoin:
		s.join(ctx, f)
	case wire.TypeMessage:
		s.message(f)
	case wire.TypeTyping:
		s.typing(f)
	case wire.TypeHistory:
		s.history(ctx, f)
	case wire.TypeLeave:
		s.leave(ctx, f)
	}
}

func (s *Session) join(ctx context.Context, f wire.ClientFrame) {
	if !s.allows(f.Room) {
		// Refuse the room, keep the connection: the user's other rooms
		// go on.
		s.sendError(wire.Errorf(wire.CodeForbidden, "the token does not allow this room"), "", f.Room)
		return
	}
	old, rejoin := s.rooms.get(f.Room)
	if !rejoin && len(s.rooms) >= s.env.Config.MaxRooms {
		s.sendError(wire.Errorf(wire.CodeTooManyRooms, "a connection may join at most %d rooms", s.env.Config.MaxRooms), "", f.Room)
		return
	}
	if !s.allowJoin() {
		s.sendError(wire.Errorf(wire.CodeRateLimited, "too many joins; slow down"), "", f.Room)
		return
	}
	if rejoin {
		// Re-join (e.g. with since after the client saw a gap): replace the
		// membership; presence is unchanged.
		old.m.Leave()
		s.rooms.del(f.Room)
	}
	m, err := s.env.Hub.Join(ctx, fanout.JoinRequest{Room: f.Room, User: s.user, Since: f.Since, Sink: s.conn})
	if err != nil {
		s.env.Log.Warn("join failed", "room", f.Room, "request_id", backend.RequestID(ctx), "err", err)
		s.sendError(unavailable(err, "cannot join the room now; try again"), "", f.Room)
		if rejoin {
			// The connection is no longer in the room: leave presence too.
			s.env.Backend.Unregister(s.connEvent(f.Room))
		}
		return
	}
	s.rooms.put(&membership{room: f.Room, m: m})
	// Chat does not wait for presence: the member is live already; the
	// presence registration (retried in the background while presence is
	// unavailable) is followed by the roster frame.
	room := f.Room
	s.env.Backend.Register(s.connEvent(room), func(ctx context.Context) { s.sendRoster(ctx, room) })
}

// sendRoster sends the roster frame of room.
func (s *Session) sendRoster(ctx context.Context, room string) {
	r, err := s.env.Backend.Roster(ctx, wire.RosterRequest{Room: room, Limit: s.env.Config.RosterLimit})
	if err != nil {
		s.env.Log.Warn("roster failed", "room", room, "err", err)
		return
	}
	users := r.Users
	if users == nil {
		users = []string{}
	}
	s.send(frame.Must(wire.TypeRoster, wire.Roster{Type: wire.TypeRoster, Room: room, Users: users, Online: r.Online, More: r.Next != ""}, frame.Essential))
}

func (s *Session) message(f wire.ClientFrame) {
	ms, ok := s.rooms.get(f.Room)
	if !ok {
		s.sendError(wire.Errorf(wire.CodeNotJoined, "join the room before sending to it"), f.CID, f.Room)
		return
	}
	if !s.allowMessage() {
		s.sendError(wire.Errorf(wire.CodeRateLimited, "too many messages; slow down"), f.CID, f.Room)
		return
	}
	if int(s.posting.Add(1)) > s.env.Config.MaxPendingPosts {
		s.posting.Add(-1)
		s.sendError(wire.Errorf(wire.CodeRateLimited, "too many messages awaiting storage; slow down"), f.CID, f.Room)
		return
	}
	// The publish is asynchronous: reading goes on while JetStream stores
	// the message; the ack (or the error) follows when the PubAck arrives.
	start := time.Now()
	room, cid := f.Room, f.CID
	if s.lane == nil {
		s.lane = s.env.Publisher.NewLane()
	}
	err := s.lane.Post(room, s.user, f.Body, cid, func(res backend.PostResult, err error) {
		s.posting.Add(-1)
		if err != nil {
			s.env.Log.Warn("publish failed", "room", room, "err", err)
			s.sendError(unavailable(err, "message not stored; resend it with the same cid"), cid, room)
			return
		}
		s.env.Obs.Published(time.Since(start))
		s.send(frame.Must(wire.TypeAck, wire.Ack{Type: wire.TypeAck, CID: cid, ID: res.ID}, frame.Essential))
	})
	if err != nil {
		s.posting.Add(-1)
		s.env.Log.Warn("publish refused", "room", room, "err", err)
		s.sendError(unavailable(err, "message not stored; resend it with the same cid"), cid, room)
		return
	}
	if ms.typing {
		ms.typing = false
		s.publishTyping(room, wire.TypingOff)
	}
}

func (s *Session) typing(f wire.ClientFrame) {
	ms, ok := s.rooms.get(f.Room)
	if !ok {
		s.sendError(wire.Errorf(wire.CodeNotJoined, "join the room first"), "", f.Room)
		return
	}
	on := f.State == wire.TypingOn
	if !s.allowTyping() {
		if on && ms.typing {
			return // a renewal over the limit is simply dropped
		}
		s.sendError(wire.Errorf(wire.CodeRateLimited, "too many typing notifications; slow down"), "", f.Room)
		return
	}
	ms.typing = on
	s.publishTyping(f.Room, f.State)
}

// allows reports whether the token lets the session into room: the one
// rule every read and write of a room checks (guarantee 10).
func (s *Session) allows(room string) bool {
	return s.allowed == nil || slices.Contains(s.allowed, room)
}

func (s *Session) history(ctx context.Context, f wire.ClientFrame) {
	if !s.allows(f.Room) {
		s.sendError(wire.Errorf(wire.CodeForbidden, "the token does not allow this room"), "", f.Room)
		return
	}
	if _, ok := s.rooms.get(f.Room); !ok {
		s.sendError(wire.Errorf(wire.CodeNotJoined, "join the room before reading its history"), "", f.Room)
		return
	}
	p, err := s.env.Backend.Recent(ctx, wire.RecentRequest{Room: f.Room, Before: f.Before, Limit: f.Limit})
	if err != nil {
		s.sendError(unavailable(err, "history is unavailable"), "", f.Room)
		return
	}
	items := p.Items
	if items == nil {
		items = []wire.Message{}
	}
	s.send(frame.Must(wire.TypeHistory, wire.History{Type: wire.TypeHistory, Room: f.Room, Items: items, HasMore: p.HasMore, Recovered: true}, frame.Essential))
}

func (s *Session) leave(ctx context.Context, f wire.ClientFrame) {
	ms, ok := s.rooms.get(f.Room)
	if !ok {
		s.sendError(wire.Errorf(wire.CodeNotJoined, "not in this room"), "", f.Room)
		return
	}
	ms.m.Leave()
	s.rooms.del(f.Room)
	if ms.typing {
		s.publishTyping(f.Room, wire.TypingOff)
	}
	s.env.Backend.Unregister(s.connEvent(f.Room))
}

// allowMessage, allowJoin and allowTyping take one token from the
// connection's limiter and, if that passes, from the user's.
func (s *Session) allowMessage() bool {
	if s.msgLimit == nil {
		s.msgLimit = rate.NewLimiter(s.env.Config.MessageRate, s.env.Config.MessageBurst)
	}
	return s.msgLimit.Allow() && (s.quota == nil || s.quota.AllowMessage())
}

func (s *Session) allowJoin() bool {
	if s.joinLimit == nil {
		s.joinLimit = rate.NewLimiter(s.env.Config.JoinRate, s.env.Config.JoinBurst)
	}
	return s.joinLimit.Allow() && (s.quota == nil || s.quota.AllowJoin())
}

func (s *Session) allowTyping() bool {
	if s.typingLimit == nil {
		s.typingLimit = rate.NewLimiter(s.env.Config.TypingRate, s.env.Config.TypingBurst)
	}
	return s.typingLimit.Allow() && (s.quota == nil || s.quota.AllowTyping())
}

func (s *Session) publishTyping(room, state string) {
	if err := s.env.Backend.Typing(wire.TypingEvent{Room: room, User: s.user, State: state, Conn: s.id}); err != nil {
		s.env.Log.Warn("typing publish failed", "room", room, "err", err)
	}
}

func (s *Session) connEvent(room string) wire.ConnEvent {
	return wire.ConnEvent{Room: room, User: s.user, Conn: s.id, Edge: s.env.Config.EdgeID}
}

func (s *Session) send(f *frame.Frame) {
	if s.conn.Send(f) {
		s.env.Obs.FrameOut(f.Type)
	}
}

func (s *Session) sendError(e *wire.Error, cid, room string) {
	if !wire.ValidCID(cid) {
		cid = ""
	}
	if !names.ValidRoom(room) {
		room = ""
	}
	s.env.Obs.ErrorSent(e.Code)
	s.send(frame.Must(wire.TypeError, e.Frame(cid, room), frame.Essential))
}

// unavailable turns a backend failure into an error frame.
func unavailable(err error, msg string) *wire.Error {
	if errors.Is(err, backend.ErrBusy) {
		return wire.Errorf(wire.CodeUnavailable, "the edge has too many messages awaiting storage; resend later with the same cid")
	}
	if errors.Is(err, backend.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, fanout.ErrClosed) {
		return wire.Errorf(wire.CodeUnavailable, "%s", msg)
	}
	var se *backend.ServiceError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
		return wire.Errorf(wire.CodeInternal, "%s: %s", msg, se.Description)
	}
	return wire.Errorf(wire.CodeUnavailable, "%s", msg)
}
