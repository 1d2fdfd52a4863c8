// Package app is the all-in-one Hubbub: an embedded NATS server with
// JetStream plus the edge, history and presence services in one process,
// wired exactly as the separate binaries wire them.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/services/presence"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/natsembed"
	"github.com/hubbub-chat/hubbub/shared/ops"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// Config configures the all-in-one.
type Config struct {
	// DataDir holds the JetStream store (DataDir/jetstream) and, unless
	// History.DatabaseURL is set, the SQLite history.
	DataDir string
	// NATSListen is the embedded server's client address; "127.0.0.1:0"
	// picks a free port.
	NATSListen string
	// NATS connects to an external server instead of embedding one when
	// its URL is set.
	NATS natsconn.Config
	// Provision sizes the stream and buckets.
	Provision provision.Config
	// Edge, History and Presence configure the services. Edge.Listener may
	// be set to serve on an existing listener.
	Edge     edge.Config
	History  history.Config
	Presence presence.Config
	// Log receives every component's logs (nil: discard).
	Log *slog.Logger
}

// System is a running all-in-one.
type System struct {
	cfg      Config
	log      *slog.Logger
	ns       *server.Server
	conns    []*nats.Conn
	natsURL  string
	edge     *edge.Service
	history  *history.Service
	presence *presence.Service
	registry *prometheus.Registry

	cancelEdge context.CancelFunc
	cancelBack context.CancelFunc
	mu         sync.Mutex
	errs       []error
	done       chan struct{}
}

// ErrConfig reports an unusable configuration.
var ErrConfig = errors.New("invalid configuration")

// Start brings the whole system up and returns once every service is
// ready. ctx bounds the start-up only; the system runs until Stop, or until
// a service fails (Done is closed then).
func Start(ctx context.Context, cfg Config) (_ *System, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: data dir is empty", ErrConfig)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s := &System{cfg: cfg, log: cfg.Log, done: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeNATS()
		}
	}()

	s.natsURL = cfg.NATS.URL
	if s.natsURL == "" {
		s.ns, err = natsembed.Start(natsembed.Options{
			Listen:   cfg.NATSListen,
			StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
		})
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		s.natsURL = "nats://" + s.ns.Addr().String()
		cfg.Log.Info("embedded nats-server running", "url", s.natsURL, "store", filepath.Join(cfg.DataDir, "jetstream"))
	}

	connect := func(name, inbox string) (*nats.Conn, error) {
		c := cfg.NATS
		c.URL, c.Name, c.InboxPrefix = s.natsURL, name, inbox
		nc, err := natsconn.Connect(c, cfg.Log.With("component", name))
		if err != nil {
			return nil, err
		}
		s.conns = append(s.conns, nc)
		return nc, nil
	}
	ncEdge, err := connect("hubbub-edge", subjects.EdgeInbox)
	if err != nil {
		return nil, err
	}
	ncHistory, err := connect("hubbub-history", subjects.HistoryInbox)
	if err != nil {
		return nil, err
	}
	ncPresence, err := connect("hubbub-presence", subjects.PresenceInbox)
	if err != nil {
		return nil, err
	}

	js, err := natsconn.NewJetStream(ncEdge, cfg.NATS.JSDomain)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	if err := provision.Ensure(pctx, js, cfg.Provision); err != nil {
		return nil, err
	}

	s.registry = prometheus.NewRegistry()
	if err := ops.RegisterBuildInfo(s.registry, "hubbub"); err != nil {
		return nil, err
	}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	hcfg := cfg.History
	if hcfg.DataDir == "" {
		hcfg.DataDir = cfg.DataDir
	}
	s.history, err = history.New(hcfg, history.Deps{NC: ncHistory, Log: cfg.Log.With("service", "history"), Registry: s.registry, JSDomain: cfg.NATS.JSDomain})
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	pcfg := cfg.Presence
	if pcfg.TypingTTL == 0 {
		pcfg.TypingTTL = cfg.Provision.TypingTTL
	}
	if pcfg.LeaseTTL == 0 {
		pcfg.LeaseTTL = cfg.Provision.LeaseTTL
	}
	s.presence, err = presence.New(pcfg, presence.Deps{NC: ncPresence, Log: cfg.Log.With("service", "presence"), Registry: s.registry, JSDomain: cfg.NATS.JSDomain})
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	ecfg := cfg.Edge
	if ecfg.LeaseTTL == 0 {
		ecfg.LeaseTTL = cfg.Provision.LeaseTTL
	}
	s.edge, err = edge.New(ecfg, edge.Deps{NC: ncEdge, Log: cfg.Log.With("service", "edge"), Registry: s.registry, JSDomain: cfg.NATS.JSDomain})
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}

	// The edge stops first (it drains its connections and tells presence
	// they left), then history and presence.
	base := context.WithoutCancel(ctx)
	backCtx, cancelBack := context.WithCancel(base)
	edgeCtx, cancelEdge := context.WithCancel(base)
	s.cancelEdge, s.cancelBack = cancelEdge, cancelBack
	var back sync.WaitGroup
	s.run(backCtx, &back, "history", s.history.Run)
	s.run(backCtx, &back, "presence", s.presence.Run)
	var front sync.WaitGroup
	s.run(edgeCtx, &front, "edge", s.edge.Run)
	go func() {
		front.Wait()
		cancelBack()
		back.Wait()
		s.closeNATS()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	cfg.Log.Info("hubbub running", "http", "http://"+s.edge.Addr(), "nats", s.natsURL)
	return s, nil
}

// waitReady polls every service's readiness until all are ready, a service
// fails, or ctx ends.
func (s *System) waitReady(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		err := errors.Join(s.history.Ready(), s.presence.Ready(), s.edge.Ready())
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for services: %w (last: %w)", ctx.Err(), err)
		case <-s.done:
			return fmt.Errorf("services stopped while starting: %w", s.Err())
		case <-t.C:
		}
	}
}

func (s *System) run(ctx context.Context, wg *sync.WaitGroup, name string, f func(context.Context) error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := f(ctx); err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Errorf("%s: %w", name, err))
			s.mu.Unlock()
			s.log.Error("service stopped with an error; stopping the system", "service", name, "err", err)
			s.cancelEdge()
			s.cancelBack()
		}
	}()
}

func (s *System) closeNATS() {
	for _, nc := range s.conns {
		nc.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

// Addr is the edge's HTTP address (host:port).
func (s *System) Addr() string { return s.edge.Addr() }

// BaseURL is http://<edge address>.
func (s *System) BaseURL() string { return "http://" + s.edge.Addr() }

// NATSURL is the URL of the NATS server the system uses.
func (s *System) NATSURL() string { return s.natsURL }

// Registry is the Prometheus registry every service registers on.
func (s *System) Registry() *prometheus.Registry { return s.registry }

// Done is closed once everything has stopped.
func (s *System) Done() <-chan struct{} { return s.done }

// Err reports the services' errors (nil after a clean shutdown).
func (s *System) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Stop shuts everything down (the edge drains first) and waits.
func (s *System) Stop() error {
	s.cancelEdge()
	<-s.done
	return s.Err()
}

// Listen is a helper for callers that want the edge on a specific address.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}
