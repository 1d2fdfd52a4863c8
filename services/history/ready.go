package history

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// ErrNotReady is reported by Ready before Run has bound the store to the
// stream.
var ErrNotReady = errors.New("history not started")

// ErrIngestLagging is reported by Ready while the oldest message not yet
// stored is older than Config.MaxIngestLag (or the lag could not be
// measured for that long).
var ErrIngestLagging = errors.New("history ingest is lagging")

// Ready reports whether the service can do its job now: started, its
// request endpoints registered, the database answering, ingest not
// stalled and (unless read-only) not lagging past Config.MaxIngestLag.
func (s *Service) Ready() error {
	if !s.bound.Load() || !s.running.Load() || !s.serving.Load() {
		return ErrNotReady
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		return fmt.Errorf("history database: %w", err)
	}
	if s.ing != nil {
		if err := s.ing.Healthy(); err != nil {
			return err
		}
		if err := s.lagging(); err != nil {
			return err
		}
	}
	return nil
}

// lagging reports ErrIngestLagging when the last measured ingest lag is
// over the bound, or when it has not been measured for that long.
func (s *Service) lagging() error {
	bound := s.cfg.MaxIngestLag
	if bound < 0 {
		return nil
	}
	if age := time.Since(time.Unix(0, s.lagAt.Load())); age > bound {
		return fmt.Errorf("%w: lag not measured for %s (bound %s)", ErrIngestLagging, age.Round(time.Millisecond), bound)
	}
	if lag := time.Duration(s.lag.Load()); lag > bound {
		return fmt.Errorf("%w: the oldest message not yet stored is %s old (bound %s)", ErrIngestLagging,
			lag.Round(time.Millisecond), bound)
	}
	return nil
}

// measureLag records the ingest lag: the age of the oldest message not
// known to be stored, which is the first room message after the ack floor
// (everything at or below it is stored or parked), read with one direct
// get. It is 0 when the floor has reached the stream's last sequence.
func (s *Service) measureLag(ctx context.Context, floor, last uint64) {
	var lag time.Duration
	if last > floor {
		var oldest time.Time
		err := roomlog.NewReader(s.nc, s.js, subjects.Stream).Scan(ctx, subjects.RoomAll, floor+1, func(m roomlog.Msg) bool {
			oldest = m.Time
			return false
		})
		if err != nil {
			s.log.Debug("history: read the oldest unstored message", "err", err)
			return
		}
		if !oldest.IsZero() {
			lag = max(time.Since(oldest), 0)
		}
	}
	s.lag.Store(int64(lag))
	s.lagAt.Store(time.Now().UnixNano())
	s.m.IngestLag.Set(lag.Seconds())
}
