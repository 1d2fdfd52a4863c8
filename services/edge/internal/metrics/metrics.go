// Package metrics holds the edge's Prometheus metrics and implements the
// observer interfaces of the ws, fanout and session packages.
package metrics

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// frameTypes are the frame types counted individually; others count as "other".
func frameTypes() []string {
	return []string{
		wire.TypeJoin, wire.TypeMessage, wire.TypeTyping, wire.TypeHistory, wire.TypeLeave,
		wire.TypeWelcome, wire.TypeAck, wire.TypeRoster, wire.TypePresence, wire.TypeError,
		"binary", "invalid", "ping", "pong", "close", "other",
	}
}

// Metrics is the edge's metric set.
type Metrics struct {
	connections prometheus.Gauge
	framesIn    map[string]prometheus.Counter
	framesOut   map[string]prometheus.Counter
	errors      *prometheus.CounterVec
	drops       *prometheus.CounterVec
	closes      *prometheus.CounterVec
	publish     prometheus.Histogram
	gapFilled   prometheus.Counter
	leaseLost   prometheus.Counter
	queueBytes  atomic.Int64
	collectors  []prometheus.Collector
}

// New creates the metrics and registers them on reg (nil: not registered).
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hubbub_edge_connections", Help: "Open client connections (WebSocket and SSE)."}),
		framesIn:    make(map[string]prometheus.Counter),
		framesOut:   make(map[string]prometheus.Counter),
		errors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hubbub_edge_error_frames_total", Help: "Error frames sent, by code."}, []string{"code"}),
		drops:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hubbub_edge_drops_total", Help: "Frames or events dropped, by reason."}, []string{"reason"}),
		closes:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hubbub_edge_closes_total", Help: "Connections closed, by reason."}, []string{"reason"}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hubbub_edge_publish_seconds", Help: "Latency of JetStream publishes of client messages, until the PubAck.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		gapFilled: prometheus.NewCounter(prometheus.CounterOpts{Name: "hubbub_edge_gap_filled_total", Help: "Messages recovered from history after a gap in live delivery."}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "hubbub_edge_lease_lost_total", Help: "Times the edge found its lease gone while alive and re-registered its connections."}),
	}
	in := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hubbub_edge_frames_in_total", Help: "Client frames received, by type."}, []string{"type"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hubbub_edge_frames_out_total", Help: "Frames queued to clients, by type."}, []string{"type"})
	for _, t := range frameTypes() {
		m.framesIn[t] = in.WithLabelValues(t)
		m.framesOut[t] = out.WithLabelValues(t)
	}
	qb := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hubbub_edge_queue_bytes", Help: "Outbound bytes queued to clients and not yet written."},
		func() float64 { return float64(m.queueBytes.Load()) })
	m.collectors = []prometheus.Collector{m.connections, in, out, m.errors, m.drops, m.closes, m.publish, m.gapFilled, m.leaseLost, qb}
	if reg != nil {
		for _, c := range m.collectors {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// WatchPresence registers hubbub_edge_presence_unconfirmed, the joins
// and leaves presence has not confirmed yet (pending reports them); it
// stays above 0 while presence is unavailable or behind.
func WatchPresence(reg prometheus.Registerer, pending func() int) error {
	if reg == nil {
		return nil
	}
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hubbub_edge_presence_unconfirmed",
		Help: "Presence joins and leaves of this edge's connections not confirmed by presence yet (retried in the background)."},
		func() float64 { return float64(pending()) })
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register presence gauge: %w", err)
	}
	return nil
}

func pick(m map[string]prometheus.Counter, typ string) prometheus.Counter {
	if c, ok := m[typ]; ok {
		return c
	}
	return m["other"]
}

// ConnOpened counts a new connection.
func (m *Metrics) ConnOpened() { m.connections.Inc() }

// ConnClosed counts a closed connection and why.
func (m *Metrics) ConnClosed(reason string) {
	m.connections.Dec()
	m.closes.WithLabelValues(reason).Inc()
}

// Connections is the number of open connections (WebSocket and SSE).
func (m *Metrics) Connections() float64 { return gaugeValue(m.connections) }

// ConnRefused counts an upgrade refused before a session started (origin,
// authentication).
func (m *Metrics) ConnRefused(reason string) { m.closes.WithLabelValues("refused_" + reason).Inc() }

// Closes is the number of connections closed for reason so far.
func (m *Metrics) Closes(reason string) float64 {
	return counterValue(m.closes.WithLabelValues(reason))
}

// Shed implements ws.Observer.
func (m *Metrics) Shed(f *frame.Frame) { m.drops.WithLabelValues("shed_" + f.Type).Inc() }

// QueueBytes implements ws.Observer.
func (m *Metrics) QueueBytes(delta int) { m.queueBytes.Add(int64(delta)) }

// Overflow implements ws.Observer.
func (m *Metrics) Overflow() { m.drops.WithLabelValues("slow_consumer").Inc() }

// Drops is the number of drops for reason so far.
func (m *Metrics) Drops(reason string) float64 {
	return counterValue(m.drops.WithLabelValues(reason))
}

// Delivered implements fanout.Observer.
func (m *Metrics) Delivered(typ string, n int) {
	if n > 0 {
		pick(m.framesOut, typ).Add(float64(n))
	}
}

// GapFilled implements fanout.Observer.
func (m *Metrics) GapFilled(n int) { m.gapFilled.Add(float64(n)) }

// GapFilledTotal is the number of messages recovered by gap fills so far.
func (m *Metrics) GapFilledTotal() float64 { return counterValue(m.gapFilled) }

// LeaseLost counts a lease found gone while the edge was alive.
func (m *Metrics) LeaseLost() { m.leaseLost.Inc() }

// LeaseLostTotal is the number of lease losses so far.
func (m *Metrics) LeaseLostTotal() float64 { return counterValue(m.leaseLost) }

// Dropped implements fanout.Observer.
func (m *Metrics) Dropped(reason string) { m.drops.WithLabelValues(reason).Inc() }

// FrameIn implements session.Observer.
func (m *Metrics) FrameIn(typ string) { pick(m.framesIn, typ).Inc() }

// FrameOut implements session.Observer.
func (m *Metrics) FrameOut(typ string) { pick(m.framesOut, typ).Inc() }

// ErrorSent implements session.Observer.
func (m *Metrics) ErrorSent(code string) { m.errors.WithLabelValues(code).Inc() }

// Published implements session.Observer.
func (m *Metrics) Published(d time.Duration) { m.publish.Observe(d.Seconds()) }
