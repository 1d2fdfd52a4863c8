package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/microsvc"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Creating rooms and DMs, and their topic (rooms.go has the data model).

// Status codes of refusals (the Nats-Service-Error-Code header), HTTP-like
// as micro's convention is; the body is a wire.ErrorFrame whose code
// (forbidden, not_found, too_many_rooms) the edge maps to its error frame.
const (
	statusForbidden = "403"
	statusNotFound  = "404"
)

// refuse is the envelope of a refusal: 403 for forbidden and
// too_many_rooms, 404 for not_found, 400 for the rest (bad requests).
func refuse(werr *wire.Error) *microsvc.Error {
	switch werr.Code {
	case wire.CodeForbidden, wire.CodeTooManyRooms:
		return wireError(statusForbidden, werr)
	case wire.CodeNotFound:
		return wireError(statusNotFound, werr)
	default:
		return wireError(microsvc.CodeBadRequest, werr)
	}
}

// forbidden is a 403 refusal.
func forbidden(format string, args ...any) error {
	return refuse(wire.Errorf(wire.CodeForbidden, format, args...))
}

// roomFailure answers a failed room request: a refusal as it is, anything
// else (NATS, KV) logged and answered 500 unavailable, to be retried.
func (s *Service) roomFailure(endpoint string, err error) error {
	var me *microsvc.Error
	if errors.As(err, &me) {
		return me
	}
	s.log.Warn("room "+endpoint, "err", err)
	return wireError(microsvc.CodeInternal, wire.Errorf(wire.CodeUnavailable, "presence %s: %v", endpoint, err))
}

// frame describes rec to user, whose role is role.
func frame(rec *wire.RoomRecord, role string) wire.RoomFrame {
	return wire.RoomFrame{Type: wire.TypeRoom, Room: rec.Room, Private: rec.Private, DM: rec.DM, Role: role,
		Owner: rec.Owner, Title: rec.Title, Topic: rec.Topic, Members: rec.Members}
}

// handleCreate creates a room owned by the caller (wire.CreateRoomRequest
// → wire.RoomFrame). Refused: names under wire.DMPrefix, a room that has a
// record of another owner or kind, a public room already in use (members,
// no record: creating it would hand it to one user), and beyond the
// caller's creation limit (too_many_rooms). Creating again what one
// created is answered with the room (a retry).
func (s *Service) handleCreate(ctx context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseCreate(req.Data)
	if werr != nil {
		return nil, refuse(werr)
	}
	f, err := s.create(ctx, r)
	if err != nil {
		return nil, s.roomFailure("create", err)
	}
	return f, nil
}

func (s *Service) create(ctx context.Context, r wire.CreateRoomRequest) (wire.RoomFrame, error) {
	if strings.HasPrefix(r.Room, wire.DMPrefix) {
		return wire.RoomFrame{}, forbidden("room names starting with %q are direct messages", wire.DMPrefix)
	}
	if f, done, err := s.existing(ctx, r); done || err != nil {
		return f, err
	}
	if used, err := s.inUse(ctx, r.Room); err != nil || used {
		if err == nil {
			err = forbidden("room %q exists (public, with members)", r.Room)
		}
		return wire.RoomFrame{}, err
	}
	if err := s.takeQuota(ctx, r.By, 1); err != nil {
		return wire.RoomFrame{}, err
	}
	rec := wire.RoomRecord{Room: r.Room, Private: r.Private, Owner: r.By, Title: r.Title, Topic: r.Topic, Created: nowMilli()}
	b, err := json.Marshal(rec)
	if err != nil {
		return wire.RoomFrame{}, fmt.Errorf("encode room: %w", err)
	}
	rev, err := s.rooms.Create(ctx, subjects.RoomKey(r.Room), b)
	if err != nil {
		if qerr := s.takeQuota(ctx, r.By, -1); qerr != nil {
			s.log.Warn("give back a room creation", "user", r.By, "err", qerr)
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			f, _, err := s.existing(ctx, r) // a concurrent create won
			return f, err
		}
		return wire.RoomFrame{}, fmt.Errorf("create room %s: %w", r.Room, err)
	}
	// The owner's grant: its role is the record's Owner; the grant lists
	// the room among the owner's (RoomsRequest).
	if _, _, err := s.changeGrant(ctx, r.Room, r.By, func(g *wire.RoomGrant) (bool, error) {
		g.Role, g.Invited, g.Action, g.By, g.At = wire.RoleOwner, true, wire.ActionCreate, r.By, nowMilli()
		return true, nil
	}); err != nil {
		return wire.RoomFrame{}, err
	}
	s.publishAccess(wire.AccessEvent{Room: r.Room, User: r.By, Action: wire.ActionCreate, By: r.By, Rev: rev})
	return frame(&rec, wire.RoleOwner), nil
}

