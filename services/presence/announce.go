package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/presence/internal/roster"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// announce publishes a transition: the system message (JetStream, with the
// transition's Nats-Msg-Id so it is stored once whoever retries) and, by the
// announcer whose message was stored (not a duplicate), the roster diff. A
// leave also clears the user's typing state.
func (s *Service) announce(ctx context.Context, t roster.Transition) error {
	body := t.User + " joined"
	if t.Event == wire.EventLeave {
		body = t.User + " left"
	}
	post, err := json.Marshal(wire.Post{Room: t.Room, User: t.User, Body: body, Kind: wire.KindSystem, TS: time.Now().UnixMilli()})
	if err != nil {
		return fmt.Errorf("encode system message: %w", err)
	}
	ack, err := s.js.Publish(ctx, subjects.Room(t.Room), post, jetstream.WithMsgID(t.MsgID()))
	if err != nil {
		return fmt.Errorf("publish system message: %w", err)
	}
	if ack.Duplicate {
		// Someone already announced this transition (a sweeper retrying a
		// slow announcement, or a replica taking over a stuck one): the
		// one whose message was stored publishes the diff, so clients see
		// it once.
		if t.Event == wire.EventLeave {
			s.clearTyping(ctx, t)
		}
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	s.view.WaitRev(wctx, t.Rev)
	cancel()
	ev, err := json.Marshal(wire.PresenceEvent{Room: t.Room, Event: t.Event, User: t.User, Online: s.view.Online(t.Room)})
	if err != nil {
		return fmt.Errorf("encode presence event: %w", err)
	}
	if err := s.nc.Publish(subjects.Presence(t.Room), ev); err != nil {
		return fmt.Errorf("publish presence event: %w", err)
	}
	if t.Event == wire.EventJoin {
		s.metrics.joins.Inc()
		return nil
	}
	s.metrics.leaves.Inc()
	s.clearTyping(ctx, t)
	return nil
}
