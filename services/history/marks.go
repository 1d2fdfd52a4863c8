package history

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/history/internal/ingest"
	"github.com/hubbub-chat/hubbub/shared/loops"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// marksLoop re-reads the marks every MarksInterval.
func (s *Service) marksLoop(ctx context.Context) error {
	return loops.Every(ctx, s.cfg.MarksInterval, s.refreshMarks)
}

// marks returns the current marks for the page reader.
func (s *Service) marks() roomlog.Marks {
	return roomlog.Marks{Stored: s.stored.Load(), First: s.first.Load()}
}

// refreshMarks re-reads the consumer's ack floor and the stream's bounds,
// and measures the ingest lag from them.
func (s *Service) refreshMarks(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	floor, err := s.ackFloor(ctx)
	if err != nil {
		s.log.Debug("history: read consumer ack floor", "err", err)
		return
	}
	// Lower is always safe; stale higher is not: store what we read.
	s.stored.Store(floor)
	info, err := s.streamInfo(ctx)
	if err != nil {
		s.log.Debug("history: read stream info", "err", err)
		return
	}
	s.first.Store(info.State.FirstSeq)
	if info.State.LastSeq >= floor {
		s.m.ConsumerLag.Set(float64(info.State.LastSeq - floor))
	}
	s.measureLag(ctx, floor, info.State.LastSeq)
}

// ackFloor reads the stream sequence the consumer has acknowledged
// everything up to (0 while there is no consumer: nothing acknowledged
// yet).
func (s *Service) ackFloor(ctx context.Context) (uint64, error) {
	cons, err := s.js.Consumer(ctx, subjects.Stream, ingest.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return ci.AckFloor.Stream, nil
}
