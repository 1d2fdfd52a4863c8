package roster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/hubbub-chat/hubbub/shared/backoff"
	"github.com/hubbub-chat/hubbub/shared/defaults"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrConflict is returned when an update kept losing compare-and-set races.
var ErrConflict = errors.New("roster: too many concurrent updates")

// ErrGone refuses a join of a connection whose leave already arrived (see
// Entry's gone markers): the registration has ended, asking again gets the
// same answer.
var ErrGone = errors.New("roster: the connection already left")

// maxAttempts bounds the compare-and-set retries of one operation.
const maxAttempts = 64

// Transition is a user's first-in (join) or last-out (leave) in a room, to
// be announced once: as presence (a roster diff), never as a stored chat
// message (DESIGN §3a "Presence is not conversation").
type Transition struct {
	// Event is wire.EventJoin or wire.EventLeave.
	Event string
	// Key is the roster key; Room and User what it names.
	Key, Room, User string
	// Epoch is the online session the transition starts or ends.
	Epoch string
	// Rev is the roster revision that made the transition; once the view
	// has applied it, the view's counts include (join) or exclude (leave)
	// the user.
	Rev uint64
	// Resumed marks a leave finished for a replica that decided it and
	// then stalled or died: the diff was that replica's to publish (it may
	// have), so the announcer only does the leave's side effects (typing).
	Resumed bool
}

// Announcer publishes a transition. The Store calls it once per
// transition, on the replica that won the transition's claim (see Store):
// a diff is never published twice, at the price that a replica dying
// between its claim and its publish (or whose claim succeeded but whose
// answer was lost) loses that one diff (diffs are core NATS, at most once,
// anyway; each carries the room's full count).
type Announcer func(ctx context.Context, t Transition) error

// Defaults of StoreConfig.
const (
	// DefaultGrace is StoreConfig.Grace's default (and presence's).
	DefaultGrace = 5 * time.Second
	// DefaultRetry is StoreConfig.Retry's default.
	DefaultRetry = 3 * time.Second
	// DefaultGoneTTL is StoreConfig.GoneTTL's default.
	DefaultGoneTTL = 3 * time.Minute
)

// StoreConfig tunes a Store. Zero values take the defaults above.
type StoreConfig struct {
	// Grace is how long an entry whose last connection left stays online
	// before the leave is announced.
	Grace time.Duration
	// Retry is how old an unfinished announcement (a join not marked
	// announced, an entry stuck leaving) must be before a sweeper takes it
	// over from the replica that started it.
	Retry time.Duration
	// GoneTTL is how long a leave's gone marker refuses a late join of its
	// connection (see Entry). It must outlast any join request still queued
	// at presence.
	GoneTTL time.Duration
}

// Store performs roster changes on the KV bucket by compare-and-set.
//
// Once-only rule for announcements: each transition has exactly one claim,
// a compare-and-set on the roster entry itself, and only its winner calls
// the Announcer. A join's claim is the CAS that sets Announced (tried by
// the replica that created the entry, and by any sweeper once the join is
// older than Retry and still unclaimed: a creator that died before
// claiming is covered); a leave's claim is the CAS that sets Leaving (one
// sweeper wins it). Whoever takes over a stuck leave only deletes the
// entry (Transition.Resumed). The claim needs no extra bucket, no extra
// round trip (the join's "mark announced" update already existed) and no
// TTL to outlive retries: it lives exactly as long as the entry.
type Store struct {
	kv       jetstream.KeyValue
	view     *View
	announce Announcer
	cfg      StoreConfig
	log      *slog.Logger
}

// NewStore returns a Store on the roster bucket kv. view must follow the
// same bucket; it is used as a cache (every decision is re-checked by CAS
// or against the bucket).
func NewStore(kv jetstream.KeyValue, view *View, announce Announcer, cfg StoreConfig, log *slog.Logger) *Store {
	defaults.Positive(&cfg.Grace, DefaultGrace)
	defaults.Positive(&cfg.Retry, DefaultRetry)
	defaults.Positive(&cfg.GoneTTL, DefaultGoneTTL)
	return &Store{kv: kv, view: view, announce: announce, cfg: cfg, log: log}
}

