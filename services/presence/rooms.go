package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Rooms, roles and moderation (DESIGN §3a, issue 14): the data model.
//
// Everything that decides access lives in one KV bucket,
// subjects.BucketRooms, replicated like the others and changed only by
// presence (these endpoints), always by compare-and-set on the entry's
// revision, so any number of replicas agree:
//
//   - "<room>": the room's record (wire.RoomRecord: private, dm, owner,
//     title, topic, created; a DM's two members). Created once (kv.Create)
//     by a create or dm request. A public room that was only joined has
//     none and behaves as before: open to anyone, first join makes a
//     member. Names under wire.DMPrefix are reserved: without a record
//     such a room is closed to all.
//   - "<room>.<usertoken>": the user's grant in the room (wire.RoomGrant:
//     role, invited, banned, muted, the last action and who did it).
//   - "_quota.<usertoken>": how many rooms the user created (the creation
//     limit, Config.MaxRoomsPerUser).
//
// Why a bucket of its own and not more fields in the members bucket: a
// membership (hubbub_members) begins at a first join and ends at a leave,
// a kick or a ban, while a grant must outlive it — a ban must stop the
// rejoin, a mute must survive leaving and rejoining, an invite exists
// before the first join, a role survives a reload of membership. Keeping
// the decision's inputs in one bucket also gives one revision space, so
// wire.Access.Rev (the newest of the record's and the grant's revisions)
// orders decisions and access events. Membership stays what it was (the
// conversation's "joined"/"left"); the decision reports it (Access.Member)
// but, in a private room, grants read access only through the grant, so a
// kick whose membership delete was lost cannot leave access behind.
//
// The user's rooms (the lobby's private rooms and DMs) are the grant keys
// "*.<usertoken>": ListKeysFiltered on that one wildcard; a DM writes a
// grant for both users for that reason.

// errRoomRace is returned when a compare-and-set kept losing to concurrent
// writers of the same entry.
var errRoomRace = errors.New("room entry changed concurrently too often")

// record reads room's record: nil (and revision 0) when it has none.
func (s *Service) record(ctx context.Context, room string) (*wire.RoomRecord, uint64, error) {
	kve, err := s.rooms.Get(ctx, subjects.RoomKey(room))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return nil, 0, nil
	case err != nil:
		return nil, 0, fmt.Errorf("get room %s: %w", room, err)
	}
	var rec wire.RoomRecord
	if err := json.Unmarshal(kve.Value(), &rec); err != nil || rec.Room != room {
		return nil, 0, fmt.Errorf("room %s: undecodable record %q: %v", room, kve.Value(), err)
	}
	return &rec, kve.Revision(), nil
}

// grant reads user's grant in room: the zero grant (revision 0) when there
// is none.
func (s *Service) grant(ctx context.Context, room, user string) (wire.RoomGrant, uint64, error) {
	key := subjects.GrantKey(room, names.UserToken(user))
	g := wire.RoomGrant{Room: room, User: user}
	kve, err := s.rooms.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return g, 0, nil
	case err != nil:
		return g, 0, fmt.Errorf("get grant %s: %w", key, err)
	}
	if err := json.Unmarshal(kve.Value(), &g); err != nil || g.User != user || g.Room != room {
		return wire.RoomGrant{Room: room, User: user}, 0, fmt.Errorf("grant %s: undecodable %q: %v", key, kve.Value(), err)
	}
	g.Rev = kve.Revision()
	return g, kve.Revision(), nil
}

// isMember reports whether user is a member of room (members bucket).
func (s *Service) isMember(ctx context.Context, room, user string) (bool, error) {
	key := subjects.MemberKey(room, names.UserToken(user))
	_, err := s.members.Get(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return false, nil
	default:
		return false, fmt.Errorf("get membership %s: %w", key, err)
	}
}

// access decides what user may do in room from the stored record, grant
// and membership: three reads, in parallel (one round trip of latency).
func (s *Service) access(ctx context.Context, room, user string) (wire.Access, *wire.RoomRecord, wire.RoomGrant, error) {
	var (
		rec          *wire.RoomRecord
		g            wire.RoomGrant
		recRev, gRev uint64
		member       bool
		recErr, gErr error
		memberErr    error
		wg           sync.WaitGroup
	)
	wg.Go(func() { rec, recRev, recErr = s.record(ctx, room) })
	wg.Go(func() { g, gRev, gErr = s.grant(ctx, room, user) })
	member, memberErr = s.isMember(ctx, room, user)
	wg.Wait()
	if err := errors.Join(recErr, gErr, memberErr); err != nil {
		return wire.Access{}, nil, g, err
	}
	return decide(room, user, rec, recRev, g, gRev, member), rec, g, nil
}

// decide is the access rule, a pure function of the room's record (nil:
// none), the user's grant and membership:
//   - no record: open (public) unless the name is a DM's; a ban closes it,
//     a mute stops writing;
//   - a DM: its two members read and write, nobody else, moderators
//     included; nobody moderates;
//   - a record: the owner may everything and cannot be banned or muted; a
//     private room is read by the owner and users with a role or an
//     invite; a ban closes the room; a mute stops writing; the owner and
//     moderators moderate.
func decide(room, user string, rec *wire.RoomRecord, recRev uint64, g wire.RoomGrant, gRev uint64, member bool) wire.Access {
	a := wire.Access{Room: room, User: user, Member: member, Rev: max(recRev, gRev)}
	switch {
	case rec == nil:
		decidePublic(&a, g)
	case rec.DM:
		a.Exists, a.Private, a.DM = true, rec.Private, true
		if slices.Contains(rec.Members, user) {
			a.Role, a.Invited, a.MayRead, a.MayWrite = wire.RoleMember, true, true, true
		}
	default:
		decideRecorded(&a, rec, g)
	}
	return a
}

