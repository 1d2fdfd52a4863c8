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
// Presence is not conversation: online transitions are published as roster
// diffs only. Membership is: a user's first join of a room and an explicit
// leave change subjects.BucketMembers and store one "joined" / "left"
// system message on the room's chain (members.go).
//
// Rooms (rooms.go and the files it names): private rooms, DMs, roles and
// moderation live in subjects.BucketRooms; the access endpoint decides
// what a user may do in a room, and a first join of a room the user may
// not read is refused.
//
// The service is a nats.go/micro service named subjects.PresenceService with
// the endpoints subjects.PresenceJoin, PresenceLeave, PresenceRoster,
// PresenceCounts and PresenceTyping, and the room endpoints
// subjects.PresenceAccess, PresenceRooms and PresenceRoom*.
package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/presence/internal/lease"
	"github.com/hubbub-chat/hubbub/services/presence/internal/roster"
	"github.com/hubbub-chat/hubbub/services/presence/internal/typing"
	"github.com/hubbub-chat/hubbub/shared/loops"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// Version is the micro service version.
const Version = "1.0.0"

// QueueGroup is the queue group shared by all replicas, for the micro
// endpoints and the typing subscription.
const QueueGroup = "presence"

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

	view    *roster.View
	leases  *lease.Watcher
	typing  *typing.Tracker
	store   *roster.Store
	edges   jetstream.KeyValue
	members jetstream.KeyValue
	rooms   jetstream.KeyValue

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

// Run serves until ctx ends, then stops gracefully and returns nil. It
// assumes provision.Ensure has created the stream and buckets.
//
// It opens the roster, edges, members and rooms buckets (buckets.go), follows the
// roster, edges and typing buckets into memory (views.go), starts the background jobs — edge
// reaping (leases.go), grace sweeps and purges (sweep.go), typing expiry —
// and then serves (typing.go, handlers.go). The loops form one
// loops.Group: when ctx ends they stop, last started first, while the
// endpoints stop.
func (s *Service) Run(ctx context.Context) error {
	if s.running.Load() {
		return errors.New("presence: already running")
	}
	rosterKV, err := s.bucket(ctx, subjects.BucketRoster)
	if err != nil {
		return ctxNil(ctx, err)
	}
	if s.edges, err = s.bucket(ctx, subjects.BucketEdges); err != nil {
		return ctxNil(ctx, err)
	}
	if s.members, err = s.bucket(ctx, subjects.BucketMembers); err != nil {
		return ctxNil(ctx, err)
	}
	if s.rooms, err = s.bucket(ctx, subjects.BucketRooms); err != nil {
		return ctxNil(ctx, err)
	}
	s.store = roster.NewStore(rosterKV, s.view, s.announce, roster.StoreConfig{Grace: s.cfg.Grace}, s.log)

	g := loops.New(ctx)
	defer g.Stop() // stops the loops on the early returns
	// Views first: requests are answered from them.
	if !s.followBuckets(g, rosterKV) {
		return g.Stop()
	}
	g.Go("reap", s.reap)
	g.Go("sweep", s.sweep)
	g.Go("purge", s.purge)
	g.Go("typing expiry", s.typing.RunExpiry)

	typingSub, err := s.subscribeTyping()
	if err != nil {
		return err
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

	<-g.Context().Done()
	s.running.Store(false)
	s.log.Info("presence stopping")
	s.stopServing(srv, typingSub)
	return g.Stop()
}