// loaded is an entry read from the view (fresh=false) or the bucket.
type loaded struct {
	entry Entry
	rev   uint64 // 0: the key does not exist
	fresh bool
}

func (s *Store) load(ctx context.Context, key string, fresh bool) (loaded, error) {
	if !fresh {
		if it, ok := s.view.Get(key); ok {
			return loaded{entry: it.Entry, rev: it.Rev}, nil
		}
	}
	kve, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return loaded{fresh: true}, nil
	case err != nil:
		return loaded{}, fmt.Errorf("get %s: %w", key, err)
	}
	e, err := Decode(key, kve.Value())
	if err != nil {
		// A corrupt value is replaced as if the key were absent, keeping
		// its revision for the CAS.
		s.log.Warn("replacing undecodable roster entry", "key", key, "err", err)
		return loaded{rev: kve.Revision(), fresh: true, entry: Entry{Conns: map[string]string{}}}, nil
	}
	return loaded{entry: e, rev: kve.Revision(), fresh: true}, nil
}

// put writes e under key if its revision is still rev (0: create).
func (s *Store) put(ctx context.Context, key string, e Entry, rev uint64) (uint64, error) {
	b, err := e.Encode()
	if err != nil {
		return 0, err
	}
	if rev == 0 {
		return s.kv.Create(ctx, key, b)
	}
	return s.kv.Update(ctx, key, b, rev)
}

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

func nowMS() int64 { return time.Now().UnixMilli() }

func since(ms int64) time.Duration { return time.Since(time.UnixMilli(ms)) }

// Join registers connection conn of user in room, held by edge. It returns
// the roster revision after the change. The user's first connection (with
// no entry, or an entry already leaving) is a join transition, claimed and
// announced before Join returns; a connection arriving in the grace period
// after the last one left, or a second device, changes nothing visible. A
// connection whose leave already arrived is refused with ErrGone.
func (s *Store) Join(ctx context.Context, room, user, conn, edge string) (uint64, error) {
	key := Key(room, user)
	fresh := false
	for attempts := 0; attempts < maxAttempts; {
		cur, err := s.load(ctx, key, fresh)
		if err != nil {
			return 0, err
		}
		now := nowMS()
		if cur.entry.gone(conn, now, s.cfg.GoneTTL) {
			// Markers only expire: one seen in the view is in the bucket.
			return 0, fmt.Errorf("join %s of %s: %w", conn, key, ErrGone)
		}
		// Absent, corrupt or marker-only: first connection.
		first := cur.entry.User == ""
		e, verb := Entry{}, "update"
		switch {
		case first:
			e = Entry{User: user, Conns: map[string]string{conn: edge}, Epoch: nuid.Next(), Since: now, Gone: cur.entry.clone().Gone}
			e.pruneGone(now, s.cfg.GoneTTL)
			if cur.rev == 0 {
				verb = "create"
			}
		case cur.entry.Leaving != 0:
			// The previous session is ending. Let the replica that decided
			// the leave finish it (waiting, bounded by ctx); take over if it
			// seems stuck.
			if since(cur.entry.Leaving) < s.cfg.Retry {
				if !backoff.Sleep(ctx, 20*time.Millisecond) {
					return 0, ctx.Err()
				}
			} else if err := s.finishLeave(ctx, key, cur.rev, cur.entry, true); err != nil {
				return 0, err
			}
			fresh = true
			continue
		case cur.entry.EmptySince == 0 && cur.entry.has(conn, edge):
			if !cur.fresh {
				fresh = true
				continue
			}
			return cur.rev, nil // already registered: a retried request
		default:
			e = cur.entry.clone()
			e.Conns[conn] = edge
			e.EmptySince = 0
			e.pruneGone(now, s.cfg.GoneTTL)
		}
		rev, err := s.put(ctx, key, e, cur.rev)
		if isConflict(err) {
			fresh = true
			attempts++
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", verb, key, err)
		}
		if first {
			s.announceJoin(ctx, Transition{Event: wire.EventJoin, Key: key, Room: room, User: user, Epoch: e.Epoch, Rev: rev})
		}
		return rev, nil
	}
	return 0, fmt.Errorf("join %s: %w", key, ErrConflict)
}

