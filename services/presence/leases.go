package presence

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// reap removes the connections of edges whose lease went away, until ctx
// ends.
func (s *Service) reap(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case g := <-s.leases.Gone():
			if g.Expired {
				s.metrics.leaseExpiries.Inc()
			} else {
				s.metrics.edgesReleased.Inc()
			}
			n, err := s.store.RemoveEdge(ctx, g.Edge)
			s.log.Info("edge lease gone", "edge", g.Edge, "expired", g.Expired, "entries", n, "err", err)
		}
	}
}

// reapOrphans removes connections of edges that have held no lease for a
// whole lease TTL (edges that died while no presence replica watched).
// missing maps the edges seen without a lease to when they were first
// seen so; the sweeper keeps it from one check to the next.
func (s *Service) reapOrphans(ctx context.Context, missing map[string]time.Time) {
	seen := map[string]bool{}
	for _, edge := range s.view.Edges() {
		seen[edge] = true
		if s.leases.Live(edge) {
			delete(missing, edge)
			continue
		}
		first, ok := missing[edge]
		if !ok {
			missing[edge] = time.Now()
			continue
		}
		if time.Since(first) < s.cfg.LeaseTTL {
			continue
		}
		// Confirm with the bucket itself before removing anyone.
		if _, err := s.edges.Get(ctx, edge); !errors.Is(err, jetstream.ErrKeyNotFound) {
			if err == nil {
				delete(missing, edge)
			}
			continue
		}
		n, err := s.store.RemoveEdge(ctx, edge)
		s.log.Info("removed connections of edge without lease", "edge", edge, "entries", n, "err", err)
		if err == nil {
			delete(missing, edge)
		}
	}
	for edge := range missing {
		if !seen[edge] {
			delete(missing, edge)
		}
	}
}
