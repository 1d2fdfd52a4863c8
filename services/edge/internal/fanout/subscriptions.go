package fanout

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// acquire returns the hosted room, subscribing first if needed.
func (h *Hub) acquire(ctx context.Context, name string) (*room, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	r := h.rooms[name]
	if r != nil {
		r.refs++
		h.mu.Unlock()
		select {
		case <-r.ready:
		case <-ctx.Done():
			h.release(r)
			return nil, fmt.Errorf("join %s: %w", name, ctx.Err())
		}
		if r.err != nil {
			h.release(r)
			return nil, r.err
		}
		return r, nil
	}
	r = &room{hub: h, name: name, ready: make(chan struct{}), refs: 1, joining: make(map[*Member]struct{})}
	h.rooms[name] = r
	h.mu.Unlock()
	r.err = r.start(ctx)
	close(r.ready)
	if r.err != nil {
		h.release(r)
		return nil, r.err
	}
	return r, nil
}

// Rooms is the number of hosted rooms.
func (h *Hub) Rooms() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.rooms)
}

// LastID is the id of the last message delivered in a hosted room (false
// when the room is not hosted here).
func (h *Hub) LastID(room string) (uint64, bool) {
	h.mu.RLock()
	r := h.rooms[room]
	h.mu.RUnlock()
	if r == nil {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastID, r.started
}

// release drops one reference; the last one unsubscribes.
func (h *Hub) release(r *room) {
	h.mu.Lock()
	r.refs--
	last := r.refs == 0
	if last && h.rooms[r.name] == r {
		delete(h.rooms, r.name)
	}
	h.mu.Unlock()
	if last {
		r.unsubscribe()
	}
}

// start subscribes and learns the id of the room's newest stored message,
// in that order, so that no message falls between the two.
func (r *room) start(ctx context.Context) error {
	h := r.hub
	var subs []*nats.Subscription
	fail := func(err error) error {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		return err
	}
	for _, subj := range []string{subjects.Live(r.name), subjects.Typing(r.name), subjects.Presence(r.name)} {
		s, err := h.nc.ChanSubscribe(subj, h.ch)
		if err != nil {
			return fail(fmt.Errorf("subscribe %s: %w", subj, err))
		}
		subs = append(subs, s)
	}
	r.mu.Lock()
	r.subs = subs
	r.mu.Unlock()
	if err := h.be.Flush(ctx); err != nil {
		return fail(fmt.Errorf("subscribe room %s: %w", r.name, err))
	}
	last, err := h.be.LastID(ctx, r.name)
	if err != nil {
		return fail(fmt.Errorf("room %s: %w", r.name, err))
	}
	r.mu.Lock()
	r.lastID = last
	r.started = true
	r.kickLocked()
	r.mu.Unlock()
	return nil
}

func (r *room) unsubscribe() {
	r.mu.Lock()
	subs := r.subs
	r.subs = nil
	r.inbox = nil
	r.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}
