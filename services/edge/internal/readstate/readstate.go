// Package readstate keeps each user's read marks (the last message id read
// per room) in the reads KV bucket and pushes `unread` frames to the user's
// connections on this edge.
//
// A mark only moves forward: Mark is a compare-and-set on the key's
// revision, retried on conflict, and a mark at or below the stored one
// changes nothing. Counts come from history (subjects.HistoryUnread).
//
// Pushes: every edge watches the bucket's own subject (every put of every
// edge travels on it, core NATS) and the mention subjects; an event for a
// user with connections here is queued per (user, room), coalesced while
// it waits, and a worker asks history for the user's count in that room
// and sends wire.Unread to ALL of the user's connections here (joined to
// the room or not: a lobby's badge needs it). A connection's join of a
// room is followed by that room's unread, to that connection only. When
// history is down a push is skipped (logged at debug); nothing waits for
// it but the worker.
//
// Which rooms count (the rule of pushes and of the lobby): a room with a
// mark counts the messages after it; a room without a mark counts every
// message (up to wire.MaxUnread) if the user is a member (a key in the
// members bucket), else it is not counted at all. A connection's first
// join of a room without a mark writes the mark at the room's newest
// event ("read up to the moment the user first opened it").
package readstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/defaults"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Config tunes the pushes. Zero values take the defaults below.
type Config struct {
	// Workers is how many pushes are computed at once (each one KV read
	// and one history request).
	Workers int
	// MaxPending bounds the (user, room) pushes waiting for a worker;
	// beyond it new ones are dropped (logged at debug).
	MaxPending int
}

// Defaults for Config.
const (
	DefaultWorkers    = 4
	DefaultMaxPending = 4096
	// lookups bounds the KV reads one Counts makes at once.
	lookups = 8
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	defaults.Positive(&c.Workers, DefaultWorkers)
	defaults.Positive(&c.MaxPending, DefaultMaxPending)
	return c
}

// LastIDFunc returns the id of room's newest event (0 when it has none):
// pages.Log.LastID.
type LastIDFunc func(ctx context.Context, room string) (uint64, error)

// Deps are the Service's collaborators; all are required.
type Deps struct {
	// JS is the JetStream of the buckets (natsconn.NewJetStream).
	JS jetstream.JetStream
	// Req asks history for counts; its connection carries the
	// subscriptions.
	Req *nreq.Client
	// LastID caps marks at the room's newest event and starts a first
	// join's mark there.
	LastID LastIDFunc
	// Log receives warnings (and skipped pushes at debug).
	Log *slog.Logger
}

// Service is an edge's read state: marks, counts and pushes.
type Service struct {
	cfg    Config
	js     jetstream.JetStream
	req    *nreq.Client
	lastID LastIDFunc
	log    *slog.Logger

	kvMu    sync.Mutex
	reads   jetstream.KeyValue // opened on first use
	members jetstream.KeyValue

	idx   index
	queue pushQueue
}

// New returns the read state of an edge; Run starts its pushes.
func New(cfg Config, deps Deps) *Service {
	cfg = cfg.WithDefaults()
	return &Service{
		cfg: cfg, js: deps.JS, req: deps.Req, lastID: deps.LastID, log: deps.Log,
		idx:   index{users: make(map[string]*user)},
		queue: newPushQueue(cfg.MaxPending),
	}
}

// ErrInvalid is a mark that cannot be stored (a bad room, user or id).
var ErrInvalid = errors.New("readstate: invalid mark")

// buckets opens the reads and members buckets once.
func (s *Service) buckets(ctx context.Context) (reads, members jetstream.KeyValue, err error) {
	s.kvMu.Lock()
	defer s.kvMu.Unlock()
	if s.reads == nil {
		kv, err := s.js.KeyValue(ctx, subjects.BucketReads)
		if err != nil {
			return nil, nil, nreq.Classify(subjects.BucketReads, err)
		}
		s.reads = kv
	}
	if s.members == nil {
		kv, err := s.js.KeyValue(ctx, subjects.BucketMembers)
		if err != nil {
			return nil, nil, nreq.Classify(subjects.BucketMembers, err)
		}
		s.members = kv
	}
	return s.reads, s.members, nil
}

