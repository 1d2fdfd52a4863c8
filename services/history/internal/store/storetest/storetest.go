// Package storetest is the conformance suite every store.Store
// implementation must pass. Run it from the implementation's tests with a
// factory that opens a fresh, empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Factory opens a fresh, empty store for one test; the suite closes it.
type Factory func(t *testing.T) store.Store

// Run runs every conformance test against stores from open.
func Run(t *testing.T, open Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Empty", testEmpty},
		{"InvalidArguments", testInvalid},
		{"InsertIdempotent", testInsertIdempotent},
		{"RecentPages", testRecentPages},
		{"SincePages", testSincePages},
		{"Prev", testPrev},
		{"Lobby", testLobby},
		{"Bind", testBind},
		{"Retention", testRetention},
		{"ConcurrentWriters", testConcurrentWriters},
		{"OddContent", testOddContent},
		{"InsertRejectsUnholdable", testInsertRejectsUnholdable},
		{"CancelledIsNotRejected", testCancelledIsNotRejected},
		{"DeadLetters", testDeadLetters},
	}
	tests = append(tests, conversationTests()...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// base is the ts of generated messages: well in the past so that retention
// tests can pick cutoffs relative to it.
const base = int64(1_700_000_000_000)

// msg builds message id in room, ts advancing with id.
func msg(id uint64, room string) wire.Message {
	return wire.Message{
		ID: id, Room: room, User: fmt.Sprintf("user-%d", id%3), Body: fmt.Sprintf("body %d", id),
		Kind: wire.KindMessage, TS: base + int64(id)*1000, CID: fmt.Sprintf("c%d", id),
	}
}

// layout gives ids 1..n to rooms round-robin over rooms and returns the ids
// of each room in order.
func layout(n int, rooms ...string) ([]wire.Message, map[string][]uint64) {
	var all []wire.Message
	per := map[string][]uint64{}
	for i := 1; i <= n; i++ {
		r := rooms[(i*7/3)%len(rooms)]
		all = append(all, msg(uint64(i), r))
		per[r] = append(per[r], uint64(i))
	}
	return all, per
}

func mustInsert(t *testing.T, s store.Store, msgs []wire.Message) int {
	t.Helper()
	got, err := s.Insert(ctxT(t), msgs)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	return len(got)
}

// checkChain verifies items are ids want, in order, each Prev the id before
// it and the first Prev firstPrev.
func checkChain(t *testing.T, what string, items []wire.Message, want []uint64, firstPrev uint64) {
	t.Helper()
	if len(items) != len(want) {
		t.Fatalf("%s: %d items %v, want %v", what, len(items), ids(items), want)
	}
	p := firstPrev
	for i, m := range items {
		if m.ID != want[i] {
			t.Fatalf("%s: ids %v, want %v", what, ids(items), want)
		}
		if m.Prev != p {
			t.Fatalf("%s: item %d (id %d) prev %d, want %d", what, i, m.ID, m.Prev, p)
		}
		p = m.ID
	}
}

// gap returns an index k >= 1 with ids[k]+1 < ids[k+1] (a non-member id
// follows ids[k]) and k+3 <= len(ids).
func gap(t *testing.T, ids []uint64) int {
	t.Helper()
	for k := 1; k+3 <= len(ids); k++ {
		if ids[k]+1 < ids[k+1] {
			return k
		}
	}
	t.Fatalf("layout has no gap: %v", ids)
	return 0
}

func prevOf(ids []uint64, k int) uint64 {
	if k == 0 {
		return 0
	}
	return ids[k-1]
}

func ids(ms []wire.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func testEmpty(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	p, err := s.Recent(ctx, "nowhere", 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	if p.Items == nil || len(p.Items) != 0 || p.HasMore || !p.Recovered || p.Room != "nowhere" {
		t.Fatalf("recent on empty room: %+v", p)
	}
	p, err = s.Since(ctx, "nowhere", 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	if p.Items == nil || len(p.Items) != 0 || p.HasMore || !p.Recovered {
		t.Fatalf("since on empty room: %+v", p)
	}
	lobby, err := s.Lobby(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if lobby == nil || len(lobby) != 0 {
		t.Fatalf("lobby on empty store: %+v", lobby)
	}
	if n := mustInsert(t, s, nil); n != 0 {
		t.Fatalf("empty insert inserted %d", n)
	}
}

func testInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	cases := []struct {
		name string
		call func() error
	}{
		{"recent limit 0", func() error { _, err := s.Recent(ctx, "a", 0, 0); return err }},
		{"recent empty room", func() error { _, err := s.Recent(ctx, "", 0, 5); return err }},
		{"since limit -1", func() error { _, err := s.Since(ctx, "a", 0, -1); return err }},
		{"insert id 0", func() error { _, err := s.Insert(ctx, []wire.Message{{Room: "a"}}); return err }},
		{"insert no room", func() error { _, err := s.Insert(ctx, []wire.Message{{ID: 1}}); return err }},
		{"trim batch 0", func() error { _, err := s.Trim(ctx, time.Now(), 0); return err }},
	}
	for _, c := range cases {
		if err := c.call(); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: err %v, want ErrInvalidArgument", c.name, err)
		}
	}
}

func testInsertIdempotent(t *testing.T, s store.Store) {
	all, per := layout(60, "a", "b", "c")
	// Insert out of order, in overlapping batches, with duplicates inside
	// a batch: every id must land once.
	shuffled := append([]wire.Message(nil), all...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	total := 0
	total += mustInsert(t, s, shuffled[:25])
	total += mustInsert(t, s, slices.Concat(shuffled[20:45], shuffled[21:22]))
	total += mustInsert(t, s, shuffled[40:])
	if total != len(all) {
		t.Fatalf("inserted %d rows, want %d", total, len(all))
	}
	if n := mustInsert(t, s, all); n != 0 {
		t.Fatalf("re-insert inserted %d rows, want 0", n)
	}
	lobby, err := s.Lobby(ctxT(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range lobby {
		if want := int64(len(per[r.Room])); r.Messages != want {
			t.Errorf("room %s count %d, want %d (duplicates must not count)", r.Room, r.Messages, want)
		}
	}
	for room, want := range per {
		p, err := s.Since(ctxT(t), room, 0, 200)
		if err != nil {
			t.Fatal(err)
		}
		checkChain(t, "since 0 "+room, p.Items, want, 0)
		for _, m := range p.Items {
			if w := msg(m.ID, room); m.User != w.User || m.Body != w.Body || m.Kind != w.Kind || m.TS != w.TS || m.CID != w.CID || m.Room != room {
				t.Fatalf("stored %+v, want %+v", m, w)
			}
		}
	}
}

func testRecentPages(t *testing.T, s store.Store) {
	all, per := layout(50, "a", "b")
	mustInsert(t, s, all)
	a := per["a"]
	n := len(a)
	g := gap(t, a)
	cases := []struct {
		name      string
		before    uint64
		limit     int
		want      []uint64
		firstPrev uint64
		hasMore   bool
	}{
		{"newest 5", 0, 5, a[n-5:], a[n-6], true},
		{"before a[10]", a[10], 4, a[6:10], a[5], true},
		{"before a[3], limit 3", a[3], 3, a[0:3], 0, false},
		{"before a[3], limit 10", a[3], 10, a[0:3], 0, false},
		{"all", 0, 200, a, 0, false},
		{"exact", 0, n, a, 0, false},
		{"before first", a[0], 5, []uint64{}, 0, false},
		{"before non-member id", a[g] + 1, 2, a[g-1 : g+1], prevOf(a, g-1), g > 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := s.Recent(ctxT(t), "a", c.before, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			checkChain(t, c.name, p.Items, c.want, c.firstPrev)
			if p.HasMore != c.hasMore || !p.Recovered || p.Room != "a" {
				t.Fatalf("has_more %v recovered %v room %q; want has_more %v", p.HasMore, p.Recovered, p.Room, c.hasMore)
			}
		})
	}
	// Paging backwards from the newest page reassembles the room exactly.
	var got []uint64
	before := uint64(0)
	for {
		p, err := s.Recent(ctxT(t), "a", before, 7)
		if err != nil {
			t.Fatal(err)
		}
		got = append(ids(p.Items), got...)
		if !p.HasMore {
			break
		}
		before = p.Items[0].ID
	}
	if fmt.Sprint(got) != fmt.Sprint(a) {
		t.Fatalf("paging backwards: %v, want %v", got, a)
	}
}

func testSincePages(t *testing.T, s store.Store) {
	all, per := layout(50, "a", "b")
	mustInsert(t, s, all)
	b := per["b"]
	n := len(b)
	g := gap(t, b)
	cases := []struct {
		name      string
		after     uint64
		limit     int
		want      []uint64
		firstPrev uint64
		hasMore   bool
	}{
		{"from start", 0, 5, b[:5], 0, true},
		{"after b[4]", b[4], 3, b[5:8], b[4], true},
		{"after non-member id", b[g] + 1, 2, b[g+1 : g+3], b[g], g+3 < n},
		{"tail", b[n-3], 10, b[n-2:], b[n-3], false},
		{"exact tail", b[n-3], 2, b[n-2:], b[n-3], false},
		{"after last", b[n-1], 10, []uint64{}, 0, false},
		{"far future", 1 << 62, 10, []uint64{}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := s.Since(ctxT(t), "b", c.after, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			checkChain(t, c.name, p.Items, c.want, c.firstPrev)
			if p.HasMore != c.hasMore || !p.Recovered {
				t.Fatalf("has_more %v recovered %v; want has_more %v recovered true", p.HasMore, p.Recovered, c.hasMore)
			}
		})
	}
	// Paging forwards reassembles the room exactly.
	var got []uint64
	after := uint64(0)
	for {
		p, err := s.Since(ctxT(t), "b", after, 6)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(p.Items)...)
		if !p.HasMore {
			break
		}
		after = p.Items[len(p.Items)-1].ID
	}
	if fmt.Sprint(got) != fmt.Sprint(b) {
		t.Fatalf("paging forwards: %v, want %v", got, b)
	}
}

func testPrev(t *testing.T, s store.Store) {
	mustInsert(t, s, []wire.Message{msg(3, "a"), msg(5, "b"), msg(9, "a")})
	cases := []struct {
		room  string
		below uint64
		want  uint64
	}{
		{"a", 1, 0}, {"a", 3, 0}, {"a", 4, 3}, {"a", 9, 3}, {"a", 10, 9}, {"a", 0, 9}, {"b", 100, 5}, {"c", 100, 0},
	}
	for _, c := range cases {
		got, err := s.Prev(ctxT(t), c.room, c.below)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("Prev(%s, %d) = %d, want %d", c.room, c.below, got, c.want)
		}
	}
}

func testLobby(t *testing.T, s store.Store) {
	mustInsert(t, s, []wire.Message{msg(1, "old"), msg(2, "mid"), msg(3, "new"), msg(4, "mid"), msg(6, "new")})
	// Out of order: an older message arriving after a newer one must not
	// move the room's last message backwards.
	mustInsert(t, s, []wire.Message{msg(5, "mid")})
	lobby, err := s.Lobby(ctxT(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		room       string
		last, prev uint64
		count      int64
	}{{"new", 6, 3, 2}, {"mid", 5, 4, 3}, {"old", 1, 0, 1}}
	if len(lobby) != len(want) {
		t.Fatalf("lobby %+v", lobby)
	}
	for i, w := range want {
		r := lobby[i]
		if r.Room != w.room || r.LastID != w.last || r.Messages != w.count || r.LastActivity != msg(w.last, w.room).TS {
			t.Errorf("lobby[%d] = %+v, want %+v", i, r, w)
		}
		if r.LastMessage == nil || r.LastMessage.ID != w.last || r.LastMessage.Prev != w.prev || r.LastMessage.Body != msg(w.last, w.room).Body {
			t.Errorf("lobby[%d].last_message = %+v", i, r.LastMessage)
		}
	}
	// Out of order the other way: 5 was inserted after 6 in room "mid"?
	mustInsert(t, s, []wire.Message{msg(7, "mid")})
	lobby, err = s.Lobby(ctxT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(lobby) != 1 || lobby[0].Room != "mid" || lobby[0].LastID != 7 || lobby[0].Messages != 4 {
		t.Fatalf("lobby limit 1: %+v", lobby)
	}
}

func testBind(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	created := time.Date(2025, 11, 22, 19, 20, 21, 123456789, time.UTC)
	id := store.Identity{Stream: "CHAT", Created: created}
	if fresh, err := s.Bind(ctx, id); err != nil || !fresh {
		t.Fatalf("first bind: fresh %v, %v", fresh, err)
	}
	if fresh, err := s.Bind(ctx, store.Identity{Stream: "CHAT", Created: created.In(time.FixedZone("x", 3600))}); err != nil || fresh {
		t.Fatalf("same identity, other zone: fresh %v, %v", fresh, err)
	}
	for _, other := range []store.Identity{
		{Stream: "CHAT", Created: created.Add(time.Nanosecond)},
		{Stream: "OTHER", Created: created},
	} {
		if _, err := s.Bind(ctx, other); !errors.Is(err, store.ErrStreamMismatch) {
			t.Errorf("bind %s: %v, want ErrStreamMismatch", other, err)
		}
	}
	if fresh, err := s.Bind(ctx, id); err != nil || fresh {
		t.Fatalf("rebind: fresh %v, %v", fresh, err)
	}
}

func testRetention(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	all, per := layout(40, "a", "b")
	mustInsert(t, s, all)
	a, b := per["a"], per["b"]
	// Trim every message with id <= 20 (ts < base+21s), 3 rows at a time.
	cutoff := time.UnixMilli(base + 21*1000)
	if total := trimAll(t, s, cutoff, 3); total != 20 {
		t.Fatalf("trimmed %d rows, want 20", total)
	}
	keptA, ta := split(a, 20)
	keptB, tb := split(b, 20)
	checkTrimmedRoom(t, s, "a", keptA, ta)
	checkTrimmedRoom(t, s, "b", keptB, tb)
	// A late redelivery of a trimmed message must not come back.
	if n := mustInsert(t, s, []wire.Message{msg(ta, "a"), msg(1, per0(all))}); n != 0 {
		t.Fatalf("re-inserted %d trimmed messages", n)
	}
	// Nothing left to trim at this cutoff.
	if n, err := s.Trim(ctx, cutoff, 3); err != nil || n != 0 {
		t.Fatalf("second trim: %d, %v", n, err)
	}
	// The lobby still lists both rooms and counts the messages they hold.
	lobby, err := s.Lobby(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(lobby) != 2 {
		t.Fatalf("lobby after trim: %+v", lobby)
	}
	for _, r := range lobby {
		want := map[string]int{"a": len(keptA), "b": len(keptB)}[r.Room]
		if r.Messages != int64(want) {
			t.Errorf("lobby count of %s after trim %d, want %d held", r.Room, r.Messages, want)
		}
	}
}

// trimAll trims at cutoff, batch rows at a time, until a batch comes back
// short, and returns how many rows it deleted.
func trimAll(t *testing.T, s store.Store, cutoff time.Time, batch int) int {
	t.Helper()
	total := 0
	for i := 0; ; i++ {
		n, err := s.Trim(ctxT(t), cutoff, batch)
		if err != nil {
			t.Fatal(err)
		}
		if n > batch {
			t.Fatalf("trim deleted %d rows, batch is %d", n, batch)
		}
		total += n
		if n < batch {
			return total
		}
		if i > 100 {
			t.Fatal("trim does not converge")
		}
	}
}

// checkTrimmedRoom checks the pages of a room retention trimmed through
// trimmed, keeping kept.
func checkTrimmedRoom(t *testing.T, s store.Store, room string, kept []uint64, trimmed uint64) {
	t.Helper()
	ctx := ctxT(t)
	p, err := s.Recent(ctx, room, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkChain(t, "recent after trim "+room, p.Items, kept, trimmed)
	if p.HasMore {
		t.Errorf("room %s: has_more after trim", room)
	}
	// since older than the watermark: newest page, recovered false.
	p, err = s.Since(ctx, room, trimmed-1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if p.Recovered {
		t.Errorf("room %s since %d: recovered true, want false", room, trimmed-1)
	}
	checkChain(t, "since before watermark "+room, p.Items, kept[len(kept)-3:], kept[len(kept)-4])
	if !p.HasMore {
		t.Errorf("room %s: newest page after reset should have more", room)
	}
	// since exactly at the watermark: everything kept, recovered.
	p, err = s.Since(ctx, room, trimmed, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Recovered {
		t.Errorf("room %s since watermark: recovered false", room)
	}
	checkChain(t, "since watermark "+room, p.Items, kept, trimmed)
	if got, err := s.Prev(ctx, room, kept[0]); err != nil || got != trimmed {
		t.Errorf("Prev(%s, %d) = %d, %v; want %d", room, kept[0], got, err, trimmed)
	}
}

func per0(all []wire.Message) string { return all[0].Room }

// split returns the ids above through and the largest id at or below it.
func split(ids []uint64, through uint64) ([]uint64, uint64) {
	var kept []uint64
	var last uint64
	for _, id := range ids {
		if id <= through {
			last = id
		} else {
			kept = append(kept, id)
		}
	}
	return kept, last
}

func testConcurrentWriters(t *testing.T, s store.Store) {
	all, per := layout(400, "a", "b", "c", "d")
	// Four writers insert overlapping batches concurrently, as history
	// replicas do when a message is redelivered to another replica.
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for start := 0; start < len(all); start += 50 {
				end := min(start+75, len(all))
				batch := append([]wire.Message(nil), all[start:end]...)
				rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
				var n int
				var err error
				for attempt := 0; attempt < 10; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					var got []wire.Message
					got, err = s.Insert(ctx, batch)
					n = len(got)
					cancel()
					if err == nil {
						break
					}
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent insert: %v", err)
	}
	if total != len(all) {
		t.Fatalf("inserted %d rows in total, want %d", total, len(all))
	}
	lobby, err := s.Lobby(ctxT(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range lobby {
		want := per[r.Room]
		if r.Messages != int64(len(want)) || r.LastID != want[len(want)-1] {
			t.Errorf("room %s: count %d last %d, want %d %d", r.Room, r.Messages, r.LastID, len(want), want[len(want)-1])
		}
	}
}

func testOddContent(t *testing.T, s store.Store) {
	odd := []wire.Message{
		{ID: 1, Room: "r", User: "Zoë 🚀 \"quoted\" ' ; DROP TABLE messages; --", Body: "line1\nline2\t\u00e9\u4e16\U0001F600", Kind: wire.KindSystem, TS: 1, CID: ""},
		{ID: 1<<53 + 1, Room: "r", User: "u", Body: "big id", Kind: wire.KindMessage, TS: -5, CID: "x"},
	}
	mustInsert(t, s, odd)
	p, err := s.Since(ctxT(t), "r", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkChain(t, "odd", p.Items, []uint64{1, 1<<53 + 1}, 0)
	for i, m := range p.Items {
		w := odd[i]
		w.Prev = m.Prev
		if !reflect.DeepEqual(m, w) {
			t.Errorf("round trip: got %+v, want %+v", m, w)
		}
	}
}

// testInsertRejectsUnholdable: a row holding text no store can keep
// (U+0000, invalid UTF-8) fails its whole batch with ErrRejected on every
// store alike — SQLite could store it, PostgreSQL could not — and nothing
// of the batch is stored; the other rows then insert on their own.
func testInsertRejectsUnholdable(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	good := []wire.Message{msg(1, "r"), msg(3, "r")}
	for _, c := range []struct {
		name string
		edit func(m *wire.Message)
	}{
		{"NUL body", func(m *wire.Message) { m.Body = "a\x00b" }},
		{"only NUL", func(m *wire.Message) { m.Body = "\x00" }},
		{"invalid UTF-8 body", func(m *wire.Message) { m.Body = "a\xffb" }},
		{"NUL user", func(m *wire.Message) { m.User = "u\x00" }},
		{"NUL cid", func(m *wire.Message) { m.CID = "\x00" }},
		{"NUL kind", func(m *wire.Message) { m.Kind = "message\x00" }},
	} {
		bad := msg(2, "r")
		c.edit(&bad)
		_, err := s.Insert(ctx, []wire.Message{good[0], bad, good[1]})
		if !errors.Is(err, store.ErrRejected) {
			t.Fatalf("%s: insert %v, want ErrRejected", c.name, err)
		}
		p, err := s.Recent(ctx, "r", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != 0 {
			t.Fatalf("%s: a rejected batch stored %v", c.name, ids(p.Items))
		}
	}
	if n := mustInsert(t, s, good); n != 2 {
		t.Fatalf("inserted %d of the good rows, want 2", n)
	}
	p, err := s.Since(ctx, "r", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkChain(t, "after rejections", p.Items, []uint64{1, 3}, 0)
	lobby, err := s.Lobby(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(lobby) != 1 || lobby[0].Messages != 2 || lobby[0].LastID != 3 {
		t.Fatalf("lobby after rejections: %+v", lobby)
	}
}

// testCancelledIsNotRejected: a failure of the call rather than of the
// data never wraps ErrRejected, so ingest retries it instead of parking.
func testCancelledIsNotRejected(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if _, err := s.Insert(ctx, []wire.Message{msg(1, "r")}); err == nil || errors.Is(err, store.ErrRejected) {
		t.Fatalf("insert with a cancelled context: %v, want a transient error", err)
	}
	if err := s.Park(ctx, []store.DeadLetter{{Seq: 1, Reason: "x"}}); err == nil || errors.Is(err, store.ErrRejected) {
		t.Fatalf("park with a cancelled context: %v, want a transient error", err)
	}
}

// testDeadLetters: parked messages keep their payload byte for byte
// (U+0000 included), text no database holds is made holdable rather than
// refused, parking again is a no-op, and retention deletes by parked_at.
func testDeadLetters(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if got, err := s.DeadLetters(ctx, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v %v", got, err)
	}
	at := time.UnixMilli(base)
	raw := []byte("{\"body\":\"a\\u0000b\"}\x00\xff")
	letters := []store.DeadLetter{
		{Seq: 9, Room: "r", Subject: "chat.room.r", Payload: raw, Reason: "invalid", Detail: "body contains U+0000", ParkedAt: at},
		{Seq: 4, Room: "r\x00", Subject: "chat.room.\xff", Payload: nil, Reason: "undecodable", Detail: "bad \x00 \xfe", ParkedAt: at.Add(time.Hour)},
		{Seq: 9, Room: "r", Subject: "chat.room.r", Payload: []byte("second copy"), Reason: "invalid", ParkedAt: at}, // same seq: first kept
	}
	if err := s.Park(ctx, letters); err != nil {
		t.Fatalf("park: %v", err)
	}
	if err := s.Park(ctx, letters[:1]); err != nil {
		t.Fatalf("park again: %v", err)
	}
	if err := s.Park(ctx, []store.DeadLetter{{Seq: 1<<53 + 1, Payload: []byte{0}, Reason: "rejected", ParkedAt: at}}); err != nil {
		t.Fatalf("park a big sequence: %v", err)
	}
	got, err := s.DeadLetters(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkParked(t, got, raw, at)
	if page, err := s.DeadLetters(ctx, 4, 1); err != nil || len(page) != 1 || page[0].Seq != 9 {
		t.Fatalf("page after 4: %+v %v", page, err)
	}
	// Parking never touches messages.
	if p, err := s.Recent(ctx, "r", 0, 10); err != nil || len(p.Items) != 0 {
		t.Fatalf("messages after parking: %+v %v", p, err)
	}
	checkDeadLetterArgs(t, s)
	n, err := s.TrimDeadLetters(ctx, at.Add(time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("trim dead letters: %d %v, want 2", n, err)
	}
	if got, err := s.DeadLetters(ctx, 0, 10); err != nil || len(got) != 1 || got[0].Seq != 4 {
		t.Fatalf("after trim: %+v %v", got, err)
	}
}

// checkParked checks the dead letters testDeadLetters parked, as read
// back: sequence order, the first copy of a sequence kept, text made
// storable (U+FFFD), payloads byte for byte.
func checkParked(t *testing.T, got []store.DeadLetter, raw []byte, at time.Time) {
	t.Helper()
	if len(got) != 3 || got[0].Seq != 4 || got[1].Seq != 9 || got[2].Seq != 1<<53+1 {
		t.Fatalf("dead letters %+v, want seqs 4, 9, 2^53+1", got)
	}
	if l := got[1]; string(l.Payload) != string(raw) || l.Room != "r" || l.Subject != "chat.room.r" ||
		l.Reason != "invalid" || l.Detail != "body contains U+0000" || !l.ParkedAt.Equal(at) {
		t.Fatalf("dead letter 9: %+v (payload %q)", l, l.Payload)
	}
	if l := got[0]; l.Room != "r\uFFFD" || l.Subject != "chat.room.\uFFFD" || l.Detail != "bad \uFFFD \uFFFD" ||
		len(l.Payload) != 0 || l.Payload == nil {
		t.Fatalf("dead letter 4: %+v", l)
	}
	if string(got[2].Payload) != "\x00" {
		t.Fatalf("dead letter 2^53+1 payload %q", got[2].Payload)
	}
}

// checkDeadLetterArgs checks that Park and DeadLetters refuse what they
// cannot do with ErrInvalidArgument.
func checkDeadLetterArgs(t *testing.T, s store.Store) {
	t.Helper()
	ctx := ctxT(t)
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"park seq 0", func() error { return s.Park(ctx, []store.DeadLetter{{Reason: "x"}}) }},
		{"list limit 0", func() error { _, err := s.DeadLetters(ctx, 0, 0); return err }},
	} {
		if err := c.call(); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", c.name, err)
		}
	}
}
