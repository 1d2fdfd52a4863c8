package roomlog_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// memStore is an in-memory roomlog.Store of one room: the rows a lagging
// database has (any subset of the log), by store.Store's contract.
type memStore struct {
	rows []wire.Message // ascending, Prev unset
	kept uint64         // retention watermark: ids at or below it are gone
}

func (s *memStore) linked(rows []wire.Message, floor uint64) []wire.Message {
	return roomlog.Link(slices.Clone(rows), floor)
}

func (s *memStore) Recent(_ context.Context, _ string, before uint64, limit int) (wire.Page, error) {
	var in []wire.Message
	for _, m := range s.rows {
		if before == 0 || m.ID < before {
			in = append(in, m)
		}
	}
	start := max(len(in)-limit, 0)
	floor := s.kept
	if start > 0 {
		floor = in[start-1].ID
	}
	items := s.linked(in[start:], floor)
	if items == nil {
		items = []wire.Message{}
	}
	return wire.Page{Items: items, HasMore: start > 0, Recovered: true}, nil
}

func (s *memStore) Since(ctx context.Context, room string, after uint64, limit int) (wire.Page, error) {
	if after < s.kept {
		p, err := s.Recent(ctx, room, 0, limit)
		p.Recovered = false
		return p, err
	}
	floor, _ := s.Prev(ctx, room, after+1)
	var items []wire.Message
	more := false
	for _, m := range s.rows {
		if m.ID > after {
			if len(items) == limit {
				more = true
				break
			}
			items = append(items, m)
		}
	}
	return wire.Page{Items: s.linked(items, floor), HasMore: more, Recovered: true}, nil
}

func (s *memStore) Prev(_ context.Context, _ string, below uint64) (uint64, error) {
	p := s.kept
	for _, m := range s.rows {
		if m.ID < below {
			p = m.ID
		}
	}
	return p, nil
}

// memStream is an in-memory roomlog.RoomScanner: the room's messages in
// the stream (already decoded) from first on.
type memStream struct {
	log     []wire.Message
	scanned int // messages handed out, all scans
}

func (s *memStream) ScanRoom(_ context.Context, _ roomlog.Decoder, _ string, from uint64, maxScan int, fn func(wire.Message) bool) error {
	n := 0
	for _, m := range s.log {
		if m.ID < from {
			continue
		}
		n++
		if maxScan > 0 && n > maxScan {
			return roomlog.ErrScanLimit
		}
		s.scanned++
		if !fn(m) {
			return nil
		}
	}
	return nil
}

// reference pages of the whole log, linked.
func refRecent(log []wire.Message, before uint64, limit int) ([]wire.Message, bool) {
	var in []wire.Message
	for _, m := range log {
		if before == 0 || m.ID < before {
			in = append(in, m)
		}
	}
	start := max(len(in)-limit, 0)
	return in[start:], start > 0
}

func refSince(log []wire.Message, after uint64, limit int) ([]wire.Message, bool) {
	var out []wire.Message
	for _, m := range log {
		if m.ID > after {
			if len(out) == limit {
				return out, true
			}
			out = append(out, m)
		}
	}
	return out, false
}

func same(t *testing.T, what string, got wire.Page, want []wire.Message, more bool) {
	t.Helper()
	if got.HasMore != more || !got.Recovered || len(got.Items) != len(want) {
		t.Fatalf("%s: %d items has_more=%v recovered=%v, want %d has_more=%v", what, len(got.Items), got.HasMore, got.Recovered, len(want), more)
	}
	for i := range want {
		if got.Items[i].ID != want[i].ID || got.Items[i].Prev != want[i].Prev {
			t.Fatalf("%s: item %d is %d prev %d, want %d prev %d", what, i, got.Items[i].ID, got.Items[i].Prev, want[i].ID, want[i].Prev)
		}
	}
}

