package fanout

import (
	"context"
	"errors"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
)

// Backlogged is implemented by sinks that can tell how many bytes wait in
// their outbound queue. A long catch-up sends its next page only once the
// backlog is below Config.PaceBytes, so a healthy reader is never pushed
// past its queue's hard bound; sinks without it are not paced.
type Backlogged interface {
	QueuedBytes() int
}

// ErrStalled is returned by Join when the sink's backlog did not drain
// during a catch-up for Config.StallTimeout.
var ErrStalled = errors.New("fanout: member stopped reading during catch-up")

// send paces (except for the first frame) and hands f to the sink.
func (c *catchUp) send(ctx context.Context, f *frame.Frame) error {
	if c.sent > 0 {
		if err := c.pace(ctx); err != nil {
			return err
		}
	}
	if !c.m.sink.Send(f) {
		return ErrClosed
	}
	c.sent++
	return nil
}

// pace waits until the sink's backlog is below PaceBytes.
func (c *catchUp) pace(ctx context.Context) error {
	b, ok := c.m.sink.(Backlogged)
	if !ok || b.QueuedBytes() < c.h.cfg.PaceBytes {
		return nil
	}
	deadline := time.Now().Add(c.h.cfg.StallTimeout)
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.h.ctx.Done():
			return ErrClosed
		case <-t.C:
		}
		if b.QueuedBytes() < c.h.cfg.PaceBytes {
			return nil
		}
		if time.Now().After(deadline) {
			return ErrStalled
		}
		wait = min(2*wait, 50*time.Millisecond)
		t.Reset(wait)
	}
}
