package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hubbub-chat/hubbub/services/presence/internal/roster"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// announce publishes an online transition as presence only: the roster
// diff on subjects.Presence, never a stored chat message (DESIGN §3a
// "Presence is not conversation"; membership is members.go's). The roster
// Store calls it once per transition, on the replica that won the
// transition's compare-and-set claim (see roster.Store), so no other
// de-duplication is needed. A leave also clears the user's typing state,
// also when it only finishes another replica's leave (t.Resumed: that
// replica published the diff, or died trying).
func (s *Service) announce(ctx context.Context, t roster.Transition) error {
	if t.Event == wire.EventLeave {
		defer s.clearTyping(ctx, t)
	}
	if t.Resumed {
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
	} else {
		s.metrics.leaves.Inc()
	}
	return nil
}
