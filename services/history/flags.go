package history

import (
	"fmt"

	"github.com/hubbub-chat/hubbub/services/history/internal/ingest"
	"github.com/hubbub-chat/hubbub/shared/config"
)

// RegisterFlags defines history's settings on f (HUBBUB_DATABASE_URL,
// HUBBUB_PG_POOLER, HUBBUB_DATA_DIR, HUBBUB_HISTORY_*, and HUBBUB_MAX_BODY,
// which the edge reads too, so that one variable sets the body limit of
// both tiers). The defaults shown are the owning packages' constants.
func (c *Config) RegisterFlags(f *config.Flags) {
	f.String(&c.DatabaseURL, "database-url", "HUBBUB_DATABASE_URL", "", "Postgres URL (postgres://…); empty: SQLite in the data dir")
	f.String(&c.Pooler, "pg-pooler", "HUBBUB_PG_POOLER", PoolerNone, "what sits between history and Postgres: none, or transaction (PgBouncer or another transaction pooler)")
	f.String(&c.DataDir, "data-dir", "HUBBUB_DATA_DIR", DefaultDataDir, "directory of the SQLite database history.db")
	f.Duration(&c.Retention, "retention", "HUBBUB_HISTORY_RETENTION", 0, "delete messages older than this; 0 keeps everything")
	f.Int(&c.BatchSize, "batch-size", "HUBBUB_HISTORY_BATCH_SIZE", ingest.DefaultBatchSize, "most messages inserted per transaction")
	f.Duration(&c.BatchWait, "batch-wait", "HUBBUB_HISTORY_BATCH_WAIT", ingest.DefaultBatchWait, "how long a partial batch waits for more messages")
	f.Duration(&c.AckWait, "ack-wait", "HUBBUB_HISTORY_ACK_WAIT", ingest.DefaultAckWait, "how long a delivered, unacknowledged message waits before redelivery")
	f.Int(&c.MaxAckPending, "max-ack-pending", "HUBBUB_HISTORY_MAX_ACK_PENDING", 0, fmt.Sprintf("most unacknowledged messages in flight (0: %d × batch size)", ingest.AckPendingBatches))
	f.Int(&c.Inserts, "inserts", "HUBBUB_HISTORY_INSERTS", ingest.DefaultInserts, "insert batches in flight at once")
	f.Int(&c.Workers, "workers", "HUBBUB_HISTORY_WORKERS", DefaultWorkers, "requests handled concurrently")
	f.Bool(&c.ReadOnly, "read-only", "HUBBUB_HISTORY_READ_ONLY", false, "serve requests without consuming the stream")
	f.Int(&c.MaxBody, "history-max-body", "HUBBUB_MAX_BODY", ingest.DefaultMaxBody, "longest message body in characters stored; longer ones are parked (keep it at least the edges' -max-body)")
	f.Duration(&c.MaxIngestLag, "max-ingest-lag", "HUBBUB_HISTORY_MAX_INGEST_LAG", DefaultMaxIngestLag, "not ready while the oldest message not yet stored is older than this; negative: never")
}
