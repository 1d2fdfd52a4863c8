// Package lease follows the edge leases in the edges KV bucket. An edge puts
// its key "<edgeid>" every third of the bucket TTL and deletes it when it
// shuts down cleanly; when it dies the key expires and JetStream places a
// marker. Watcher keeps the set of live edges and reports every edge whose
// lease went away, so its connections can be removed from the rosters.
package lease

import (
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Gone reports an edge whose lease disappeared.
type Gone struct {
	// Edge is the edge id (its lease key).
	Edge string
	// Expired is true when the lease ran out (TTL marker or purge) rather
	// than being released by a clean shutdown (delete).
	Expired bool
}

// Watcher is a watch.View of the edges bucket.
type Watcher struct {
	mu   sync.RWMutex
	live map[string]struct{}
	gone chan Gone
}

// NewWatcher returns a watcher with no live edge. Gone events are queued
// up to buffer deep; Apply blocks beyond that until they are read.
func NewWatcher(buffer int) *Watcher {
	return &Watcher{live: map[string]struct{}{}, gone: make(chan Gone, buffer)}
}

// Gone delivers edges whose lease went away.
func (w *Watcher) Gone() <-chan Gone { return w.gone }

// Live reports whether edge holds a lease.
func (w *Watcher) Live(edge string) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	_, ok := w.live[edge]
	return ok
}

// Count is the number of live edges.
func (w *Watcher) Count() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.live)
}

// Replace implements watch.View. Edges that were live and are missing from
// the new snapshot (they went away while the watch was down) are reported
// gone.
func (w *Watcher) Replace(entries []jetstream.KeyValueEntry) {
	live := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		if e.Operation() == jetstream.KeyValuePut {
			live[e.Key()] = struct{}{}
		}
	}
	w.mu.Lock()
	var lost []string
	for edge := range w.live {
		if _, ok := live[edge]; !ok {
			lost = append(lost, edge)
		}
	}
	w.live = live
	w.mu.Unlock()
	for _, edge := range lost {
		w.gone <- Gone{Edge: edge, Expired: true}
	}
}

// Apply implements watch.View.
func (w *Watcher) Apply(e jetstream.KeyValueEntry) {
	w.mu.Lock()
	if e.Operation() == jetstream.KeyValuePut {
		w.live[e.Key()] = struct{}{}
		w.mu.Unlock()
		return
	}
	_, was := w.live[e.Key()]
	delete(w.live, e.Key())
	w.mu.Unlock()
	if was {
		w.gone <- Gone{Edge: e.Key(), Expired: e.Operation() == jetstream.KeyValuePurge}
	}
}
