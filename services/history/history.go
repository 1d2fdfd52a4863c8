// Package history is the history service: it stores every room message of
// the CHAT stream exactly once (durable pull consumer, idempotent insert,
// ack after commit) and answers recent, since and lobby requests as the
// nats.go/micro service "history".
//
// The caller provisions the stream (provision.Ensure) before Run.
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
	"github.com/hubbub-chat/hubbub/shared/backoff"
	"github.com/hubbub-chat/hubbub/shared/loops"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Version is the micro service version.
const Version = "1.0.0"

// QueueGroup is the queue group of every endpoint: replicas share load.
const QueueGroup = "history"

// ErrStreamMismatch is returned by Run when the database belongs to
// another instance of the CHAT stream (store.ErrStreamMismatch).
var ErrStreamMismatch = store.ErrStreamMismatch

// ErrNotReady is reported by Ready before Run has bound the store to the
// stream.
var ErrNotReady = errors.New("history not started")

// ErrIngestLagging is reported by Ready while the oldest message not yet
// stored is older than Config.MaxIngestLag (or the lag could not be
// measured for that long).
var ErrIngestLagging = errors.New("history ingest is lagging")

// Config configures the service. Zero values take the defaults.
type Config struct {
	// DatabaseURL selects Postgres (postgres:// or postgresql://).
	DatabaseURL string
	// PGPooler names what sits between history and Postgres:
	// store.PoolerNone (or empty: Postgres itself) or store.PoolerTransaction
	// (PgBouncer or another transaction pooler).
	PGPooler string
	// DataDir holds the SQLite file history.db when DatabaseURL is empty.
	DataDir string
	// Retention deletes messages older than this; 0 keeps everything.
	Retention time.Duration
	// RetentionInterval is how often retention runs (1m).
	RetentionInterval time.Duration
	// RetentionBatch is how many rows one retention transaction deletes (500).
	RetentionBatch int
	// BatchSize is the most messages inserted per transaction (500).
	BatchSize int
	// BatchWait is how long a partial batch waits for more messages (20ms).
	BatchWait time.Duration
	// AckWait is the consumer's redelivery timeout (30s).
	AckWait time.Duration
	// MaxAckPending bounds unacknowledged messages (8 × BatchSize).
	MaxAckPending int
	// Inserts is how many batches are inserted concurrently (2).
	Inserts int
	// Workers bounds requests handled concurrently (64).
	Workers int
	// RequestTimeout bounds one request (5s).
	RequestTimeout time.Duration
	// MaxQueueWait is how long a request may wait for a worker (2s, below
	// the edges' 3 s request timeout): one that waited longer is answered
	// 503 without querying, since its requester is about to give up, so
	// an overloaded history spends its time on requests still wanted.
	MaxQueueWait time.Duration
	// MaxQueued bounds the requests waiting for a worker (16 × Workers);
	// beyond it a request is answered 503 at once.
	MaxQueued int
	// MarksInterval is how often the consumer's ack floor is re-read (250ms).
	MarksInterval time.Duration
	// MaxStreamScan bounds the stream messages one request may read while
	// the database lags (10000); beyond it the request fails with 503.
	MaxStreamScan int
	// ReadOnly serves requests without consuming (no ingest, no retention).
	ReadOnly bool
	// MaxBody is the longest message body in characters (after trimming)
	// history stores (wire.DefaultMaxBody); a longer one, like any body
	// wire.CheckBody refuses, is parked. Keep it at least the edges'.
	MaxBody int
	// MaxIngestLag is how old the oldest message not yet stored may get
	// before Ready reports ErrIngestLagging (1m); negative: never. Read-only
	// replicas do not check it.
	MaxIngestLag time.Duration
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = time.Minute
	}
	if c.RetentionBatch <= 0 {
		c.RetentionBatch = 500
	}
	ic := c.ingestConfig().WithDefaults()
	c.BatchSize, c.BatchWait, c.AckWait, c.MaxAckPending, c.Inserts = ic.BatchSize, ic.BatchWait, ic.AckWait, ic.MaxAckPending, ic.Inserts
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.MaxQueueWait <= 0 {
		c.MaxQueueWait = 2 * time.Second
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 16 * c.Workers
	}
	if c.MarksInterval <= 0 {
		c.MarksInterval = 250 * time.Millisecond
	}
	if c.MaxStreamScan <= 0 {
		c.MaxStreamScan = 10000
	}
	if c.MaxBody <= 0 {
		c.MaxBody = wire.DefaultMaxBody
	}
	if c.MaxIngestLag == 0 {
		c.MaxIngestLag = time.Minute
	}
	return c
}

