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

func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	m := &metrics{
		joins: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hubbub", Subsystem: "presence", Name: "joins_total",
			Help: "Join transitions (a user's first connection in a room) announced by this replica.",
		}),
		leaves: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hubbub", Subsystem: "presence", Name: "leaves_total",
			Help: "Leave transitions (last connection gone past the grace period) announced by this replica.",
		}),
		leaseExpiries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hubbub", Subsystem: "presence", Name: "lease_expiries_total",
			Help: "Edge leases seen expiring (edge died without releasing its lease).",
		}),
		edgesReleased: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hubbub", Subsystem: "presence", Name: "lease_releases_total",
			Help: "Edge leases seen released by a clean edge shutdown.",
		}),
		typingExpiries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hubbub", Subsystem: "presence", Name: "typing_expiries_total",
			Help: "Typing entries that expired and got an \"off\" event from this replica.",
		}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hubbub", Subsystem: "presence", Name: "request_errors_total",
			Help: "Requests answered with an error, by endpoint and code.",
		}, []string{"endpoint", "code"}),
	}
	if reg == nil {
		return m, nil
	}
	online := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "hubbub", Subsystem: "presence", Name: "online_users",
		Help: "Users online, summed over rooms (a user in two rooms counts twice), grace period included.",
	}, func() float64 { n, _ := s.view.Total(); return float64(n) })
	rooms := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "hubbub", Subsystem: "presence", Name: "rooms",
		Help: "Rooms with at least one user online.",
	}, func() float64 { _, n := s.view.Total(); return float64(n) })
	edges := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "hubbub", Subsystem: "presence", Name: "live_edges",
		Help: "Edges holding a lease.",
	}, func() float64 { return float64(s.leases.Count()) })
	bad := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "hubbub", Subsystem: "presence", Name: "bad_entries",
		Help: "Roster values the view could not decode and ignored.",
	}, func() float64 { return float64(s.view.Bad()) })
	for _, c := range []prometheus.Collector{m.joins, m.leaves, m.leaseExpiries, m.edgesReleased, m.typingExpiries, m.requestErrors, online, rooms, edges, bad} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register presence metrics: %w", err)
		}
	}
	return m, nil
}