// TestPagesMatchTheLog checks, on random rooms, that the pages joined
// from a lagging store and the stream above its watermark are exactly the
// pages of the whole log, prev links included, wherever the watermark is
// and whatever the store holds above it (rows inserted out of order).
func TestPagesMatchTheLog(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ctx := context.Background()
	for round := range 1500 {
		var log []wire.Message
		id := uint64(0)
		for range rng.IntN(30) {
			id += 1 + uint64(rng.IntN(3))
			log = append(log, wire.Message{ID: id, Room: "r"})
		}
		roomlog.Link(log, 0)
		w := uint64(rng.IntN(int(id) + 2)) // the stored watermark
		st := &memStore{}
		for _, m := range log {
			if m.ID <= w || rng.IntN(3) == 0 {
				st.rows = append(st.rows, wire.Message{ID: m.ID, Room: "r"})
			}
		}
		p := &roomlog.Pages{Store: st, Stream: &memStream{log: log}, Marks: func() roomlog.Marks { return roomlog.Marks{Stored: w} }}
		limit := 1 + rng.IntN(6)
		before := uint64(0)
		if rng.IntN(2) == 0 {
			before = uint64(rng.IntN(int(id) + 3))
		}
		got, err := p.Recent(ctx, "r", before, limit)
		if err != nil {
			t.Fatal(err)
		}
		want, more := refRecent(log, before, limit)
		same(t, fmt.Sprintf("round %d: recent before %d limit %d, stored to %d", round, before, limit, w), got, want, more)

		after := uint64(rng.IntN(int(id) + 2))
		got, err = p.Since(ctx, "r", after, limit)
		if err != nil {
			t.Fatal(err)
		}
		want, more = refSince(log, after, limit)
		same(t, fmt.Sprintf("round %d: since %d limit %d, stored to %d", round, after, limit, w), got, want, more)
	}
}

func TestPagesEdges(t *testing.T) {
	ctx := context.Background()
	log := roomlog.Link([]wire.Message{{ID: 2}, {ID: 4}, {ID: 5}, {ID: 9}, {ID: 10}}, 0)
	rows := func(ids ...uint64) []wire.Message {
		var out []wire.Message
		for _, id := range ids {
			out = append(out, wire.Message{ID: id})
		}
		return out
	}

	t.Run("too much unstored is ErrCatchingUp", func(t *testing.T) {
		p := &roomlog.Pages{Store: &memStore{}, Stream: &memStream{log: log}, MaxScan: 3,
			Marks: func() roomlog.Marks { return roomlog.Marks{} }}
		if _, err := p.Recent(ctx, "r", 0, 50); !errors.Is(err, roomlog.ErrCatchingUp) {
			t.Fatalf("recent: err %v, want ErrCatchingUp", err)
		}
		if _, err := p.Since(ctx, "r", 0, 50); !errors.Is(err, roomlog.ErrCatchingUp) {
			t.Fatalf("since: err %v, want ErrCatchingUp", err)
		}
	})

	t.Run("a stored page reads no stream", func(t *testing.T) {
		s := &memStream{log: log}
		p := &roomlog.Pages{Store: &memStore{rows: rows(2, 4, 5, 9, 10)}, Stream: s,
			Marks: func() roomlog.Marks { return roomlog.Marks{Stored: 10} }}
		got, err := p.Recent(ctx, "r", 9, 2)
		if err != nil {
			t.Fatal(err)
		}
		same(t, "recent before 9", got, log[1:3], true)
		if s.scanned != 0 {
			t.Fatalf("read %d messages from the stream", s.scanned)
		}
	})

	t.Run("stream retention makes since not recovered", func(t *testing.T) {
		// The store holds nothing yet; the stream starts at 9.
		var counted int
		p := &roomlog.Pages{Store: &memStore{}, Stream: &memStream{log: roomlog.Link(slices.Clone(log[3:]), 5)},
			Marks:        func() roomlog.Marks { return roomlog.Marks{Stored: 0, First: 9} },
			OnStreamRead: func(n int) { counted += n }}
		got, err := p.Since(ctx, "r", 4, 50)
		if err != nil {
			t.Fatal(err)
		}
		if got.Recovered || len(got.Items) != 2 || got.Items[0].ID != 9 {
			t.Fatalf("since 4: %+v, want the newest page, not recovered", got)
		}
		if counted != 2 {
			t.Fatalf("OnStreamRead told %d, want 2", counted)
		}
	})

	t.Run("since just below the stream's first is recovered", func(t *testing.T) {
		// Stored to 5; the stream has trimmed everything before 6.
		p := &roomlog.Pages{Store: &memStore{rows: rows(2, 4, 5)}, Stream: &memStream{log: log[3:]},
			Marks: func() roomlog.Marks { return roomlog.Marks{Stored: 5, First: 6} }}
		got, err := p.Since(ctx, "r", 5, 50)
		if err != nil {
			t.Fatal(err)
		}
		same(t, "since 5", got, log[3:], false)
	})

	t.Run("database retention makes since not recovered", func(t *testing.T) {
		p := &roomlog.Pages{Store: &memStore{rows: rows(9, 10), kept: 5}, Stream: &memStream{log: log},
			Marks: func() roomlog.Marks { return roomlog.Marks{Stored: 10} }}
		got, err := p.Since(ctx, "r", 2, 50)
		if err != nil {
			t.Fatal(err)
		}
		if got.Recovered || len(got.Items) != 2 || got.Items[0].Prev != 5 {
			t.Fatalf("since 2: %+v, want the newest page from the watermark, not recovered", got)
		}
	})
}
