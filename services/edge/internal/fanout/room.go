package fanout

import (
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/loops"
)

// room is a hosted room. Events from its subscriptions queue in inbox and
// are processed in order by a worker goroutine that exists only while the
// inbox is non-empty (loops.OnDemand).
type room struct {
	hub   *Hub
	name  string
	ready chan struct{} // closed once start returned
	err   error         // start's error, read after ready
	refs  int           // members and pending joins; guarded by hub.mu

	mu      sync.Mutex
	subs    []*nats.Subscription
	started bool   // lastID is known; the worker may run
	lastID  uint64 // id of the last message delivered to the room
	active  []*Member
	joining map[*Member]struct{}
	inbox   []*nats.Msg
	worker  loops.OnDemand // runs work while inbox is non-empty, once started
	// skipped maps the ids of live messages not delivered (they break
	// the message rule, so history does not keep them either) that came
	// right after a delivered one to the id delivered before them, so the
	// next message is linked as history links it. Worker only.
	skipped map[uint64]uint64
}

// maxSkipped bounds room.skipped.
const maxSkipped = 64

// push queues a message from one of the room's subscriptions.
func (r *room) push(m *nats.Msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ours := false
	for _, s := range r.subs {
		if s == m.Sub {
			ours = true
			break
		}
	}
	if !ours {
		return // from a previous incarnation of the room
	}
	if len(r.inbox) >= r.hub.cfg.RoomBacklog {
		r.hub.obs.Dropped("room_backlog")
		return
	}
	r.inbox = append(r.inbox, m)
	r.kickLocked()
}

// kickLocked starts the worker if events are queued and the room has
// started; r.mu must be held.
func (r *room) kickLocked() {
	if r.started && len(r.inbox) > 0 {
		r.worker.KickLocked(r.work)
	}
}

// work handles the queued events in order, a batch at a time, until the
// inbox is empty.
func (r *room) work() {
	var batch []*nats.Msg
	for {
		r.mu.Lock()
		if len(r.inbox) == 0 {
			r.worker.IdleLocked()
			r.mu.Unlock()
			return
		}
		batch, r.inbox = r.inbox, batch[:0]
		r.mu.Unlock()
		for i, m := range batch {
			r.handle(m)
			batch[i] = nil
		}
	}
}

// removeActiveLocked takes active member m out of r.active; r.mu must be
// held.
func (r *room) removeActiveLocked(m *Member) {
	last := len(r.active) - 1
	r.active[m.idx] = r.active[last]
	r.active[m.idx].idx = m.idx
	r.active[last] = nil
	r.active = r.active[:last]
	m.idx = -1
}
