package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/pages"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// This file is the one path of every write — a message (a reply when it
// names one), an edit, a delete, a reaction — whatever the transport: a
// WebSocket frame (message, change) and an HTTP request (Env.Write) both
// go through write: the token's room rule, the message budgets, the rule
// of the write's kind (its target looked up in the room log), the pending
// bound and the lane.

// message sends a message frame's message.
func (s *Session) message(ctx context.Context, f wire.ClientFrame) {
	ms, ok := s.rooms.get(f.Room)
	if !ok {
		s.sendError(wire.Errorf(wire.CodeNotJoined, "join the room before sending to it"), f.CID, f.Room)
		return
	}
	if s.submit(ctx, f) && ms.typing {
		ms.typing = false
		s.publishTyping(f.Room, wire.TypingOff)
	}
}

// change applies an edit, delete or react frame to a message of a room
// the connection joined.
func (s *Session) change(ctx context.Context, f wire.ClientFrame) {
	if _, ok := s.rooms.get(f.Room); !ok {
		s.sendError(wire.Errorf(wire.CodeNotJoined, "join the room before changing its messages"), f.CID, f.Room)
		return
	}
	s.submit(ctx, f)
}

// submit writes f: the ack (with the event's id) or the refusal (an error
// frame with f's cid) follows when the stream answered; the connection
// stays open either way. It reports whether f went to the stream.
func (s *Session) submit(ctx context.Context, f wire.ClientFrame) bool {
	room, cid := f.Room, f.CID
	// The publish is asynchronous: reading goes on while JetStream stores
	// the event; the ack (or the error) follows when the PubAck arrives.
	e := s.write(ctx, f, func(res publish.PostResult, e *wire.Error) {
		if e != nil {
			s.sendError(e, cid, room)
			return
		}
		s.send(frame.Must(wire.TypeAck, wire.Ack{Type: wire.TypeAck, CID: cid, ID: res.ID}, frame.Essential))
	})
	if e != nil {
		s.sendError(e, cid, room)
		return false
	}
	return true
}

// write is the one path a write takes to the stream, whatever the
// transport: the token's room rule, the connection's and the user's
// message budgets (a change draws on them like a message), the rule of
// f's kind (post), then publish. f is valid (wire.CheckClientFrame) and
// of a write type. done gets the outcome exactly once, on a publisher
// goroutine, unless write refuses f (then it returns why and done is
// never called).
func (s *Session) write(ctx context.Context, f wire.ClientFrame, done func(publish.PostResult, *wire.Error)) *wire.Error {
	if !s.ident.Allows(f.Room) {
		return wire.Errorf(wire.CodeForbidden, "the token does not allow this room")
	}
	if !s.allowMessage() {
		return wire.Errorf(wire.CodeRateLimited, "too many messages; slow down")
	}
	p, e := s.post(ctx, f)
	if e != nil {
		return e
	}
	return s.publish(p, done)
}

// post is the event f publishes, once f's target passed the rule of f's
// kind: a reply's target is a message of the room; an edit's a message of
// the room, not deleted, that the user may edit (mayEdit); a delete's one
// the user may delete (mayDelete); a reaction's a message or system
// message of the room, not deleted, with room for a new emoji (mayReact).
// A message's and an edit's mentions are resolved here, once
// (wire.Mentions).
func (s *Session) post(ctx context.Context, f wire.ClientFrame) (wire.Post, *wire.Error) {
	p := wire.Post{Room: f.Room, User: s.ident.User, CID: f.CID}
	switch f.Type {
	case wire.TypeMessage:
		p.Kind, p.Body, p.Mentions, p.ReplyTo = wire.KindMessage, f.Body, wire.Mentions(f.Body), f.ReplyTo
		if f.ReplyTo != 0 {
			if _, e := s.target(ctx, f.Room, f.ReplyTo); e != nil {
				return p, e
			}
		}
		return p, nil
	case wire.TypeEdit:
		// The mentions of the new body: history folds them into the
		// message's.
		p.Kind, p.Target, p.Body, p.Mentions = wire.KindEdit, f.ID, f.Body, wire.Mentions(f.Body)
		return p, s.check(ctx, f, s.mayEdit)
	case wire.TypeDelete:
		p.Kind, p.Target = wire.KindDelete, f.ID
		return p, s.check(ctx, f, s.mayDelete)
	case wire.TypeReact:
		on := *f.On
		p.Kind, p.Target, p.Emoji, p.On = wire.KindReaction, f.ID, f.Emoji, &on
		return p, s.check(ctx, f, func(t wire.Message) *wire.Error { return mayReact(t, f.Emoji, on) })
	}
	return p, wire.Errorf(wire.CodeUnknownType, "%s frames are not writes", f.Type)
}

// check looks up f's target and applies rule to it.
func (s *Session) check(ctx context.Context, f wire.ClientFrame, rule func(wire.Message) *wire.Error) *wire.Error {
	t, e := s.target(ctx, f.Room, f.ID)
	if e != nil {
		return e
	}
	return rule(t)
}

// target is message id of room as a page shows it (folded), looked up in
// the room log (pages.Log.Message: history, else the stream): not_found
// when id is not a message of room.
func (s *Session) target(ctx context.Context, room string, id uint64) (wire.Message, *wire.Error) {
	m, err := s.env.Pages.Message(ctx, room, id)
	switch {
	case errors.Is(err, pages.ErrNotFound):
		return m, wire.Errorf(wire.CodeNotFound, "%d is not a message of this room", id)
	case err != nil:
		s.env.Log.Warn("message lookup failed", "room", room, "id", id, "request_id", nreq.RequestID(ctx), "err", err)
		return m, unavailable(err, "cannot look the message up now; try again")
	}
	return m, nil
}

