package publish

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Typist publishes typing events: core NATS, fire and forget (presence
// and every edge hosting the room listen).
type Typist struct{ nc *nats.Conn }

// NewTypist returns a Typist publishing on nc.
func NewTypist(nc *nats.Conn) Typist { return Typist{nc: nc} }

// Typing publishes ev on its room's typing subject.
func (t Typist) Typing(ev wire.TypingEvent) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("marshal typing: %w", err)
	}
	if err := t.nc.Publish(subjects.Typing(ev.Room), data); err != nil {
		return fmt.Errorf("publish typing: %w", err)
	}
	return nil
}
