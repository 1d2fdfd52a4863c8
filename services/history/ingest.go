package history

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/history/internal/ingest"
	"github.com/hubbub-chat/hubbub/shared/loops"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// newIngester prepares ingest unless the replica is read-only.
func (s *Service) newIngester() error {
	if s.cfg.ReadOnly {
		return nil
	}
	ing, err := ingest.New(s.js, s.st, s.cfg.IngestConfig, s.log, s.m)
	if err != nil {
		return err
	}
	s.ing = ing
	return nil
}

// startWriters starts the jobs of a replica that writes on bg: ingest and,
// with Retention set, retention after it (so that retention stops first).
func (s *Service) startWriters(bg *loops.Group) {
	if s.ing == nil {
		return
	}
	bg.Go("ingest", s.ing.Run)
	if s.cfg.Retention > 0 {
		bg.Go("retention", s.retentionLoop)
	}
}

// resetConsumer deletes the durable consumer (if any) of a writing replica
// whose database is new, so that ingest replays everything the stream
// still holds.
func (s *Service) resetConsumer(ctx context.Context) error {
	if s.cfg.ReadOnly {
		return nil
	}
	err := s.js.DeleteConsumer(ctx, subjects.Stream, ingest.Durable)
	switch {
	case err == nil:
		s.log.Warn("history: new database; consumer reset to replay the stream")
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("history: reset consumer for a new database: %w", err)
	}
	return nil
}
