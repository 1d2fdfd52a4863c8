package fanout

import (
	"context"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// flushLocked is how many buffered live messages are handed over while
// holding the room lock when a member goes live; a longer buffer is sent
// paced, outside the lock, first.
const flushLocked = 64

// catchUp brings one joining member from its starting point to the room's
// live position: history frames first (the newest page, or everything
// after since, page by page), then the live messages buffered meanwhile.
type catchUp struct {
	h    *Hub
	r    *room
	m    *Member
	last uint64 // end of the member's view: the last id sent to it
	live bool   // message frames were sent: later catch-up items go as message frames too
	sent int    // frames sent so far
}

func (c *catchUp) run(ctx context.Context, since *uint64) error {
	more, err := c.first(ctx, since)
	for {
		if err != nil {
			// Neither history nor the stream answered: the join fails
			// and the member is removed.
			return err
		}
		if more {
			more, _, err = c.next(ctx)
			continue
		}
		done, behind, ferr := c.flush(ctx)
		switch {
		case ferr != nil:
			return ferr
		case done:
			return nil
		case behind:
			more, err = c.reachBuffer(ctx)
		}
	}
}

// reachBuffer sends the next page when the member's view ends before what
// the live buffer covers. When history has nothing newer to give, the
// member goes live with a hole (the last resort): its view jumps to the
// buffer's start, and its client sees the prev mismatch and re-joins with
// since.
func (c *catchUp) reachBuffer(ctx context.Context) (more bool, err error) {
	more, progressed, err := c.next(ctx)
	if err == nil && !progressed {
		c.r.mu.Lock()
		c.h.log.Warn("history cannot reach the room's live position; joining with a hole", "room", c.r.name, "have", c.last, "want", c.m.bufFrom)
		c.last = max(c.last, c.m.bufFrom)
		c.r.mu.Unlock()
	}
	return more, err
}

// first sends the first history frame(s): the newest page, or the first
// page after since. more reports that history has further pages.
func (c *catchUp) first(ctx context.Context, since *uint64) (more bool, err error) {
	if since == nil {
		p, err := c.recent(ctx)
		if err != nil {
			return false, err
		}
		return false, c.sendHistory(ctx, histPage{items: p.Items, last: p.Last, hasMore: p.HasMore, splitMore: p.HasMore, recovered: true})
	}
	c.r.mu.Lock()
	newest := c.m.bufFrom // the room's newest id when the join began
	c.r.mu.Unlock()
	if *since > newest {
		// A cursor beyond anything this room holds (another room's, or
		// another deployment's): following it would drop every live
		// message up to it. Reset the member's view to the newest page.
		p, err := c.recent(ctx)
		if err != nil {
			return false, err
		}
		return false, c.sendHistory(ctx, histPage{items: p.Items, last: p.Last, hasMore: p.HasMore, splitMore: p.HasMore})
	}
	c.last = *since
	p, err := c.since(ctx, *since)
	if err != nil {
		return false, err
	}
	if !p.Recovered {
		// since is older than what history keeps: the newest page
		// instead, and the member resets its view.
		c.last = 0
		return false, c.sendHistory(ctx, histPage{items: p.Items, last: p.Last, hasMore: p.HasMore, splitMore: p.HasMore})
	}
	items := roomlog.Unseen(p.Items, c.last, roomlog.MessageID)
	return p.HasMore && len(items) > 0, c.sendHistory(ctx, histPage{items: items, last: p.Last, hasMore: p.HasMore, splitMore: true, recovered: true})
}

// recent is the room's newest page (the room log decides where from:
// pages.Log.Recent).
func (c *catchUp) recent(ctx context.Context) (wire.Page, error) {
	return c.h.be.Recent(ctx, wire.RecentRequest{Room: c.r.name, Limit: c.h.cfg.JoinPage})
}

// since is the page after id (pages.Log.Since).
func (c *catchUp) since(ctx context.Context, id uint64) (wire.Page, error) {
	return c.h.be.Since(ctx, wire.SinceRequest{Room: c.r.name, After: id, Limit: c.h.cfg.PageSize})
}

// next sends the next page after the member's view.
func (c *catchUp) next(ctx context.Context) (more, progressed bool, err error) {
	if err := c.pace(ctx); err != nil {
		return false, false, err
	}
	p, err := c.since(ctx, c.last)
	if err != nil {
		return false, false, err
	}
	items := roomlog.Unseen(p.Items, c.last, roomlog.MessageID)
	if !p.Recovered || len(items) == 0 {
		return false, false, nil
	}
	if err := c.sendHistory(ctx, histPage{items: items, last: p.Last, hasMore: p.HasMore, splitMore: true, recovered: true}); err != nil {
		return false, false, err
	}
	return p.HasMore, true, nil
}

// flush hands the buffered live messages to the member. With few of them
// it makes the member live (done). With many, it sends them paced outside
// the room lock and returns to be called again. behind means the member's
// view ends before what the buffer covers: fetch from history first.
func (c *catchUp) flush(ctx context.Context) (done, behind bool, err error) {
	r, m := c.r, c.m
	r.mu.Lock()
	if m.left {
		r.mu.Unlock()
		return false, false, ErrClosed
	}
	pending, ok := roomlog.Handover(c.last, m.bufFrom, m.buf, frameID)
	if !ok {
		r.mu.Unlock()
		return false, true, nil
	}
	if len(pending) <= flushLocked {
		c.goLiveLocked(pending)
		r.mu.Unlock()
		return true, false, nil
	}
	m.buf = nil
	m.bufFrom = pending[len(pending)-1].ID
	r.mu.Unlock()
	return false, false, c.sendBuffered(ctx, pending)
}

// goLiveLocked hands the last few buffered messages to the member and
// makes it an active member of the room, under the room lock, so that no
// live message falls between the two.
func (c *catchUp) goLiveLocked(pending []*frame.Frame) {
	r, m := c.r, c.m
	delete(r.joining, m)
	for _, f := range pending {
		m.sink.Send(f)
	}
	c.h.obs.Delivered(wire.TypeMessage, len(pending))
	if n := len(pending); n > 0 {
		c.last = pending[n-1].ID
	}
	m.last = c.last
	m.buf = nil
	m.joining = false
	m.idx = len(r.active)
	r.active = append(r.active, m)
}

// sendBuffered sends a long run of buffered messages outside the room
// lock, PageSize at a time, each run paced on the sink's backlog; from
// then on the catch-up sends message frames only.
func (c *catchUp) sendBuffered(ctx context.Context, pending []*frame.Frame) error {
	c.live = true
	for len(pending) > 0 {
		n := min(len(pending), c.h.cfg.PageSize)
		if err := c.pace(ctx); err != nil {
			return err
		}
		for _, f := range pending[:n] {
			if err := c.send(ctx, f); err != nil {
				return err
			}
		}
		c.h.obs.Delivered(wire.TypeMessage, n)
		c.last = pending[n-1].ID
		pending = pending[n:]
	}
	return nil
}

// sendHistory sends p's items (ascending, after the member's view): as
// history frames of at most FrameBytes each while the catch-up is in its
// history part, as message frames once live messages went out. The
// member's view then ends at the page's chain cursor (p.last), which a
// folded page's last item need not be.
func (c *catchUp) sendHistory(ctx context.Context, p histPage) error {
	if c.live {
		for _, it := range p.items {
			if err := c.send(ctx, MessageFrame(it)); err != nil {
				return err
			}
		}
		c.h.obs.Delivered(wire.TypeMessage, len(p.items))
	} else {
		frames := c.h.historyFrames(c.r.name, p)
		for _, f := range frames {
			if err := c.send(ctx, f); err != nil {
				return err
			}
		}
		c.h.obs.Delivered(wire.TypeHistory, len(frames))
	}
	c.last = max(c.last, p.last)
	if n := len(p.items); n > 0 {
		c.last = max(c.last, p.items[n-1].ID)
	}
	return nil
}

// frameID is the id of a buffered message frame, for roomlog.Handover.
func frameID(f *frame.Frame) uint64 { return f.ID }
