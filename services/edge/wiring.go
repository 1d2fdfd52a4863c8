package edge

import (
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/internal/lease"
	"github.com/hubbub-chat/hubbub/services/edge/internal/metrics"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/pages"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/readstate"
	"github.com/hubbub-chat/hubbub/services/edge/internal/registry"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
)

// listen binds the public listener (unless Config.Listener is set) and
// the internal metrics one (when Config.MetricsAddr is set).
func (s *Service) listen() error {
	s.ln = s.cfg.Listener
	if s.ln == nil {
		ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("edge listen %s: %w", s.cfg.HTTPAddr, err)
		}
		s.ln = ln
	}
	if s.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			_ = s.ln.Close()
			return fmt.Errorf("edge metrics listen %s: %w", s.cfg.MetricsAddr, err)
		}
		s.metricsLn = mln
	}
	return nil
}

// closeListeners closes what listen bound, when New fails after it (a
// Config.Listener stays the caller's).
func (s *Service) closeListeners() {
	if s.cfg.Listener == nil {
		_ = s.ln.Close()
	}
	if s.metricsLn != nil {
		_ = s.metricsLn.Close()
	}
}

// newMetrics registers the edge's metrics with reg (a private registry
// when nil) and returns the registerer used.
func (s *Service) newMetrics(reg prometheus.Registerer) (prometheus.Registerer, error) {
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, s.gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		s.gatherer = g
	}
	m, err := metrics.New(reg)
	if err != nil {
		return nil, fmt.Errorf("edge metrics: %w", err)
	}
	s.metrics = m
	return reg, nil
}

// wire builds the edge's collaborators: the NATS side (nreq, the presence
// registry, the publisher, the room log), the WebSocket transport, the
// fan-out hub, the lease, the read state and what every session shares.
func (s *Service) wire(deps Deps, reg prometheus.Registerer) error {
	cfg, log := s.cfg, s.log
	authn, err := auth.New(cfg.Auth)
	if err != nil {
		return fmt.Errorf("edge auth: %w", err)
	}
	req := nreq.New(deps.NC, cfg.RequestTimeout)
	s.presence = registry.New(req)
	if err := metrics.WatchPresence(reg, s.presence.Unconfirmed); err != nil {
		return fmt.Errorf("edge metrics: %w", err)
	}
	if s.publisher, err = publish.NewPublisher(deps.NC, deps.JSDomain, cfg.RequestTimeout, cfg.MaxPendingPosts); err != nil {
		return err
	}
	s.transport = ws.NewTransport(cfg.WS, s.metrics)
	cfg = cfg.withTransport(s.transport.Config())
	s.cfg = cfg
	// Pages read from the stream are decoded under the limit the hub's live
	// path applies (cfg.Fanout.MaxBody), so a room looks the same either way.
	roomLog, err := pages.New(req, deps.JSDomain, roomlog.Decoder{MaxBody: cfg.Fanout.MaxBody}, log)
	if err != nil {
		return err
	}
	s.hub = fanout.New(cfg.Fanout, hubBackend{roomLog, req}, log, s.metrics)
	s.authn = authn
	s.origins = auth.NewOriginChecker(cfg.AllowedOrigins, cfg.PublicOrigins)
	s.gate = admit.New(cfg.Admit)
	s.lease = lease.New(roomLog.JetStream(), cfg.EdgeID, s.ln.Addr().String(), cfg.LeaseTTL, log)
	s.lease.OnLost(s.rejoin)
	s.reads = readstate.New(cfg.Reads, readstate.Deps{
		JS: roomLog.JetStream(), Req: req, LastID: roomLog.LastID, Log: log,
	})
	s.env = &session.Env{
		Config: cfg.Session,
		Hub:    session.FanoutHub(s.hub), Presence: s.presence, Pages: roomLog,
		Typing: publish.NewTypist(deps.NC), Publisher: session.PublisherLanes(s.publisher),
		Users: userlimit.New(cfg.UserLimits), NewID: s.newConnID, Reads: s.reads,
		Log: log, Obs: s.metrics,
	}
	s.pages = roomLog
	return nil
}

// hubBackend is what the fan-out hub reads and subscribes through: the
// room log and the NATS connection.
type hubBackend struct {
	*pages.Log
	*nreq.Client
}
