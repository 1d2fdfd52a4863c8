// Package edge is Hubbub's edge service: it terminates client WebSockets
// (protocol v1), serves the HTTP API, Server-Sent Events and the web UI,
// publishes messages to JetStream and fans out live room traffic to local
// members. It holds no state a restart may lose.
package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/api"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/internal/lease"
	"github.com/hubbub-chat/hubbub/services/edge/internal/metrics"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/pages"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/registry"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/web"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
	"github.com/hubbub-chat/hubbub/shared/ops"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrDraining is reported by Ready once the edge started draining.
var ErrDraining = errors.New("edge is draining")

// Config configures an edge. Zero values take the defaults noted.
type Config struct {
	// HTTPAddr is the listen address (":8080") when Listener is nil.
	HTTPAddr string
	// Listener, if set, is used instead of listening on HTTPAddr.
	Listener net.Listener
	// MetricsAddr, when set, is a second, internal listen address for
	// /metrics (and /healthz, /readyz): /metrics is then not served on the
	// public listener, so a load balancer never exposes it.
	MetricsAddr string
	// EdgeID names the edge (its lease key); default hostname-<random>.
	EdgeID string

	// Auth selects the authentication mode.
	Auth auth.Config
	// AllowedOrigins are other sites' origins allowed to open WebSockets
	// and make cookie-authenticated posts ("*": any).
	AllowedOrigins []string
	// PublicOrigins are the origins Hubbub is served from
	// ("https://chat.example"). With neither list set, the Origin must
	// name the request's Host, which a DNS-rebinding page controls: set
	// this in production.
	PublicOrigins []string
	// Admit caps connections per edge and per client address and says
	// which proxies' X-Forwarded-For to trust.
	Admit admit.Config

	// MaxFrame is the largest client frame in bytes (16 KiB): 1009 beyond.
	MaxFrame int
	// MaxBody is the longest message body in characters (2000).
	MaxBody int
	// MaxRooms per connection (100).
	MaxRooms int
	// SoftQueue / HardQueue bound a connection's outbound queue in bytes
	// (64 KiB: typing/presence shed; 1 MiB: closed with 1013).
	SoftQueue, HardQueue int
	// PingInterval (30 s): a peer silent for two intervals is dropped.
	PingInterval time.Duration
	// WriteTimeout bounds one socket write (10 s).
	WriteTimeout time.Duration
	// ReadMode selects how WebSockets are read: ws.ReadAuto (an epoll
	// poller on Linux: idle connections hold no goroutine) or
	// ws.ReadGoroutine (one reader goroutine per connection).
	ReadMode ws.ReadMode
	// ReadWorkers bounds the poll workers reading and handling client
	// frames at once (1024).
	ReadWorkers int
	// DrainPeriod spreads the 1012 closes on shutdown (10 s).
	DrainPeriod time.Duration
	// RequestTimeout bounds each request to history/presence/JetStream (3 s).
	RequestTimeout time.Duration
	// LeaseTTL is the edges bucket TTL (15 s); the lease is renewed at TTL/3.
	LeaseTTL time.Duration
	// MessageRate / MessageBurst limit messages per connection (10/s, 20).
	MessageRate  float64
	MessageBurst int
	// JoinRate / JoinBurst limit joins per connection (10/s, 100).
	JoinRate  float64
	JoinBurst int
	// TypingRate / TypingBurst limit typing frames per connection (5/s, 10).
	TypingRate  float64
	TypingBurst int
	// MaxPendingPosts bounds the messages awaiting their PubAck on the
	// edge (4096) and ConnPendingPosts on one connection (32): beyond
	// them messages are refused (unavailable / rate_limited) rather than
	// holding up reading.
	MaxPendingPosts, ConnPendingPosts int
	// UserLimits are shared by all of a user's connections on this edge:
	// connections per user (20; more are closed with 1008) and message,
	// join and typing rates.
	UserLimits userlimit.Config
	// SSEQueue bounds the bytes queued to one SSE stream (1 MiB).
	SSEQueue int

	// Fanout tunes the hub (history page sizes, replay cap, buffers).
	Fanout fanout.Config
	// Web serves "/" (default: the embedded UI, web.Handler()).
	Web http.Handler
}

