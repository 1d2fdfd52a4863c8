package roster

import (
	"context"
	"slices"
	"sort"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Item is one roster entry as seen by the view.
type Item struct {
	Key   string
	Room  string
	Rev   uint64
	Entry Entry
}

// View is an in-memory copy of the roster bucket, fed by a KV watch
// (watch.Follow). It indexes entries by room (sorted online users), by edge
// (for lease expiry) and keeps the entries a sweeper must look at.
type View struct {
	mu        sync.RWMutex
	items     map[string]Item
	rooms     map[string][]string            // room → sorted online users
	edges     map[string]map[string]struct{} // edge → keys with a connection on it
	attention map[string]struct{}            // keys empty, leaving or unannounced
	rev       uint64
	bad       uint64
	changed   chan struct{}
}

// NewView returns an empty view.
func NewView() *View {
	v := &View{changed: make(chan struct{})}
	v.reset()
	return v
}

func (v *View) reset() {
	v.items = map[string]Item{}
	v.rooms = map[string][]string{}
	v.edges = map[string]map[string]struct{}{}
	v.attention = map[string]struct{}{}
}

// Replace implements watch.View.
func (v *View) Replace(entries []jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.reset()
	for _, e := range entries {
		v.apply(e)
	}
	v.notify()
}

// Apply implements watch.View.
func (v *View) Apply(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.apply(e)
	v.notify()
}

func (v *View) notify() {
	close(v.changed)
	v.changed = make(chan struct{})
}

func (v *View) apply(e jetstream.KeyValueEntry) {
	if e.Revision() > v.rev {
		v.rev = e.Revision()
	}
	key := e.Key()
	if old, ok := v.items[key]; ok {
		if e.Revision() < old.Rev {
			return
		}
		v.remove(old)
	}
	if e.Operation() != jetstream.KeyValuePut {
		return
	}
	entry, err := Decode(key, e.Value())
	if err != nil {
		v.bad++
		return
	}
	room, _, _ := SplitKey(key)
	it := Item{Key: key, Room: room, Rev: e.Revision(), Entry: entry}
	v.items[key] = it
	if entry.Online() {
		users := v.rooms[room]
		i, found := slices.BinarySearch(users, entry.User)
		if !found {
			v.rooms[room] = slices.Insert(users, i, entry.User)
		}
	}
	for _, edge := range entry.Conns {
		m := v.edges[edge]
		if m == nil {
			m = map[string]struct{}{}
			v.edges[edge] = m
		}
		m[key] = struct{}{}
	}
	if len(entry.Conns) == 0 || !entry.Announced || entry.Leaving != 0 {
		v.attention[key] = struct{}{}
	}
}

func (v *View) remove(it Item) {
	delete(v.items, it.Key)
	delete(v.attention, it.Key)
	if it.Entry.Online() {
		users := v.rooms[it.Room]
		if i, found := slices.BinarySearch(users, it.Entry.User); found {
			users = slices.Delete(users, i, i+1)
			if len(users) == 0 {
				delete(v.rooms, it.Room)
			} else {
				v.rooms[it.Room] = users
			}
		}
	}
	for _, edge := range it.Entry.Conns {
		if m := v.edges[edge]; m != nil {
			delete(m, it.Key)
			if len(m) == 0 {
				delete(v.edges, edge)
			}
		}
	}
}

// WaitRev blocks until the view has applied revision rev (or later) of the
// bucket, or ctx ends. It reports whether the revision was reached.
func (v *View) WaitRev(ctx context.Context, rev uint64) bool {
	for {
		v.mu.RLock()
		done, ch := v.rev >= rev, v.changed
		v.mu.RUnlock()
		if done {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}

// Get returns the entry under key and its revision.
func (v *View) Get(key string) (Item, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	it, ok := v.items[key]
	return it, ok
}

// Online is the number of online users in room.
func (v *View) Online(room string) int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.rooms[room])
}

// Page returns up to limit online users of room sorted after the cursor
// after, the room's online count and the cursor of the next page ("" when
// this page reaches the end).
func (v *View) Page(room, after string, limit int) (users []string, online int, next string) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	all := v.rooms[room]
	i := 0
	if after != "" {
		i = sort.SearchStrings(all, after)
		if i < len(all) && all[i] == after {
			i++
		}
	}
	end := min(i+max(limit, 0), len(all))
	users = slices.Clone(all[i:end])
	if users == nil {
		users = []string{}
	}
	if end < len(all) && len(users) > 0 {
		next = users[len(users)-1]
	}
	return users, len(all), next
}

// Counts returns the online count of each listed room, or of every room
// with someone online when rooms is empty.
func (v *View) Counts(rooms []string) map[string]int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make(map[string]int, max(len(rooms), len(v.rooms)))
	if len(rooms) == 0 {
		for r, users := range v.rooms {
			out[r] = len(users)
		}
		return out
	}
	for _, r := range rooms {
		out[r] = len(v.rooms[r])
	}
	return out
}

// Total is the number of (room, user) pairs online, and the number of rooms
// with someone online.
func (v *View) Total() (members, rooms int) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, users := range v.rooms {
		members += len(users)
	}
	return members, len(v.rooms)
}

// Bad counts roster values the view could not decode (and ignored).
func (v *View) Bad() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.bad
}

// OnEdge returns the entries holding a connection on edge.
func (v *View) OnEdge(edge string) []Item {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Item, 0, len(v.edges[edge]))
	for key := range v.edges[edge] {
		out = append(out, v.items[key])
	}
	return out
}

// Edges returns every edge id some connection is registered on.
func (v *View) Edges() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]string, 0, len(v.edges))
	for edge := range v.edges {
		out = append(out, edge)
	}
	return out
}

// Attention returns the entries a sweeper must look at: empty (in grace),
// leaving, or not yet announced.
func (v *View) Attention() []Item {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Item, 0, len(v.attention))
	for key := range v.attention {
		out = append(out, v.items[key])
	}
	return out
}
