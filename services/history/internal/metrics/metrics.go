// Package metrics defines the history service's Prometheus metrics.
package metrics

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the history service's instruments. A nil registry leaves
// them unregistered (still usable).
type Metrics struct {
	// ConsumerLag is the stream's last sequence minus the consumer's ack
	// floor: messages not yet known to be stored.
	ConsumerLag prometheus.Gauge
	// BatchSize observes the size of each insert batch.
	BatchSize prometheus.Histogram
	// InsertSeconds observes each batch insert (commit included).
	InsertSeconds prometheus.Histogram
	// InsertErrors counts failed batch inserts (each retried).
	InsertErrors prometheus.Counter
	// Stored counts rows inserted (duplicates excluded).
	Stored prometheus.Counter
	// Redeliveries counts messages delivered more than once.
	Redeliveries prometheus.Counter
	// Mentions counts mention events published (one per stored message
	// and mentioned user).
	Mentions prometheus.Counter
	// Undecodable counts stream messages that are not room messages (each
	// is also parked with reason undecodable).
	Undecodable prometheus.Counter
	// Parked counts messages parked in the dead-letter table instead of
	// stored, by reason: undecodable (not a room message), invalid (breaks
	// the message rule) or rejected (the database refused the row).
	Parked *prometheus.CounterVec
	// IngestLag is the age in seconds of the oldest message not yet known
	// to be stored (the one after the consumer's ack floor); 0 when none.
	IngestLag prometheus.Gauge
	// Requests counts requests by endpoint and outcome (ok, bad_request, error, unavailable).
	Requests *prometheus.CounterVec
	// RequestSeconds observes request handling time by endpoint.
	RequestSeconds *prometheus.HistogramVec
	// StreamReads counts messages served from the stream because the
	// database had not stored them yet.
	StreamReads prometheus.Counter
	// Trimmed counts rows deleted by retention.
	Trimmed prometheus.Counter
	// Pools reports the database connection pools' statistics once a
	// Postgres store is attached with Pools.Observe.
	Pools *PoolCollector
}

// New builds the metrics and registers them on reg when it is not nil. A
// metric already registered (a second service in the same process) is
// shared.
func New(reg prometheus.Registerer) (*Metrics, error) {
	const ns, sub = "hubbub", "history"
	m := &Metrics{
		ConsumerLag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "consumer_lag",
			Help: "Stream last sequence minus the history consumer's ack floor."}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_size",
			Help: "Messages per insert batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		InsertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "insert_seconds",
			Help: "Batch insert latency, commit included.", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16)}),
		InsertErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "insert_errors_total",
			Help: "Failed batch inserts (retried; nothing is acked before commit)."}),
		Stored: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "stored_total",
			Help: "Messages inserted (duplicates excluded)."}),
		Redeliveries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "redeliveries_total",
			Help: "Messages the consumer delivered more than once."}),
		Mentions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "mentions_published_total",
			Help: "Mention events published on chat.mention.<user> (one per stored message and mentioned user)."}),
		Undecodable: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "undecodable_total",
			Help: "Stream messages that are not room messages (parked with reason undecodable)."}),
		Parked: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "ingest_parked_total",
			Help: "Messages parked in the dead-letter table instead of stored, by reason (undecodable, invalid, rejected)."}, []string{"reason"}),
		IngestLag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "ingest_lag_seconds",
			Help: "Age of the oldest message not yet known to be stored (0 when ingest is caught up)."}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests by endpoint and outcome."}, []string{"endpoint", "outcome"}),
		RequestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "request_seconds",
			Help: "Request handling time by endpoint.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"endpoint"}),
		StreamReads: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "stream_reads_total",
			Help: "Messages served from the stream because the database had not stored them yet."}),
		Trimmed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "trimmed_total",
			Help: "Messages deleted by retention."}),
		Pools: newPoolCollector(ns, sub),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.ConsumerLag = register(reg, m.ConsumerLag, &err)
	m.BatchSize = register(reg, m.BatchSize, &err)
	m.InsertSeconds = register(reg, m.InsertSeconds, &err)
	m.InsertErrors = register(reg, m.InsertErrors, &err)
	m.Stored = register(reg, m.Stored, &err)
	m.Redeliveries = register(reg, m.Redeliveries, &err)
	m.Mentions = register(reg, m.Mentions, &err)
	m.Undecodable = register(reg, m.Undecodable, &err)
	m.Parked = register(reg, m.Parked, &err)
	m.IngestLag = register(reg, m.IngestLag, &err)
	m.Requests = register(reg, m.Requests, &err)
	m.RequestSeconds = register(reg, m.RequestSeconds, &err)
	m.StreamReads = register(reg, m.StreamReads, &err)
	m.Trimmed = register(reg, m.Trimmed, &err)
	m.Pools = register(reg, m.Pools, &err)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		if *errp == nil {
			*errp = fmt.Errorf("register metric: %w", err)
		}
	}
	return c
}