// Mark moves user's mark in room forward to id (capped at the room's
// newest event: a mark beyond what exists would hide the next messages).
// It reports whether the stored mark moved; a mark at or below the stored
// one is a no-op. Concurrent writers (the user's other connections, other
// edges) are resolved by compare-and-set on the key's revision.
func (s *Service) Mark(ctx context.Context, userID, room string, id uint64) (bool, error) {
	if id == 0 || !names.ValidRoom(room) || userID == "" {
		return false, ErrInvalid
	}
	reads, _, err := s.buckets(ctx)
	if err != nil {
		return false, err
	}
	key := subjects.ReadKey(names.UserToken(userID), room)
	capped := false
	for {
		cur, rev, err := getMark(ctx, reads, key)
		if err != nil {
			return false, err
		}
		if id <= cur {
			return false, nil
		}
		if !capped {
			capped = true
			last, err := s.lastID(ctx, room)
			if err != nil {
				return false, fmt.Errorf("newest id of %s: %w", room, err)
			}
			if id > last {
				id = last
				if id <= cur {
					return false, nil
				}
			}
		}
		val, err := json.Marshal(wire.ReadState{Room: room, User: userID, Read: id, TS: nowMilli()})
		if err != nil {
			return false, fmt.Errorf("readstate: %w", err)
		}
		if rev == 0 {
			_, err = reads.Create(ctx, key, val)
		} else {
			_, err = reads.Update(ctx, key, val, rev)
		}
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			// Another writer got there first: read again.
			if ctx.Err() != nil {
				return false, fmt.Errorf("mark %s: %w", key, ctx.Err())
			}
		default:
			return false, nreq.Classify(subjects.BucketReads, err)
		}
	}
}

// getMark reads a key of the reads bucket: its mark and revision, both 0
// when there is none (never written, or deleted).
func getMark(ctx context.Context, kv jetstream.KeyValue, key string) (uint64, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, nreq.Classify(subjects.BucketReads, err)
	}
	var st wire.ReadState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		// A value that is not ours (an operator's put): overwrite it.
		return 0, e.Revision(), nil
	}
	return st.Read, e.Revision(), nil
}

// Marks returns user's stored marks in rooms (rooms without one are
// absent).
func (s *Service) Marks(ctx context.Context, userID string, rooms []string) (map[string]uint64, error) {
	reads, _, err := s.buckets(ctx)
	if err != nil {
		return nil, err
	}
	tok := names.UserToken(userID)
	out := make(map[string]uint64, len(rooms))
	var mu sync.Mutex
	err = each(rooms, func(room string) error {
		m, rev, err := getMark(ctx, reads, subjects.ReadKey(tok, room))
		if err != nil || rev == 0 {
			return err
		}
		mu.Lock()
		out[room] = m
		mu.Unlock()
		return nil
	})
	return out, err
}

// counted returns the marks history counts from, by the rule of the
// package doc: the stored mark, else 0 for a member, else the room is
// left out.
func (s *Service) counted(ctx context.Context, userID string, rooms []string) ([]wire.ReadMark, error) {
	marks, err := s.Marks(ctx, userID, rooms)
	if err != nil {
		return nil, err
	}
	_, members, err := s.buckets(ctx)
	if err != nil {
		return nil, err
	}
	tok := names.UserToken(userID)
	var unmarked []string
	for _, r := range rooms {
		if _, ok := marks[r]; !ok {
			unmarked = append(unmarked, r)
		}
	}
	member := make(map[string]bool, len(unmarked))
	var mu sync.Mutex
	err = each(unmarked, func(room string) error {
		_, err := members.Get(ctx, subjects.MemberKey(room, tok))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return nreq.Classify(subjects.BucketMembers, err)
		}
		mu.Lock()
		member[room] = true
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]wire.ReadMark, 0, len(rooms))
	for _, r := range rooms {
		if m, ok := marks[r]; ok {
			out = append(out, wire.ReadMark{Room: r, Read: m})
		} else if member[r] {
			out = append(out, wire.ReadMark{Room: r})
		}
	}
	return out, nil
}

// Counts is user's unread state in rooms, for the rooms that count (see
// the package doc): one history request for all of them.
func (s *Service) Counts(ctx context.Context, userID string, rooms []string) (map[string]wire.UnreadCount, error) {
	marks, err := s.counted(ctx, userID, rooms)
	if err != nil {
		return nil, err
	}
	return s.history(ctx, userID, marks)
}

// history asks history for user's counts after marks, by room.
func (s *Service) history(ctx context.Context, userID string, marks []wire.ReadMark) (map[string]wire.UnreadCount, error) {
	if len(marks) == 0 {
		return map[string]wire.UnreadCount{}, nil
	}
	rep, err := nreq.Request[wire.UnreadReply](ctx, s.req, subjects.HistoryUnread, wire.UnreadRequest{User: userID, Rooms: marks})
	if err != nil {
		return nil, err
	}
	out := make(map[string]wire.UnreadCount, len(rep.Rooms))
	for _, c := range rep.Rooms {
		out[c.Room] = c
	}
	return out, nil
}

func nowMilli() int64 { return time.Now().UnixMilli() }

// each runs fn for every item, at most lookups at once, and returns the
// first error.
func each(items []string, fn func(string) error) error {
	if len(items) == 1 {
		return fn(items[0])
	}
	sem := make(chan struct{}, lookups)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, it := range items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(it); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
