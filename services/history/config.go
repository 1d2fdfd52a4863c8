package history

import (
	"time"

	"github.com/hubbub-chat/hubbub/services/history/internal/ingest"
	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/defaults"
)

// StoreConfig selects and opens history's database (DatabaseURL, Pooler,
// DataDir); the store package owns it. It is an alias so that callers
// outside this module can set it.
type StoreConfig = store.Options

// PostgresConfig tunes the Postgres store (Pooler); it is part of
// StoreConfig.
type PostgresConfig = store.PostgresOptions

// IngestConfig tunes ingest (BatchSize, BatchWait, AckWait, MaxAckPending,
// MaxBackoff, Inserts, MaxBody) and owns those defaults; it is an alias so
// that callers outside this module can set it.
type IngestConfig = ingest.Config

// Values of Config.Pooler (store.PoolerNone, store.PoolerTransaction).
const (
	// PoolerNone: history connects to Postgres itself (the default).
	PoolerNone = store.PoolerNone
	// PoolerTransaction: PgBouncer or another transaction pooler sits
	// between history and Postgres.
	PoolerTransaction = store.PoolerTransaction
)

// Defaults of the settings Config holds itself; the store's and ingest's
// are their packages' (ingest.DefaultBatchSize and so on).
const (
	// DefaultDataDir is the -data-dir flag's default.
	DefaultDataDir = "./hubbub-data"
	// DefaultRetentionInterval is Config.RetentionInterval's default.
	DefaultRetentionInterval = time.Minute
	// DefaultRetentionBatch is Config.RetentionBatch's default.
	DefaultRetentionBatch = 500
	// DefaultWorkers is Config.Workers's default.
	DefaultWorkers = 64
	// DefaultRequestTimeout is Config.RequestTimeout's default.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxQueueWait is Config.MaxQueueWait's default, below the
	// edges' 3 s request timeout.
	DefaultMaxQueueWait = 2 * time.Second
	// QueuedPerWorker is how many requests may wait per worker by default:
	// Config.MaxQueued is QueuedPerWorker × Workers.
	QueuedPerWorker = 16
	// DefaultMarksInterval is Config.MarksInterval's default.
	DefaultMarksInterval = 250 * time.Millisecond
	// DefaultMaxStreamScan is Config.MaxStreamScan's default.
	DefaultMaxStreamScan = 10000
	// DefaultMaxIngestLag is Config.MaxIngestLag's default.
	DefaultMaxIngestLag = time.Minute
)

// Config configures the service. Zero values take the defaults.
type Config struct {
	// StoreConfig selects the database: DatabaseURL (Postgres when
	// postgres:// or postgresql://), Pooler (what sits between history
	// and Postgres: PoolerNone or empty, or PoolerTransaction) and DataDir
	// (the SQLite file history.db when DatabaseURL is empty). Its fields
	// are promoted: cfg.DataDir is cfg.StoreConfig.DataDir.
	StoreConfig
	// IngestConfig tunes ingest; its fields (BatchSize, BatchWait,
	// AckWait, MaxAckPending, MaxBackoff, Inserts, MaxBody) are promoted.
	// MaxBody also bounds the bodies history serves from the stream. Read
	// replicas do not ingest.
	IngestConfig
	// Retention deletes messages older than this; 0 keeps everything.
	Retention time.Duration
	// RetentionInterval is how often retention runs
	// (DefaultRetentionInterval).
	RetentionInterval time.Duration
	// RetentionBatch is how many rows one retention transaction deletes
	// (DefaultRetentionBatch).
	RetentionBatch int
	// Workers bounds requests handled concurrently (DefaultWorkers).
	Workers int
	// RequestTimeout bounds one request (DefaultRequestTimeout).
	RequestTimeout time.Duration
	// MaxQueueWait is how long a request may wait for a worker
	// (DefaultMaxQueueWait): one that waited longer is answered 503
	// without querying, since its requester is about to give up, so an
	// overloaded history spends its time on requests still wanted.
	MaxQueueWait time.Duration
	// MaxQueued bounds the requests waiting for a worker (QueuedPerWorker
	// × Workers); beyond it a request is answered 503 at once.
	MaxQueued int
	// MarksInterval is how often the consumer's ack floor is re-read
	// (DefaultMarksInterval).
	MarksInterval time.Duration
	// MaxStreamScan bounds the stream messages one request may read while
	// the database lags (DefaultMaxStreamScan); beyond it the request
	// fails with 503.
	MaxStreamScan int
	// ReadOnly serves requests without consuming (no ingest, no retention).
	ReadOnly bool
	// MaxIngestLag is how old the oldest message not yet stored may get
	// before Ready reports ErrIngestLagging (DefaultMaxIngestLag);
	// negative: never. Read-only replicas do not check it.
	MaxIngestLag time.Duration
}

// WithDefaults fills zero fields, the ingest settings included.
func (c Config) WithDefaults() Config {
	c.IngestConfig = c.IngestConfig.WithDefaults()
	defaults.Positive(&c.RetentionInterval, DefaultRetentionInterval)
	defaults.Positive(&c.RetentionBatch, DefaultRetentionBatch)
	defaults.Positive(&c.Workers, DefaultWorkers)
	defaults.Positive(&c.RequestTimeout, DefaultRequestTimeout)
	defaults.Positive(&c.MaxQueueWait, DefaultMaxQueueWait)
	defaults.Positive(&c.MaxQueued, QueuedPerWorker*c.Workers)
	defaults.Positive(&c.MarksInterval, DefaultMarksInterval)
	defaults.Positive(&c.MaxStreamScan, DefaultMaxStreamScan)
	if c.MaxIngestLag == 0 {
		c.MaxIngestLag = DefaultMaxIngestLag
	}
	return c
}