// Defaults.
const (
	DefaultHTTPAddr     = ":8080"
	DefaultPingInterval = 30 * time.Second
	DefaultDrainPeriod  = 10 * time.Second
)

func (c Config) withDefaults() (Config, error) {
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.EdgeID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "edge"
		}
		c.EdgeID = host + "-" + randomHex(4)
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.DrainPeriod <= 0 {
		c.DrainPeriod = DefaultDrainPeriod
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = nreq.DefaultTimeout
	}
	if c.MaxBody <= 0 {
		c.MaxBody = wire.DefaultMaxBody
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = ws.DefaultMaxMessage
	}
	if c.Web == nil {
		c.Web = web.Handler()
	}
	return c, nil
}

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
	cfg       Config
	nc        *nats.Conn
	log       *slog.Logger
	ln        net.Listener
	metricsLn net.Listener // nil: /metrics on ln
	opsMux    http.Handler
	gatherer  prometheus.Gatherer
	metrics   *metrics.Metrics
	presence  *registry.Presence
	hub       *fanout.Hub
	transport *ws.Transport
	authn     auth.Authenticator
	origins   *auth.OriginChecker
	env       *session.Env
	publisher *publish.Publisher
	lease     *lease.Lease
	users     *userlimit.Limits
	gate      *admit.Gate
	handler   http.Handler

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
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	reg := deps.Registry
	var gatherer prometheus.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}
	m, err := metrics.New(reg)
	if err != nil {
		return nil, fmt.Errorf("edge metrics: %w", err)
	}
	authn, err := auth.New(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("edge auth: %w", err)
	}
	req := nreq.New(deps.NC, cfg.RequestTimeout)
	log := deps.Log.With("edge", cfg.EdgeID)
	pres := registry.New(req)
	if err := metrics.WatchPresence(reg, pres.Unconfirmed); err != nil {
		return nil, fmt.Errorf("edge metrics: %w", err)
	}
	pub, err := publish.NewPublisher(deps.NC, deps.JSDomain, cfg.RequestTimeout, cfg.MaxPendingPosts)
	if err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("edge listen %s: %w", cfg.HTTPAddr, err)
		}
	}
	transport := ws.NewTransport(ws.Config{
		MaxMessage: cfg.MaxFrame, SoftQueue: cfg.SoftQueue, HardQueue: cfg.HardQueue,
		PingInterval: cfg.PingInterval, WriteTimeout: cfg.WriteTimeout,
		ReadMode: cfg.ReadMode, Workers: cfg.ReadWorkers,
	}, m)
	fcfg := cfg.Fanout
	if fcfg.MaxBody <= 0 {
		fcfg.MaxBody = cfg.MaxBody
	}
	if fcfg.PaceBytes <= 0 {
		// Pace catch-ups on the WebSocket soft bound.
		fcfg.PaceBytes = transport.Config().SoftQueue
	}
	roomLog, err := pages.New(req, deps.JSDomain, roomlog.Decoder{MaxBody: fcfg.MaxBody}, log)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, nc: deps.NC, log: log, ln: ln, gatherer: gatherer, metrics: m, presence: pres,
		hub:       fanout.New(fcfg, hubBackend{roomLog.Sources(), req}, log, m),
		transport: transport,
		users:     userlimit.New(cfg.UserLimits),
		gate:      admit.New(cfg.Admit),
		authn:     authn,
		origins:   auth.NewOriginChecker(cfg.AllowedOrigins, cfg.PublicOrigins),
		lease:     lease.New(roomLog.JetStream(), cfg.EdgeID, ln.Addr().String(), cfg.LeaseTTL, log),
		drainCh:   make(chan struct{}),
		sessions:  make(map[*served]int),
	}
	s.base, s.stop = context.WithCancel(context.Background())
	s.env = &session.Env{
		Config: session.Config{
			EdgeID: cfg.EdgeID, Limits: wire.Limits{MaxBody: cfg.MaxBody}, MaxRooms: cfg.MaxRooms,
			MessageRate: rate.Limit(cfg.MessageRate), MessageBurst: cfg.MessageBurst,
			JoinRate: rate.Limit(cfg.JoinRate), JoinBurst: cfg.JoinBurst,
			TypingRate: rate.Limit(cfg.TypingRate), TypingBurst: cfg.TypingBurst,
			MaxPendingPosts: cfg.ConnPendingPosts,
		}.WithDefaults(),
		Hub: session.FanoutHub(s.hub), Presence: pres, Pages: roomLog, Typing: publish.NewTypist(deps.NC),
		Publisher: session.PublisherLanes(pub), Users: s.users, NewID: s.newConnID,
		Log: log, Obs: m,
	}
	s.publisher = pub
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	s.lease.OnLost(s.rejoin)
	api.New(api.Config{KeepAlive: cfg.PingInterval, SSEQueue: cfg.SSEQueue, WriteTimeout: cfg.WriteTimeout,
		Gate: s.gate, Origins: s.origins},
		api.Deps{Pages: roomLog, Presence: pres, Sessions: s.env, Auth: authn, Log: log, Obs: m, Done: s.drainCh}).Register(mux)
	live := []ops.Check{ops.NATSAlive(deps.NC)}
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("edge metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		omux := http.NewServeMux()
		ops.Endpoints{Metrics: gatherer, Live: live, Ready: []ops.Check{s.readyCheck}}.Register(omux)
		s.metricsLn, s.opsMux = mln, omux
		ops.Endpoints{Live: live, Ready: []ops.Check{s.readyCheck}}.Register(mux) // health on the public port too
	} else {
		ops.Endpoints{Metrics: gatherer, Live: live, Ready: []ops.Check{s.readyCheck}}.Register(mux)
	}
	mux.Handle("/", cfg.Web)
	s.handler = withRequestID(mux)
	return s, nil
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

