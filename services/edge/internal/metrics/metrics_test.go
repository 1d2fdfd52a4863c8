package metrics_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/metrics"
)

// series gathers reg into name{label="value",…} → value; a histogram gives
// its _count and _sum.
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
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
				out[key+"_sum"] = m.Histogram.GetSampleSum()
			default:
				t.Fatalf("%s: unexpected metric type", key)
			}
		}
	}
	return out
}

func TestObservers(t *testing.T) {
	tests := []struct {
		name string
		do   func(m *metrics.Metrics)
		want map[string]float64 // every other series is 0
	}{
		{name: "nothing", do: func(*metrics.Metrics) {}},
		{
			name: "connections",
			do: func(m *metrics.Metrics) {
				m.ConnOpened()
				m.ConnOpened()
				m.ConnClosed("client")
				m.ConnRefused("origin")
			},
			want: map[string]float64{
				"hubbub_edge_connections":                           1,
				`hubbub_edge_closes_total{reason="client"}`:         1,
				`hubbub_edge_closes_total{reason="refused_origin"}`: 1,
			},
		},
		{
			name: "drops",
			do: func(m *metrics.Metrics) {
				m.Shed(&frame.Frame{Type: "typing"})
				m.Overflow()
				m.Dropped("room_queue")
				m.Dropped("room_queue")
			},
			want: map[string]float64{
				`hubbub_edge_drops_total{reason="shed_typing"}`:   1,
				`hubbub_edge_drops_total{reason="slow_consumer"}`: 1,
				`hubbub_edge_drops_total{reason="room_queue"}`:    2,
			},
		},
		{
			name: "queued bytes",
			do:   func(m *metrics.Metrics) { m.QueueBytes(100); m.QueueBytes(-30) },
			want: map[string]float64{"hubbub_edge_queue_bytes": 70},
		},
		{
			name: "frames by type, unknown types as other",
			do: func(m *metrics.Metrics) {
				m.FrameIn("join")
				m.FrameIn("no-such-type")
				m.FrameOut("ack")
				m.Delivered("message", 3)
				m.Delivered("message", 0)
				m.Delivered("no-such-type", 2)
			},
			want: map[string]float64{
				`hubbub_edge_frames_in_total{type="join"}`:     1,
				`hubbub_edge_frames_in_total{type="other"}`:    1,
				`hubbub_edge_frames_out_total{type="ack"}`:     1,
				`hubbub_edge_frames_out_total{type="message"}`: 3,
				`hubbub_edge_frames_out_total{type="other"}`:   2,
			},
		},
		{
			name: "errors, publishes, gaps, leases",
			do: func(m *metrics.Metrics) {
				m.ErrorSent("rate_limited")
				m.Published(250 * time.Millisecond)
				m.GapFilled(4)
				m.LeaseLost()
			},
			want: map[string]float64{
				`hubbub_edge_error_frames_total{code="rate_limited"}`: 1,
				"hubbub_edge_publish_seconds_count":                   1,
				"hubbub_edge_publish_seconds_sum":                     0.25,
				"hubbub_edge_gap_filled_total":                        4,
				"hubbub_edge_lease_lost_total":                        1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m, err := metrics.New(reg)
			if err != nil {
				t.Fatal(err)
			}
			tt.do(m)
			got := series(t, reg)
			for _, k := range slices.Sorted(maps.Keys(got)) {
				if got[k] != tt.want[k] {
					t.Errorf("%s = %v, want %v", k, got[k], tt.want[k])
				}
			}
			for k := range tt.want {
				if _, ok := got[k]; !ok {
					t.Errorf("%s not exported", k)
				}
			}
		})
	}
}

// The accessors read what the observers counted, registered or not.
func TestAccessors(t *testing.T) {
	m, err := metrics.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed("server")
	m.Dropped("x")
	m.GapFilled(2)
	m.GapFilled(3)
	m.LeaseLost()
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"Connections", m.Connections(), 1},
		{"Closes(server)", m.Closes("server"), 1},
		{"Closes(client)", m.Closes("client"), 0},
		{"Drops(x)", m.Drops("x"), 1},
		{"GapFilledTotal", m.GapFilledTotal(), 5},
		{"LeaseLostTotal", m.LeaseLostTotal(), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// A second metric set on the same registry is refused: one edge per
// registry.
func TestNewTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := metrics.New(reg); err != nil {
		t.Fatal(err)
	}
	var are prometheus.AlreadyRegisteredError
	if _, err := metrics.New(reg); !errors.As(err, &are) {
		t.Fatalf("second New = %v, want AlreadyRegisteredError", err)
	}
}

func TestWatchPresence(t *testing.T) {
	if err := metrics.WatchPresence(nil, func() int { return 1 }); err != nil {
		t.Fatalf("nil registry: %v", err)
	}
	reg := prometheus.NewPedanticRegistry()
	pending := 3
	if err := metrics.WatchPresence(reg, func() int { return pending }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{3, 0} {
		pending = want
		if got := series(t, reg)["hubbub_edge_presence_unconfirmed"]; got != float64(want) {
			t.Errorf("hubbub_edge_presence_unconfirmed = %v, want %d", got, want)
		}
	}
	if err := metrics.WatchPresence(reg, func() int { return 0 }); err == nil || !strings.Contains(err.Error(), "register presence gauge") {
		t.Errorf("second WatchPresence = %v, want a registration error", err)
	}
}
