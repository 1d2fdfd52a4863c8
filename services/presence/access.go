package presence

import (
	"context"
	"fmt"
	"strings"

	"github.com/hubbub-chat/hubbub/shared/microsvc"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// handleAccess answers what a user may do in a room (wire.AccessRequest →
// wire.Access), the edge's check on every join and post path. Three KV
// reads (record, grant, membership); the answer carries the rooms bucket
// revision it was decided on, and every change is announced on
// chat.access.<room>, so edges may cache it until then.
func (s *Service) handleAccess(ctx context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseAccess(req.Data)
	if werr != nil {
		return nil, refuse(werr)
	}
	a, _, _, err := s.access(ctx, r.Room, r.User)
	if err != nil {
		return nil, s.roomFailure("access", err)
	}
	return a, nil
}

// handleRooms lists the private rooms and DMs a user may read
// (wire.RoomsRequest → wire.RoomsReply), for the lobby: the user's grant
// keys ("*.<usertoken>"), each decided again; and the rooms the request
// names that have a record the user may read (titles, topics).
func (s *Service) handleRooms(ctx context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseRooms(req.Data)
	if werr != nil {
		return nil, refuse(werr)
	}
	rooms, err := s.userRooms(ctx, r.User, r.Rooms)
	if err != nil {
		return nil, s.roomFailure("rooms", err)
	}
	return wire.RoomsReply{Rooms: rooms}, nil
}

func (s *Service) userRooms(ctx context.Context, user string, describe []string) ([]wire.RoomFrame, error) {
	lister, err := s.rooms.ListKeysFiltered(ctx, subjects.GrantKey("*", names.UserToken(user)))
	if err != nil {
		return nil, fmt.Errorf("list grants of %s: %w", user, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	_ = lister.Stop() // the lister stopped itself at the end (Stop then errs)
	rooms := []wire.RoomFrame{}
	seen := map[string]bool{}
	add := func(room string, privateOnly bool) error {
		if seen[room] {
			return nil
		}
		seen[room] = true
		a, rec, _, err := s.access(ctx, room, user)
		if err != nil {
			return err
		}
		if rec != nil && (rec.Private || !privateOnly) && a.MayRead {
			rooms = append(rooms, frame(rec, a.Role))
		}
		return nil
	}
	for _, k := range keys {
		room, _, _ := strings.Cut(k, ".")
		if !names.ValidRoom(room) {
			continue // the quota key
		}
		if err := add(room, true); err != nil {
			return nil, err
		}
	}
	for _, room := range describe {
		if err := add(room, false); err != nil {
			return nil, err
		}
	}
	return rooms, nil
}
