// Package scenario runs the load tool's scenarios — idle connections,
// fan-out, latency at a fixed rate, reconnect storm, history reads and
// ingest — against a Target, with clients spread over worker processes, and
// turns the workers' figures into Results.
package scenario

import (
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/hist"
)

// Result is one measured point of one scenario.
type Result struct {
	Scenario string         `json:"scenario"`
	Target   string         `json:"target"`
	Params   map[string]any `json:"params"`
	Started  time.Time      `json:"started"`
	Wall     float64        `json:"wall_s"`
	LoadAvg  float64        `json:"loadavg_1m_before"`

	Clients        int     `json:"clients,omitempty"`
	ConnectErrors  int     `json:"connect_errors,omitempty"`
	ConnectPerSec  float64 `json:"connects_per_s,omitempty"`
	ConnectP99Ms   float64 `json:"connect_p99_ms,omitempty"`
	RSSPerConn     float64 `json:"rss_per_conn_bytes,omitempty"`
	RSSGrowth      int64   `json:"rss_growth_bytes,omitempty"`
	ServerRSS      int64   `json:"server_rss_bytes,omitempty"`
	GoroutinesConn float64 `json:"goroutines_per_conn,omitempty"`
	StackPerConn   float64 `json:"stack_per_conn_bytes,omitempty"`
	HeapPerConn    float64 `json:"heap_per_conn_bytes,omitempty"`

	Sent          int64   `json:"sent,omitempty"`
	Acked         int64   `json:"acked,omitempty"`
	Expected      int64   `json:"expected,omitempty"`
	Received      int64   `json:"received,omitempty"`
	Reach         float64 `json:"reach,omitempty"`
	DeliveriesSec float64 `json:"deliveries_per_s,omitempty"`
	OfferedSec    float64 `json:"offered_deliveries_per_s,omitempty"`
	Latency       Quant   `json:"latency_ms"`
	AckLatency    Quant   `json:"ack_latency_ms"`
	Disconnects   int64   `json:"disconnects,omitempty"`
	Gaps          int64   `json:"gaps"`
	Dups          int64   `json:"dups"`

	Affected      int     `json:"affected,omitempty"`
	Resumed       int     `json:"resumed,omitempty"`
	ResumedClean  int     `json:"resumed_gap_free,omitempty"`
	InWindowClean int     `json:"resumed_gap_free_in_window,omitempty"`
	ResumedPct    float64 `json:"resumed_pct,omitempty"`
	Unrecovered   int     `json:"unrecovered,omitempty"`
	ResumeTime    Quant   `json:"resume_time_ms"`

	PagesPerSec float64 `json:"pages_per_s,omitempty"`
	PageTime    Quant   `json:"page_time_ms"`
	PageErrors  int64   `json:"page_errors,omitempty"`
	IngestSec   float64 `json:"ingest_per_s,omitempty"`
	PublishSec  float64 `json:"publish_per_s,omitempty"`

	// CPU time per delivery (fan-out): all server processes, and the generator.
	ServerUsPerDelivery float64 `json:"server_cpu_us_per_delivery,omitempty"`
	GenUsPerDelivery    float64 `json:"generator_cpu_us_per_delivery,omitempty"`

	GenCPU    float64            `json:"generator_cpu_cores"`
	ServerCPU map[string]float64 `json:"server_cpu_cores,omitempty"`
	Errors    map[string]int64   `json:"errors,omitempty"`
	Notes     []string           `json:"notes,omitempty"`
	Failed    string             `json:"failed,omitempty"`
}

// Quant are latency quantiles in milliseconds.
type Quant struct {
	N   uint64  `json:"n,omitempty"`
	P50 float64 `json:"p50,omitempty"`
	P90 float64 `json:"p90,omitempty"`
	P99 float64 `json:"p99,omitempty"`
	Max float64 `json:"max,omitempty"`
}

func quant(s hist.Snapshot) Quant {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return Quant{N: s.Count(), P50: ms(s.Quantile(0.5)), P90: ms(s.Quantile(0.9)), P99: ms(s.Quantile(0.99)), Max: ms(time.Duration(s.Max))}
}
