package edge

import (
	"context"
	"net/http"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
)

// drain closes every connection with 1012, spread over DrainPeriod.
func (s *Service) drain(srv *http.Server) {
	s.draining.Store(true)
	close(s.drainCh)
	s.mu.Lock()
	list := make([]*served, 0, len(s.sessions))
	for h := range s.sessions {
		list = append(list, h)
	}
	s.mu.Unlock()
	s.log.Info("edge draining", "connections", len(list), "period", s.cfg.DrainPeriod)

	start := time.Now()
	for i, h := range list {
		at := start.Add(time.Duration(int64(s.cfg.DrainPeriod) * int64(i) / int64(len(list))))
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		h.sess.Close(ws.CodeRestart, "service restart: reconnect")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.DrainPeriod + 2*s.transport.Config().CloseTimeout):
		s.log.Warn("edge drain: connections still closing at deadline")
	}
	// Only now stop the listener: until here /readyz answered 503 and
	// upgrades were refused, so load balancers moved traffic away. SSE
	// handlers ended on drainCh; hijacked WebSockets are closed above.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("edge http shutdown", "err", err)
	}
}
