// Package presence is Hubbub's presence service: who is in which room, who
// is typing, and cleaning up after edges that die.
//
// Rosters live in the KV bucket subjects.BucketRoster, one entry per (room,
// user) holding that user's connections, changed only by compare-and-set so
// that any number of replicas can run side by side and each join or leave
// transition is performed by exactly one of them. Each replica watches the
// bucket and answers roster and count queries from memory. A user whose last
// connection goes stays online for a grace period (a page reload does not
// flap); then one replica's sweeper announces the leave. Edges hold leases in
// subjects.BucketEdges; when one expires, its connections are removed.
// Typing state lives in subjects.BucketTyping with a TTL; expiries turn into
// "off" events.
//
// The service is a nats.go/micro service named subjects.PresenceService with
// the endpoints subjects.PresenceJoin, PresenceLeave, PresenceRoster,
// PresenceCounts and PresenceTyping.
package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/presence/internal/lease"
	"github.com/hubbub-chat/hubbub/services/presence/internal/roster"
	"github.com/hubbub-chat/hubbub/services/presence/internal/typing"
	"github.com/hubbub-chat/hubbub/services/presence/internal/watch"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Version is the micro service version.
const Version = "1.0.0"

// QueueGroup is the queue group shared by all replicas, for the micro
// endpoints and the typing subscription.
const QueueGroup = "presence"

// Defaults.
const (
	DefaultGrace         = 5 * time.Second
	DefaultTypingTTL     = provision.DefaultTypingTTL
	DefaultLeaseTTL      = provision.DefaultLeaseTTL
	DefaultSweepInterval = time.Second
	DefaultWorkers       = 32
	DefaultOpTimeout     = 5 * time.Second
)

// Config tunes the service. Zero values take the defaults above.
type Config struct {
	// Grace is how long a user whose last connection left stays online
	// (a reload within it announces nothing).
	Grace time.Duration
	// TypingTTL is the typing bucket's TTL (how long "on" lasts without
	// renewal). It must match what the bucket was provisioned with.
	TypingTTL time.Duration
	// LeaseTTL is the edges bucket's TTL. Connections of an edge that has
	// held no lease for this long are removed by the periodic check.
	LeaseTTL time.Duration
	// SweepInterval is how often the sweeper looks for expired grace
	// periods and unfinished announcements.
	SweepInterval time.Duration
	// Workers is how many join/leave requests are processed concurrently
	// (requests for one room and user are always processed in order).
	Workers int
	// OpTimeout bounds the handling of one request.
	OpTimeout time.Duration
	// Replicas is used, with TypingTTL and LeaseTTL, to re-create the typing
	// bucket if it vanishes: it is kept in memory, so a single NATS server
	// loses it on restart.
	Replicas int
	// BucketMaxBytes sizes the re-created typing bucket
	// (provision.Config.BucketMaxBytes; accounts with max_bytes_required
	// need it).
	BucketMaxBytes int64
}

func (c Config) withDefaults() Config {
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.TypingTTL <= 0 {
		c.TypingTTL = DefaultTypingTTL
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	return c
}

// Deps are the service's collaborators.
type Deps struct {
	// NC is the NATS connection (required).
	NC *nats.Conn
	// Log is the logger (nil: discard).
	Log *slog.Logger
	// Registry receives the Prometheus metrics (nil: not registered).
	Registry prometheus.Registerer
	// JSDomain is the JetStream domain of the CHAT stream and buckets
	// (natsconn.Config.JSDomain); empty means the account's own JetStream.
	JSDomain string
}

// ErrNotReady is returned by Ready while the service cannot answer.
var ErrNotReady = errors.New("presence not ready")

// ErrNoConn is returned by New without a NATS connection.
var ErrNoConn = errors.New("presence: Deps.NC is required")

// Service is the presence service.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	metrics *metrics

	view   *roster.View
	leases *lease.Watcher
	typing *typing.Tracker
	store  *roster.Store
	edges  jetstream.KeyValue

	running atomic.Bool
}

