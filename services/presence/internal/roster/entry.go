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
// deletes the key.
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
}

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
	if _, err := names.User(e.User); err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrBadEntry, err)
	}
	if names.UserToken(e.User) != token {
		return Entry{}, fmt.Errorf("%w: user %q does not match key %q", ErrBadEntry, e.User, key)
	}
	if e.Conns == nil {
		e.Conns = map[string]string{}
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
// not leaving, including one inside its grace period.
func (e Entry) Online() bool { return e.Leaving == 0 }

// clone deep-copies the entry so it can be modified.
func (e Entry) clone() Entry {
	c := e
	c.Conns = make(map[string]string, len(e.Conns)+1)
	for k, v := range e.Conns {
		c.Conns[k] = v
	}
	return c
}

// has reports whether conn is registered on edge.
func (e Entry) has(conn, edge string) bool {
	got, ok := e.Conns[conn]
	return ok && got == edge
}
