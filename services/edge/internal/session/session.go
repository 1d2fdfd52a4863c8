// Package session is the edge's one connection model: a client of
// protocol v1, whatever its transport. A WebSocket connection, an SSE
// stream and an HTTP post are all a Session over a Sink (send, queued
// bytes, close); the session owns what a client holds and may do — the
// user's connection quota and admission ticket, the token's rooms, the
// per-connection and per-user limits, joins (hub membership and presence
// registration), leaves and the cleanup when the connection ends — so each
// transport only reads and writes its own bytes.
//
// A session's methods are called from one goroutine at a time (the
// transport's reader); the outcomes of publishes and presence arrive on
// other goroutines and only ever send frames.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrTooManyConnections is returned by Open when the user already holds
// the most connections allowed on this edge.
var ErrTooManyConnections = errors.New("session: too many connections for this user")

// Config is shared by every session of an edge. Zero values take the
// defaults below.
type Config struct {
	// EdgeID names this edge in presence connection events.
	EdgeID string
	// Limits bounds message bodies (MaxBody, wire.DefaultMaxBody) and
	// history pages (MaxPage).
	wire.Limits
	// MaxRooms is how many rooms one connection may join.
	MaxRooms int
	// RosterLimit caps the users listed in the roster frame.
	RosterLimit int
	// Rates limit one connection's messages, joins (a reconnecting page
	// re-joins all its rooms at once: hence the burst) and typing frames.
	// A typing renewal over the limit is dropped silently; other typing
	// frames over it get rate_limited.
	userlimit.Rates
	// MaxPendingPosts bounds one connection's messages awaiting their
	// PubAck; more are refused with rate_limited.
	MaxPendingPosts int
}

// Defaults for Config.
const (
	DefaultMaxRooms        = 100
	DefaultRosterLimit     = 100
	DefaultMessageRate     = 10
	DefaultMessageBurst    = 20
	DefaultJoinRate        = 10
	DefaultJoinBurst       = 100
	DefaultTypingRate      = 5
	DefaultTypingBurst     = 10
	DefaultMaxPendingPosts = 32
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxBody, wire.DefaultMaxBody)
	def(&c.MaxRooms, DefaultMaxRooms)
	def(&c.RosterLimit, DefaultRosterLimit)
	def(&c.MaxPendingPosts, DefaultMaxPendingPosts)
	c.Rates = c.Rates.Or(userlimit.Rates{
		MessageRate: DefaultMessageRate, MessageBurst: DefaultMessageBurst,
		JoinRate: DefaultJoinRate, JoinBurst: DefaultJoinBurst,
		TypingRate: DefaultTypingRate, TypingBurst: DefaultTypingBurst,
	})
	return c
}

// Env is what sessions share: configuration and collaborators. Every
// field but Users, NewID and Reads is required.
type Env struct {
	Config    Config
	Hub       Hub
	Presence  Presence
	Pages     Pages
	Typing    Typist
	Publisher Publisher
	// Reads keeps read marks and pushes unread frames (nil: none).
	Reads Reads
	// Users holds the limits shared by all of a user's connections on
	// this edge (nil: none).
	Users *userlimit.Limits
	// NewID returns a unique connection id (it names the connection in
	// presence); nil: random ids.
	NewID func() string
	Log   *slog.Logger
	Obs   Observer
}

// budget is a user's shared limits as a session draws on them.
type budget interface {
	AllowMessage() bool
	AllowJoin() bool
	AllowTyping() bool
}

// Session is one client of protocol v1 on one transport.
type Session struct {
	env   *Env
	sink  Sink
	ident auth.Identity
	id    string
	rooms roomSet

	msgLimit    *rate.Limiter
	joinLimit   *rate.Limiter
	typingLimit *rate.Limiter
	// quota is the user's shared limits (nil: none); held is the
	// connection taken from them, released by End.
	quota  budget
	held   *userlimit.User
	ticket *admit.Ticket
	// posting counts messages awaiting their PubAck.
	posting atomic.Int32
	// lane orders the outcomes of this connection's posts (made on the
	// first message, so idle connections hold none).
	lane Lane
	// frames counts the client frames handled: frame n's NATS requests
	// carry request id "<conn id>.<n>".
	frames uint64
	// joins counts the presence registrations made (see presenceID).
	joins  uint64
	opened bool // counted by Obs.ConnOpened
	ended  bool
}

type membership struct {
	room string
	// conn is this membership's presence registration id (see
	// presenceID): every join and leave of it names it.
	conn   string
	m      Member
	typing bool
}

// Open starts the session of a client authenticated as id on sink: it
// takes one of the user's connections (ErrTooManyConnections when none is
// left) and holds ticket, the transport's admission (may be nil), until
// End. If Open fails, ticket is released.
func (e *Env) Open(sink Sink, id auth.Identity, ticket *admit.Ticket) (*Session, error) {
	s := &Session{env: e, sink: sink, ident: id, id: e.newID(), ticket: ticket}
	if e.Users != nil {
		u, err := e.Users.Acquire(id.User)
		if err != nil {
			if ticket != nil {
				ticket.Release()
			}
			return nil, fmt.Errorf("%w: %w", ErrTooManyConnections, err)
		}
		s.held, s.quota = u, u
	}
	return s, nil
}

