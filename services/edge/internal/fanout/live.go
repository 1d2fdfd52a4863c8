package fanout

import (
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// live delivers one republished message, decoded by the room log's rule,
// filling a gap before it if its prev is not the last id delivered.
func (r *room) live(m *nats.Msg) {
	seq, prev, ok := liveHeaders(m)
	if !ok {
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
		r.refuse(err, seq, prev, last)
		return
	}
	if prev > last {
		r.fill(last, seq)
	}
	msg.Prev = prev
	r.deliver(MessageFrame(msg))
}

// liveHeaders reads the stream's id of a republished message and that of
// the message before it in the room (JetStream RePublish's headers).
func liveHeaders(m *nats.Msg) (seq, prev uint64, ok bool) {
	seq, err1 := strconv.ParseUint(m.Header.Get(subjects.HeaderSequence), 10, 64)
	prev, err2 := strconv.ParseUint(m.Header.Get(subjects.HeaderLastSequence), 10, 64)
	return seq, prev, err1 == nil && err2 == nil && seq != 0
}

// refuse drops live message seq, which the room log's rule refused (err).
// It is not a message history keeps (guarantee 9: something other than an
// edge published it): it is not delivered either, and when it came right
// after the last message delivered (prev == last) the next message is
// linked across it, as history links it.
func (r *room) refuse(err error, seq, prev, last uint64) {
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
