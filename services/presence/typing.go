package presence

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/presence/internal/roster"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// subscribeTyping subscribes the typing tracker to the edges' typing
// events, in the queue group shared by the replicas.
func (s *Service) subscribeTyping() (*nats.Subscription, error) {
	sub, err := s.nc.QueueSubscribe(subjects.TypingAll, QueueGroup, s.typing.Handle)
	if err != nil {
		return nil, fmt.Errorf("presence: subscribe %s: %w", subjects.TypingAll, err)
	}
	return sub, nil
}

// drainTyping drains the typing subscription: the events received are
// still handled.
func (s *Service) drainTyping(sub *nats.Subscription) {
	if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		s.log.Warn("drain typing subscription", "err", err)
	}
}

// clearTyping removes a leaving user's typing state.
func (s *Service) clearTyping(ctx context.Context, t roster.Transition) {
	if err := s.typing.Clear(ctx, t.Room, t.User); err != nil {
		s.log.Warn("clear typing on leave", "room", t.Room, "err", err)
	}
}
