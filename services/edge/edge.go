// Package edge is Hubbub's edge service: it terminates client WebSockets
// (protocol v1), serves the HTTP API, Server-Sent Events and the web UI,
// publishes messages to JetStream and fans out live room traffic to local
// members. It holds no state a restart may lose.
//
// The root package is the service's shape: Config (config.go), Deps,
// Service, New and Run here; the collaborators are wired in wiring.go, the
// HTTP side in http.go, the WebSocket handler in websocket.go, and each
// background job in its own file (pinger.go, drain.go, lease.go).
package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/internal/lease"
	"github.com/hubbub-chat/hubbub/services/edge/internal/metrics"
	"github.com/hubbub-chat/hubbub/services/edge/internal/pages"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/readstate"
	"github.com/hubbub-chat/hubbub/services/edge/internal/registry"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
	"github.com/hubbub-chat/hubbub/shared/loops"
)

// ErrDraining is reported by Ready once the edge started draining.
var ErrDraining = errors.New("edge is draining")

// Deps are the edge's collaborators.
type Deps struct {
	// NC is the NATS connection (required).
	NC *nats.Conn
	// Log is the logger (required).
	Log *slog.Logger
	// Registry receives the edge's metrics; nil keeps them private. When it
	// is also a prometheus.Gatherer, /metrics serves it.
	Registry prometheus.Registerer
	// JSDomain is the JetStream domain of the CHAT stream and buckets
	// (natsconn.Config.JSDomain); empty means the account's own JetStream.
	JSDomain string
}

// Service is a running edge.
type Service struct {
	cfg Config
	nc  *nats.Conn
	log *slog.Logger

	// HTTP (http.go).
	ln        net.Listener
	metricsLn net.Listener // nil: /metrics on ln
	opsMux    http.Handler
	gatherer  prometheus.Gatherer
	handler   http.Handler
	metrics   *metrics.Metrics

	// Collaborators (wiring.go).
	presence  *registry.Presence
	pages     *pages.Log
	publisher *publish.Publisher
	hub       *fanout.Hub
	transport *ws.Transport
	authn     auth.Authenticator
	origins   *auth.OriginChecker
	env       *session.Env
	lease     *lease.Lease
	gate      *admit.Gate
	reads     *readstate.Service

	draining atomic.Bool
	drainCh  chan struct{} // closed when draining starts
	connSeq  atomic.Uint64
	base     context.Context // lives until Run finished draining
	stop     context.CancelFunc

	mu       sync.Mutex
	sessions map[*served]int // WebSocket sessions; value: ping slot
	wg       sync.WaitGroup  // session goroutines
}

// New builds an edge and binds its listener (Addr is valid on return).
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NC == nil || deps.Log == nil {
		return nil, errors.New("edge: Deps.NC and Deps.Log are required")
	}
	cfg = cfg.withDefaults()
	s := &Service{
		cfg: cfg, nc: deps.NC, log: deps.Log.With("edge", cfg.EdgeID),
		drainCh:  make(chan struct{}),
		sessions: make(map[*served]int),
	}
	s.base, s.stop = context.WithCancel(context.Background())
	if err := s.listen(); err != nil {
		return nil, err
	}
	reg, err := s.newMetrics(deps.Registry)
	if err == nil {
		err = s.wire(deps, reg)
	}
	if err != nil {
		s.closeListeners()
		return nil, err
	}
	s.routes()
	return s, nil
}

// Run serves until ctx ends, then drains: readiness fails at once, new
// upgrades are refused, every connection is closed with 1012 spread over
// DrainPeriod (each leaving presence), the lease is released. It returns
// nil after a clean drain.
//
// The background jobs are a loops.Group, stopped in the reverse order of
// their start: the HTTP servers drain first (drain.go), then the
// publisher reports its last outcomes while NATS is still there, then the
// pinger, the lease renewal, the read state pushes and the hub stop.
func (s *Service) Run(ctx context.Context) error {
	defer s.stop()
	s.acquireLease(ctx)

	g := loops.New(ctx)
	g.Go("metrics http", s.serveMetrics)
	g.Go("hub", s.hub.Run)
	g.Go("reads", func(ctx context.Context) error { return s.reads.Run(ctx, nil) })
	g.Go("lease", s.lease.Run)
	g.Go("pinger", s.pinger)
	g.Go("publisher", s.closePublisherOnStop)
	g.Go("http", s.serveHTTP)
	err := g.Wait()

	s.shutdown()
	s.log.Info("edge stopped")
	return err
}

// closePublisherOnStop waits for the Group to stop it, then closes the
// publisher: the last outcomes are reported once every connection drained.
func (s *Service) closePublisherOnStop(ctx context.Context) error {
	<-ctx.Done()
	s.publisher.Close()
	return nil
}

// shutdown releases what the loops used, once they all stopped.
func (s *Service) shutdown() {
	s.hub.Close()
	if err := s.transport.Close(); err != nil {
		s.log.Warn("edge websocket poller close", "err", err)
	}
	s.releaseLease()
	s.presence.Close() // the lease release removed what presence had not confirmed
}
