package history

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/backoff"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// bind waits for the stream, then checks the store belongs to it. A fresh
// database starts the consumer over, so that everything the stream still
// holds is stored.
func (s *Service) bind(ctx context.Context) error {
	return backoff.Retry(ctx, backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}, func(ctx context.Context) error {
		info, err := s.streamInfo(ctx)
		if err != nil {
			return err
		}
		id := store.Identity{Stream: info.Config.Name, Created: info.Created}
		fresh, err := s.st.Bind(ctx, id)
		if err != nil {
			return backoff.Permanent(fmt.Errorf("history: bind store to stream %s: %w", id, err))
		}
		if fresh {
			if err := s.resetConsumer(ctx); err != nil {
				return backoff.Permanent(err)
			}
		}
		s.bound.Store(true)
		return nil
	}, func(err error, _ time.Duration) {
		s.log.Warn("history: waiting for stream", "stream", subjects.Stream, "err", err)
	})
}

// streamInfo reads the CHAT stream's configuration and state.
func (s *Service) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, subjects.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", subjects.Stream, err)
	}
	return st.Info(ctx)
}