// Leave removes connection conn of user from room. When it was the last
// connection the entry enters its grace period; the leave is announced by
// Sweep once the grace period passes without a new connection. It also
// records conn's gone marker, creating a marker-only entry if the user has
// none, so that a join of conn arriving later (a request the edge gave up
// waiting for) is refused. It returns the roster revision after the
// change.
func (s *Store) Leave(ctx context.Context, room, user, conn string) (uint64, error) {
	key := Key(room, user)
	return s.removeConns(ctx, key, func(c, _ string) bool { return c == conn }, conn)
}

// RemoveEdge removes every connection held by edge from every roster (its
// lease is gone: the edge died or shut down). It returns how many entries
// changed.
func (s *Store) RemoveEdge(ctx context.Context, edge string) (int, error) {
	changed := 0
	var errs []error
	for _, it := range s.view.OnEdge(edge) {
		before := it.Rev
		rev, err := s.removeConns(ctx, it.Key, func(_, e string) bool { return e == edge }, "")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rev != before {
			changed++
		}
	}
	return changed, errors.Join(errs...)
}

// removeConns removes the connections of the entry under key that match;
// gone, if not "", is a connection id to mark gone (see Leave).
func (s *Store) removeConns(ctx context.Context, key string, match func(conn, edge string) bool, gone string) (uint64, error) {
	fresh := false
	for attempts := 0; attempts < maxAttempts; {
		cur, err := s.load(ctx, key, fresh)
		if err != nil {
			return 0, err
		}
		now := nowMS()
		if gone != "" && cur.entry.Leaving != 0 {
			// The session is ending: let its leave finish (or take it over
			// if stuck), then mark the remains, as Join waits.
			if since(cur.entry.Leaving) < s.cfg.Retry {
				if !backoff.Sleep(ctx, 20*time.Millisecond) {
					return 0, ctx.Err()
				}
			} else if err := s.finishLeave(ctx, key, cur.rev, cur.entry, true); err != nil {
				return 0, err
			}
			fresh = true
			continue
		}
		e := cur.entry.clone()
		for c, ed := range cur.entry.Conns {
			if match(c, ed) {
				delete(e.Conns, c)
			}
		}
		removed := len(e.Conns) != len(cur.entry.Conns) && cur.entry.User != "" && cur.entry.Leaving == 0
		mark := gone != "" && !cur.entry.gone(gone, now, s.cfg.GoneTTL)
		if !removed && !mark {
			if !cur.fresh {
				fresh = true
				continue
			}
			return cur.rev, nil // nothing to remove
		}
		if cur.entry.User == "" {
			// No session (absent, corrupt or marker-only): only markers.
			e = Entry{Conns: map[string]string{}, Gone: e.Gone}
		}
		if mark {
			e.markGone(gone, now, s.cfg.GoneTTL)
		} else {
			e.pruneGone(now, s.cfg.GoneTTL)
		}
		if removed && len(e.Conns) == 0 {
			e.EmptySince = now
		}
		rev, err := s.put(ctx, key, e, cur.rev)
		if isConflict(err) {
			fresh = true
			attempts++
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("update %s: %w", key, err)
		}
		return rev, nil
	}
	return 0, fmt.Errorf("remove connections from %s: %w", key, ErrConflict)
}

// Gone reports whether the view holds a live gone marker for conn of user
// in room: a cheap check before a join's other work (Join itself refuses
// such a connection authoritatively).
func (s *Store) Gone(room, user, conn string) bool {
	it, ok := s.view.Get(Key(room, user))
	return ok && it.Entry.gone(conn, nowMS(), s.cfg.GoneTTL)
}

