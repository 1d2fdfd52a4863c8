// Package history is the history service: it stores every room event of
// the CHAT stream exactly once (durable pull consumer, idempotent insert,
// ack after commit), folding each change event (edit, delete, reaction)
// into the message it targets as it stores it (roomlog.Apply), and answers
// as the nats.go/micro service "history":
//
//   - hubbub.history.recent (wire.RecentRequest → wire.Page): folded
//     messages, Last the chain cursor; hubbub.history.since
//     (wire.SinceRequest → wire.Page): raw events; hubbub.history.lobby;
//   - hubbub.history.message (wire.MessageRequest → the folded
//     wire.Message, read like a page: stored, else from the stream above
//     the watermark), or the error envelope CodeNotFound ("404") with a
//     wire.ErrorFrame body of code not_found;
//   - hubbub.history.unread (wire.UnreadRequest → wire.UnreadReply):
//     per room, chat messages by others after the read mark and those
//     mentioning the user, capped at wire.MaxUnread.
//
// After each committed batch, ingest publishes a wire.MentionEvent on
// chat.mention.<usertoken> (core NATS) per user mentioned by a message it
// stored. Folding costs ingest a few round trips per change event: on
// Postgres, batches of 500 with a fifth of them changes store ~14k rows/s
// against ~51k without (SQLite ~42k against ~54k; BenchmarkInsertChanges,
// 2 shared cores).
//
// The caller provisions the stream (provision.Ensure) before Run.
//
// The files of the package, by role: config.go (Config, its defaults) and
// flags.go; bind.go (binding the store to the stream); ingest.go (the
// consumer; startWriters starts the jobs of a writing replica, ingest
// then retention); marks.go (the marks loop: ack floor and stream
// bounds); ready.go (readiness and the ingest lag); retention.go (the
// retention loop and dead-letter trimming); serve.go (the request
// endpoints).
package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/history/internal/ingest"
	"github.com/hubbub-chat/hubbub/services/history/internal/metrics"
	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/loops"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// Version is the micro service version.
const Version = "1.0.0"

// QueueGroup is the queue group of every endpoint: replicas share load.
const QueueGroup = "history"

// ErrStreamMismatch is returned by Run when the database belongs to
// another instance of the CHAT stream (store.ErrStreamMismatch).
var ErrStreamMismatch = store.ErrStreamMismatch

// Deps are the service's collaborators.
type Deps struct {
	// NC is the NATS connection.
	NC *nats.Conn
	// Log receives the service's logs (discarded when nil).
	Log *slog.Logger
	// Registry registers the metrics when not nil.
	Registry prometheus.Registerer
	// JSDomain is the JetStream domain of the CHAT stream and buckets
	// (natsconn.Config.JSDomain); empty means the account's own JetStream.
	JSDomain string
}

// Service is one history replica.
type Service struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *slog.Logger
	m      *metrics.Metrics
	st     store.Store
	reader *roomlog.Pages
	ing    *ingest.Ingester // nil on a read-only replica

	bound     atomic.Bool   // store bound to the stream
	serving   atomic.Bool   // request endpoints registered
	stored    atomic.Uint64 // consumer ack floor
	first     atomic.Uint64 // stream first sequence
	running   atomic.Bool
	lag       atomic.Int64 // ingest lag (time.Duration) at lagAt
	lagAt     atomic.Int64 // when lag was last measured (Unix ns)
	closeOnce sync.Once
}

// New opens (creating and migrating) the store and prepares the service.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NC == nil {
		return nil, errors.New("history: Deps.NC is required")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("svc", "history")
	cfg = cfg.WithDefaults()
	m, err := metrics.New(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("history metrics: %w", err)
	}
	js, err := natsconn.NewJetStream(deps.NC, deps.JSDomain)
	if err != nil {
		return nil, fmt.Errorf("history jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, cfg.StoreConfig)
	if err != nil {
		return nil, fmt.Errorf("history store: %w", err)
	}
	if ps, ok := st.(metrics.PoolSource); ok {
		m.Pools.Observe(ps)
	}
	s := &Service{cfg: cfg, nc: deps.NC, js: js, log: log, m: m, st: st}
	s.reader = &roomlog.Pages{
		Store:        st,
		Stream:       roomlog.NewReader(deps.NC, js, subjects.Stream),
		Marks:        s.marks,
		Decoder:      roomlog.Decoder{MaxBody: cfg.MaxBody},
		MaxScan:      cfg.MaxStreamScan,
		OnStreamRead: func(n int) { m.StreamReads.Add(float64(n)) },
	}
	if err := s.newIngester(); err != nil {
		_ = st.Close()
		return nil, err
	}
	return s, nil
}

// Run binds the store to the stream, then consumes, serves requests and
// enforces retention until ctx ends. It returns nil on a clean shutdown
// and closes the store; a Service runs once.
func (s *Service) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("history: Run called twice")
	}
	defer s.running.Store(false)
	defer s.close()
	if err := s.bind(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.lagAt.Store(time.Now().UnixNano()) // not measured yet: allowed for one bound
	s.refreshMarks(ctx)

	// The background loops stop when ctx ends or one fails, retention
	// first and the marks last; requests are served under the group's
	// context, so a failed loop stops them too.
	bg := loops.New(ctx)
	bg.Go("marks", s.marksLoop)
	s.startWriters(bg)
	ctx = bg.Context()
	srv, err := s.startServing(ctx)
	if err != nil {
		_ = bg.Stop()
		return err
	}
	s.log.Info("history running", "store", fmt.Sprint(s.st), "read_only", s.cfg.ReadOnly, "retention", s.cfg.Retention)
	<-ctx.Done()
	s.stopServing(srv)
	if err := bg.Wait(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	s.log.Info("history stopped")
	return nil
}

// close closes the store, once.
func (s *Service) close() {
	s.closeOnce.Do(func() {
		if err := s.st.Close(); err != nil {
			s.log.Warn("history: close store", "err", err)
		}
	})
}
