// Package registry is the edge's side of presence: it keeps every
// connection's wanted presence in each room it joined (Register,
// Unregister; Rejoin after a lost lease) and brings the presence service
// to it in the background, with generations so a late answer never undoes
// a newer wish and backoff while presence is down. It also asks presence
// for rosters and online counts.
package registry

import (
	"context"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/backoff"
	"github.com/hubbub-chat/hubbub/shared/loops"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Presence registrations are kept as wanted state: for each connection
// and room, "in the room" (after Register) or "gone" (after Unregister,
// until presence confirmed the leave). A reconciler goroutine brings
// presence to that state and retries what fails, so a join or a leave
// that times out under load, or while presence restarts, still reaches
// presence: a connection that ends never stays in a roster (guarantee 8).

// Background retries: the first attempt at once, then after
// RegisterBackoff doubling up to RegisterMaxBackoff. A join is given up
// after RegisterAttempts (it is tried again once presence answers another
// request of this edge, or by Rejoin); a leave is never given up. A join
// presence refuses (a 4xx, nreq.Refusal: e.g. its connection's leave
// already arrived) is final at once.
//
// Each registration has its own ConnEvent.Conn (the session makes one per
// room membership), so a leave always names the join it undoes and a
// re-join after a leave is a new key, never a reused id that presence would
// refuse as gone.
const (
	RegisterAttempts   = 8
	RegisterBackoff    = 250 * time.Millisecond
	RegisterMaxBackoff = 10 * time.Second
)

// reconcileWorkers bounds the presence requests the reconciler has in
// flight.
const reconcileWorkers = 16

// regKey names one connection's presence in one room.
type regKey struct{ conn, room string }

// registration is the wanted presence of one connection in one room and
// the state of bringing presence to it.
type registration struct {
	ev        wire.ConnEvent
	leaving   bool   // wanted: gone (a leave to deliver)
	gen       uint64 // changes with every new wanted state of the key
	confirmed bool   // presence acknowledged the wanted state
	attempts  int    // failed attempts at the wanted state
	due       time.Time
	joined    func(context.Context) // runs once after the first confirmed join
}

// Presence is the wanted presence state of an edge's connections and the
// reconciler that brings presence to it. mu guards every field below it.
type Presence struct {
	req *nreq.Client

	mu          sync.Mutex
	entries     map[regKey]*registration
	gen         uint64
	unconfirmed map[regKey]struct{} // entries the reconciler (re)tries
	givenUp     map[regKey]struct{} // joins unconfirmed after RegisterAttempts
	closed      bool
	// reconciler is the goroutine that runs while entries are
	// unconfirmed; its wake-up also ends a wait for a due entry.
	reconciler loops.OnDemand
}

// New returns a Presence making its requests through req.
func New(req *nreq.Client) *Presence {
	return &Presence{
		req:         req,
		entries:     make(map[regKey]*registration),
		unconfirmed: make(map[regKey]struct{}),
		givenUp:     make(map[regKey]struct{}),
	}
}

// Roster asks presence for one page of a room's online users.
func (r *Presence) Roster(ctx context.Context, req wire.RosterRequest) (wire.RosterReply, error) {
	return nreq.Request[wire.RosterReply](ctx, r.req, subjects.PresenceRoster, req)
}

// Counts asks presence for online counts.
func (r *Presence) Counts(ctx context.Context, req wire.CountsRequest) (wire.CountsReply, error) {
	return nreq.Request[wire.CountsReply](ctx, r.req, subjects.PresenceCounts, req)
}

// scheduleLocked makes the reconciler (re)try e, the entry of key, now.
func (r *Presence) scheduleLocked(key regKey, e *registration) {
	e.confirmed, e.attempts, e.due = false, 0, time.Now()
	r.unconfirmed[key] = struct{}{}
	delete(r.givenUp, key)
}

// Register wants a connection in a room: presence is told in the
// background, so chat never waits for it, and failures are retried (see
// RegisterAttempts). joined, if not nil, runs once after presence
// confirmed the join (on a reconciler goroutine; it may make requests
// bounded by its ctx).
func (r *Presence) Register(ev wire.ConnEvent, joined func(context.Context)) {
	key := regKey{ev.Conn, ev.Room}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	e := &registration{ev: ev, gen: r.gen, joined: joined}
	r.entries[key] = e
	r.scheduleLocked(key, e)
	r.kickLocked()
}

// Unregister wants a connection out of a room it was registered in: the
// leave is sent in the background and retried until presence confirms it
// (or the Presence is closed; the edge's lease release then removes the
// rest). ev.Explicit (the user left the room, which also ends their
// membership) is carried by every attempt; an explicit Unregister of a
// connection whose plain leave is still unconfirmed makes it explicit, a
// plain one never undoes an explicit one.
func (r *Presence) Unregister(ev wire.ConnEvent) {
	key := regKey{ev.Conn, ev.Room}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[key]
	if e == nil || (e.leaving && (e.ev.Explicit || !ev.Explicit)) {
		return
	}
	lev := e.ev
	lev.Explicit = ev.Explicit
	r.gen++
	*e = registration{ev: lev, leaving: true, gen: r.gen}
	r.scheduleLocked(key, e)
	r.kickLocked()
}

// Rejoin registers every wanted connection with presence again, e.g.
// after the edge's lease was lost and presence removed its connections.
// It returns how many registrations it scheduled; they are sent in the
// background like Register's.
func (r *Presence) Rejoin() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, e := range r.entries {
		if !e.leaving {
			r.scheduleLocked(k, e)
			n++
		}
	}
	if n > 0 {
		r.kickLocked()
	}
	return n
}

