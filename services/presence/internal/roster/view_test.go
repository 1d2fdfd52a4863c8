package roster

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// entry is a jetstream.KeyValueEntry built in memory for view tests.
type entry struct {
	key   string
	value []byte
	rev   uint64
	op    jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return "test" }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Created() time.Time              { return time.Time{} }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

func put(t *testing.T, rev uint64, room string, e Entry) entry {
	t.Helper()
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return entry{key: Key(room, e.User), value: b, rev: rev}
}

func TestViewIndexes(t *testing.T) {
	v := NewView()
	var snap []jetstream.KeyValueEntry
	for i, u := range []string{"dan", "bob", "cat", "amy"} {
		snap = append(snap, put(t, uint64(i+1), "r", Entry{User: u, Conns: map[string]string{"c-" + u: "e1"}, Announced: true}))
	}
	snap = append(snap, entry{key: Key("r", "old"), rev: 5, op: jetstream.KeyValueDelete})
	v.Replace(snap)

	v.Apply(put(t, 6, "r", Entry{User: "eve", Conns: map[string]string{}, EmptySince: 1, Announced: true}))
	v.Apply(put(t, 7, "r", Entry{User: "fay", Leaving: 1}))
	v.Apply(put(t, 8, "s", Entry{User: "amy", Conns: map[string]string{"c2": "e2"}}))
	v.Apply(entry{key: Key("r", "cat"), rev: 9, op: jetstream.KeyValuePurge})
	v.Apply(put(t, 3, "r", Entry{User: "zed"}))                             // older than what the view has seen: still a new key
	v.Apply(put(t, 1, "r", Entry{User: "bob", Conns: map[string]string{}})) // stale revision of bob: ignored

	users, online, next := v.Page("r", "", 10)
	if want := []string{"amy", "bob", "dan", "eve", "zed"}; !slices.Equal(users, want) || online != 5 || next != "" {
		t.Errorf("page %v online %d next %q, want %v", users, online, next, want)
	}
	if users, _, next := v.Page("r", "bob", 2); !slices.Equal(users, []string{"dan", "eve"}) || next != "eve" {
		t.Errorf("page after bob: %v next %q", users, next)
	}
	if got := v.Counts(nil); fmt.Sprint(got) != "map[r:5 s:1]" {
		t.Errorf("counts %v", got)
	}
	if got := len(v.OnEdge("e1")); got != 3 {
		t.Errorf("%d entries on e1, want 3 (amy, bob, dan)", got)
	}
	var attention []string
	for _, it := range v.Attention() {
		attention = append(attention, it.Entry.User)
	}
	slices.Sort(attention)
	if want := []string{"amy", "eve", "fay", "zed"}; !slices.Equal(attention, want) {
		t.Errorf("attention %v, want %v", attention, want)
	}
	if members, rooms := v.Total(); members != 6 || rooms != 2 {
		t.Errorf("total %d members %d rooms", members, rooms)
	}
}
