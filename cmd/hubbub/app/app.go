// Package app is the all-in-one Hubbub: an embedded NATS server with
// JetStream plus the edge, history and presence services in one process,
// wired exactly as the separate binaries wire them.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	if err := s.startNATS(); err != nil {
		return nil, err
	}
	conns, err := s.connect()
	if err != nil {
		return nil, err
	}
	if err := s.provision(ctx, conns.edge); err != nil {
		return nil, err
	}
	if err := s.newServices(conns); err != nil {
		return nil, err
	}
	s.runServices(ctx)
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	cfg.Log.Info("hubbub running", "http", "http://"+s.edge.Addr(), "nats", s.natsURL)
	return s, nil
}

// startNATS embeds a NATS server with JetStream in DataDir/jetstream,
// unless the configuration names an external one; either way it sets
// s.natsURL.
func (s *System) startNATS() error {
	s.natsURL = s.cfg.NATS.URL
	if s.natsURL != "" {
		return nil
	}
	store := filepath.Join(s.cfg.DataDir, "jetstream")
	ns, err := natsembed.Start(natsembed.Options{Listen: s.cfg.NATSListen, StoreDir: store})
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	s.ns = ns
	s.natsURL = "nats://" + ns.Addr().String()
	s.log.Info("embedded nats-server running", "url", s.natsURL, "store", store)
	return nil
}

// natsConns are the services' connections: one each, with its own name
// and inbox prefix, as the separate binaries have.
type natsConns struct {
	edge, history, presence *nats.Conn
}

// connect opens the three services' connections (each kept in s.conns for
// closeNATS).
func (s *System) connect() (natsConns, error) {
	var c natsConns
	for _, n := range []struct {
		nc          **nats.Conn
		name, inbox string
	}{
		{&c.edge, "hubbub-edge", subjects.EdgeInbox},
		{&c.history, "hubbub-history", subjects.HistoryInbox},
		{&c.presence, "hubbub-presence", subjects.PresenceInbox},
	} {
		cc := s.cfg.NATS
		cc.URL, cc.Name, cc.InboxPrefix = s.natsURL, n.name, n.inbox
		nc, err := natsconn.Connect(cc, s.log.With("component", n.name))
		if err != nil {
			return c, err
		}
		s.conns = append(s.conns, nc)
		*n.nc = nc
	}
	return c, nil
}

// provision creates the stream and buckets that are missing (within 30 s).
func (s *System) provision(ctx context.Context, nc *nats.Conn) error {
	js, err := natsconn.NewJetStream(nc, s.cfg.NATS.JSDomain)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return provision.Ensure(pctx, js, s.cfg.Provision)
}

// newServices builds history, presence and the edge through their own
// constructors, on one Prometheus registry that also carries the build,
// Go and process collectors.
func (s *System) newServices(c natsConns) error {
	reg := prometheus.NewRegistry()
	if err := ops.RegisterBuildInfo(reg, "hubbub"); err != nil {
		return err
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hcfg, pcfg, ecfg := s.cfg.serviceConfigs()
	domain := s.cfg.NATS.JSDomain
	var err error
	s.history, err = history.New(hcfg, history.Deps{NC: c.history, Log: s.log.With("service", "history"), Registry: reg, JSDomain: domain})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	s.presence, err = presence.New(pcfg, presence.Deps{NC: c.presence, Log: s.log.With("service", "presence"), Registry: reg, JSDomain: domain})
	if err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	s.edge, err = edge.New(ecfg, edge.Deps{NC: c.edge, Log: s.log.With("service", "edge"), Registry: reg, JSDomain: domain})
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	return nil
}

// serviceConfigs are the services' configurations with what the
// all-in-one shares filled in where unset: history's data dir is DataDir,
// and presence's and the edge's TTLs are the provisioned buckets'.
func (c Config) serviceConfigs() (history.Config, presence.Config, edge.Config) {
	hcfg := c.History
	if hcfg.DataDir == "" {
		hcfg.DataDir = c.DataDir
	}
	pcfg := c.Presence
	if pcfg.TypingTTL == 0 {
		pcfg.TypingTTL = c.Provision.TypingTTL
	}
	if pcfg.LeaseTTL == 0 {
		pcfg.LeaseTTL = c.Provision.LeaseTTL
	}
	ecfg := c.Edge
	if ecfg.LeaseTTL == 0 {
		ecfg.LeaseTTL = c.Provision.LeaseTTL
	}
	return hcfg, pcfg, ecfg
}

// runServices starts the services' Run loops. The edge stops first (it
// drains its connections and tells presence they left), then history and
// presence; Done is closed once all have returned and NATS is closed.
func (s *System) runServices(ctx context.Context) {
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
