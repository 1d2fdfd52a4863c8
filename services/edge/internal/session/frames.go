package session

import (
	"context"

	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// This file holds one method per client frame type (the writes — message,
// edit, delete, react — are in write.go), and JoinRoom, the join of
// transports without inbound frames (SSE), which takes the same path.

func (s *Session) join(ctx context.Context, f wire.ClientFrame) {
	if e := s.joinRoom(ctx, f.Room, f.Since); e != nil {
		s.sendError(e, "", f.Room)
	}
}

// JoinRoom joins room as a join frame does (since: resume after that id),
// for a transport without inbound frames (an SSE stream follows the room
// of its URL): a refusal is returned as a *wire.Error instead of being
// sent as an error frame. On success the connection counts as served.
func (s *Session) JoinRoom(ctx context.Context, room string, since *uint64) error {
	r, err := names.Room(room)
	if err != nil {
		return wire.Errorf(wire.CodeInvalidRoom, "room must match ^[a-z0-9][a-z0-9_-]{0,63}$")
	}
	if e := s.joinRoom(ctx, r, since); e != nil {
		return e
	}
	s.markOpen()
	return nil
}

// joinRoom is every transport's join: the token's rooms, the room cap,
// the join budgets, the hub (history, then live), then presence in the
// background, followed by the roster frame.
func (s *Session) joinRoom(ctx context.Context, room string, since *uint64) *wire.Error {
	if !s.ident.Allows(room) {
		// Refuse the room, keep the connection: the user's other rooms
		// go on.
		return wire.Errorf(wire.CodeForbidden, "the token does not allow this room")
	}
	old, rejoin := s.rooms.get(room)
	if !rejoin && len(s.rooms) >= s.env.Config.MaxRooms {
		return wire.Errorf(wire.CodeTooManyRooms, "a connection may join at most %d rooms", s.env.Config.MaxRooms)
	}
	if !s.allowJoin() {
		return wire.Errorf(wire.CodeRateLimited, "too many joins; slow down")
	}
	if rejoin {
		// Re-join (e.g. with since after the client saw a gap): replace the
		// membership; presence is unchanged.
		old.m.Leave()
		s.rooms.del(room)
	}
	m, err := s.env.Hub.Join(ctx, fanout.JoinRequest{Room: room, User: s.ident.User, Since: since, Sink: s.sink})
	if err != nil {
		s.env.Log.Warn("join failed", "room", room, "request_id", nreq.RequestID(ctx), "err", err)
		if rejoin {
			// The connection is no longer in the room: leave presence too.
			s.dropRoom(old)
		}
		return unavailable(err, "cannot join the room now; try again")
	}
	ms := &membership{room: room, m: m}
	if rejoin {
		// The same presence registration: its id stays.
		ms.conn, ms.typing = old.conn, old.typing
	} else {
		ms.conn = s.presenceID()
	}
	s.rooms.put(ms)
	// Chat does not wait for presence: the member is live already; the
	// presence registration (retried in the background while presence is
	// unavailable) is followed by the roster frame.
	s.env.Presence.Register(s.connEvent(ms), func(ctx context.Context) { s.sendRoster(ctx, room) })
	s.readJoined(room)
	return nil
}

// sendRoster sends the roster frame of room.
func (s *Session) sendRoster(ctx context.Context, room string) {
	r, err := s.env.Presence.Roster(ctx, wire.RosterRequest{Room: room, Limit: s.env.Config.RosterLimit})
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

func (s *Session) publishTyping(room, state string) {
	if err := s.env.Typing.Typing(wire.TypingEvent{Room: room, User: s.ident.User, State: state, Conn: s.id}); err != nil {
		s.env.Log.Warn("typing publish failed", "room", room, "err", err)
	}
}

func (s *Session) history(ctx context.Context, f wire.ClientFrame) {
	// Every read checks the rule join checks (guarantee 10).
	if !s.ident.Allows(f.Room) {
		s.sendError(wire.Errorf(wire.CodeForbidden, "the token does not allow this room"), "", f.Room)
		return
	}
	if _, ok := s.rooms.get(f.Room); !ok {
		s.sendError(wire.Errorf(wire.CodeNotJoined, "join the room before reading its history"), "", f.Room)
		return
	}
	p, err := s.env.Pages.Recent(ctx, wire.RecentRequest{Room: f.Room, Before: f.Before, Limit: f.Limit})
	if err != nil {
		s.sendError(unavailable(err, "history is unavailable"), "", f.Room)
		return
	}
	items := p.Items
	if items == nil {
		items = []wire.Message{}
	}
	// Last: the chain cursor after the page (pages.Log sets it), not
	// necessarily the last item's id.
	s.send(frame.Must(wire.TypeHistory, wire.History{Type: wire.TypeHistory, Room: f.Room, Items: items, HasMore: p.HasMore, Recovered: true, Last: p.Last}, frame.Essential))
}

func (s *Session) leave(f wire.ClientFrame) {
	ms, ok := s.rooms.get(f.Room)
	if !ok {
		s.sendError(wire.Errorf(wire.CodeNotJoined, "not in this room"), "", f.Room)
		return
	}
	ms.m.Leave()
	s.rooms.del(f.Room)
	// The user leaves the room (not a tab closing): an explicit leave,
	// which ends the membership. Sent before dropRoom's plain Unregister,
	// which then finds the leave under way and adds nothing.
	ev := s.connEvent(ms)
	ev.Explicit = true
	s.env.Presence.Unregister(ev)
	s.dropRoom(ms)
}
