package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/presence/internal/roster"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Membership is conversation (DESIGN §3a): a user's first join of a room
// and an explicit leave are stored once as system messages on the room's
// chain. A first join needs access (mayJoin, rooms.go): a private room
// needs an invite or a role, a ban keeps the user out. The members bucket (subjects.BucketMembers) holds one key per
// member, created by the first join and deleted by an explicit leave; a
// connection coming or going never touches it.
//
// Once-only rules:
//   - join: kv.Create of the member key; exactly one creator wins, and it
//     publishes "<user> joined" with the Nats-Msg-Id memberMsgID(key, the
//     created revision, join), so its retries are stored once.
//   - leave: read the key (absent: nothing to do), publish "<user> left"
//     with memberMsgID(key, its revision, leave), then delete it on that
//     revision. Publishing first makes a crash or a failed delete safe: the
//     retried leave reads the same revision and publishes the same id.
//     Concurrent leavers publish the same id too, so one message is stored.
//     A rejoin creates a new revision, hence new ids.
//   - repair: a creator that died (or whose publish failed) between Create
//     and publish leaves a member without a "joined" line. A join of a
//     user who is not online in the room (a new session, as the edge's
//     retry of that failed request is: membership goes before the roster)
//     that finds a member key younger than memberRepairWindow publishes
//     its "joined" again under the same id: stored if it was lost, dropped
//     as a duplicate if not.

// memberRepairWindow bounds the repair above. It must stay well inside the
// CHAT stream's duplicate window (provision.DefaultDuplicates, 2 min), or a
// repair could store a second "joined" line.
const memberRepairWindow = 30 * time.Second

// memberMsgID is the Nats-Msg-Id of a membership system message. Its
// second segment, the member key, contains a '.', which a user message
// id's second segment (a user token) never does, so the two cannot
// collide.
func memberMsgID(key string, rev uint64, event string) string {
	return "member/" + key + "/" + strconv.FormatUint(rev, 10) + "/" + event
}

// memberJoin makes user a member of room if they are not one yet, storing
// the one "<user> joined" message (see the rules above). It reads first:
// an existing member (the usual join: a reload, another tab) costs one
// round trip, where a failing Create costs two.
func (s *Service) memberJoin(ctx context.Context, room, user string) error {
	key := subjects.MemberKey(room, names.UserToken(user))
	for range maxMemberAttempts {
		kve, err := s.members.Get(ctx, key)
		switch {
		case err == nil:
			return s.repairJoin(ctx, key, kve, room, user)
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return fmt.Errorf("get membership %s: %w", key, err)
		}
		rec, recRev, err := s.record(ctx, room)
		if err != nil {
			return err
		}
		if err := s.mayJoin(ctx, room, user, rec, recRev); err != nil {
			return err
		}
		m := wire.Membership{Room: room, User: user, Since: time.Now().UnixMilli()}
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode membership: %w", err)
		}
		rev, err := s.members.Create(ctx, key, b)
		switch {
		case err == nil:
			// A ban or kick that raced this join (decided before it,
			// written before the Create) must not leave a member behind.
			if err := s.mayJoin(ctx, room, user, rec, recRev); err != nil {
				if derr := s.members.Delete(ctx, key, jetstream.LastRevision(rev)); derr != nil {
					s.log.Warn("undo a refused first join", "key", key, "err", derr)
				}
				return err
			}
			if err := s.publishMember(ctx, key, rev, m, wire.EventJoin); err != nil {
				return err
			}
			s.metrics.memberJoins.Inc()
			return nil
		case errors.Is(err, jetstream.ErrKeyExists):
			continue // a concurrent first join won: read its membership
		default:
			return fmt.Errorf("create membership %s: %w", key, err)
		}
	}
	return fmt.Errorf("join membership %s: %w", key, errMemberRace)
}

// repairJoin publishes the "joined" message of an existing membership kve
// again, under its creator's id, when the user is not online in the room
// (a new session) and the membership is younger than memberRepairWindow.
func (s *Service) repairJoin(ctx context.Context, key string, kve jetstream.KeyValueEntry, room, user string) error {
	if _, online := s.view.Get(roster.Key(room, user)); online {
		return nil // a member, in session: the usual case
	}
	var m wire.Membership
	if err := json.Unmarshal(kve.Value(), &m); err != nil || m.User != user || m.Room != room {
		s.log.Warn("undecodable membership left as it is", "key", key, "err", err)
		return nil
	}
	if time.Since(time.UnixMilli(m.Since)) >= memberRepairWindow {
		return nil
	}
	return s.publishMember(ctx, key, kve.Revision(), m, wire.EventJoin)
}

// mayJoin refuses (forbidden) a first join of a room the user may not
// read (rooms.go: private without an invite or role, a DM of others, a
// ban).
// rec is the room's record (nil: none) at revision recRev; only the
// user's grant is read, so that a first join costs two extra reads, and
// the check after the Create one.
func (s *Service) mayJoin(ctx context.Context, room, user string, rec *wire.RoomRecord, recRev uint64) error {
	g, gRev, err := s.grant(ctx, room, user)
	if err != nil {
		return err
	}
	a := decide(room, user, rec, recRev, g, gRev, false)
	if !a.MayRead {
		if a.Banned {
			return forbidden("%s is banned from %s", user, room)
		}
		return forbidden("%s may not join %s", user, room)
	}
	return nil
}

// nowMilli is the time now in Unix milliseconds, the unit of stored
// timestamps.
func nowMilli() int64 { return time.Now().UnixMilli() }

// errMemberRace is returned when memberJoin kept losing to concurrent
// explicit leaves and joins.
var errMemberRace = errors.New("membership created and deleted concurrently too often")

// maxMemberAttempts bounds memberJoin's get/create rounds (each lost to a
// concurrent join or explicit leave).
const maxMemberAttempts = 8

// memberLeave ends user's membership of room, if any, storing the one
// "<user> left" message (see the rules above).
func (s *Service) memberLeave(ctx context.Context, room, user string) error {
	key := subjects.MemberKey(room, names.UserToken(user))
	kve, err := s.members.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return nil // not a member: a second leave, or never joined
	case err != nil:
		return fmt.Errorf("get membership %s: %w", key, err)
	}
	m := wire.Membership{Room: room, User: user, Since: time.Now().UnixMilli()}
	if err := s.publishMember(ctx, key, kve.Revision(), m, wire.EventLeave); err != nil {
		return err
	}
	err = s.members.Delete(ctx, key, jetstream.LastRevision(kve.Revision()))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return nil // a concurrent leave deleted it (and published the same id)
	case err != nil:
		return fmt.Errorf("delete membership %s: %w", key, err)
	}
	s.metrics.memberLeaves.Inc()
	return nil
}

// publishMember stores the system message of a membership event: "<user>
// joined" (stamped with the membership's start, so a repair publishes the
// same message) or "<user> left".
func (s *Service) publishMember(ctx context.Context, key string, rev uint64, m wire.Membership, event string) error {
	body := m.User + " joined"
	if event == wire.EventLeave {
		body = m.User + " left"
	}
	post, err := json.Marshal(wire.Post{Room: m.Room, User: m.User, Body: body, Kind: wire.KindSystem, TS: m.Since})
	if err != nil {
		return fmt.Errorf("encode system message: %w", err)
	}
	if _, err := s.js.Publish(ctx, subjects.Room(m.Room), post, jetstream.WithMsgID(memberMsgID(key, rev, event))); err != nil {
		return fmt.Errorf("publish %q: %w", body, err)
	}
	return nil
}
