package history

import (
	"context"
	"time"

	"github.com/hubbub-chat/hubbub/shared/backoff"
	"github.com/hubbub-chat/hubbub/shared/loops"
)

// retentionLoop deletes expired messages every RetentionInterval.
func (s *Service) retentionLoop(ctx context.Context) error {
	return loops.Every(ctx, s.cfg.RetentionInterval, s.retain)
}

// retain deletes the messages older than Retention in small batches, then
// the dead letters as old.
func (s *Service) retain(ctx context.Context) {
	cutoff := time.Now().Add(-s.cfg.Retention)
	for ctx.Err() == nil {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := s.st.Trim(tctx, cutoff, s.cfg.RetentionBatch)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("history retention", "err", err)
			}
			return
		}
		s.m.Trimmed.Add(float64(n))
		if n < s.cfg.RetentionBatch {
			s.trimDeadLetters(ctx, cutoff)
			return
		}
		if !backoff.Sleep(ctx, 10*time.Millisecond) { // let writers in between batches
			return
		}
	}
}

// trimDeadLetters applies retention to the dead-letter table too: parked
// messages are user content like the rest.
func (s *Service) trimDeadLetters(ctx context.Context, cutoff time.Time) {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := s.st.TrimDeadLetters(tctx, cutoff)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("history retention of dead letters", "err", err)
		}
		return
	}
	if n > 0 {
		s.log.Info("history retention: dead letters deleted", "count", n, "parked_before", cutoff)
	}
}
