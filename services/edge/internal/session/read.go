package session

import (
	"context"

	"github.com/hubbub-chat/hubbub/services/edge/internal/readstate"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Reads keeps users' read marks and pushes their unread frames
// (readstate.Service implements it).
type Reads interface {
	// Mark moves the user's mark in room forward to id (never back).
	Mark(ctx context.Context, user, room string, id uint64) (bool, error)
	// Joined queues the unread frame that follows a join of room, to
	// sink; it never waits.
	Joined(user, room string, sink readstate.Sink)
}

// read answers a read frame: the rules of a history frame (the token's
// room rule, a joined room), then the mark. There is no ack; the unread
// frame that follows reaches all of the user's connections.
func (s *Session) read(ctx context.Context, f wire.ClientFrame) {
	if !s.ident.Allows(f.Room) {
		s.sendError(wire.Errorf(wire.CodeForbidden, "the token does not allow this room"), "", f.Room)
		return
	}
	if _, ok := s.rooms.get(f.Room); !ok {
		s.sendError(wire.Errorf(wire.CodeNotJoined, "join the room before marking it read"), "", f.Room)
		return
	}
	if s.env.Reads == nil {
		return
	}
	if _, err := s.env.Reads.Mark(ctx, s.ident.User, f.Room, f.ID); err != nil {
		s.env.Log.Warn("read mark failed", "room", f.Room, "err", err)
		s.sendError(unavailable(err, "read mark not stored; send it again"), "", f.Room)
	}
}

// readJoined is the join path's hook (joinRoom, once the history page is
// on its way): the room's unread follows, for this connection.
func (s *Session) readJoined(room string) {
	if s.env.Reads != nil {
		s.env.Reads.Joined(s.ident.User, room, s.sink)
	}
}
