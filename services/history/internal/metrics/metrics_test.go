package metrics_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/history/internal/metrics"
)

// series gathers reg into name{label="value",…} → value (counters and
// gauges; a histogram gives its _count).
func series(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

// Every instrument is registered under its name, and two metric sets on one
// registry (two history services in one process) share the instruments.
func TestNewSharesInstruments(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := metrics.New(reg)
	if err != nil {
		t.Fatalf("second New on the same registry: %v", err)
	}
	for _, m := range []*metrics.Metrics{a, b} {
		m.Stored.Add(2)
		m.ConsumerLag.Set(7)
		m.BatchSize.Observe(16)
		m.InsertSeconds.Observe(0.01)
		m.InsertErrors.Inc()
		m.Redeliveries.Inc()
		m.Mentions.Inc()
		m.Undecodable.Inc()
		m.Parked.WithLabelValues("invalid").Inc()
		m.IngestLag.Set(1.5)
		m.Requests.WithLabelValues("recent", "ok").Inc()
		m.RequestSeconds.WithLabelValues("recent").Observe(0.001)
		m.StreamReads.Inc()
		m.Trimmed.Add(3)
	}
	want := map[string]float64{
		"hubbub_history_stored_total":                                   4,
		"hubbub_history_consumer_lag":                                   7,
		"hubbub_history_batch_size_count":                               2,
		"hubbub_history_insert_seconds_count":                           2,
		"hubbub_history_insert_errors_total":                            2,
		"hubbub_history_redeliveries_total":                             2,
		"hubbub_history_mentions_published_total":                       2,
		"hubbub_history_undecodable_total":                              2,
		`hubbub_history_ingest_parked_total{reason="invalid"}`:          2,
		"hubbub_history_ingest_lag_seconds":                             1.5,
		`hubbub_history_requests_total{endpoint="recent",outcome="ok"}`: 2,
		`hubbub_history_request_seconds{endpoint="recent"}_count`:       2,
		"hubbub_history_stream_reads_total":                             2,
		"hubbub_history_trimmed_total":                                  6,
	}
	got := series(t, reg)
	if len(got) != len(want) {
		t.Errorf("%d series, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
}

func TestNewWithoutRegistry(t *testing.T) {
	m, err := metrics.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Stored.Inc() // usable unregistered
	m.Pools.Observe(nil)
}

// A different metric under one of history's names is a registration error,
// not silently shared.
func TestNewConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "hubbub_history_stored_total", Help: "not history's"}))
	if _, err := metrics.New(reg); err == nil || !strings.Contains(err.Error(), "register metric") {
		t.Fatalf("New = %v, want a registration error", err)
	}
}

// pools is a PoolSource over real (never connected) pgx pools.
type pools map[string]*pgxpool.Pool

func (p pools) PoolStats() map[string]*pgxpool.Stat {
	out := map[string]*pgxpool.Stat{}
	for name, pool := range p {
		out[name] = pool.Stat()
	}
	return out
}

// The pool collector reports nothing until a source is observed, the
// observed source's pools by name after, and nothing again once cleared.
func TestPoolCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	pool := func(max int) *pgxpool.Pool {
		// pgxpool connects lazily: nothing listens on port 1 and nothing
		// needs to.
		p, err := pgxpool.New(context.Background(), fmt.Sprintf("postgres://u@127.0.0.1:1/db?pool_max_conns=%d", max))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	src := pools{"primary": pool(7), "reads": pool(3)}
	tests := []struct {
		name    string
		call    bool // call Observe(observe)
		observe metrics.PoolSource
		want    map[string]float64 // of the db_pool_ series
	}{
		{name: "before Observe"},
		{
			name:    "observed",
			call:    true,
			observe: src,
			want: map[string]float64{
				`hubbub_history_db_pool_max_conns{pool="primary"}`:     7,
				`hubbub_history_db_pool_max_conns{pool="reads"}`:       3,
				`hubbub_history_db_pool_total_conns{pool="primary"}`:   0,
				`hubbub_history_db_pool_acquires_total{pool="reads"}`:  0,
				`hubbub_history_db_pool_new_conns_total{pool="reads"}`: 0,
			},
		},
		{name: "cleared", call: true, observe: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.call {
				m.Pools.Observe(tt.observe)
			}
			pooled := map[string]float64{}
			for k, v := range series(t, reg) {
				if strings.HasPrefix(k, "hubbub_history_db_pool_") {
					pooled[k] = v
				}
			}
			if tt.want == nil && len(pooled) != 0 {
				t.Fatalf("pool series without a source: %v", pooled)
			}
			if tt.want != nil && len(pooled) != 2*13 {
				t.Errorf("%d pool series, want 13 for each of 2 pools", len(pooled))
			}
			for k, w := range tt.want {
				if v, ok := pooled[k]; !ok || v != w {
					t.Errorf("%s = %v (present %v), want %v", k, v, ok, w)
				}
			}
		})
	}
}