// announceJoin claims the join of session t.Epoch (the CAS that sets
// Announced) and, when this call won the claim, announces it. It reports
// whether it announced. A failure before the claim is logged and left to
// Sweep, which claims unclaimed joins; the claim's winner announces once,
// and a failing announcement is not retried (it would risk a second diff).
func (s *Store) announceJoin(ctx context.Context, t Transition) bool {
	for range maxAttempts {
		cur, err := s.load(ctx, t.Key, true)
		if err != nil {
			s.log.Warn("claim join; sweeper will retry", "key", t.Key, "err", err)
			return false
		}
		if cur.entry.Epoch != t.Epoch || cur.entry.Announced || cur.entry.Leaving != 0 {
			return false // claimed by another, or the session already ended
		}
		e := cur.entry.clone()
		e.Announced = true
		rev, err := s.put(ctx, t.Key, e, cur.rev)
		if isConflict(err) {
			continue
		}
		if err != nil {
			s.log.Warn("claim join; sweeper will retry", "key", t.Key, "err", err)
			return false
		}
		t.Rev = rev
		if err := s.announce(ctx, t); err != nil {
			s.log.Warn("announce join", "key", t.Key, "err", err)
		}
		return true
	}
	return false
}

// finishLeave announces the leave of an entry marked leaving at rev (only
// if this replica's CAS marked it: resumed is false) and deletes it (CAS on
// rev), or replaces it by its marker-only entry while it holds live gone
// markers.
func (s *Store) finishLeave(ctx context.Context, key string, rev uint64, e Entry, resumed bool) error {
	room, _, err := SplitKey(key)
	if err != nil {
		return err
	}
	t := Transition{Event: wire.EventLeave, Key: key, Room: room, User: e.User, Epoch: e.Epoch, Rev: rev, Resumed: resumed}
	if err := s.announce(ctx, t); err != nil {
		// Not retried: the claim is spent. The delete below still ends
		// the session.
		s.log.Warn("announce leave", "key", key, "err", err)
	}
	if m, ok := e.markersOnly(nowMS(), s.cfg.GoneTTL); ok {
		_, err = s.put(ctx, key, m, rev)
	} else {
		err = s.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	}
	if err != nil && !isConflict(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// SweepStats counts what one Sweep did.
type SweepStats struct {
	// Leaves is the number of leave transitions this call performed.
	Leaves int
	// Resumed counts unclaimed joins this call claimed and announced, and
	// stuck leaves it finished, for a replica that stalled or died.
	Resumed int
	// Pruned counts marker-only entries deleted, their markers expired.
	Pruned int
}

// Sweep performs the leave of every entry whose grace period has passed,
// and finishes announcements another replica started but did not complete.
// Several replicas may sweep at once: each transition is decided by one
// compare-and-set, so exactly one of them performs it.
func (s *Store) Sweep(ctx context.Context) (SweepStats, error) {
	var st SweepStats
	var errs []error
	for _, it := range s.view.Attention() {
		if ctx.Err() != nil {
			break
		}
		e := it.Entry
		switch {
		case e.User == "":
			// Marker-only: deleted once every marker expired.
			if e.liveGone(nowMS(), s.cfg.GoneTTL) {
				continue
			}
			err := s.kv.Delete(ctx, it.Key, jetstream.LastRevision(it.Rev))
			switch {
			case err == nil:
				st.Pruned++
			case !isConflict(err):
				errs = append(errs, fmt.Errorf("delete %s: %w", it.Key, err))
			}
		case e.Leaving != 0:
			if since(e.Leaving) >= s.cfg.Retry {
				if err := s.finishLeave(ctx, it.Key, it.Rev, e, true); err != nil {
					errs = append(errs, err)
				} else {
					st.Resumed++
				}
			}
		case len(e.Conns) == 0 && e.EmptySince != 0 && since(e.EmptySince) >= s.cfg.Grace:
			n := e.clone()
			n.Leaving = nowMS()
			rev, err := s.put(ctx, it.Key, n, it.Rev)
			if isConflict(err) {
				continue // another replica won, or the user came back
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("mark %s leaving: %w", it.Key, err))
				continue
			}
			if err := s.finishLeave(ctx, it.Key, rev, n, false); err != nil {
				errs = append(errs, err)
				continue
			}
			st.Leaves++
		case !e.Announced && since(e.Since) >= s.cfg.Retry:
			if s.announceJoin(ctx, Transition{Event: wire.EventJoin, Key: it.Key, Room: it.Room, User: e.User, Epoch: e.Epoch, Rev: it.Rev}) {
				st.Resumed++
			}
		}
	}
	return st, errors.Join(errs...)
}