// Run serves until ctx ends, then drains: readiness fails at once, new
// upgrades are refused, every connection is closed with 1012 spread over
// DrainPeriod (each leaving presence), the lease is released. It returns
// nil after a clean drain.
func (s *Service) Run(ctx context.Context) error {
	defer s.stop()
	actx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	if err := s.lease.Acquire(actx); err != nil {
		s.log.Warn("edge lease not acquired yet; will retry", "err", err)
	}
	cancel()

	bg, stopBG := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	bgWG.Add(3)
	go func() { defer bgWG.Done(); _ = s.hub.Run(bg) }()
	go func() { defer bgWG.Done(); _ = s.lease.Run(bg) }()
	go func() { defer bgWG.Done(); s.pinger(bg) }()

	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(s.ln) }()
	if s.metricsLn != nil {
		msrv := &http.Server{Handler: s.opsMux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := msrv.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = msrv.Shutdown(sctx)
		}()
		s.log.Info("edge metrics listening", "addr", s.MetricsAddr())
	}
	s.log.Info("edge listening", "addr", s.Addr())

	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		serveErr = fmt.Errorf("edge http: %w", err)
	}

	s.drain(srv)
	s.publisher.Close() // report the last outcomes while NATS is still there

	stopBG()
	bgWG.Wait()
	s.hub.Close()
	if err := s.transport.Close(); err != nil {
		s.log.Warn("edge websocket poller close", "err", err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	if err := s.lease.Release(rctx); err != nil {
		s.log.Warn("edge lease release failed", "err", err)
	}
	rcancel()
	s.presence.Close() // the lease release removed what presence had not confirmed
	s.log.Info("edge stopped")
	return serveErr
}

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

// pinger pings every connection once per PingInterval, in slots so the
// pings are spread over the interval.
func (s *Service) pinger(ctx context.Context) {
	const slots = 8
	t := time.NewTicker(s.cfg.PingInterval / slots)
	defer t.Stop()
	var slot int
	var batch []*ws.Conn
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		slot = (slot + 1) % slots
		batch = batch[:0]
		s.mu.Lock()
		for h, sl := range s.sessions {
			if sl == slot {
				batch = append(batch, h.conn)
			}
		}
		s.mu.Unlock()
		for _, c := range batch {
			c.Ping()
		}
		clear(batch)
	}
}

