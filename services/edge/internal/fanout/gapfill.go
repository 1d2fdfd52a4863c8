package fanout

import (
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// fill delivers the messages between after and upto (exclusive) from
// history (or the stream while history does not answer). On failure the live message is delivered anyway: clients see
// the prev mismatch and re-join with since.
func (r *room) fill(after, upto uint64) {
	h := r.hub
	n := 0
	for after < upto {
		p, err := h.be.Since(h.ctx, wire.SinceRequest{Room: r.name, After: after, Limit: h.cfg.PageSize})
		if err != nil {
			// History does not answer: read the stream instead.
			p, err = h.be.StreamSince(h.ctx, h.dec, r.name, after, h.cfg.PageSize)
		}
		if err != nil {
			h.log.Warn("gap fill failed", "room", r.name, "after", after, "upto", upto, "err", err)
			h.obs.Dropped("gap_fill_failed")
			break
		}
		progressed := false
		for _, it := range roomlog.Unseen(p.Items, after, roomlog.MessageID) {
			if it.ID >= upto {
				break
			}
			r.deliver(MessageFrame(it))
			after = it.ID
			progressed = true
			n++
		}
		if !progressed || !p.HasMore {
			break
		}
	}
	if n > 0 {
		h.obs.GapFilled(n)
	}
}
