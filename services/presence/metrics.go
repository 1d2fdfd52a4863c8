package presence

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus collectors.
type metrics struct {
	joins          prometheus.Counter
	leaves         prometheus.Counter
	memberJoins    prometheus.Counter
	memberLeaves   prometheus.Counter
	leaseExpiries  prometheus.Counter
	edgesReleased  prometheus.Counter
	typingExpiries prometheus.Counter
	requestErrors  *prometheus.CounterVec
	roomChanges    *prometheus.CounterVec
}

// Metric names are written out in full (hubbub_presence_…) so that the
// name an operator sees on a dashboard is found by grep.

// counter is the counter named name.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// gauge is the gauge named name, read from value.
func gauge(name, help string, value func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, value)
}

// newMetrics creates the collectors and registers them, with the gauges
// read from s, on reg (nil: not registered).
func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	m := &metrics{
		joins:          counter("hubbub_presence_joins_total", "Join transitions (a user's first connection in a room) whose roster diff this replica published (presence only, nothing stored)."),
		leaves:         counter("hubbub_presence_leaves_total", "Leave transitions (last connection gone past the grace period) whose roster diff this replica published (presence only, nothing stored)."),
		memberJoins:    counter("hubbub_presence_member_joins_total", "First joins of a room (membership created) whose \"<user> joined\" system message this replica stored."),
		memberLeaves:   counter("hubbub_presence_member_leaves_total", "Explicit leaves of a room (membership ended) whose \"<user> left\" system message this replica stored."),
		leaseExpiries:  counter("hubbub_presence_lease_expiries_total", "Edge leases seen expiring (edge died without releasing its lease)."),
		edgesReleased:  counter("hubbub_presence_lease_releases_total", "Edge leases seen released by a clean edge shutdown."),
		typingExpiries: counter("hubbub_presence_typing_expiries_total", "Typing entries that expired and got an \"off\" event from this replica."),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hubbub_presence_request_errors_total",
			Help: "Requests answered with an error, by endpoint and code."}, []string{"endpoint", "code"}),
		roomChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hubbub_presence_room_changes_total",
			Help: "Changes of room access this replica made and announced on chat.access.<room>, by action (create, dm, invite, role, kick, ban, unban, mute, unmute, topic)."}, []string{"action"}),
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{
		m.joins, m.leaves, m.memberJoins, m.memberLeaves, m.leaseExpiries, m.edgesReleased, m.typingExpiries, m.requestErrors, m.roomChanges,
		gauge("hubbub_presence_online_users", "Users online, summed over rooms (a user in two rooms counts twice), grace period included.",
			func() float64 { n, _ := s.view.Total(); return float64(n) }),
		gauge("hubbub_presence_rooms", "Rooms with at least one user online.",
			func() float64 { _, n := s.view.Total(); return float64(n) }),
		gauge("hubbub_presence_live_edges", "Edges holding a lease.",
			func() float64 { return float64(s.leases.Count()) }),
		gauge("hubbub_presence_bad_entries", "Roster values the view could not decode and ignored.",
			func() float64 { return float64(s.view.Bad()) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register presence metrics: %w", err)
		}
	}
	return m, nil
}
