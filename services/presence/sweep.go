package presence

import (
	"context"
	"time"

	"github.com/hubbub-chat/hubbub/shared/loops"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// purgeInterval is how often the roster bucket's delete markers are purged.
const purgeInterval = time.Hour

// sweep runs the roster sweeper every SweepInterval, and the orphan check
// (reapOrphans) on the first sweep after each max(LeaseTTL/3,
// SweepInterval), until ctx ends.
func (s *Service) sweep(ctx context.Context) error {
	orphanEvery := max(s.cfg.LeaseTTL/3, s.cfg.SweepInterval)
	lastOrphan := time.Time{}
	missing := map[string]time.Time{} // edge → first seen without lease
	return loops.Every(ctx, s.cfg.SweepInterval, func(ctx context.Context) {
		if _, err := s.store.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("roster sweep", "err", err)
		}
		if time.Since(lastOrphan) >= orphanEvery {
			lastOrphan = time.Now()
			s.reapOrphans(ctx, missing)
		}
	})
}

// purge removes the roster bucket's delete markers every purgeInterval
// until ctx ends.
func (s *Service) purge(ctx context.Context) error {
	return loops.Every(ctx, purgeInterval, func(ctx context.Context) {
		kv, err := s.js.KeyValue(ctx, subjects.BucketRoster)
		if err != nil {
			return
		}
		if err := kv.PurgeDeletes(ctx); err != nil {
			s.log.Warn("purge roster delete markers", "err", err)
		}
	})
}
