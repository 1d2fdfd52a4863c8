package presence

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus collectors.
type metrics struct {
	joins          prometheus.Counter
	leaves         prometheus.Counter
	leaseExpiries  prometheus.Counter
	edgesReleased  prometheus.Counter
	typingExpiries prometheus.Counter
	requestErrors  *prometheus.CounterVec
}

// opts names a metric hubbub_presence_<name>.
func opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: "hubbub", Subsystem: "presence", Name: name, Help: help}
}

// counter is the counter hubbub_presence_<name>.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts(opts(name, help)))
}

// gauge is the gauge hubbub_presence_<name>, read from value.
func gauge(name, help string, value func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts(name, help)), value)
}

// newMetrics creates the collectors and registers them, with the gauges
// read from s, on reg (nil: not registered).
func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	m := &metrics{
		joins:          counter("joins_total", "Join transitions (a user's first connection in a room) announced by this replica."),
		leaves:         counter("leaves_total", "Leave transitions (last connection gone past the grace period) announced by this replica."),
		leaseExpiries:  counter("lease_expiries_total", "Edge leases seen expiring (edge died without releasing its lease)."),
		edgesReleased:  counter("lease_releases_total", "Edge leases seen released by a clean edge shutdown."),
		typingExpiries: counter("typing_expiries_total", "Typing entries that expired and got an \"off\" event from this replica."),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts(opts("request_errors_total",
			"Requests answered with an error, by endpoint and code.")), []string{"endpoint", "code"}),
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{
		m.joins, m.leaves, m.leaseExpiries, m.edgesReleased, m.typingExpiries, m.requestErrors,
		gauge("online_users", "Users online, summed over rooms (a user in two rooms counts twice), grace period included.",
			func() float64 { n, _ := s.view.Total(); return float64(n) }),
		gauge("rooms", "Rooms with at least one user online.",
			func() float64 { _, n := s.view.Total(); return float64(n) }),
		gauge("live_edges", "Edges holding a lease.",
			func() float64 { return float64(s.leases.Count()) }),
		gauge("bad_entries", "Roster values the view could not decode and ignored.",
			func() float64 { return float64(s.view.Bad()) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register presence metrics: %w", err)
		}
	}
	return m, nil
}
