package readstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// job is one push waiting for a worker: the unread of room for the user
// with token tok, to all of the user's connections here (to == nil), or to
// the one connection that just joined room (to != nil; its job also starts
// a missing mark).
type job struct {
	tok, room string
	to        Sink
}

// pushQueue holds the jobs waiting for a worker, each once: a job queued
// again while it waits is coalesced (its mark hint raised).
type pushQueue struct {
	mu      sync.Mutex
	pending map[job]uint64 // job → the highest mark seen in its events
	ch      chan job       // capacity max: never blocks (≤ one entry per pending job)
	max     int
}

func newPushQueue(max int) pushQueue {
	return pushQueue{pending: make(map[job]uint64), ch: make(chan job, max), max: max}
}

// add queues j with mark hint; false means the queue is full.
func (q *pushQueue) add(j job, hint uint64) bool {
	q.mu.Lock()
	if h, ok := q.pending[j]; ok {
		q.pending[j] = max(h, hint)
		q.mu.Unlock()
		return true
	}
	if len(q.pending) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.pending[j] = hint
	q.mu.Unlock()
	q.ch <- j
	return true
}

// take removes j (just received from ch) and returns its hint.
func (q *pushQueue) take(j job) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	h := q.pending[j]
	delete(q.pending, j)
	return h
}

// Run watches the reads bucket (updates only: an ordered consumer, so it
// works under a JetStream domain and resumes across NATS reconnects) and
// subscribes to the mention subjects, and computes pushes until ctx ends.
// started, if not nil, is closed once both are in place at the server.
func (s *Service) Run(ctx context.Context, started chan<- struct{}) error {
	nc := s.req.Conn()
	reads, _, err := s.buckets(ctx)
	if err != nil {
		return fmt.Errorf("readstate: %w", err)
	}
	w, err := reads.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("readstate: watch %s: %w", subjects.BucketReads, nreq.Classify(subjects.BucketReads, err))
	}
	defer func() { _ = w.Stop() }()
	msub, err := nc.Subscribe(subjects.MentionAll, s.onMention)
	if err != nil {
		return fmt.Errorf("readstate: subscribe %s: %w", subjects.MentionAll, err)
	}
	defer func() { _ = msub.Unsubscribe() }()
	if err := nc.FlushWithContext(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("readstate: flush of subscriptions", "err", err)
	}
	if started != nil {
		close(started)
	}
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() { s.work(ctx) })
	}
	wg.Go(func() {
		for e := range w.Updates() {
			if e != nil {
				s.onRead(e.Key(), e.Value())
			}
		}
	})
	wg.Wait()
	return nil
}

// onRead queues a push for a stored mark (key "<usertoken>.<room>") of a
// user with a connection here; the mark is the job's hint.
func (s *Service) onRead(key string, value []byte) {
	tok, room, ok := strings.Cut(key, ".")
	if !ok || !names.ValidRoom(room) || !s.idx.here(tok) {
		return
	}
	var st wire.ReadState
	_ = json.Unmarshal(value, &st) // a foreign value: no hint
	s.enqueue(job{tok: tok, room: room}, st.Read)
}

// onMention queues a push for a mention of a user with a connection here.
func (s *Service) onMention(m *nats.Msg) {
	tok := strings.TrimPrefix(m.Subject, subjects.MentionPrefix)
	if !s.idx.here(tok) {
		return
	}
	var ev wire.MentionEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil || !names.ValidRoom(ev.Room) {
		s.log.Debug("readstate: bad mention event", "subject", m.Subject)
		return
	}
	s.enqueue(job{tok: tok, room: ev.Room}, 0)
}

// Joined queues the push that follows a connection's join of room (call
// it after the join's history page was sent): that room's unread, to sink
// only. A first join of a room without a mark starts the mark at the
// room's newest event. It never waits.
func (s *Service) Joined(userID, room string, sink Sink) {
	s.enqueue(job{tok: names.UserToken(userID), room: room, to: sink}, 0)
}

func (s *Service) enqueue(j job, hint uint64) {
	if !s.queue.add(j, hint) {
		s.log.Debug("readstate: push dropped, queue full", "room", j.room, "pending", s.cfg.MaxPending)
	}
}

func (s *Service) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.queue.ch:
			s.push(ctx, j, s.queue.take(j))
		}
	}
}

// push computes j's unread and sends it.
func (s *Service) push(ctx context.Context, j job, hint uint64) {
	to := []Sink{j.to}
	if j.to == nil {
		if to = s.idx.sinks(j.tok); len(to) == 0 {
			return // the user's connections here are gone
		}
	}
	userID, err := names.UserFromToken(j.tok)
	if err != nil {
		return
	}
	if j.to != nil {
		if err := s.startMark(ctx, userID, j.room); err != nil {
			s.log.Debug("readstate: first mark not written", "room", j.room, "err", err)
		}
	}
	u, ok, err := s.unread(ctx, userID, j.room, hint)
	if err != nil {
		s.log.Debug("readstate: push skipped", "room", j.room, "err", err)
		return
	}
	if !ok {
		return // a room that does not count for the user
	}
	f := frame.Must(wire.TypeUnread, u, frame.Essential)
	for _, sk := range to {
		sk.Send(f)
	}
}

// startMark writes user's mark in room at the room's newest event when
// there is none yet (a first join); an existing mark is left alone.
func (s *Service) startMark(ctx context.Context, userID, room string) error {
	reads, _, err := s.buckets(ctx)
	if err != nil {
		return err
	}
	key := subjects.ReadKey(names.UserToken(userID), room)
	if _, rev, err := getMark(ctx, reads, key); err != nil || rev != 0 {
		return err
	}
	// An empty room's mark is 0: stored all the same, so the room counts
	// for the user from now on.
	last, err := s.lastID(ctx, room)
	if err != nil {
		return err
	}
	val, err := json.Marshal(wire.ReadState{Room: room, User: userID, Read: last, TS: nowMilli()})
	if err != nil {
		return fmt.Errorf("readstate: %w", err)
	}
	if _, err := reads.Create(ctx, key, val); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("first mark %s: %w", key, err)
	}
	return nil
}

// unread is user's unread frame for room, with the stored mark raised to
// hint; false when the room does not count for the user.
func (s *Service) unread(ctx context.Context, userID, room string, hint uint64) (wire.Unread, bool, error) {
	marks, err := s.counted(ctx, userID, []string{room})
	if err != nil {
		return wire.Unread{}, false, err
	}
	if len(marks) == 0 {
		if hint == 0 {
			return wire.Unread{}, false, nil
		}
		marks = []wire.ReadMark{{Room: room}}
	}
	marks[0].Read = max(marks[0].Read, hint)
	counts, err := s.history(ctx, userID, marks)
	if err != nil {
		return wire.Unread{}, false, err
	}
	c := counts[room]
	return wire.Unread{Type: wire.TypeUnread, Room: room, Read: marks[0].Read, Count: c.Count, Mentions: c.Mentions}, true, nil
}
