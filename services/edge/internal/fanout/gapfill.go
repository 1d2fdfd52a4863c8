package fanout

import (
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// fill delivers the messages between after and upto (exclusive) from
// history (or the stream while history does not answer). On failure the
// live message is delivered anyway: clients see the prev mismatch and
// re-join with since.
func (r *room) fill(after, upto uint64) {
	h := r.hub
	n := 0
	for after < upto {
		p, err := r.fillPage(after)
		if err != nil {
			h.log.Warn("gap fill failed", "room", r.name, "after", after, "upto", upto, "err", err)
			h.obs.Dropped("gap_fill_failed")
			break
		}
		last, k := r.deliverBefore(p.Items, after, upto)
		n += k
		if k == 0 || !p.HasMore {
			break
		}
		after = last
	}
	if n > 0 {
		h.obs.GapFilled(n)
	}
}

// fillPage reads the page after after (pages.Log.Since: history's, or the
// stream's while history does not answer).
func (r *room) fillPage(after uint64) (wire.Page, error) {
	h := r.hub
	return h.be.Since(h.ctx, wire.SinceRequest{Room: r.name, After: after, Limit: h.cfg.PageSize})
}

// deliverBefore delivers the items of a page above after and below upto,
// in order, and returns the last id delivered and how many were.
func (r *room) deliverBefore(items []wire.Message, after, upto uint64) (last uint64, n int) {
	last = after
	for _, it := range roomlog.Unseen(items, after, roomlog.MessageID) {
		if it.ID >= upto {
			break
		}
		r.deliver(MessageFrame(it))
		last = it.ID
		n++
	}
	return last, n
}
