package presence

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/presence/internal/roster"
	"github.com/hubbub-chat/hubbub/shared/microsvc"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// serve starts the micro service on the kit. Joins and leaves run on
// cfg.Workers lanes, in order per room and user, and are still answered
// while the service stops; roster, counts and typing are answered from
// memory on micro's handler goroutine.
func (s *Service) serve() (*microsvc.Server, error) {
	return microsvc.Start(s.nc, microsvc.Config{
		Name:           subjects.PresenceService,
		Version:        Version,
		Description:    "Hubbub presence: rosters, typing, edge leases, rooms and access",
		QueueGroup:     QueueGroup,
		Workers:        s.cfg.Workers,
		MaxQueued:      joinQueue * s.cfg.Workers,
		RequestTimeout: s.cfg.OpTimeout,
		Drain:          true,
		Envelope:       envelope,
		Observe:        s.observe,
		Log:            s.log,
	}, []microsvc.Endpoint{
		{Name: wire.EventJoin, Subject: subjects.PresenceJoin, Key: connKey, Handle: s.handleConn(wire.EventJoin)},
		{Name: wire.EventLeave, Subject: subjects.PresenceLeave, Key: connKey, Handle: s.handleConn(wire.EventLeave)},
		{Name: "roster", Subject: subjects.PresenceRoster, Inline: true, Handle: s.handleRoster},
		{Name: "counts", Subject: subjects.PresenceCounts, Inline: true, Handle: s.handleCounts},
		{Name: "typing", Subject: subjects.PresenceTyping, Inline: true, Handle: s.handleTyping},
		{Name: "access", Subject: subjects.PresenceAccess, Handle: s.handleAccess},
		{Name: "rooms", Subject: subjects.PresenceRooms, Handle: s.handleRooms},
		{Name: "room_create", Subject: subjects.PresenceRoomCreate, Handle: s.handleCreate},
		{Name: "room_dm", Subject: subjects.PresenceRoomDM, Handle: s.handleDM},
		{Name: "room_invite", Subject: subjects.PresenceRoomInvite, Handle: s.handleInvite},
		{Name: "room_role", Subject: subjects.PresenceRoomRole, Handle: s.handleRole},
		{Name: "room_moderate", Subject: subjects.PresenceRoomModerate, Handle: s.handleModerate},
		{Name: "room_topic", Subject: subjects.PresenceRoomTopic, Handle: s.handleTopic},
	})
}

// stopServing stops the endpoints and the typing subscription. Queued
// join/leave requests are still answered, within OpTimeout.
func (s *Service) stopServing(srv *microsvc.Server, typingSub *nats.Subscription) {
	sctx, scancel := context.WithTimeout(context.Background(), s.cfg.OpTimeout)
	if err := srv.Stop(sctx); err != nil {
		s.log.Warn("stop serving", "err", err)
	}
	scancel()
	s.drainTyping(typingSub)
}

// joinQueue is how many join/leave requests per worker may wait.
const joinQueue = 64

// connKey decodes a join or leave request (a 400 at once when it is bad)
// and keys it by room and user, so their requests stay in order.
func connKey(req *microsvc.Request) (string, error) {
	ev, werr := parseConnEvent(req.Data)
	if werr != nil {
		return "", wireError(microsvc.CodeBadRequest, werr)
	}
	req.Value = ev
	return ev.Room + "\x00" + ev.User, nil
}