func (c Config) ingestConfig() ingest.Config {
	return ingest.Config{BatchSize: c.BatchSize, BatchWait: c.BatchWait, AckWait: c.AckWait, MaxAckPending: c.MaxAckPending,
		Inserts: c.Inserts, MaxBody: c.MaxBody}
}

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
	ing    *ingest.Ingester

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
	st, err := openStore(ctx, cfg)
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
	if !cfg.ReadOnly {
		if s.ing, err = ingest.New(js, st, cfg.ingestConfig(), log, m); err != nil {
			_ = st.Close()
			return nil, err
		}
	}
	return s, nil
}

// openStore opens the store cfg selects.
func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if !store.IsPostgresURL(cfg.DatabaseURL) {
		if cfg.PGPooler != "" && cfg.PGPooler != store.PoolerNone {
			return nil, fmt.Errorf("%w: a Postgres pooler (%q) without a postgres:// database URL", store.ErrInvalidArgument, cfg.PGPooler)
		}
		return store.Open(ctx, store.Options{DatabaseURL: cfg.DatabaseURL, DataDir: cfg.DataDir})
	}
	return store.OpenPostgresWith(ctx, cfg.DatabaseURL, store.PostgresOptions{Pooler: cfg.PGPooler})
}

// Ready reports whether the service can do its job now: started, its
// request endpoints registered, the database answering, ingest not
// stalled and (unless read-only) not lagging past Config.MaxIngestLag.
func (s *Service) Ready() error {
	if !s.bound.Load() || !s.running.Load() || !s.serving.Load() {
		return ErrNotReady
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		return fmt.Errorf("history database: %w", err)
	}
	if s.ing != nil {
		if err := s.ing.Healthy(); err != nil {
			return err
		}
		if err := s.lagging(); err != nil {
			return err
		}
	}
	return nil
}

// lagging reports ErrIngestLagging when the last measured ingest lag is
// over the bound, or when it has not been measured for that long.
func (s *Service) lagging() error {
	bound := s.cfg.MaxIngestLag
	if bound < 0 {
		return nil
	}
	if age := time.Since(time.Unix(0, s.lagAt.Load())); age > bound {
		return fmt.Errorf("%w: lag not measured for %s (bound %s)", ErrIngestLagging, age.Round(time.Millisecond), bound)
	}
	if lag := time.Duration(s.lag.Load()); lag > bound {
		return fmt.Errorf("%w: the oldest message not yet stored is %s old (bound %s)", ErrIngestLagging,
			lag.Round(time.Millisecond), bound)
	}
	return nil
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
	if s.ing != nil {
		bg.Go("ingest", s.ing.Run)
		if s.cfg.Retention > 0 {
			bg.Go("retention", s.retentionLoop)
		}
	}
	ctx = bg.Context()
	srv, err := s.serve()
	if err != nil {
		_ = bg.Stop()
		return err
	}
	// The server must have the endpoints' subscriptions before the
	// service calls itself ready; a failed flush only delays readiness.
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	err = s.nc.FlushWithContext(fctx)
	fcancel()
	if err != nil && ctx.Err() == nil {
		s.log.Warn("history: flush subscriptions", "err", err)
	}
	s.serving.Store(true)
	s.log.Info("history running", "store", fmt.Sprint(s.st), "read_only", s.cfg.ReadOnly, "retention", s.cfg.Retention)
	<-ctx.Done()
	s.serving.Store(false)
	// Running requests finish (each within RequestTimeout) and queued ones
	// are refused; past the bound their contexts are cancelled.
	sctx, scancel := context.WithTimeout(context.Background(), 2*s.cfg.RequestTimeout)
	if err := srv.Stop(sctx); err != nil {
		s.log.Warn("history: stop serving", "err", err)
	}
	scancel()
	if err := bg.Wait(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	s.log.Info("history stopped")
	return nil
}

func (s *Service) close() {
	s.closeOnce.Do(func() {
		if err := s.st.Close(); err != nil {
			s.log.Warn("history: close store", "err", err)
		}
	})
}

// bind waits for the stream, then checks the store belongs to it. A fresh
// database starts the consumer over, so that everything the stream still
// holds is stored.
func (s *Service) bind(ctx context.Context) error {
	return backoff.Retry(ctx, backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}, func(ctx context.Context) error {
		info, err := s.streamInfo(ctx)
		if err != nil {
			return err
		}
		id := store.Identity{Stream: info.Config.Name, Created: info.Created}
		fresh, err := s.st.Bind(ctx, id)
		if err != nil {
			return backoff.Permanent(fmt.Errorf("history: bind store to stream %s: %w", id, err))
		}
		if fresh && !s.cfg.ReadOnly {
			err := s.js.DeleteConsumer(ctx, subjects.Stream, ingest.Durable)
			switch {
			case err == nil:
				s.log.Warn("history: new database; consumer reset to replay the stream")
			case !errors.Is(err, jetstream.ErrConsumerNotFound):
				return backoff.Permanent(fmt.Errorf("history: reset consumer for a new database: %w", err))
			}
		}
		s.bound.Store(true)
		return nil
	}, func(err error, _ time.Duration) {
		s.log.Warn("history: waiting for stream", "stream", subjects.Stream, "err", err)
	})
}