func (e *Env) newID() string {
	if e.NewID != nil {
		return e.NewID()
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ID is the connection's id.
func (s *Session) ID() string { return s.id }

// Start counts the connection as served and sends the welcome frame (the
// first frame of a protocol v1 connection).
func (s *Session) Start() {
	s.markOpen()
	s.send(frame.Must(wire.TypeWelcome, wire.Welcome{Type: wire.TypeWelcome, User: s.ident.User, Protocol: wire.ProtocolVersion}, frame.Essential))
}

func (s *Session) markOpen() {
	if !s.opened {
		s.opened = true
		s.env.Obs.ConnOpened()
	}
}

// Close starts closing the transport with code (e.g. 1012 on drain).
func (s *Session) Close(code uint16, reason string) { s.sink.Close(code, reason) }

// End releases everything the session holds, however its connection
// ended: memberships (no more deliveries), typing (off), presence (the
// leave is retried in the background until presence confirms it), the
// user's connection and the admission ticket; a served connection is
// counted closed with reason. Call it once the transport stopped reading;
// later calls do nothing.
func (s *Session) End(reason string) {
	if s.ended {
		return
	}
	s.ended = true
	for _, ms := range s.rooms {
		ms.m.Leave()
	}
	for _, ms := range s.rooms {
		s.dropRoom(ms)
	}
	s.rooms = nil
	if s.held != nil {
		s.held.Release()
	}
	if s.ticket != nil {
		s.ticket.Release()
	}
	if s.opened {
		s.env.Obs.ConnClosed(reason)
	}
}

// dropRoom ends what the connection holds in a room it no longer
// receives: its typing and its presence.
func (s *Session) dropRoom(ms *membership) {
	if ms.typing {
		ms.typing = false
		s.publishTyping(ms.room, wire.TypingOff)
	}
	s.env.Presence.Unregister(s.connEvent(ms))
}

// Binary answers a binary frame: only JSON text frames are spoken.
func (s *Session) Binary() {
	s.env.Obs.FrameIn("binary")
	s.sendError(wire.Errorf(wire.CodeBinaryFrame, "binary frames are not supported; send JSON text frames"), "", "")
}

// Handle answers one client text frame. ctx bounds the requests made on
// the client's behalf.
func (s *Session) Handle(ctx context.Context, payload []byte) {
	s.frames++
	ctx = nreq.WithRequestID(ctx, s.id+"."+strconv.FormatUint(s.frames, 10))
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
	s.dispatch(ctx, f)
}

// dispatch hands a valid frame to the method of its type: adding a client
// frame type is a case here, its method, and its rule in wire.
func (s *Session) dispatch(ctx context.Context, f wire.ClientFrame) {
	switch f.Type {
	case wire.TypeJoin:
		s.join(ctx, f)
	case wire.TypeMessage:
		s.message(ctx, f)
	case wire.TypeEdit, wire.TypeDelete, wire.TypeReact:
		s.change(ctx, f)
	case wire.TypeTyping:
		s.typing(f)
	case wire.TypeHistory:
		s.history(ctx, f)
	case wire.TypeLeave:
		s.leave(f)
	case wire.TypeRead:
		s.read(ctx, f)
	}
}

// send writes f to the client, counting it.
func (s *Session) send(f *frame.Frame) {
	if s.sink.Send(f) {
		s.env.Obs.FrameOut(f.Type)
	}
}

// sendError sends e as an error frame, echoing cid and room when valid.
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

// presenceID returns a new presence registration id: the connection id
// and a per-connection count, so that a leave and a later re-join of the
// same room are different registrations. Presence refuses a join of an id
// whose leave it already saw (a join request that overtook its leave), so
// ids must never be reused.
func (s *Session) presenceID() string {
	s.joins++
	return s.id + "." + strconv.FormatUint(s.joins, 10)
}

// connEvent is the presence event of ms's registration.
func (s *Session) connEvent(ms *membership) wire.ConnEvent {
	return wire.ConnEvent{Room: ms.room, User: s.ident.User, Conn: ms.conn, Edge: s.env.Config.EdgeID}
}

// allowMessage, allowJoin and allowTyping take one token from the
// connection's limiter and, if that passes, from the user's.
func (s *Session) allowMessage() bool {
	c := &s.env.Config
	return s.allow(&s.msgLimit, c.MessageRate, c.MessageBurst, budget.AllowMessage)
}

func (s *Session) allowJoin() bool {
	c := &s.env.Config
	return s.allow(&s.joinLimit, c.JoinRate, c.JoinBurst, budget.AllowJoin)
}

func (s *Session) allowTyping() bool {
	c := &s.env.Config
	return s.allow(&s.typingLimit, c.TypingRate, c.TypingBurst, budget.AllowTyping)
}

// allow takes a token from *l (made at rate r and burst on first use) and
// then from the user's budget (take), if the session has one.
func (s *Session) allow(l **rate.Limiter, r rate.Limit, burst int, take func(budget) bool) bool {
	if *l == nil {
		*l = rate.NewLimiter(r, burst)
	}
	return (*l).Allow() && (s.quota == nil || take(s.quota))
}

// unavailable turns a backend failure into an error frame.
func unavailable(err error, msg string) *wire.Error {
	if errors.Is(err, publish.ErrBusy) {
		return wire.Errorf(wire.CodeUnavailable, "the edge has too many messages awaiting storage; resend later with the same cid")
	}
	var se *nreq.ServiceError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
		return wire.Errorf(wire.CodeInternal, "%s: %s", msg, se.Description)
	}
	// ErrUnavailable, deadlines, a closed hub or publisher, anything else:
	// the client may retry.
	return wire.Errorf(wire.CodeUnavailable, "%s", msg)
}