// existing answers a create of a room that has a record: the room when
// the caller owns it and it is of the kind asked for, forbidden otherwise;
// done is false when there is no record.
func (s *Service) existing(ctx context.Context, r wire.CreateRoomRequest) (wire.RoomFrame, bool, error) {
	rec, _, err := s.record(ctx, r.Room)
	switch {
	case err != nil:
		return wire.RoomFrame{}, true, err
	case rec == nil:
		return wire.RoomFrame{}, false, nil
	case rec.Owner != r.By || rec.Private != r.Private || rec.DM:
		return wire.RoomFrame{}, true, forbidden("room %q exists", r.Room)
	}
	return frame(rec, wire.RoleOwner), true, nil
}

// inUse reports whether room has members (a public room in use).
func (s *Service) inUse(ctx context.Context, room string) (bool, error) {
	lister, err := s.members.ListKeysFiltered(ctx, subjects.MemberKey(room, "*"))
	if err != nil {
		return false, fmt.Errorf("list members of %s: %w", room, err)
	}
	defer func() { _ = lister.Stop() }()
	for range lister.Keys() {
		return true, nil
	}
	return false, nil
}

// takeQuota adds delta to user's creation counter by compare-and-set,
// refusing (too_many_rooms) to go beyond Config.MaxRoomsPerUser. A
// replica dying between this and the room's Create costs the user one
// creation.
func (s *Service) takeQuota(ctx context.Context, user string, delta int) error {
	key := subjects.QuotaKey(names.UserToken(user))
	for range maxMemberAttempts {
		q := wire.RoomQuota{User: user}
		var rev uint64
		kve, err := s.rooms.Get(ctx, key)
		switch {
		case err == nil:
			if err := json.Unmarshal(kve.Value(), &q); err != nil {
				return fmt.Errorf("quota %s: undecodable %q: %w", key, kve.Value(), err)
			}
			rev = kve.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("get quota %s: %w", key, err)
		}
		if delta > 0 && q.Created+delta > s.cfg.MaxRoomsPerUser {
			return refuse(wire.Errorf(wire.CodeTooManyRooms, "at most %d rooms per user", s.cfg.MaxRoomsPerUser))
		}
		q.Created = max(q.Created+delta, 0)
		b, err := json.Marshal(q)
		if err != nil {
			return fmt.Errorf("encode quota: %w", err)
		}
		if rev == 0 {
			_, err = s.rooms.Create(ctx, key, b)
		} else {
			_, err = s.rooms.Update(ctx, key, b, rev)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue
		default:
			return fmt.Errorf("write quota %s: %w", key, err)
		}
	}
	return fmt.Errorf("quota %s: %w", key, errRoomRace)
}

// handleDM opens the DM of the caller and another user (wire.DMRequest →
// wire.RoomFrame), creating it on first use; both sides get the same
// room (wire.DMRoom). The two grants go first, then the record: a crash
// in between leaves grants without a room, which grant nothing.
func (s *Service) handleDM(ctx context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseDM(req.Data)
	if werr != nil {
		return nil, refuse(werr)
	}
	f, err := s.dm(ctx, r)
	if err != nil {
		return nil, s.roomFailure("dm", err)
	}
	return f, nil
}

