package edge

import "context"

// The edge's lease (internal/lease) names it in the edges bucket; presence
// drops the connections of an edge whose lease is gone. Run acquires it
// first, the "lease" loop renews it, shutdown releases it.

// acquireLease takes the lease before serving; a failure is retried by
// the renewal loop.
func (s *Service) acquireLease(ctx context.Context) {
	actx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if err := s.lease.Acquire(actx); err != nil {
		s.log.Warn("edge lease not acquired yet; will retry", "err", err)
	}
}

// releaseLease gives the lease up once the edge drained: presence then
// removes whatever of its connections it still lists.
func (s *Service) releaseLease() {
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.lease.Release(rctx); err != nil {
		s.log.Warn("edge lease release failed", "err", err)
	}
}

// rejoin runs when the edge's lease was lost and re-created: presence has
// dropped this edge's connections, so register them all again.
func (s *Service) rejoin(context.Context) {
	n := s.presence.Rejoin()
	s.metrics.LeaseLost()
	s.log.Info("re-registering connections after lease loss", "registrations", n)
}
