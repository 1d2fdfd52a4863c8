// Package roster keeps who is in which room: one KV entry per (room, user)
// holding that user's connections, changed only by compare-and-set so that
// any number of presence replicas can share the bucket, and an in-memory view
// of the whole bucket that answers roster and count queries.
package roster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// Entry is the value stored under "<room>.<usertoken>" in the roster bucket.
//
// Life of an entry: created by the user's first connection (a join
// transition, announced once by the replica whose CAS set Announced);
// connections come and go; when the last one goes EmptySince is set and the
// user stays online for the grace period; a connection arriving within it
// clears EmptySince silently; past it a sweeper marks the entry Leaving
// (exactly one replica wins that CAS, and it alone announces the leave) and
// deletes the key — or, while it holds live gone markers, replaces it by a
// marker-only entry.
//
// Gone markers: a leave of a connection records its id in Gone (whether or
// not the connection was registered yet), and a join of a marked id is
// refused (ErrGone). A join request that overtook its own leave (the edge
// gave up waiting for it and sent the leave) therefore never registers a
// ghost. Markers expire after StoreConfig.GoneTTL and are bounded by
// MaxGone per entry. A marker-only entry (no User, Epoch or connections,
// only Gone) is not a session: the view never lists it, nothing announces
// it, and the sweeper deletes it once its markers expire. (Its empty User
// also makes a replica without markers treat it as undecodable, hence
// absent, rather than as an online user.)
type Entry struct {
	// User is the user id (not encoded).
	User string `json:"user"`
	// Conns maps connection id to the id of the edge holding it.
	Conns map[string]string `json:"conns"`
	// Epoch identifies this online session: a join claim applies to the
	// session it was made for only.
	Epoch string `json:"epoch"`
	// Since is when the session started, Unix milliseconds.
	Since int64 `json:"since"`
	// Announced is set by the CAS that claims the join's announcement;
	// its winner publishes the join diff.
	Announced bool `json:"announced,omitempty"`
	// EmptySince is when the last connection left (Unix ms), 0 while the
	// user has connections.
	EmptySince int64 `json:"empty_since,omitempty"`
	// Leaving is when the leave was decided (Unix ms); the entry is deleted
	// once the leave is published.
	Leaving int64 `json:"leaving,omitempty"`
	// Gone maps the id of a connection whose leave arrived to when it did
	// (Unix ms); see "Gone markers" above.
	Gone map[string]int64 `json:"gone,omitempty"`
}

// MaxGone bounds the gone markers of one entry; past it the oldest are
// dropped.
const MaxGone = 256

// ErrBadEntry is returned for a roster value that cannot be decoded or is
// inconsistent.
var ErrBadEntry = errors.New("bad roster entry")

// Key is the roster key of user in room.
func Key(room, user string) string {
	return subjects.RosterKey(room, names.UserToken(user))
}

// SplitKey returns the room and user token of a roster key.
func SplitKey(key string) (room, token string, err error) {
	room, token, ok := strings.Cut(key, ".")
	if !ok || !names.ValidRoom(room) || token == "" || strings.Contains(token, ".") {
		return "", "", fmt.Errorf("%w: key %q", ErrBadEntry, key)
	}
	return room, token, nil
}

// Decode parses and checks a roster value stored under key.
func Decode(key string, data []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrBadEntry, err)
	}
	_, token, err := SplitKey(key)
	if err != nil {
		return Entry{}, err
	}
	if e.Conns == nil {
		e.Conns = map[string]string{}
	}
	if e.User == "" && e.Epoch == "" && len(e.Conns) == 0 && len(e.Gone) > 0 && e.Leaving == 0 && e.EmptySince == 0 && !e.Announced {
		return e, nil // marker-only
	}
	if _, err := names.User(e.User); err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrBadEntry, err)
	}
	if names.UserToken(e.User) != token {
		return Entry{}, fmt.Errorf("%w: user %q does not match key %q", ErrBadEntry, e.User, key)
	}
	return e, nil
}

// Encode serialises the entry.
func (e Entry) Encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode roster entry: %w", err)
	}
	return b, nil
}

// Online reports whether the user counts as present: every entry that is
// not leaving, including one inside its grace period; never a marker-only
// entry.
func (e Entry) Online() bool { return e.User != "" && e.Leaving == 0 }

// MarkersOnly reports whether e is a marker-only entry: no session, only
// gone markers.
func (e Entry) MarkersOnly() bool { return e.User == "" && len(e.Gone) > 0 }

// clone deep-copies the entry so it can be modified.
func (e Entry) clone() Entry {
	c := e
	c.Conns = make(map[string]string, len(e.Conns)+1)
	for k, v := range e.Conns {
		c.Conns[k] = v
	}
	if e.Gone != nil {
		c.Gone = make(map[string]int64, len(e.Gone)+1)
		for k, v := range e.Gone {
			c.Gone[k] = v
		}
	}
	return c
}

// gone reports whether conn has a gone marker younger than ttl at now
// (Unix ms).
func (e Entry) gone(conn string, now int64, ttl time.Duration) bool {
	at, ok := e.Gone[conn]
	return ok && now-at < ttl.Milliseconds()
}

// liveGone reports whether any gone marker is younger than ttl at now.
func (e Entry) liveGone(now int64, ttl time.Duration) bool {
	for _, at := range e.Gone {
		if now-at < ttl.Milliseconds() {
			return true
		}
	}
	return false
}

// pruneGone drops the markers older than ttl at now, then the oldest ones
// beyond MaxGone (e must be a clone).
func (e *Entry) pruneGone(now int64, ttl time.Duration) {
	for c, at := range e.Gone {
		if now-at >= ttl.Milliseconds() {
			delete(e.Gone, c)
		}
	}
	for len(e.Gone) > MaxGone {
		oldest, first := "", true
		for c, at := range e.Gone {
			if first || at < e.Gone[oldest] || (at == e.Gone[oldest] && c < oldest) {
				oldest, first = c, false
			}
		}
		delete(e.Gone, oldest)
	}
	if len(e.Gone) == 0 {
		e.Gone = nil
	}
}

// markGone records conn's gone marker at now and prunes (e must be a
// clone).
func (e *Entry) markGone(conn string, now int64, ttl time.Duration) {
	if e.Gone == nil {
		e.Gone = map[string]int64{}
	}
	e.Gone[conn] = now
	e.pruneGone(now, ttl)
}

// markersOnly returns the marker-only entry keeping e's markers live at
// now (no markers: nothing to keep, ok false).
func (e Entry) markersOnly(now int64, ttl time.Duration) (Entry, bool) {
	m := Entry{Conns: map[string]string{}, Gone: e.clone().Gone}
	m.pruneGone(now, ttl)
	return m, len(m.Gone) > 0
}

// has reports whether conn is registered on edge.
func (e Entry) has(conn, edge string) bool {
	got, ok := e.Conns[conn]
	return ok && got == edge
}