// decidePublic is decide for a room without a record.
func decidePublic(a *wire.Access, g wire.RoomGrant) {
	if strings.HasPrefix(a.Room, wire.DMPrefix) {
		return // a DM not created yet: nobody may use its name
	}
	a.Banned, a.Muted, a.Invited = g.Banned, g.Muted, g.Invited
	if !a.Banned && (a.Member || g.Invited || g.Role != "") {
		a.Role = wire.RoleMember
	}
	a.MayRead = !a.Banned
	a.MayWrite = a.MayRead && !a.Muted
}

// decideRecorded is decide for a room with a record that is not a DM.
func decideRecorded(a *wire.Access, rec *wire.RoomRecord, g wire.RoomGrant) {
	a.Exists, a.Private = true, rec.Private
	a.Banned, a.Muted, a.Invited = g.Banned, g.Muted, g.Invited
	switch {
	case rec.Owner == a.User:
		a.Role, a.Banned, a.Muted = wire.RoleOwner, false, false
	case a.Banned:
	case g.Role == wire.RoleModerator:
		a.Role = wire.RoleModerator
	case g.Role == wire.RoleMember || g.Invited || (a.Member && !rec.Private):
		a.Role = wire.RoleMember
	}
	a.MayRead = !a.Banned && (!rec.Private || a.Role == wire.RoleOwner || g.Role != "" || g.Invited)
	a.MayWrite = a.MayRead && !a.Muted
	a.MayModerate = a.MayRead && (a.Role == wire.RoleOwner || a.Role == wire.RoleModerator)
}

// rank orders roles for moderation: one may act only on users ranked
// below oneself.
func rank(role string) int {
	switch role {
	case wire.RoleOwner:
		return 3
	case wire.RoleModerator:
		return 2
	default:
		return 1
	}
}

// changeGrant changes user's grant in room by compare-and-set: change
// edits a copy of the current grant (its error aborts, unchanged; false
// means nothing to do, and the current grant is returned). A lost race
// decides again on the winner's grant. changed reports whether this call
// wrote it; the returned grant carries its revision.
func (s *Service) changeGrant(ctx context.Context, room, user string, change func(g *wire.RoomGrant) (bool, error)) (g wire.RoomGrant, changed bool, err error) {
	key := subjects.GrantKey(room, names.UserToken(user))
	for range maxMemberAttempts {
		var rev uint64
		g, rev, err = s.grant(ctx, room, user)
		if err != nil {
			return g, false, err
		}
		cur := g
		if changed, err = change(&g); err != nil || !changed {
			return cur, false, err
		}
		g.Rev = 0
		b, err := json.Marshal(g)
		if err != nil {
			return g, false, fmt.Errorf("encode grant: %w", err)
		}
		if rev == 0 {
			rev, err = s.rooms.Create(ctx, key, b)
		} else {
			rev, err = s.rooms.Update(ctx, key, b, rev)
		}
		switch {
		case err == nil:
			g.Rev = rev
			return g, true, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // a concurrent change won: decide again on it
		default:
			return g, false, fmt.Errorf("write grant %s: %w", key, err)
		}
	}
	return wire.RoomGrant{}, false, fmt.Errorf("grant %s: %w", key, errRoomRace)
}

// auditMsgID is the Nats-Msg-Id of a room audit message: the grant (or
// room) key, the revision the change wrote, and the action.
// "mod/" keeps it apart from membership ids ("member/") and user ids.
func auditMsgID(key string, rev uint64, action string) string {
	return "mod/" + key + "/" + strconv.FormatUint(rev, 10) + "/" + action
}

// publishAudit stores an audit system message on room's chain: user is
// who did it (the actor), body says what ("bob was kicked by alice").
func (s *Service) publishAudit(ctx context.Context, room, actor, body, msgID string) error {
	post, err := json.Marshal(wire.Post{Room: room, User: actor, Body: body, Kind: wire.KindSystem, TS: nowMilli()})
	if err != nil {
		return fmt.Errorf("encode audit message: %w", err)
	}
	if _, err := s.js.Publish(ctx, subjects.Room(room), post, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish %q: %w", body, err)
	}
	return nil
}

// publishAccess announces a change of room's access (core NATS; edges drop
// cached decisions and, on kick or ban, end the user's subscriptions).
// Losing it is not fatal: decisions also carry revisions.
func (s *Service) publishAccess(ev wire.AccessEvent) {
	s.metrics.roomChanges.WithLabelValues(ev.Action).Inc()
	b, err := json.Marshal(ev)
	if err == nil {
		err = s.nc.Publish(subjects.Access(ev.Room), b)
	}
	if err != nil {
		s.log.Warn("publish access event", "room", ev.Room, "user", ev.User, "action", ev.Action, "err", err)
	}
}