// New builds a service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NC == nil {
		return nil, ErrNoConn
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	js, err := natsconn.NewJetStream(deps.NC, deps.JSDomain)
	if err != nil {
		return nil, fmt.Errorf("presence: jetstream: %w", err)
	}
	s := &Service{
		cfg:    cfg,
		nc:     deps.NC,
		js:     js,
		log:    deps.Log.With("svc", "presence"),
		view:   roster.NewView(),
		leases: lease.NewWatcher(1024),
	}
	s.metrics, err = newMetrics(deps.Registry, s)
	if err != nil {
		return nil, err
	}
	s.typing = typing.NewTracker(typing.Config{
		TTL:       cfg.TypingTTL,
		Bucket:    s.typingBucket,
		OpTimeout: cfg.OpTimeout,
		OnExpired: s.metrics.typingExpiries.Inc,
	}, s.nc, s.js, s.log)
	return s, nil
}

// Ready reports nil while the service answers requests: its views are
// loaded, its endpoints registered and NATS connected.
func (s *Service) Ready() error {
	if !s.running.Load() {
		return fmt.Errorf("%w: not running (starting, loading state or stopped)", ErrNotReady)
	}
	if !s.nc.IsConnected() {
		return fmt.Errorf("%w: nats %s", ErrNotReady, s.nc.Status())
	}
	return nil
}

// bucket opens a KV bucket, waiting (with backoff) while NATS or the
// bucket is unavailable, until ctx ends.
func (s *Service) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	backoff := 100 * time.Millisecond
	for {
		kv, err := s.js.KeyValue(ctx, name)
		if err == nil {
			return kv, nil
		}
		s.log.Warn("kv bucket unavailable; retrying", "bucket", name, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open bucket %s: %w", name, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// typingBucket opens the typing bucket, re-creating it when it is missing.
func (s *Service) typingBucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := s.js.KeyValue(ctx, subjects.BucketTyping)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	for _, b := range provision.Buckets(provision.Config{Replicas: s.cfg.Replicas, TypingTTL: s.cfg.TypingTTL, LeaseTTL: s.cfg.LeaseTTL, BucketMaxBytes: s.cfg.BucketMaxBytes}) {
		if b.Bucket == subjects.BucketTyping {
			s.log.Warn("typing bucket missing; re-creating it")
			kv, err = s.js.CreateOrUpdateKeyValue(ctx, b)
			if err != nil {
				return nil, fmt.Errorf("re-create bucket %s: %w", b.Bucket, err)
			}
			return kv, nil
		}
	}
	return nil, err
}

// Run serves until ctx ends, then stops gracefully and returns nil. It
// assumes provision.Ensure has created the stream and buckets.
func (s *Service) Run(ctx context.Context) error {
	if s.running.Load() {
		return errors.New("presence: already running")
	}
	rosterKV, err := s.bucket(ctx, subjects.BucketRoster)
	if err != nil {
		return ctxNil(ctx, err)
	}
	s.edges, err = s.bucket(ctx, subjects.BucketEdges)
	if err != nil {
		return ctxNil(ctx, err)
	}
	s.store = roster.NewStore(rosterKV, s.view, s.announce, roster.StoreConfig{Grace: s.cfg.Grace}, s.log)

	var wg sync.WaitGroup
	defer wg.Wait()
	bgCtx, stopBg := context.WithCancel(ctx)
	defer stopBg()

	// Views first: requests are answered from them.
	loaded := make(chan string, 3)
	follow := func(name string, open watch.Bucket, v watch.View) {
		once := sync.Once{}
		wg.Go(func() {
			_ = watch.Follow(bgCtx, open, v, watch.Options{
				Loaded:     func() { once.Do(func() { loaded <- name }) },
				Reconnects: func() uint64 { return s.nc.Stats().Reconnects },
				Log:        s.log.With("bucket", name),
			})
		})
	}
	follow(subjects.BucketRoster, func(context.Context) (jetstream.KeyValue, error) { return rosterKV, nil }, s.view)
	follow(subjects.BucketEdges, func(context.Context) (jetstream.KeyValue, error) { return s.edges, nil }, s.leases)
	follow(subjects.BucketTyping, s.typingBucket, s.typing)
	for range 3 {
		select {
		case <-ctx.Done():
			return nil
		case <-loaded:
		}
	}

	// Background work: reaping edges, sweeping, typing expiry.
	wg.Go(func() { s.reap(bgCtx) })
	wg.Go(func() { s.sweep(bgCtx) })
	wg.Go(func() { _ = s.typing.RunExpiry(bgCtx) })

	// Request handling.
	typingSub, err := s.nc.QueueSubscribe(subjects.TypingAll, QueueGroup, s.typing.Handle)
	if err != nil {
		return fmt.Errorf("presence: subscribe %s: %w", subjects.TypingAll, err)
	}
	srv, err := s.serve()
	if err != nil {
		_ = typingSub.Unsubscribe()
		return err
	}
	// Make sure the server has our subscriptions before calling us ready.
	if err := s.nc.FlushTimeout(s.cfg.OpTimeout); err != nil {
		s.log.Warn("flush subscriptions", "err", err)
	}
	s.running.Store(true)
	s.log.Info("presence running", "id", srv.Info().ID, "grace", s.cfg.Grace, "typing_ttl", s.cfg.TypingTTL, "lease_ttl", s.cfg.LeaseTTL)

	<-ctx.Done()
	s.running.Store(false)
	s.log.Info("presence stopping")
	// Queued join/leave requests are still answered, within a bound.
	sctx, scancel := context.WithTimeout(context.Background(), s.cfg.OpTimeout)
	if err := srv.Stop(sctx); err != nil {
		s.log.Warn("stop serving", "err", err)
	}
	scancel()
	if err := typingSub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		s.log.Warn("drain typing subscription", "err", err)
	}
	stopBg()
	return nil
}

