package roomlog_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func self(id uint64) uint64 { return id }

func TestUnseen(t *testing.T) {
	cases := []struct {
		name   string
		items  []uint64
		cursor uint64
		want   []uint64
	}{
		{"empty", nil, 5, nil},
		{"all below", []uint64{1, 2, 3}, 5, nil},
		{"one at the cursor", []uint64{3, 5}, 5, nil},
		{"at and above", []uint64{5, 6, 9}, 5, []uint64{6, 9}},
		{"all above", []uint64{6, 7}, 5, []uint64{6, 7}},
		{"cursor 0 keeps everything", []uint64{1, 2}, 0, []uint64{1, 2}},
		{"a repeated id once", []uint64{6, 7, 7, 8}, 5, []uint64{6, 7, 8}},
		{"a repeat of the first", []uint64{6, 6}, 5, []uint64{6}},
		{"out of order dropped", []uint64{6, 9, 8, 10}, 5, []uint64{6, 9, 10}},
		{"below the cursor after the start", []uint64{6, 4, 7}, 5, []uint64{6, 7}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := slices.Clone(c.items)
			got := roomlog.Unseen(in, c.cursor, self)
			if !slices.Equal(got, c.want) {
				t.Fatalf("Unseen(%v, %d) = %v, want %v", c.items, c.cursor, got, c.want)
			}
			if !slices.Equal(in, c.items) {
				t.Fatalf("Unseen changed its input: %v, was %v", in, c.items)
			}
			// Ascending input (a page, a live buffer): the result is a
			// suffix of it, not a copy.
			if len(got) > 0 && strictlyAscending(in) && &got[0] != &in[len(in)-len(got)] {
				t.Fatalf("Unseen(%v, %d) copied an ascending input", c.items, c.cursor)
			}
		})
	}
}

func strictlyAscending(ids []uint64) bool {
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			return false
		}
	}
	return true
}

func TestHandover(t *testing.T) {
	cases := []struct {
		name     string
		cursor   uint64 // end of the history sent
		from     uint64 // the buffer holds every live id above it
		buffered []uint64
		want     []uint64
		ok       bool
	}{
		{"buffer below the cursor", 10, 5, []uint64{6, 8, 10}, nil, true},
		{"buffer at the cursor", 10, 9, []uint64{10, 11}, []uint64{11}, true},
		{"buffer above the cursor", 10, 10, []uint64{11, 12}, []uint64{11, 12}, true},
		{"history and buffer overlap", 12, 10, []uint64{11, 12, 13}, []uint64{13}, true},
		{"duplicate in the buffer", 10, 10, []uint64{11, 11, 12}, []uint64{11, 12}, true},
		{"gap: history ends before the buffer starts", 7, 10, []uint64{11, 12}, nil, false},
		{"gap of one", 9, 10, []uint64{11}, nil, false},
		{"empty buffer, caught up", 10, 10, nil, nil, true},
		{"empty buffer, behind", 3, 10, nil, nil, false},
		{"empty history, empty room", 0, 0, []uint64{1, 2}, []uint64{1, 2}, true},
		{"empty history, room not empty", 0, 5, []uint64{6}, nil, false},
		{"history newer than the buffer", 20, 10, []uint64{11, 12}, nil, true},
		{"history newer than part of the buffer", 20, 10, []uint64{11, 25}, []uint64{25}, true},
		{"buffer dropped and restarted above the history", 12, 15, []uint64{16}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := roomlog.Handover(c.cursor, c.from, slices.Clone(c.buffered), self)
			if ok != c.ok || !slices.Equal(got, c.want) {
				t.Fatalf("Handover(%d, %d, %v) = %v, %v; want %v, %v", c.cursor, c.from, c.buffered, got, ok, c.want, c.ok)
			}
		})
	}
}

// TestCatchUpIsGapless plays the whole rule on random rooms: a member
// resumes after since; history answers pages up to some point (lagging or
// ahead of the buffer, overlapping it or not); live messages above the
// room's newest id at the join are buffered, the buffer possibly dropped
// and restarted as the room does when it overflows. Whenever Handover
// accepts, the member's view is exactly the room after since: no gap, no
// duplicate, in order.
func TestCatchUpIsGapless(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		// The room's ids: ascending, with holes (other rooms' messages).
		var log []uint64
		id := uint64(0)
		for range 1 + rng.IntN(40) {
			id += 1 + uint64(rng.IntN(3))
			log = append(log, id)
		}
		joinAt := rng.IntN(len(log) + 1) // log[:joinAt] existed at the join
		newest := uint64(0)
		if joinAt > 0 {
			newest = log[joinAt-1]
		}
		since := uint64(0)
		if s := rng.IntN(joinAt + 1); s > 0 {
			since = log[s-1]
		}
		// The buffer: everything live above from; a restart drops a prefix.
		from := newest
		buffered := slices.Clone(log[joinAt:])
		if len(buffered) > 0 && rng.IntN(4) == 0 {
			k := rng.IntN(len(buffered))
			if k > 0 {
				from = buffered[k-1]
			}
			buffered = buffered[k:]
		}
		// History: pages of the log after the cursor, up to what history
		// has stored by then (anything, even past the buffer's start).
		stored := rng.IntN(len(log) + 1)
		cursor := since
		var view []uint64
		for {
			var page []uint64
			size := 1 + rng.IntN(5)
			for _, m := range log[:stored] {
				if m > cursor && len(page) < size {
					page = append(page, m)
				}
			}
			// A page may repeat what was sent (a replayed frame).
			if len(view) > 0 && rng.IntN(3) == 0 {
				page = append([]uint64{view[len(view)-1]}, page...)
			}
			items := roomlog.Unseen(page, cursor, self)
			if len(items) == 0 {
				break
			}
			view = append(view, items...)
			cursor = items[len(items)-1]
		}
		pending, ok := roomlog.Handover(cursor, from, buffered, self)
		if !ok {
			if cursor >= from {
				t.Fatalf("round %d: refused although the history (to %d) reached the buffer (from %d)", round, cursor, from)
			}
			continue
		}
		view = append(view, pending...)
		var want []uint64
		for _, m := range log {
			if m > since {
				want = append(want, m)
			}
		}
		if !slices.Equal(view, want) {
			t.Fatalf("round %d: since %d, history to %d, buffer from %d %v: view %v, want %v",
				round, since, cursor, from, buffered, view, want)
		}
	}
}

func TestMessageID(t *testing.T) {
	msgs := []wire.Message{{ID: 3}, {ID: 4}, {ID: 4}, {ID: 7}}
	got := roomlog.Unseen(msgs, 3, roomlog.MessageID)
	if fmt.Sprint(got) != fmt.Sprint([]wire.Message{{ID: 4}, {ID: 7}}) {
		t.Fatalf("Unseen over messages: %+v", got)
	}
}

func TestLink(t *testing.T) {
	cases := []struct {
		name  string
		ids   []uint64
		floor uint64
		want  []uint64 // prevs
	}{
		{"empty", nil, 4, nil},
		{"first of the room", []uint64{1, 3, 9}, 0, []uint64{0, 1, 3}},
		{"after a floor", []uint64{5, 6}, 2, []uint64{2, 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs := make([]wire.Message, len(c.ids))
			for i, id := range c.ids {
				msgs[i] = wire.Message{ID: id, Prev: 99}
			}
			var got []uint64
			for _, m := range roomlog.Link(msgs, c.floor) {
				got = append(got, m.Prev)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("prevs %v, want %v", got, c.want)
			}
		})
	}
}