func (s *Service) dm(ctx context.Context, r wire.DMRequest) (wire.RoomFrame, error) {
	room := wire.DMRoom(r.By, r.User)
	users := []string{r.By, r.User}
	slices.Sort(users)
	users = slices.Compact(users)
	rec, _, err := s.record(ctx, room)
	if err != nil {
		return wire.RoomFrame{}, err
	}
	if rec == nil {
		for _, u := range users {
			if _, _, err := s.changeGrant(ctx, room, u, func(g *wire.RoomGrant) (bool, error) {
				if g.Invited {
					return false, nil
				}
				g.Role, g.Invited, g.Action, g.By, g.At = wire.RoleMember, true, wire.ActionDM, r.By, nowMilli()
				return true, nil
			}); err != nil {
				return wire.RoomFrame{}, err
			}
		}
		nr := wire.RoomRecord{Room: room, Private: true, DM: true, Created: nowMilli(), Members: users}
		b, err := json.Marshal(nr)
		if err != nil {
			return wire.RoomFrame{}, fmt.Errorf("encode room: %w", err)
		}
		rev, err := s.rooms.Create(ctx, subjects.RoomKey(room), b)
		switch {
		case err == nil:
			rec = &nr
			s.publishAccess(wire.AccessEvent{Room: room, Action: wire.ActionDM, By: r.By, Rev: rev})
		case errors.Is(err, jetstream.ErrKeyExists): // the other side opened it at the same time
			if rec, _, err = s.record(ctx, room); err != nil {
				return wire.RoomFrame{}, err
			}
		default:
			return wire.RoomFrame{}, fmt.Errorf("create dm %s: %w", room, err)
		}
	}
	if rec == nil || !rec.DM || !slices.Equal(rec.Members, users) {
		return wire.RoomFrame{}, fmt.Errorf("dm %s: the record is not this pair's (%v)", room, rec)
	}
	return frame(rec, wire.RoleMember), nil
}

// handleTopic sets a room's topic and/or its title
// (wire.TopicRequest → wire.RoomFrame): owner or moderator, not in a DM,
// only rooms with a record. The change is stored as "alice set the topic:
// …" / "alice renamed the room to …" and announced to the whole room.
func (s *Service) handleTopic(ctx context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseTopic(req.Data)
	if werr != nil {
		return nil, refuse(werr)
	}
	f, err := s.topic(ctx, r)
	if err != nil {
		return nil, s.roomFailure("topic", err)
	}
	return f, nil
}

func (s *Service) topic(ctx context.Context, r wire.TopicRequest) (wire.RoomFrame, error) {
	key := subjects.RoomKey(r.Room)
	for range maxMemberAttempts {
		a, rec, _, err := s.access(ctx, r.Room, r.By)
		switch {
		case err != nil:
			return wire.RoomFrame{}, err
		case rec == nil:
			return wire.RoomFrame{}, refuse(wire.Errorf(wire.CodeNotFound, "room %q has no record (create it first)", r.Room))
		case rec.DM:
			return wire.RoomFrame{}, forbidden("a direct message has no topic")
		case !a.MayModerate:
			return wire.RoomFrame{}, forbidden("only the owner and moderators set the topic")
		}
		kve, err := s.rooms.Get(ctx, key)
		if err != nil {
			return wire.RoomFrame{}, fmt.Errorf("get room %s: %w", r.Room, err)
		}
		nr := *rec
		if r.Topic != nil {
			nr.Topic = *r.Topic
		}
		if r.Title != nil {
			nr.Title = *r.Title
		}
		if nr.Topic == rec.Topic && nr.Title == rec.Title {
			return frame(rec, a.Role), nil
		}
		b, err := json.Marshal(nr)
		if err != nil {
			return wire.RoomFrame{}, fmt.Errorf("encode room: %w", err)
		}
		rev, err := s.rooms.Update(ctx, key, b, kve.Revision())
		switch {
		case err == nil:
			// Published after the write, by its winner only, under the
			// id of the revision written: a retry of a failed publish is
			// stored once; a replica dying here loses the line.
			if nr.Title != rec.Title {
				if err := s.publishAudit(ctx, r.Room, r.By, r.By+" renamed the room to "+nr.Title, auditMsgID(key, rev, "title")); err != nil {
					return wire.RoomFrame{}, err
				}
			}
			if nr.Topic != rec.Topic {
				if err := s.publishAudit(ctx, r.Room, r.By, r.By+" set the topic: "+nr.Topic, auditMsgID(key, rev, wire.ActionTopic)); err != nil {
					return wire.RoomFrame{}, err
				}
			}
			s.publishAccess(wire.AccessEvent{Room: r.Room, Action: wire.ActionTopic, By: r.By, Rev: rev})
			return frame(&nr, a.Role), nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue
		default:
			return wire.RoomFrame{}, fmt.Errorf("write room %s: %w", r.Room, err)
		}
	}
	return wire.RoomFrame{}, fmt.Errorf("room %s: %w", r.Room, errRoomRace)
}