// ctxNil turns an error caused by ctx ending into a clean nil.
func ctxNil(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// announce publishes a transition: the system message (JetStream, with the
// transition's Nats-Msg-Id so it is stored once whoever retries) and, by the
// announcer whose message was stored (not a duplicate), the roster diff. A
// leave also clears the user's typing state.
func (s *Service) announce(ctx context.Context, t roster.Transition) error {
	body := t.User + " joined"
	if t.Event == wire.EventLeave {
		body = t.User + " left"
	}
	post, err := json.Marshal(wire.Post{Room: t.Room, User: t.User, Body: body, Kind: wire.KindSystem, TS: time.Now().UnixMilli()})
	if err != nil {
		return fmt.Errorf("encode system message: %w", err)
	}
	ack, err := s.js.Publish(ctx, subjects.Room(t.Room), post, jetstream.WithMsgID(t.MsgID()))
	if err != nil {
		return fmt.Errorf("publish system message: %w", err)
	}
	if ack.Duplicate {
		// Someone already announced this transition (a sweeper retrying a
		// slow announcement, or a replica taking over a stuck one): the
		// one whose message was stored publishes the diff, so clients see
		// it once.
		if t.Event == wire.EventLeave {
			s.clearTyping(ctx, t)
		}
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	s.view.WaitRev(wctx, t.Rev)
	cancel()
	ev, err := json.Marshal(wire.PresenceEvent{Room: t.Room, Event: t.Event, User: t.User, Online: s.view.Online(t.Room)})
	if err != nil {
		return fmt.Errorf("encode presence event: %w", err)
	}
	if err := s.nc.Publish(subjects.Presence(t.Room), ev); err != nil {
		return fmt.Errorf("publish presence event: %w", err)
	}
	if t.Event == wire.EventJoin {
		s.metrics.joins.Inc()
		return nil
	}
	s.metrics.leaves.Inc()
	s.clearTyping(ctx, t)
	return nil
}

// clearTyping removes a leaving user's typing state.
func (s *Service) clearTyping(ctx context.Context, t roster.Transition) {
	if err := s.typing.Clear(ctx, t.Room, t.User); err != nil {
		s.log.Warn("clear typing on leave", "room", t.Room, "err", err)
	}
}

// reap removes the connections of edges whose lease went away.
func (s *Service) reap(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
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

// sweep runs the roster sweeper and the orphan check until ctx ends.
func (s *Service) sweep(ctx context.Context) {
	tick := time.NewTicker(s.cfg.SweepInterval)
	defer tick.Stop()
	orphanEvery := max(s.cfg.LeaseTTL/3, s.cfg.SweepInterval)
	lastOrphan := time.Time{}
	lastPurge := time.Now()
	missing := map[string]time.Time{} // edge → first seen without lease
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := s.store.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("roster sweep", "err", err)
		}
		if time.Since(lastOrphan) >= orphanEvery {
			lastOrphan = time.Now()
			s.reapOrphans(ctx, missing)
		}
		if time.Since(lastPurge) >= time.Hour {
			lastPurge = time.Now()
			if kv, err := s.js.KeyValue(ctx, subjects.BucketRoster); err == nil {
				if err := kv.PurgeDeletes(ctx); err != nil {
					s.log.Warn("purge roster delete markers", "err", err)
				}
			}
		}
	}
}

// reapOrphans removes connections of edges that have held no lease for a
// whole lease TTL (edges that died while no presence replica watched).
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
