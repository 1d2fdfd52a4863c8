package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// room is a hosted room. Events from its subscriptions queue in inbox and
// are processed in order by a worker goroutine that exists only while the
// inbox is non-empty.
type room struct {
	hub   *Hub
	name  string
	ready chan struct{} // closed once start returned
	err   error         // start's error, read after ready
	refs  int           // members and pending joins; guarded by hub.mu

	mu      sync.Mutex
	subs    []*nats.Subscription
	started bool   // lastID is known; the worker may run
	lastID  uint64 // id of the last message delivered to the room
	active  []*Member
	joining map[*Member]struct{}
	inbox   []*nats.Msg
	working bool
	// skipped maps the ids of live messages not delivered (they break
	// the message rule, so history does not keep them either) that came
	// right after a delivered one to the id delivered before them, so the
	// next message is linked as history links it. Worker only.
	skipped map[uint64]uint64
}

// maxSkipped bounds room.skipped.
const maxSkipped = 64

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

// push queues a message from one of the room's subscriptions.
func (r *room) push(m *nats.Msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ours := false
	for _, s := range r.subs {
		if s == m.Sub {
			ours = true
			break
		}
	}
	if !ours {
		return // from a previous incarnation of the room
	}
	if len(r.inbox) >= r.hub.cfg.RoomBacklog {
		r.hub.obs.Dropped("room_backlog")
		return
	}
	r.inbox = append(r.inbox, m)
	r.kickLocked()
}

func (r *room) kickLocked() {
	if r.started && !r.working && len(r.inbox) > 0 {
		r.working = true
		go r.work()
	}
}

func (r *room) work() {
	var batch []*nats.Msg
	for {
		r.mu.Lock()
		if len(r.inbox) == 0 {
			r.working = false
			r.mu.Unlock()
			return
		}
		batch, r.inbox = r.inbox, batch[:0]
		r.mu.Unlock()
		for i, m := range batch {
			r.handle(m)
			batch[i] = nil
		}
	}
}

func (r *room) handle(m *nats.Msg) {
	switch kindOf(m.Subject) {
	case wire.TypeMessage:
		r.live(m)
	case wire.TypeTyping:
		var ev wire.TypingEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil || (ev.State != wire.TypingOn && ev.State != wire.TypingOff) {
			r.hub.obs.Dropped("bad_typing")
			return
		}
		f := frame.Must(wire.TypeTyping, wire.Typing{Type: wire.TypeTyping, Room: r.name, User: ev.User, State: ev.State}, frame.Sheddable)
		r.broadcast(f, ev.User)
	case wire.TypePresence:
		var ev wire.PresenceEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			r.hub.obs.Dropped("bad_presence")
			return
		}
		f := frame.Must(wire.TypePresence, wire.Presence{Type: wire.TypePresence, Room: r.name, Event: ev.Event, User: ev.User, Online: ev.Online}, frame.Sheddable)
		r.broadcast(f, "")
	}
}

// live delivers one republished message, decoded by the room log's rule,
// filling a gap before it if its prev is not the last id delivered.
func (r *room) live(m *nats.Msg) {
	seq, err1 := strconv.ParseUint(m.Header.Get(subjects.HeaderSequence), 10, 64)
	prev, err2 := strconv.ParseUint(m.Header.Get(subjects.HeaderLastSequence), 10, 64)
	if err1 != nil || err2 != nil || seq == 0 {
		r.hub.obs.Dropped("bad_live_headers")
		return
	}
	r.mu.Lock()
	last := r.lastID
	r.mu.Unlock()
	if seq <= last {
		return // already delivered (by a fill, or before the room was hosted)
	}
	if stands, ok := r.skipped[prev]; ok && stands == last {
		prev = last // what came between was skipped, as history skips it
	}
	stored, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	msg, err := r.hub.dec.DecodeIn(r.name, seq, m.Data, stored)
	if err != nil {
		// Not a message history keeps (guarantee 9: something other
		// than an edge published it): do not deliver it either, and
		// link the next message across it, as history does.
		if errors.Is(err, roomlog.ErrInvalid) {
			r.hub.obs.Dropped("invalid_live_message")
		} else {
			r.hub.obs.Dropped("bad_live_payload")
		}
		if prev == last {
			if r.skipped == nil || len(r.skipped) >= maxSkipped {
				r.skipped = make(map[uint64]uint64)
			}
			r.skipped[seq] = last
		}
		return
	}
	if prev > last {
		r.fill(last, seq)
	}
	msg.Prev = prev
	r.deliver(MessageFrame(msg))
}

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

// deliver hands a message frame to every member that has not seen it and
// buffers it for members still joining.
func (r *room) deliver(f *frame.Frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.ID <= r.lastID {
		return
	}
	r.lastID = f.ID
	n := 0
	for _, m := range r.active {
		if m.last < f.ID {
			m.last = f.ID
			m.sink.Send(f)
			n++
		}
	}
	for m := range r.joining {
		if len(m.buf) >= r.hub.cfg.JoinBuffer {
			// Catching up for long: drop the buffer, the member fetches
			// these messages from history instead.
			clear(m.buf)
			m.buf = m.buf[:0]
			m.bufFrom = f.ID
			continue
		}
		m.buf = append(m.buf, f)
	}
	r.hub.obs.Delivered(wire.TypeMessage, n)
}

// broadcast sends a typing or presence frame to active members, except
// the connections of user skip.
func (r *room) broadcast(f *frame.Frame, skip string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.active {
		if skip != "" && m.user == skip {
			continue
		}
		m.sink.Send(f)
		n++
	}
	r.hub.obs.Delivered(f.Type, n)
}

// MessageFrame encodes a stored message as a "message" frame.
func MessageFrame(msg wire.Message) *frame.Frame {
	f := frame.Must(wire.TypeMessage, wire.MessageFrame{Type: wire.TypeMessage, Room: msg.Room, Message: msg}, frame.Essential)
	f.ID = msg.ID
	return f
}
