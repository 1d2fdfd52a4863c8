package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/api"
	"github.com/hubbub-chat/hubbub/services/edge/internal/metrics"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/ops"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// routes builds the public handler (WebSocket, API, ops endpoints, the
// UI) and, with a metrics listener, the internal one.
func (s *Service) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	api.New(s.cfg.API, api.Deps{
		Gate: s.gate, Origins: s.origins, Pages: s.pages, Presence: s.presence,
		Sessions: s.env, Auth: s.authn, Log: s.log, Obs: s.metrics, Done: s.drainCh,
		Reads: s.reads,
	}).Register(mux)
	live := []ops.Check{ops.NATSAlive(s.nc)}
	ready := []ops.Check{s.readyCheck}
	if s.metricsLn != nil {
		omux := http.NewServeMux()
		ops.Endpoints{Metrics: s.gatherer, Live: live, Ready: ready}.Register(omux)
		s.opsMux = omux
		ops.Endpoints{Live: live, Ready: ready}.Register(mux) // health on the public port too
	} else {
		ops.Endpoints{Metrics: s.gatherer, Live: live, Ready: ready}.Register(mux)
	}
	mux.Handle("/", s.cfg.Web)
	s.handler = withRequestID(mux)
}

// withRequestID gives every HTTP request an id (the client's X-Request-Id
// when it is a sane token, else a new one), echoed in the response and
// sent with the NATS requests made for it (nreq.WithRequestID).
func withRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !wire.ValidCID(id) {
			id = randomHex(8)
		}
		w.Header().Set("X-Request-Id", id)
		h.ServeHTTP(w, r.WithContext(nreq.WithRequestID(r.Context(), id)))
	})
}

// serveHTTP is the "http" loop: it serves the public listener until ctx
// ends or serving fails, then drains (drain.go).
func (s *Service) serveHTTP(ctx context.Context) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.log.Info("edge listening", "addr", s.Addr())
	var err error
	select {
	case <-ctx.Done():
	case serr := <-errc:
		err = fmt.Errorf("edge http: %w", serr)
	}
	s.drain(srv)
	return err
}

// serveMetrics is the "metrics http" loop: the internal listener, if
// any, until ctx ends.
func (s *Service) serveMetrics(ctx context.Context) error {
	if s.metricsLn == nil {
		return nil
	}
	msrv := &http.Server{Handler: s.opsMux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- msrv.Serve(s.metricsLn) }()
	s.log.Info("edge metrics listening", "addr", s.MetricsAddr())
	var err error
	select {
	case <-ctx.Done():
	case serr := <-errc:
		if !errors.Is(serr, http.ErrServerClosed) {
			err = fmt.Errorf("edge metrics http: %w", serr)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = msrv.Shutdown(sctx)
	return err
}

// Addr is the address the edge listens on.
func (s *Service) Addr() string { return s.ln.Addr().String() }

// MetricsAddr is the internal metrics listener's address ("" when
// /metrics is on the public listener).
func (s *Service) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// EdgeID is the edge's id (its lease key).
func (s *Service) EdgeID() string { return s.cfg.EdgeID }

// Handler is the edge's HTTP handler (the all-in-one may mount it).
func (s *Service) Handler() http.Handler { return s.handler }

// Rooms is the number of hosted rooms (debug).
func (s *Service) Rooms() int { return s.hub.Rooms() }

// Metrics exposes the edge's metrics (tests read counters).
func (s *Service) Metrics() *metrics.Metrics { return s.metrics }

// Ready reports nil while the edge accepts clients: not draining and
// connected to NATS.
func (s *Service) Ready() error { return s.readyCheck(context.Background()) }

func (s *Service) readyCheck(ctx context.Context) error {
	if s.draining.Load() {
		return ErrDraining
	}
	return ops.NATSCheck(s.nc)(ctx)
}

// PresenceUnconfirmed is the number of presence joins and leaves of this
// edge's connections that presence has not confirmed yet.
func (s *Service) PresenceUnconfirmed() int { return s.presence.Unconfirmed() }

// Connections is the number of open WebSocket sessions.
func (s *Service) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// ReadStateUsers is the number of users with a WebSocket here that unread
// pushes reach (0 once every connection ended).
func (s *Service) ReadStateUsers() int { return s.reads.Users() }