// PoolSource is a store with connection pools (store.Postgres): their
// statistics by pool name.
type PoolSource interface {
	PoolStats() map[string]*pgxpool.Stat
}

// PoolCollector exports the pgxpool statistics of the PoolSource last
// given to Observe, labelled by pool; nothing before (a SQLite store).
type PoolCollector struct {
	src   atomic.Pointer[PoolSource]
	descs []poolDesc
}

// poolDesc is one metric of the collector and how to read it off a Stat.
type poolDesc struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*pgxpool.Stat) float64
}

func newPoolCollector(ns, sub string) *PoolCollector {
	d := func(name, help string, kind prometheus.ValueType, value func(*pgxpool.Stat) float64) poolDesc {
		return poolDesc{prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "db_pool_"+name), help, []string{"pool"}, nil), kind, value}
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	return &PoolCollector{descs: []poolDesc{
		d("acquired_conns", "Connections of the database pool in use.", gauge,
			func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }),
		d("idle_conns", "Idle connections of the database pool.", gauge,
			func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }),
		d("constructing_conns", "Connections of the database pool being opened.", gauge,
			func(s *pgxpool.Stat) float64 { return float64(s.ConstructingConns()) }),
		d("total_conns", "Connections of the database pool: acquired, idle and being opened.", gauge,
			func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) }),
		d("max_conns", "Most connections the database pool opens.", gauge,
			func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }),
		d("acquires_total", "Connections acquired from the database pool.", counter,
			func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }),
		d("acquire_seconds_total", "Time spent acquiring connections from the database pool (successful acquires).", counter,
			func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }),
		d("empty_acquires_total", "Acquires that found no idle connection and waited for one to be opened or released.", counter,
			func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }),
		d("empty_acquire_wait_seconds_total", "Time successful acquires waited because the pool had no idle connection.", counter,
			func(s *pgxpool.Stat) float64 { return s.EmptyAcquireWaitTime().Seconds() }),
		d("canceled_acquires_total", "Acquires given up because their context ended first.", counter,
			func(s *pgxpool.Stat) float64 { return float64(s.CanceledAcquireCount()) }),
		d("new_conns_total", "Connections the database pool opened.", counter,
			func(s *pgxpool.Stat) float64 { return float64(s.NewConnsCount()) }),
		d("max_lifetime_destroys_total", "Connections closed for reaching their maximum lifetime.", counter,
			func(s *pgxpool.Stat) float64 { return float64(s.MaxLifetimeDestroyCount()) }),
		d("max_idle_destroys_total", "Connections closed for reaching their maximum idle time.", counter,
			func(s *pgxpool.Stat) float64 { return float64(s.MaxIdleDestroyCount()) }),
	}}
}

// Observe makes the collector report src's pools from now on (nil: none).
// When several services share a registry, the last one observed is
// reported.
func (c *PoolCollector) Observe(src PoolSource) {
	if src == nil {
		c.src.Store(nil)
		return
	}
	c.src.Store(&src)
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.desc
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src.Load()
	if src == nil {
		return
	}
	for name, st := range (*src).PoolStats() {
		for _, d := range c.descs {
			ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.value(st), name)
		}
	}
}