// handleConn performs a join or leave (decoded by connKey) on the members
// bucket (members.go: a first join, an explicit leave) and the roster, and
// answers the room's online count once the view has the change. Membership
// goes first: when it fails the request fails before the roster changed,
// and the edge's retry is still a new session for memberJoin's repair.
func (s *Service) handleConn(event string) microsvc.Handler {
	return func(ctx context.Context, req *microsvc.Request) (any, error) {
		ev, _ := req.Value.(wire.ConnEvent)
		var rev uint64
		var err error
		if event == wire.EventJoin {
			// A join overtaken by its connection's leave (see roster.Entry's
			// gone markers) is refused before it touches the membership:
			// an explicit leave must not be undone by its late join.
			if s.store.Gone(ev.Room, ev.User, ev.Conn) {
				return nil, goneError(ev)
			}
			if err = s.memberJoin(ctx, ev.Room, ev.User); err == nil {
				rev, err = s.store.Join(ctx, ev.Room, ev.User, ev.Conn, ev.Edge)
			}
		} else {
			if ev.Explicit {
				err = s.memberLeave(ctx, ev.Room, ev.User)
			}
			if err == nil {
				rev, err = s.store.Leave(ctx, ev.Room, ev.User, ev.Conn)
			}
		}
		if errors.Is(err, roster.ErrGone) {
			return nil, goneError(ev)
		}
		if me := (*microsvc.Error)(nil); errors.As(err, &me) {
			return nil, me // a refusal: a first join of a room the user may not read
		}
		if err != nil {
			s.log.Warn("presence "+event, "room", ev.Room, "err", err)
			return nil, wireError(microsvc.CodeInternal, wire.Errorf(wire.CodeUnavailable, "presence %s: %v", event, err))
		}
		s.view.WaitRev(ctx, rev)
		return wire.ConnReply{Online: s.view.Online(ev.Room)}, nil
	}
}

// codeGone is the status of a join refused because its connection's leave
// already arrived: final, like every 4xx (the edge does not retry it).
const codeGone = "410"

// goneError refuses the join ev of a connection that already left.
func goneError(ev wire.ConnEvent) *microsvc.Error {
	return wireError(codeGone, wire.Errorf(wire.CodeNotJoined, "connection %s already left room %s", ev.Conn, ev.Room))
}

// handleRoster answers a page of a room's roster from the view.
func (s *Service) handleRoster(_ context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseRosterRequest(req.Data)
	if werr != nil {
		return nil, wireError(microsvc.CodeBadRequest, werr)
	}
	users, online, next := s.view.Page(r.Room, r.After, r.Limit)
	return wire.RosterReply{Room: r.Room, Users: users, Online: online, Next: next}, nil
}

// handleCounts answers online counts of several rooms from the view.
func (s *Service) handleCounts(_ context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseCountsRequest(req.Data)
	if werr != nil {
		return nil, wireError(microsvc.CodeBadRequest, werr)
	}
	return wire.CountsReply{Counts: s.view.Counts(r.Rooms)}, nil
}

// handleTyping lists the users typing in a room.
func (s *Service) handleTyping(_ context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseTypingRequest(req.Data)
	if werr != nil {
		return nil, wireError(microsvc.CodeBadRequest, werr)
	}
	return wire.TypingStateReply{Room: r.Room, Users: s.typing.Typists(r.Room)}, nil
}

// wireError is presence's error envelope: status is the micro code
// ("400", "500", "503"), the description "<wire code>: <message>", and
// the body a wire.ErrorFrame.
func wireError(status string, werr *wire.Error) *microsvc.Error {
	body, err := json.Marshal(werr.Frame("", ""))
	if err != nil {
		body = nil
	}
	return &microsvc.Error{Code: status, Description: werr.Error(), Body: body, Err: werr}
}

// envelope gives the kit's refusals presence's envelope.
func envelope(err error) *microsvc.Error {
	switch {
	case errors.Is(err, microsvc.ErrShuttingDown):
		return wireError(microsvc.CodeUnavailable, wire.Errorf(wire.CodeUnavailable, "presence is shutting down"))
	case errors.Is(err, microsvc.ErrOverloaded), errors.Is(err, microsvc.ErrExpired):
		return wireError(microsvc.CodeUnavailable, wire.Errorf(wire.CodeUnavailable, "presence is overloaded"))
	default:
		return wireError(microsvc.CodeInternal, wire.Errorf(wire.CodeInternal, "presence: internal error"))
	}
}

// observe counts the requests answered with an error, by endpoint and
// wire code.
func (s *Service) observe(o microsvc.Outcome) {
	var werr *wire.Error
	if o.Reply != nil && errors.As(o.Reply, &werr) {
		s.metrics.requestErrors.WithLabelValues(o.Endpoint, werr.Code).Inc()
	}
}