func (s *Service) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, subjects.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", subjects.Stream, err)
	}
	return st.Info(ctx)
}

// marks returns the current marks for the page reader.
func (s *Service) marks() roomlog.Marks {
	return roomlog.Marks{Stored: s.stored.Load(), First: s.first.Load()}
}

// refreshMarks re-reads the consumer's ack floor and the stream's bounds.
func (s *Service) refreshMarks(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var floor uint64
	cons, err := s.js.Consumer(ctx, subjects.Stream, ingest.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		err = nil // nothing acknowledged yet
	case err == nil:
		var ci *jetstream.ConsumerInfo
		if ci, err = cons.Info(ctx); err == nil {
			floor = ci.AckFloor.Stream
		}
	}
	if err != nil {
		s.log.Debug("history: read consumer ack floor", "err", err)
		return
	}
	// Lower is always safe; stale higher is not: store what we read.
	s.stored.Store(floor)
	info, err := s.streamInfo(ctx)
	if err != nil {
		s.log.Debug("history: read stream info", "err", err)
		return
	}
	s.first.Store(info.State.FirstSeq)
	if info.State.LastSeq >= floor {
		s.m.ConsumerLag.Set(float64(info.State.LastSeq - floor))
	}
	s.measureLag(ctx, floor, info.State.LastSeq)
}

// measureLag records the ingest lag: the age of the oldest message not
// known to be stored, which is the first room message after the ack floor
// (everything at or below it is stored or parked), read with one direct
// get. It is 0 when the floor has reached the stream's last sequence.
func (s *Service) measureLag(ctx context.Context, floor, last uint64) {
	var lag time.Duration
	if last > floor {
		var oldest time.Time
		err := roomlog.NewReader(s.nc, s.js, subjects.Stream).Scan(ctx, subjects.RoomAll, floor+1, func(m roomlog.Msg) bool {
			oldest = m.Time
			return false
		})
		if err != nil {
			s.log.Debug("history: read the oldest unstored message", "err", err)
			return
		}
		if !oldest.IsZero() {
			lag = max(time.Since(oldest), 0)
		}
	}
	s.lag.Store(int64(lag))
	s.lagAt.Store(time.Now().UnixNano())
	s.m.IngestLag.Set(lag.Seconds())
}

// marksLoop re-reads the marks every MarksInterval.
func (s *Service) marksLoop(ctx context.Context) error {
	return loops.Every(ctx, s.cfg.MarksInterval, s.refreshMarks)
}

// retentionLoop deletes expired messages every RetentionInterval.
func (s *Service) retentionLoop(ctx context.Context) error {
	return loops.Every(ctx, s.cfg.RetentionInterval, s.retain)
}

// retain deletes the messages older than Retention in small batches, then
// the dead letters as old.
func (s *Service) retain(ctx context.Context) {
	cutoff := time.Now().Add(-s.cfg.Retention)
	for ctx.Err() == nil {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := s.st.Trim(tctx, cutoff, s.cfg.RetentionBatch)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("history retention", "err", err)
			}
			return
		}
		s.m.Trimmed.Add(float64(n))
		if n < s.cfg.RetentionBatch {
			s.trimDeadLetters(ctx, cutoff)
			return
		}
		if !backoff.Sleep(ctx, 10*time.Millisecond) { // let writers in between batches
			return
		}
	}
}

// trimDeadLetters applies retention to the dead-letter table too: parked
// messages are user content like the rest.
func (s *Service) trimDeadLetters(ctx context.Context, cutoff time.Time) {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := s.st.TrimDeadLetters(tctx, cutoff)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("history retention of dead letters", "err", err)
		}
		return
	}
	if n > 0 {
		s.log.Info("history retention: dead letters deleted", "count", n, "parked_before", cutoff)
	}
}