// mayEdit is who may edit t: its author, while it is a chat message not
// deleted.
func (s *Session) mayEdit(t wire.Message) *wire.Error {
	switch {
	case t.Deleted:
		return wire.Errorf(wire.CodeNotFound, "message %d was deleted", t.ID)
	case t.Kind != wire.KindMessage:
		return wire.Errorf(wire.CodeForbidden, "a %s message cannot be edited", t.Kind)
	case t.User != s.ident.User:
		return wire.Errorf(wire.CodeForbidden, "only its author may edit a message")
	}
	return nil
}

// mayDelete is who may delete t: its author, and only a chat message. The
// room's moderators (issue 14) are to be allowed here, and only here.
//
// A tombstone may be deleted again: a client resending its delete (the
// ack lost with its connection) must get the original event's id, which
// the stream's de-duplication answers; a second delete with a new cid is
// an event the fold rule ignores.
func (s *Session) mayDelete(t wire.Message) *wire.Error {
	switch {
	case t.Kind != wire.KindMessage:
		return wire.Errorf(wire.CodeForbidden, "a %s message cannot be deleted", t.Kind)
	case t.User != s.ident.User:
		return wire.Errorf(wire.CodeForbidden, "only its author may delete a message")
	}
	return nil
}

// mayReact is whether emoji may be given (on) or taken back on t: t is
// not deleted, and a new emoji needs t to carry fewer than
// wire.MaxReactionKinds. Giving a reaction already given, or taking back
// one not given, is allowed: the fold rule makes it change nothing.
func mayReact(t wire.Message, emoji string, on bool) *wire.Error {
	if t.Deleted {
		return wire.Errorf(wire.CodeNotFound, "message %d was deleted", t.ID)
	}
	known := slices.ContainsFunc(t.Reactions, func(r wire.Reaction) bool { return r.Emoji == emoji })
	if on && !known && len(t.Reactions) >= wire.MaxReactionKinds {
		return wire.Errorf(wire.CodeInvalidEmoji, "a message carries at most %d different emoji", wire.MaxReactionKinds)
	}
	return nil
}

// publish hands p to the stream: the connection's pending bound, then the
// lane, whose publisher bounds the edge's pending messages. done gets the
// outcome exactly once, on a publisher goroutine, unless publish refuses p
// (then it returns why and done is never called).
func (s *Session) publish(p wire.Post, done func(publish.PostResult, *wire.Error)) *wire.Error {
	if int(s.posting.Add(1)) > s.env.Config.MaxPendingPosts {
		s.posting.Add(-1)
		return wire.Errorf(wire.CodeRateLimited, "too many messages awaiting storage; slow down")
	}
	start := time.Now()
	if s.lane == nil {
		s.lane = s.env.Publisher.NewLane()
	}
	room := p.Room
	err := s.lane.Post(p, func(res publish.PostResult, err error) {
		s.posting.Add(-1)
		if err != nil {
			s.env.Log.Warn("publish failed", "room", room, "kind", p.Kind, "err", err)
			done(publish.PostResult{}, unavailable(err, "not stored; resend it with the same cid"))
			return
		}
		s.env.Obs.Published(time.Since(start))
		done(res, nil)
	})
	if err != nil {
		s.posting.Add(-1)
		s.env.Log.Warn("publish refused", "room", room, "kind", p.Kind, "err", err)
		return unavailable(err, "not stored; resend it with the same cid")
	}
	return nil
}

// Write stores one write — f of type message, edit, delete or react — for
// a client that holds no connection (an HTTP request), through the path
// of the same WebSocket frame: the same validation
// (wire.CheckClientFrame), room rule and rule of its kind, the user's
// message budget (shared with the user's connections, whether or not one
// is open) and the bounded publish. It waits for the outcome (bounded by
// the publisher's timeout) or ctx. A refusal or a failed publish is a
// *wire.Error, the error frame a WebSocket client would get.
func (e *Env) Write(ctx context.Context, id auth.Identity, f wire.ClientFrame) (publish.PostResult, error) {
	switch f.Type {
	case wire.TypeMessage, wire.TypeEdit, wire.TypeDelete, wire.TypeReact:
	default:
		return publish.PostResult{}, wire.Errorf(wire.CodeUnknownType, "%q is not a write", f.Type)
	}
	f, perr := wire.CheckClientFrame(f, e.Config.Limits)
	if perr != nil {
		return publish.PostResult{}, perr
	}
	s := &Session{env: e, ident: id}
	if e.Users != nil {
		s.quota = postBudget{e.Users, id.User}
	}
	type outcome struct {
		res publish.PostResult
		err *wire.Error
	}
	out := make(chan outcome, 1)
	if werr := s.write(ctx, f, func(res publish.PostResult, werr *wire.Error) { out <- outcome{res, werr} }); werr != nil {
		return publish.PostResult{}, werr
	}
	select {
	case o := <-out:
		if o.err != nil {
			return publish.PostResult{}, o.err
		}
		return o.res, nil
	case <-ctx.Done():
		return publish.PostResult{}, fmt.Errorf("%s to %s: %w", f.Type, f.Room, ctx.Err())
	}
}

// Post stores one chat message for an HTTP post: Write of a message frame.
func (e *Env) Post(ctx context.Context, id auth.Identity, room, body, cid string) (publish.PostResult, error) {
	return e.Write(ctx, id, wire.ClientFrame{Type: wire.TypeMessage, Room: room, Body: body, CID: cid})
}

// postBudget is the user's budget as a post draws on it: messages only,
// without holding a connection.
type postBudget struct {
	l    *userlimit.Limits
	user string
}

func (b postBudget) AllowMessage() bool { return b.l.AllowMessage(b.user) }
func (postBudget) AllowJoin() bool      { return true }
func (postBudget) AllowTyping() bool    { return true }
