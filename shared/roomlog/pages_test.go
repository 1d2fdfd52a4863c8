package roomlog_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// memStore is an in-memory roomlog.Store of one room: the rows a lagging
// database has (any subset of the log), by store.Store's contract: the
// stored changes are folded into the stored messages.
type memStore struct {
	rows []wire.Message // ascending, Prev unset
	kept uint64         // retention watermark: ids at or below it are gone
}

func (s *memStore) linked(rows []wire.Message, floor uint64) []wire.Message {
	return roomlog.Link(slices.Clone(rows), floor)
}

// folded is every stored message with the stored changes applied.
func (s *memStore) folded() []wire.Message {
	msgs, _ := roomlog.Fold(s.rows)
	return msgs
}

func (s *memStore) Recent(_ context.Context, _ string, before uint64, limit int) (wire.Page, error) {
	var in []wire.Message
	for _, m := range s.folded() {
		if before == 0 || m.ID < before {
			in = append(in, m)
		}
	}
	last := s.kept
	for _, m := range s.rows {
		if before == 0 || m.ID < before {
			last = m.ID
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
	return wire.Page{Items: items, HasMore: start > 0, Recovered: true, Last: last}, nil
}

func (s *memStore) Message(_ context.Context, room string, id uint64) (wire.Message, error) {
	for _, m := range s.folded() {
		if m.ID == id {
			m.Prev = 0
			return m, nil
		}
	}
	return wire.Message{}, fmt.Errorf("%w: %d", roomlog.ErrNotFound, id)
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

// randomConversation is a random room log of messages (some replies) and
// change events (edits, deletes and reactions by random users, some
// refused by the fold rule), chained.
func randomConversation(rng *rand.Rand, n int) []wire.Message {
	users := []string{"alice", "bob", "carol"}
	emoji := []string{"👍", "❤️", "🎉"}
	var log []wire.Message
	var msgIDs []uint64
	id := uint64(0)
	for range n {
		id += 1 + uint64(rng.IntN(2))
		ev := wire.Message{ID: id, Room: "r", User: users[rng.IntN(len(users))], TS: int64(id), Kind: wire.KindMessage,
			Body: fmt.Sprintf("m%d", id)}
		if len(msgIDs) > 0 {
			target := msgIDs[rng.IntN(len(msgIDs))]
			switch rng.IntN(8) {
			case 0, 1:
				ev.Kind, ev.Target, ev.Body = wire.KindEdit, target, fmt.Sprintf("edit%d", id)
			case 2:
				ev.Kind, ev.Target, ev.Body = wire.KindDelete, target, ""
			case 3, 4:
				on := rng.IntN(3) > 0
				ev.Kind, ev.Target, ev.Body, ev.Emoji, ev.On = wire.KindReaction, target, "", emoji[rng.IntN(len(emoji))], &on
			case 5:
				ev.ReplyTo = target
			}
		}
		if ev.Kind == wire.KindMessage {
			msgIDs = append(msgIDs, id)
		}
		log = append(log, ev)
	}
	return roomlog.Link(log, 0)
}

// transient forgives got what may differ from want while the store holds
// changes above the watermark out of id order (it applied a later one
// before an earlier one reached it) and the stream part applies them all
// again on top: a tombstone's Edited, and the order of reactions and of
// their users (the store orders them by id; a change applied on top
// appends). Both settle
// once the watermark passes them.
func transient(got *wire.Message, want wire.Message) {
	if want.Deleted {
		got.Edited = want.Edited
	}
	if len(got.Reactions) == len(want.Reactions) {
		byEmoji := func(a, b wire.Reaction) int { return strings.Compare(a.Emoji, b.Emoji) }
		slices.SortFunc(got.Reactions, byEmoji)
		slices.SortFunc(want.Reactions, byEmoji)
		for i := range got.Reactions {
			slices.Sort(got.Reactions[i].Users)
			slices.Sort(want.Reactions[i].Users)
		}
	}
}

// TestFoldedPagesMatchTheLog checks, on random conversations, that a
// recent page joined from a lagging store (which folds what it holds) and
// the raw stream above its watermark is the page of the whole log folded:
// changes in the stream part fold into stored messages, replies are
// quoted, Last is the newest event below before. Message agrees with it.
func TestFoldedPagesMatchTheLog(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ctx := context.Background()
	for round := range 1500 {
		log := randomConversation(rng, rng.IntN(30))
		var top uint64
		if len(log) > 0 {
			top = log[len(log)-1].ID
		}
		w := uint64(rng.IntN(int(top) + 2))
		st := &memStore{}
		for _, m := range log {
			if m.ID <= w || rng.IntN(3) == 0 {
				st.rows = append(st.rows, m)
			}
		}
		p := &roomlog.Pages{Store: st, Stream: &memStream{log: log}, Marks: func() roomlog.Marks { return roomlog.Marks{Stored: w} }}
		limit := 1 + rng.IntN(6)
		before := uint64(0)
		if rng.IntN(2) == 0 {
			before = uint64(rng.IntN(int(top) + 3))
		}
		what := fmt.Sprintf("round %d: recent before %d limit %d, stored to %d", round, before, limit, w)
		got, err := p.Recent(ctx, "r", before, limit)
		if err != nil {
			t.Fatal(err)
		}
		all, _ := roomlog.Fold(log)
		var in []wire.Message
		var last uint64
		for _, m := range log {
			if before == 0 || m.ID < before {
				last = m.ID
			}
		}
		for _, m := range all {
			if before == 0 || m.ID < before {
				in = append(in, m)
			}
		}
		start := max(len(in)-limit, 0)
		var floor uint64
		if start > 0 {
			floor = in[start-1].ID
		}
		want := roomlog.Link(slices.Clone(in[start:]), floor)
		if got.Last != last || got.HasMore != (start > 0) || len(got.Items) != len(want) {
			t.Fatalf("%s: %d items last %d more %v, want %d last %d more %v", what, len(got.Items), got.Last, got.HasMore, len(want), last, start > 0)
		}
		for i := range want {
			transient(&got.Items[i], want[i])
			if !reflect.DeepEqual(got.Items[i], want[i]) {
				t.Fatalf("%s: item %d\n got %+v\nwant %+v", what, i, got.Items[i], want[i])
			}
		}
		if len(all) > 0 {
			m := all[rng.IntN(len(all))]
			m.Prev = 0
			gm, err := p.Message(ctx, "r", m.ID)
			if err != nil {
				t.Fatalf("%s: message %d: %v", what, m.ID, err)
			}
			transient(&gm, m)
			if !reflect.DeepEqual(gm, m) {
				t.Fatalf("%s: message %d\n got %+v\nwant %+v", what, m.ID, gm, m)
			}
		}
		for _, ev := range log {
			if wire.IsChange(ev.Kind) {
				if _, err := p.Message(ctx, "r", ev.ID); !errors.Is(err, roomlog.ErrNotFound) {
					t.Fatalf("%s: Message of change %d: %v, want ErrNotFound", what, ev.ID, err)
				}
				break
			}
		}
	}
}

// TestStreamChangeFoldsIntoStoredMessage: a message stored (below the
// watermark) and an edit, a reaction and a reply to it still only in the
// stream: the page shows the message edited, with the reaction, and the
// reply quoting the edited text; Last is the newest streamed event.
func TestStreamChangeFoldsIntoStoredMessage(t *testing.T) {
	ctx := context.Background()
	on := true
	log := roomlog.Link([]wire.Message{
		{ID: 1, Room: "r", User: "alice", Body: "helo", Kind: wire.KindMessage, TS: 1},
		{ID: 2, Room: "r", User: "bob", Body: "hi", Kind: wire.KindMessage, TS: 2},
		{ID: 3, Room: "r", User: "alice", Body: "hello", Kind: wire.KindEdit, TS: 3, Target: 1},
		{ID: 4, Room: "r", User: "bob", Kind: wire.KindReaction, TS: 4, Target: 1, Emoji: "👍", On: &on},
		{ID: 5, Room: "r", User: "bob", Body: "yes", Kind: wire.KindMessage, TS: 5, ReplyTo: 1},
		{ID: 6, Room: "r", User: "bob", Kind: wire.KindDelete, TS: 6, Target: 2},
	}, 0)
	st := &memStore{rows: slices.Clone(log[:2])}
	p := &roomlog.Pages{Store: st, Stream: &memStream{log: log}, Marks: func() roomlog.Marks { return roomlog.Marks{Stored: 2} }}
	got, err := p.Recent(ctx, "r", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 3 || got.Last != 6 {
		t.Fatalf("page %+v, want 3 messages and last 6", got)
	}
	m := got.Items[0]
	if m.Body != "hello" || m.Edited != 3 || len(m.Reactions) != 1 || m.Reactions[0].Users[0] != "bob" {
		t.Fatalf("stored message with streamed changes: %+v", m)
	}
	if !got.Items[1].Deleted || got.Items[1].Body != "" {
		t.Fatalf("stored message deleted in the stream: %+v", got.Items[1])
	}
	if r := got.Items[2].Reply; r == nil || r.Body != "hello" || r.ID != 1 {
		t.Fatalf("streamed reply's quote %+v, want the edited text", r)
	}
	// Only the reply on the page (limit 1): its target is not in the
	// page, and is quoted from the store with the stream's edit applied.
	got, err = p.Recent(ctx, "r", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 1 || got.Items[0].ID != 5 || got.Items[0].Reply == nil || got.Items[0].Reply.Body != "hello" || !got.HasMore {
		t.Fatalf("limit 1: %+v", got)
	}
	gm, err := p.Message(ctx, "r", 1)
	if err != nil || gm.Body != "hello" || len(gm.Reactions) != 1 {
		t.Fatalf("Message(1) = %+v, %v", gm, err)
	}
	gm, err = p.Message(ctx, "r", 5) // not stored yet: read from the stream
	if err != nil || gm.Body != "yes" || gm.Reply == nil || gm.Reply.Body != "hello" {
		t.Fatalf("Message(5) = %+v, %v", gm, err)
	}
	if _, err := p.Message(ctx, "r", 9); !errors.Is(err, roomlog.ErrNotFound) {
		t.Fatalf("Message(9): %v", err)
	}
	sp, err := p.Since(ctx, "r", 1, 10)
	if err != nil || len(sp.Items) != 5 || sp.Last != 6 || sp.Items[1].Kind != wire.KindEdit {
		t.Fatalf("since 1: %+v %v, want the 5 raw events", sp, err)
	}
}
