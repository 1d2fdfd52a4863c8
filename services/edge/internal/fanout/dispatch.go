package fanout

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Run routes NATS messages to hosted rooms until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-h.ch:
			h.dispatch(m)
		}
	}
}

func (h *Hub) dispatch(m *nats.Msg) {
	name := subjects.RoomFromSubject(m.Subject)
	h.mu.RLock()
	r := h.rooms[name]
	h.mu.RUnlock()
	if r == nil {
		return
	}
	r.push(m)
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

// kindOf tells which subscription a subject belongs to.
func kindOf(subject string) string {
	switch {
	case strings.HasPrefix(subject, subjects.LivePrefix):
		return wire.TypeMessage
	case strings.HasPrefix(subject, subjects.TypingPrefix):
		return wire.TypeTyping
	case strings.HasPrefix(subject, subjects.PresencePrefix):
		return wire.TypePresence
	}
	return ""
}
