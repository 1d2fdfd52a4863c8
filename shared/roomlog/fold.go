package roomlog

// Folding: the one rule, shared by history's store and every stream read,
// by which a room's change events (edit, delete, reaction) change the
// message they target. History applies it as it stores each event (Apply
// on the stored target); a page read from the stream (the part above
// history's watermark, or the edge's fallback) applies it to what it read
// (Fold). Both present the same message.

import (
	"slices"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Apply changes target by ev, a change event of target's room whose
// Target is target.ID, and reports whether it did. The rule:
//
//   - an edit by the author of a chat message (KindMessage) that is not
//     deleted replaces its body (and its mentions) and sets Edited to the
//     edit's time;
//   - a delete by the author makes the message a tombstone: Deleted, an
//     empty body, no mentions, reactions or quote left;
//   - a reaction on a message that is not deleted adds (On) or takes back
//     (!On) ev.User in ev.Emoji's entry; an entry left with no user goes;
//     a new emoji beyond wire.MaxReactionKinds distinct ones is ignored;
//     adding a reaction already given, or taking back one not given,
//     changes nothing.
//
// Anything else (another user's edit or delete, an event on a system
// message or a change to a tombstone, a mismatched target) changes
// nothing: the event stays on the chain, but no view folds it.
func Apply(target *wire.Message, ev wire.Message) bool {
	if ev.Target != target.ID || target.Deleted {
		return false
	}
	switch ev.Kind {
	case wire.KindEdit:
		if target.Kind != wire.KindMessage || ev.User != target.User {
			return false
		}
		target.Body, target.Edited = ev.Body, ev.TS
		target.Mentions = slices.Clone(ev.Mentions)
		return true
	case wire.KindDelete:
		if target.Kind != wire.KindMessage || ev.User != target.User {
			return false
		}
		target.Deleted, target.Body = true, ""
		target.Mentions, target.Reactions, target.Reply = nil, nil, nil
		return true
	case wire.KindReaction:
		if ev.On == nil || (target.Kind != wire.KindMessage && target.Kind != wire.KindSystem) {
			return false
		}
		return react(target, ev.Emoji, ev.User, *ev.On)
	}
	return false
}

// react toggles user in emoji's entry of m's reactions.
func react(m *wire.Message, emoji, user string, on bool) bool {
	i := slices.IndexFunc(m.Reactions, func(r wire.Reaction) bool { return r.Emoji == emoji })
	if i < 0 {
		if !on || len(m.Reactions) >= wire.MaxReactionKinds {
			return false
		}
		m.Reactions = append(m.Reactions, wire.Reaction{Emoji: emoji, Count: 1, Users: []string{user}})
		return true
	}
	r := &m.Reactions[i]
	j := slices.Index(r.Users, user)
	switch {
	case on && j < 0:
		r.Users = append(r.Users, user)
	case !on && j >= 0:
		r.Users = slices.Delete(r.Users, j, j+1)
	default:
		return false
	}
	r.Count = len(r.Users)
	if r.Count == 0 {
		m.Reactions = slices.Delete(m.Reactions, i, i+1)
	}
	return true
}

// Fold folds a run of one room's events (ascending ids, as a stream read
// returns them) into the page they show: the messages (KindMessage,
// KindSystem) with every change event of the run that targets one of them
// applied (Apply), and Reply set for a reply whose target is in the run.
// A change whose target is not in the run is dropped from the view (its
// target is older than the run). last is the newest id of the run (0 when
// empty): the page's chain cursor (wire.Page.Last). Messages keep their
// Prev; events is not modified.
func Fold(events []wire.Message) (msgs []wire.Message, last uint64) {
	msgs = make([]wire.Message, 0, len(events))
	at := make(map[uint64]int)
	for _, ev := range events {
		last = max(last, ev.ID)
		if !wire.IsChange(ev.Kind) {
			at[ev.ID] = len(msgs)
			ev.Reactions = slices.Clone(ev.Reactions)
			for i := range ev.Reactions {
				ev.Reactions[i].Users = slices.Clone(ev.Reactions[i].Users)
			}
			msgs = append(msgs, ev)
			continue
		}
		if i, ok := at[ev.Target]; ok {
			Apply(&msgs[i], ev)
		}
	}
	for i := range msgs {
		if j, ok := at[msgs[i].ReplyTo]; ok && msgs[i].ReplyTo != 0 && !msgs[i].Deleted {
			q := QuoteOf(msgs[j])
			msgs[i].Reply = &q
		}
	}
	return msgs, last
}

// QuoteOf is the preview of m a reply to it carries: its id, author and
// the first wire.QuoteLen characters of its body ("…" marks a cut), or
// Deleted with no body for a tombstone.
func QuoteOf(m wire.Message) wire.Quote {
	q := wire.Quote{ID: m.ID, User: m.User, Deleted: m.Deleted}
	if m.Deleted {
		return q
	}
	q.Body = m.Body
	if utf8.RuneCountInString(q.Body) > wire.QuoteLen {
		n := 0
		for i := range q.Body {
			if n == wire.QuoteLen {
				q.Body = q.Body[:i] + "…"
				break
			}
			n++
		}
	}
	return q
}