func (s *Service) newConnID() string {
	return s.cfg.EdgeID + "-" + strconv.FormatUint(s.connSeq.Add(1), 36)
}

// serveWS upgrades /ws and runs a session on its own goroutine; the HTTP
// handler goroutine returns at once.
func (s *Service) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "edge is draining; reconnect elsewhere", http.StatusServiceUnavailable)
		return
	}
	if !s.origins.Allowed(r) {
		s.metrics.ConnRefused(wire.CodeOriginRefused)
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	ticket, gerr := s.gate.Acquire(r)
	if errors.Is(gerr, admit.ErrEdgeFull) {
		// Refuse before upgrading: the load balancer or the client's
		// backoff takes the connection elsewhere.
		s.metrics.ConnRefused("edge_full")
		s.log.Warn("connection refused: edge at its connection cap", "cap", s.gate.Config().MaxConns)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "edge is at its connection cap; try again later", http.StatusServiceUnavailable)
		return
	}
	id, aerr := s.authn.Authenticate(r)
	conn, err := s.transport.Upgrade(w, r)
	if err != nil {
		if ticket != nil {
			ticket.Release()
		}
		s.log.Debug("upgrade failed", "err", err)
		return
	}
	if gerr != nil {
		// Per-address cap: a browser cannot read an HTTP status, so
		// refuse with a close code it can see.
		s.metrics.ConnRefused("address_full")
		go closeRefused(conn, ws.CodeTryAgainLater, "too many connections from this address")
		return
	}
	if aerr != nil {
		ticket.Release()
		code, msg := ws.CodeAuthInvalid, "invalid credentials"
		if errors.Is(aerr, auth.ErrMissing) {
			code, msg = ws.CodeAuthRequired, "authentication required"
		}
		s.metrics.ConnRefused(ws.CodeLabel(code))
		go closeRefused(conn, code, msg)
		return
	}
	sess, serr := s.env.Open(conn, id, ticket)
	if serr != nil {
		s.metrics.ConnRefused("too_many_connections")
		go closeRefused(conn, ws.CodePolicy, "too many connections for this user")
		return
	}
	h := &served{s: s, sess: sess, conn: conn}
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		sess.End("") // never served: releases the quota and the ticket
		go closeRefused(conn, ws.CodeRestart, "service restart: reconnect")
		return
	}
	s.sessions[h] = int(s.connSeq.Load() % 8)
	s.wg.Add(1)
	s.mu.Unlock()
	sess.Start()
	s.transport.Serve(conn, h)
}

// served lets the transport drive a session: it reads the connection
// (with no goroutine while the connection is idle) and hands each message
// to the session.
type served struct {
	s    *Service
	sess *session.Session
	conn *ws.Conn
}

// Message implements ws.Handler.
func (h *served) Message(m ws.Message) {
	if m.Op == gws.OpBinary {
		h.sess.Binary()
		return
	}
	h.sess.Handle(h.s.base, m.Payload)
}

// Closed implements ws.Handler: the socket is finished (queued frames
// written, TCP closed), then the session releases everything it held
// (guarantee 8).
func (h *served) Closed() {
	s := h.s
	defer s.wg.Done()
	h.conn.Finish()
	h.sess.End(h.conn.CloseReason())
	s.mu.Lock()
	delete(s.sessions, h)
	s.mu.Unlock()
}

// closeRefused closes a connection that is not served with code and waits
// for the close handshake.
func closeRefused(conn *ws.Conn, code uint16, reason string) {
	conn.Close(code, reason)
	for {
		if _, err := conn.Read(); err != nil {
			break
		}
	}
	conn.Finish()
}

// rejoin runs when the edge's lease was lost and re-created: presence has
// dropped this edge's connections, so register them all again.
func (s *Service) rejoin(ctx context.Context) {
	n := s.presence.Rejoin()
	s.metrics.LeaseLost()
	s.log.Info("re-registering connections after lease loss", "registrations", n)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hubBackend is what the fan-out hub reads and subscribes through: the
// room log's sources and the NATS connection.
type hubBackend struct {
	pages.Sources
	*nreq.Client
}
