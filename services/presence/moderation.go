package presence

import (
	"context"
	"fmt"
	"time"

	"github.com/hubbub-chat/hubbub/shared/microsvc"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Invites, roles and moderation: each one compare-and-set of the target's
// grant (rooms.go); its winner then stores the audit message on the room's
// chain ("bob was kicked by alice": user = the actor, Nats-Msg-Id made of
// the revision written, so what is stored always matches the write that
// won, and concurrent moderators acting on one user store one line),
// deletes the target's membership for a kick or a ban (no "left" message:
// the audit message says it) and publishes an access event on
// chat.access.<room>. A retry of a request that failed after its write
// finishes it (moderation.retry).
//
// Rules: only rooms with a record, never a DM; the actor must be the
// owner or a moderator (roles: the owner only), ranked above the target
// (owner > moderator > member), so nobody moderates the owner and
// moderators do not moderate each other; nobody acts on themselves. An
// action that changes nothing (muting the muted) is answered with the
// grant, stores nothing and announces nothing.

// moderation is one action on one user, checked and applied by act.
type moderation struct {
	room, by, user, action string
	// ownerOnly: only the owner may (role changes).
	ownerOnly bool
	// change edits the target's grant; false: nothing to do.
	change func(g *wire.RoomGrant) (bool, error)
	// body is the audit message.
	body string
	// endsMembership: kick and ban delete the membership.
	endsMembership bool
}

// retry reports whether g, which m found nothing to change in, is m's own
// recent write: this request is then a retry of one that failed after the
// write (its publish, its membership delete), and finishes it. The audit
// message goes out again under the same id (the revision written), so it
// is stored once within the stream's duplicate window, which
// memberRepairWindow stays inside.
func (m moderation) retry(g wire.RoomGrant) bool {
	return g.Action == m.action && g.By == m.by && time.Since(time.UnixMilli(g.At)) < memberRepairWindow
}

// act checks m against the actor's and the target's access and applies
// it (see the rules above).
func (s *Service) act(ctx context.Context, m moderation) (wire.RoomGrant, error) {
	if m.by == m.user {
		return wire.RoomGrant{}, forbidden("you cannot %s yourself", m.action)
	}
	actor, rec, _, err := s.access(ctx, m.room, m.by)
	switch {
	case err != nil:
		return wire.RoomGrant{}, err
	case rec == nil:
		return wire.RoomGrant{}, forbidden("room %q has no owner or moderators", m.room)
	case rec.DM:
		return wire.RoomGrant{}, forbidden("nobody moderates a direct message")
	case m.ownerOnly && actor.Role != wire.RoleOwner:
		return wire.RoomGrant{}, forbidden("only the owner may %s", m.action)
	case !actor.MayModerate:
		return wire.RoomGrant{}, forbidden("only the owner and moderators may %s", m.action)
	}
	key := subjects.GrantKey(m.room, names.UserToken(m.user))
	g, changed, err := s.changeGrant(ctx, m.room, m.user, func(g *wire.RoomGrant) (bool, error) {
		if m.user == rec.Owner || rank(g.Role) >= rank(actor.Role) {
			return false, forbidden("%s may not %s %s", actor.Role, m.action, m.user)
		}
		if m.retry(*g) {
			return false, nil // finished below (a kick leaves no state to compare)
		}
		changed, err := m.change(g)
		if changed {
			g.Action, g.By, g.At = m.action, m.by, nowMilli()
		}
		return changed, err
	})
	if err != nil {
		return g, err
	}
	if !changed && !m.retry(g) {
		return g, nil
	}
	if err := s.publishAudit(ctx, m.room, m.by, m.body, auditMsgID(key, g.Rev, m.action)); err != nil {
		return g, err
	}
	if m.endsMembership {
		if err := s.members.Delete(ctx, subjects.MemberKey(m.room, names.UserToken(m.user))); err != nil {
			return g, fmt.Errorf("end membership of %s in %s: %w", m.user, m.room, err)
		}
	}
	s.publishAccess(wire.AccessEvent{Room: m.room, User: m.user, Action: m.action, By: m.by, Rev: g.Rev})
	return g, nil
}

// handleInvite invites a user to a room (wire.RoomUserRequest →
// wire.RoomGrant): owner or moderator; the invited user may then join a
// private room. A banned user must be unbanned first.
func (s *Service) handleInvite(ctx context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseRoomUser(req.Data)
	if werr != nil {
		return nil, refuse(werr)
	}
	g, err := s.act(ctx, moderation{room: r.Room, by: r.By, user: r.User, action: wire.ActionInvite,
		body: r.User + " was invited by " + r.By,
		change: func(g *wire.RoomGrant) (bool, error) {
			if g.Banned {
				return false, forbidden("%s is banned from %s: unban first", r.User, r.Room)
			}
			if g.Invited || g.Role != "" {
				return false, nil
			}
			g.Invited = true
			return true, nil
		}})
	if err != nil {
		return nil, s.roomFailure("invite", err)
	}
	return g, nil
}

// handleRole sets a user's role, moderator or member (wire.RoleRequest →
// wire.RoomGrant): the owner only. Either role lets the user read a
// private room.
func (s *Service) handleRole(ctx context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseRole(req.Data)
	if werr != nil {
		return nil, refuse(werr)
	}
	g, err := s.act(ctx, moderation{room: r.Room, by: r.By, user: r.User, action: wire.ActionRole, ownerOnly: true,
		body: r.User + " was made " + r.Role + " by " + r.By,
		change: func(g *wire.RoomGrant) (bool, error) {
			if g.Banned {
				return false, forbidden("%s is banned from %s: unban first", r.User, r.Room)
			}
			if g.Role == r.Role {
				return false, nil
			}
			g.Role = r.Role
			return true, nil
		}})
	if err != nil {
		return nil, s.roomFailure("role", err)
	}
	return g, nil
}

// handleModerate kicks, bans, unbans, mutes or unmutes a user
// (wire.ModerateRequest → wire.RoomGrant). A kick ends the membership (in
// a private room also the invite and role: rejoining needs a new invite);
// a ban ends it too and keeps the user out until an unban (which does not
// invite again); a mute stops posting, typing and reacting
// (Access.MayWrite).
func (s *Service) handleModerate(ctx context.Context, req *microsvc.Request) (any, error) {
	r, werr := parseModerate(req.Data)
	if werr != nil {
		return nil, refuse(werr)
	}
	m := moderation{room: r.Room, by: r.By, user: r.User, action: r.Action}
	switch r.Action {
	case wire.ActionKick:
		m.body, m.endsMembership = r.User+" was kicked by "+r.By, true
		m.change = func(g *wire.RoomGrant) (bool, error) {
			member, err := s.isMember(ctx, r.Room, r.User)
			if err != nil {
				return false, err
			}
			if !member && !g.Invited && g.Role == "" {
				return false, refuse(wire.Errorf(wire.CodeNotFound, "%s is not a member of %s", r.User, r.Room))
			}
			g.Invited, g.Role = false, ""
			return true, nil
		}
	case wire.ActionBan:
		m.body, m.endsMembership = r.User+" was banned by "+r.By, true
		m.change = func(g *wire.RoomGrant) (bool, error) {
			if g.Banned {
				return false, nil
			}
			g.Banned, g.Invited, g.Role = true, false, ""
			return true, nil
		}
	case wire.ActionUnban:
		m.body = r.User + " was unbanned by " + r.By
		m.change = func(g *wire.RoomGrant) (bool, error) {
			changed := g.Banned
			g.Banned = false
			return changed, nil
		}
	case wire.ActionMute, wire.ActionUnmute:
		on := r.Action == wire.ActionMute
		m.body = r.User + " was " + r.Action + "d by " + r.By
		m.change = func(g *wire.RoomGrant) (bool, error) {
			changed := g.Muted != on
			g.Muted = on
			return changed, nil
		}
	}
	g, err := s.act(ctx, m)
	if err != nil {
		return nil, s.roomFailure(r.Action, err)
	}
	return g, nil
}
