package roomlog

import "github.com/hubbub-chat/hubbub/shared/wire"

// The catch-up merge rule. A member joining a room has a view of it that
// ends at a cursor: the id of the last message it was sent (0: none yet,
// or the view was reset). While the member catches up from history, the
// room buffers for it every live message with an id above from (the
// room's newest id when the buffer began), in ascending order. The member
// is sent history frames first, each holding only what is above its
// cursor (Unseen), and then the buffered live messages above its cursor
// (Handover) — which is gapless only if the cursor has reached from.

// Unseen returns the items of a view that ends at cursor has not been
// sent: those with an id above cursor, each above the one before it (an
// item at or below the id before it, a duplicate, is dropped). items are
// in ascending id order, as pages and live buffers are; then the result
// is a suffix of items, and otherwise a new slice.
func Unseen[T any](items []T, cursor uint64, id func(T) uint64) []T {
	i := 0
	for i < len(items) && id(items[i]) <= cursor {
		i++
	}
	out := items[i:]
	last := cursor
	for j, it := range out {
		if id(it) <= last {
			return ascending(out[:j], out[j:], last, id)
		}
		last = id(it)
	}
	return out
}

// ascending appends to a copy of head the items of tail above the last
// id taken, in order.
func ascending[T any](head, tail []T, last uint64, id func(T) uint64) []T {
	out := append(make([]T, 0, len(head)+len(tail)), head...)
	for _, it := range tail {
		if id(it) > last {
			out = append(out, it)
			last = id(it)
		}
	}
	return out
}

// Handover decides how a member whose view ends at cursor goes live.
// buffered holds every live message of the room with an id above from,
// ascending. When cursor ≥ from, the view and the buffer overlap or
// touch: Handover returns the buffered items to send, Unseen(buffered,
// cursor), and true. When cursor < from, the messages in (cursor, from]
// are in neither the view nor the buffer: it returns nil and false, and
// the member must be sent more history before it can go live.
func Handover[T any](cursor, from uint64, buffered []T, id func(T) uint64) ([]T, bool) {
	if cursor < from {
		return nil, false
	}
	return Unseen(buffered, cursor, id), true
}

// MessageID is the id of m, the id function for Unseen and Handover over
// messages.
func MessageID(m wire.Message) uint64 { return m.ID }