// Unconfirmed is the number of joins and leaves presence has not
// confirmed yet (including joins given up on for now).
func (r *Presence) Unconfirmed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.unconfirmed) + len(r.givenUp)
}

// Close stops the reconciler and waits for its requests in flight; what
// is still unconfirmed is dropped (presence removes a departed edge's
// connections when its lease is released or expires).
func (r *Presence) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.reconciler.Wake()
	r.reconciler.Wait()
}

// kickLocked starts the reconciler, or wakes it if it waits. r.mu must be
// held.
func (r *Presence) kickLocked() {
	if r.closed {
		return
	}
	r.reconciler.KickLocked(r.reconcile)
}

// reconcile runs while entries wait for a (re)try: each pass attempts
// every due one, reconcileWorkers at a time, so at most one request per
// key is in flight from here.
func (r *Presence) reconcile() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, next, ok := r.collect(time.Now())
		if !ok {
			return
		}
		if len(due) == 0 {
			timer.Reset(time.Until(next))
			select {
			case <-timer.C:
			case <-r.reconciler.Woken():
			}
			continue
		}
		work := make(chan regKey)
		var wg sync.WaitGroup
		for range min(reconcileWorkers, len(due)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for key := range work {
					r.attempt(context.Background(), key, due[key])
				}
			}()
		}
		for key := range due {
			work <- key
		}
		close(work)
		wg.Wait()
	}
}

// collect returns copies of the entries due at now and the time the next
// one is due; ok is false (and the reconciler marked stopped) when there
// is nothing left to do or the Presence is closed.
func (r *Presence) collect(now time.Time) (due map[regKey]registration, next time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.reconciler.IdleLocked()
		return nil, next, false
	}
	due = make(map[regKey]registration)
	for k := range r.unconfirmed {
		e := r.entries[k]
		switch {
		case e == nil || e.confirmed:
			delete(r.unconfirmed, k)
		case !e.leaving && e.attempts >= RegisterAttempts:
			delete(r.unconfirmed, k)
			r.givenUp[k] = struct{}{}
		case !e.due.After(now):
			due[k] = *e
		case next.IsZero() || e.due.Before(next):
			next = e.due
		}
	}
	if len(due) == 0 && next.IsZero() {
		r.reconciler.IdleLocked()
		return nil, next, false
	}
	return due, next, true
}

// attempt sends e (a copy of the entry of key) to presence once and
// records the outcome.
func (r *Presence) attempt(ctx context.Context, key regKey, e registration) {
	subject := subjects.PresenceJoin
	if e.leaving {
		subject = subjects.PresenceLeave
	}
	_, err := nreq.Request[wire.ConnReply](ctx, r.req, subject, e.ev)

	r.mu.Lock()
	var joined func(context.Context)
	cur := r.entries[key]
	switch {
	case cur != nil && cur.gen == e.gen && err == nil:
		delete(r.unconfirmed, key)
		delete(r.givenUp, key)
		if cur.leaving {
			delete(r.entries, key)
		} else {
			cur.confirmed = true
			joined, cur.joined = cur.joined, nil
		}
		r.reviveLocked()
	case cur != nil && cur.gen == e.gen && !cur.leaving && nreq.Refusal(err):
		// Presence refused the join for good (e.g. it already saw this
		// registration's leave: the connection is gone): asking again
		// gets the same answer. Settled, without the joined callback;
		// a later Unregister still sends the (harmless) leave.
		delete(r.unconfirmed, key)
		delete(r.givenUp, key)
		cur.confirmed, cur.joined = true, nil
		r.reviveLocked()
	case cur != nil && cur.gen == e.gen:
		cur.attempts++
		cur.due = time.Now().Add(backoff.Policy{Initial: RegisterBackoff, Max: RegisterMaxBackoff}.Delay(cur.attempts))
	}
	// Otherwise the wanted state changed while the request was out:
	// Register or Unregister scheduled the new one, which the next pass
	// sends after this one. (cur is never nil then: only a confirmed leave
	// deletes an entry, and a key has one request in flight.)
	r.mu.Unlock()
	if joined != nil {
		joined(ctx)
	}
}

// reviveLocked schedules the joins given up on again: presence answered,
// so it is back. r.mu must be held.
func (r *Presence) reviveLocked() {
	if len(r.givenUp) == 0 {
		return
	}
	for k := range r.givenUp {
		if e := r.entries[k]; e != nil && !e.confirmed {
			r.scheduleLocked(k, e)
		}
		delete(r.givenUp, k)
	}
	r.kickLocked()
}
