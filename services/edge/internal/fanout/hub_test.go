package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// TestJoin covers how a join starts a member's view: which page, from
// which tier, with which recovered flag, and that live delivery follows
// the history with no gap and no duplicate.
func TestJoin(t *testing.T) {
	cases := []struct {
		name        string
		existing    int     // messages in the room before the join
		since       *int    // index into the room's messages (-1: id 0); nil: no since
		sinceID     *uint64 // an explicit since id instead
		historyDown bool
		kept        int // history's retention: since below existing[kept] is not recovered
		cfg         fanout.Config
		// want: indexes of the existing messages in the view before live,
		// and the first history frame's recovered flag
		want      []int
		recovered bool
		calls     []string // the reads made, in order (LastID excluded)
	}{
		{name: "newest page", existing: 3, want: []int{0, 1, 2}, recovered: true, calls: []string{"recent"}},
		{name: "newest page of an empty room", existing: 0, want: nil, recovered: true, calls: []string{"recent"}},
		{name: "newest page is bounded", existing: 5, cfg: fanout.Config{JoinPage: 2}, want: []int{3, 4}, recovered: true, calls: []string{"recent"}},
		{name: "since the start", existing: 3, since: ptrInt(-1), want: []int{0, 1, 2}, recovered: true, calls: []string{"since 0"}},
		{name: "since the middle", existing: 4, since: ptrInt(1), want: []int{2, 3}, recovered: true, calls: []string{"since 3"}},
		{name: "since the newest", existing: 3, since: ptrInt(2), want: nil, recovered: true, calls: []string{"since 5"}},
		{name: "since pages on", existing: 7, since: ptrInt(0), cfg: fanout.Config{PageSize: 2},
			want: []int{1, 2, 3, 4, 5, 6}, recovered: true, calls: []string{"since 1", "since 5", "since 9"}},
		{name: "since beyond the newest resets to the newest page", existing: 3, sinceID: ptr(1000),
			want: []int{0, 1, 2}, recovered: false, calls: []string{"recent"}},
		{name: "since older than retention resets to the newest page", existing: 4, since: ptrInt(0), kept: 2,
			want: []int{0, 1, 2, 3}, recovered: false, calls: []string{"since 1"}},
		{name: "history down: newest page from the stream", existing: 3, historyDown: true,
			want: []int{0, 1, 2}, recovered: true, calls: []string{"recent", "stream recent"}},
		{name: "history down: since from the stream", existing: 3, since: ptrInt(0), historyDown: true,
			want: []int{1, 2}, recovered: true, calls: []string{"since 1", "stream since 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			be := newFakeLog(t, "r")
			var existing []wire.Message
			for i := range c.existing {
				existing = append(existing, be.add(fmt.Sprintf("m%d", i)))
			}
			be.set(func(f *fakeLog) {
				f.historyDown = c.historyDown
				if c.kept > 0 {
					f.kept = existing[c.kept].ID
				}
			})
			h := startHub(t, c.cfg, be, nil)
			var since *uint64
			switch {
			case c.sinceID != nil:
				since = c.sinceID
			case c.since != nil && *c.since < 0:
				since = ptr(0)
			case c.since != nil:
				since = ptr(existing[*c.since].ID)
			}
			s := &sink{}
			join(t, h, "r", "amy", since, s)
			v := s.view(t)
			if len(v.histories) == 0 || v.histories[0].Recovered != c.recovered {
				t.Fatalf("history frames %+v, want the first recovered=%v", v.histories, c.recovered)
			}
			var want []wire.Message
			all := linked(0, existing...)
			for _, i := range c.want {
				want = append(want, all[i])
			}
			chained(t, v.msgs, want)
			var calls []string
			for _, call := range be.called() {
				if call != "last" {
					calls = append(calls, call)
				}
			}
			if !slices.Equal(calls, c.calls) {
				t.Fatalf("reads %q, want %q", calls, c.calls)
			}

			// Live follows the history, linked to it.
			next := be.publish(t, "live")
			natstest.Until(t, wait, "the live message", func() bool { return len(s.view(t).live) > 0 })
			if live := s.view(t).live; len(live) != 1 || live[0].ID != next.ID || live[0].Prev != next.Prev {
				t.Fatalf("live %+v, want %d prev %d", live, next.ID, next.Prev)
			}
		})
	}
}

func ptrInt(v int) *int { return &v }

// TestJoinFailsWhenNoTierAnswers: with history and the stream down the
// join fails, the member gets no live frame and the room is released.
func TestJoinFailsWhenNoTierAnswers(t *testing.T) {
	be := newFakeLog(t, "r")
	be.add("m0")
	be.set(func(f *fakeLog) { f.historyDown, f.streamDown = true, true })
	h := startHub(t, fanout.Config{}, be, nil)
	for _, since := range []*uint64{nil, ptr(0)} {
		s := &sink{}
		_, err := h.Join(context.Background(), fanout.JoinRequest{Room: "r", User: "amy", Since: since, Sink: s})
		if !errors.Is(err, errDown) {
			t.Fatalf("since %v: join err %v, want the tiers' error", since, err)
		}
		if h.Rooms() != 0 {
			t.Fatalf("since %v: %d rooms hosted after a failed join", since, h.Rooms())
		}
		be.publish(t, "after")
		if err := be.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := len(s.got()); n != 0 {
			t.Fatalf("since %v: a failed join's sink got %d frames", since, n)
		}
	}
}

// TestCatchUpMergesBufferedLive joins while live messages arrive during
// the history read: the member gets its history and then exactly the
// buffered live messages above it, whether history already holds them
// (overlap: no duplicate), lags them, or the buffer overflowed (the
// member reads the rest from history: no gap).
func TestCatchUpMergesBufferedLive(t *testing.T) {
	cases := []struct {
		name       string
		live       int // live messages published while history is held
		lagCalls   int // history holds none of them for this many since calls (-1: ever)
		joinBuffer int
		hole       bool // the member joins with the live messages missing
	}{
		{name: "history holds the buffered messages", live: 3},
		{name: "history lags the buffered messages", live: 3, lagCalls: -1},
		{name: "no live message meanwhile", live: 0},
		// More than the hub hands over under the room lock: the buffer
		// is sent outside it, then the rest under it.
		{name: "a long buffer", live: 100, lagCalls: -1},
		{name: "buffer overflows", live: 6, joinBuffer: 2},
		{name: "buffer overflows, history lagging then catching up", live: 6, joinBuffer: 2, lagCalls: 1},
		// The documented last resort: history cannot reach the buffer's
		// start, so the member goes live with a hole (its client sees the
		// prev mismatch and re-joins with since).
		{name: "buffer overflows, history never catches up", live: 6, joinBuffer: 2, lagCalls: -1, hole: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			be := newFakeLog(t, "r")
			first := be.add("m0")
			existing := []wire.Message{first, be.add("m1")}
			h := startHub(t, fanout.Config{JoinBuffer: c.joinBuffer}, be, nil)
			// A live member keeps the room hosted and shows when the room
			// delivered the live messages.
			watcher := &sink{}
			join(t, h, "r", "wat", nil, watcher)

			gate := make(chan struct{})
			be.set(func(f *fakeLog) {
				f.gate = gate
				if c.lagCalls != 0 {
					f.notStored = existing[len(existing)-1].ID
					f.lagCalls = max(c.lagCalls, 0)
				}
			})
			s := &sink{}
			joined := make(chan error, 1)
			go func() {
				_, err := h.Join(context.Background(), fanout.JoinRequest{Room: "r", User: "amy", Since: ptr(first.ID), Sink: s})
				joined <- err
			}()
			// The join is waiting in history's since.
			natstest.Until(t, wait, "the join's history read", func() bool {
				be.mu.Lock()
				defer be.mu.Unlock()
				return be.waiting == 1
			})
			var live []wire.Message
			for i := range c.live {
				live = append(live, be.publish(t, fmt.Sprintf("live%d", i)))
			}
			if c.live > 0 {
				lastDelivered(t, h, "r", live[len(live)-1].ID)
			}
			be.set(func(f *fakeLog) { f.gate = nil })
			close(gate)
			if err := <-joined; err != nil {
				t.Fatal(err)
			}
			want := linked(0, append(existing, live...)...)[1:]
			if c.hole {
				want = want[:1]
			}
			chained(t, s.view(t).msgs, want)

			// And live goes on after the merge.
			next := be.publish(t, "after")
			natstest.Until(t, wait, "the next live message", func() bool {
				msgs := s.view(t).msgs
				return len(msgs) > 0 && msgs[len(msgs)-1].ID == next.ID
			})
			if c.hole {
				next.Prev = live[len(live)-1].ID
			}
			chained(t, s.view(t).msgs, append(want, next))
		})
	}
}

// TestLiveGapIsFilled: a live message whose prev is not the last one
// delivered is preceded by the missing messages, read from history, or
// from the stream while history does not answer.
func TestLiveGapIsFilled(t *testing.T) {
	for _, c := range []struct {
		historyDown bool
		step        uint64
		missed      int
	}{{false, 0, 3}, {true, 0, 3}, {false, 1, 1}, {true, 1, 1}} {
		t.Run(fmt.Sprintf("history down %v, id step %d, %d missed", c.historyDown, c.step, c.missed), func(t *testing.T) {
			be := newFakeLog(t, "r")
			be.step = c.step
			obs := newObserver()
			h := startHub(t, fanout.Config{PageSize: 2}, be, obs)
			a, b := &sink{}, &sink{}
			join(t, h, "r", "amy", nil, a)
			m0 := be.publish(t, "m0")
			lastDelivered(t, h, "r", m0.ID)
			join(t, h, "r", "bob", ptr(m0.ID), b)
			be.set(func(f *fakeLog) { f.historyDown = c.historyDown })
			var missed []wire.Message
			for i := range c.missed {
				missed = append(missed, be.add(fmt.Sprint("missed", i)))
			}
			next := be.publish(t, "next")
			lastDelivered(t, h, "r", next.ID)
			want := linked(0, append([]wire.Message{m0}, append(missed, next)...)...)
			chained(t, a.view(t).live, want)
			chained(t, b.view(t).live, want[1:])
			if n := obs.gapFilled(); n != c.missed {
				t.Fatalf("gap filled %d, want %d", n, c.missed)
			}
		})
	}
}

// TestRefusedLiveMessagesAreSkipped: a live message the room log's rule
// refuses (history parks it) is not delivered, and the next one is linked
// across it, as history links it.
func TestRefusedLiveMessagesAreSkipped(t *testing.T) {
	cases := []struct {
		name   string
		data   string
		reason string
	}{
		{"NUL in the body", `{"user":"m","body":"a\u0000b","ts":1}`, "invalid_live_message"},
		{"body over the limit", `{"user":"m","body":"` + strings.Repeat("x", 11) + `","ts":1}`, "invalid_live_message"},
		{"blank body", `{"user":"m","body":"  ","ts":1}`, "invalid_live_message"},
		{"not a post", `not json`, "bad_live_payload"},
		{"unknown kind", `{"user":"m","body":"b","kind":"weird","ts":1}`, "bad_live_payload"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			be := newFakeLog(t, "r")
			obs := newObserver()
			h := startHub(t, fanout.Config{MaxBody: 10}, be, obs)
			s := &sink{}
			join(t, h, "r", "amy", nil, s)
			before := be.publish(t, "before")
			id, prev := be.skip()
			be.publishRaw(t, id, prev, []byte(c.data))
			// The stream republishes the next message with the refused
			// one as its prev.
			after := be.add("after")
			be.publishRaw(t, after.ID, id, []byte(`{"user":"u","body":"after","kind":"message","ts":1}`))
			lastDelivered(t, h, "r", after.ID)
			chained(t, s.view(t).live, linked(0, before, after))
			if n := obs.drops(c.reason); n != 1 {
				t.Fatalf("%s drops %d, want 1", c.reason, n)
			}
			if n := obs.gapFilled(); n != 0 {
				t.Fatalf("a gap fill (%d) for a skipped message", n)
			}
		})
	}
}

// TestLiveMessagesDecodeByTheRule: what a member receives live is the
// message as history stores it: the room from the subject, a missing kind
// is a chat message, a missing timestamp the stream's storage time.
func TestLiveMessagesDecodeByTheRule(t *testing.T) {
	be := newFakeLog(t, "r")
	h := startHub(t, fanout.Config{}, be, nil)
	s := &sink{}
	join(t, h, "r", "amy", nil, s)
	id, prev := be.skip()
	msg := natsMsg(be, id, prev, `{"room":"elsewhere","user":"u","body":"b"}`)
	const stored = "2026-12-03T10:00:00.123Z"
	msg.Header.Set("Nats-Time-Stamp", stored)
	if err := be.nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	lastDelivered(t, h, "r", id)
	got := s.view(t).live
	at, _ := time.Parse(time.RFC3339Nano, stored)
	want := wire.Message{ID: id, Prev: prev, Room: "r", User: "u", Body: "b", Kind: wire.KindMessage, TS: at.UnixMilli()}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("live %+v, want %+v", got, want)
	}
}

// TestTypingAndPresence: typing frames reach every member but the
// typist's connections; presence frames reach every member; bad events
// are dropped.
func TestTypingAndPresence(t *testing.T) {
	be := newFakeLog(t, "r")
	obs := newObserver()
	h := startHub(t, fanout.Config{}, be, obs)
	amy, amy2, bob := &sink{}, &sink{}, &sink{}
	join(t, h, "r", "amy", nil, amy)
	join(t, h, "r", "amy", nil, amy2)
	join(t, h, "r", "bob", nil, bob)
	pub := func(subject string, v any) {
		data, _ := json.Marshal(v)
		if err := be.nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}
	pub(subjects.Typing("r"), wire.TypingEvent{Room: "r", User: "amy", State: wire.TypingOn})
	pub(subjects.Typing("r"), wire.TypingEvent{Room: "r", User: "amy", State: "sideways"})
	pub(subjects.Presence("r"), wire.PresenceEvent{Room: "r", Event: "join", User: "cat", Online: 3})
	natstest.Until(t, wait, "presence everywhere, typing at bob", func() bool {
		return len(amy.view(t).other) == 1 && len(amy2.view(t).other) == 1 && len(bob.view(t).other) == 2
	})
	if f := bob.view(t).other[0]; f.Type != wire.TypeTyping || !strings.Contains(string(f.JSON), `"user":"amy"`) {
		t.Fatalf("bob's first frame %s %s", f.Type, f.JSON)
	}
	for _, s := range []*sink{amy, amy2} {
		if f := s.view(t).other[0]; f.Type != wire.TypePresence {
			t.Fatalf("amy got %s %s, want only presence", f.Type, f.JSON)
		}
	}
	if n := obs.drops("bad_typing"); n != 1 {
		t.Fatalf("bad_typing drops %d, want 1", n)
	}
}

// TestLeaveAndClose: a member that left gets nothing more and the last one
// releases the room; after Close joins are refused.
func TestLeaveAndClose(t *testing.T) {
	be := newFakeLog(t, "r")
	h := startHub(t, fanout.Config{}, be, nil)
	a, b := &sink{}, &sink{}
	ma := join(t, h, "r", "amy", nil, a)
	mb := join(t, h, "r", "bob", nil, b)
	if mb.Room() != "r" || h.Rooms() != 1 {
		t.Fatalf("room %q, %d rooms hosted", mb.Room(), h.Rooms())
	}
	ma.Leave()
	ma.Leave() // idempotent
	m := be.publish(t, "m")
	natstest.Until(t, wait, "bob's message", func() bool { return len(b.view(t).live) == 1 })
	if n := len(a.view(t).live); n != 0 {
		t.Fatalf("a member that left got %d messages", n)
	}
	if last, ok := h.LastID("r"); !ok || last != m.ID {
		t.Fatalf("LastID %d %v, want %d", last, ok, m.ID)
	}
	mb.Leave()
	if h.Rooms() != 0 {
		t.Fatalf("%d rooms hosted after the last member left", h.Rooms())
	}
	if _, ok := h.LastID("r"); ok {
		t.Fatal("LastID of a room no longer hosted")
	}
	h.Close()
	if _, err := h.Join(context.Background(), fanout.JoinRequest{Room: "r", User: "amy", Sink: &sink{}}); !errors.Is(err, fanout.ErrClosed) {
		t.Fatalf("join after Close: %v, want ErrClosed", err)
	}
}

// TestHistoryFramesSplit: a page whose encoding passes FrameBytes goes out
// as several history frames of at most FrameBytes (or one item), each
// with the page's has_more for a newest page, and for a since catch-up
// has_more on every frame but the last (more of the catch-up follows).
func TestHistoryFramesSplit(t *testing.T) {
	for _, since := range []*uint64{nil, ptr(0)} {
		t.Run(fmt.Sprintf("since %v", since != nil), func(t *testing.T) {
			be := newFakeLog(t, "r")
			var existing []wire.Message
			for i := range 8 {
				existing = append(existing, be.add(strings.Repeat("x", 100)+fmt.Sprint(i)))
			}
			h := startHub(t, fanout.Config{FrameBytes: 400}, be, nil)
			s := &sink{}
			join(t, h, "r", "amy", since, s)
			v := s.view(t)
			if len(v.histories) < 2 {
				t.Fatalf("%d history frames, want several", len(v.histories))
			}
			for i, hf := range v.histories {
				last := i == len(v.histories)-1
				if want := since != nil && !last; hf.HasMore != want {
					t.Fatalf("frame %d of %d: has_more %v, want %v", i, len(v.histories), hf.HasMore, want)
				}
			}
			chained(t, v.msgs, linked(0, existing...))
			for _, f := range s.got() {
				var hf wire.History
				if err := json.Unmarshal(f.JSON, &hf); err != nil {
					t.Fatal(err)
				}
				if len(f.JSON) > 400 && len(hf.Items) > 1 {
					t.Fatalf("a %d-byte frame of %d items", len(f.JSON), len(hf.Items))
				}
				if f.ID != hf.Last || hf.Last != hf.Items[len(hf.Items)-1].ID {
					t.Fatalf("frame id %d, last %d, last item %d", f.ID, hf.Last, hf.Items[len(hf.Items)-1].ID)
				}
			}
		})
	}
}

// TestCatchUpStallsOnASinkThatDoesNotRead: a member whose backlog stays
// above PaceBytes during a long catch-up is refused with ErrStalled.
func TestCatchUpStallsOnASinkThatDoesNotRead(t *testing.T) {
	be := newFakeLog(t, "r")
	for i := range 6 {
		be.add(fmt.Sprint(i))
	}
	h := startHub(t, fanout.Config{PageSize: 2, PaceBytes: 100, StallTimeout: 1}, be, nil)
	s := &sink{}
	s.backlog.Store(1000)
	_, err := h.Join(context.Background(), fanout.JoinRequest{Room: "r", User: "amy", Since: ptr(0), Sink: s})
	if !errors.Is(err, fanout.ErrStalled) {
		t.Fatalf("join err %v, want ErrStalled", err)
	}
	if n := len(s.view(t).histories); n != 1 {
		t.Fatalf("%d history frames before the stall, want the first only", n)
	}
	if h.Rooms() != 0 {
		t.Fatal("a stalled join still holds the room")
	}
}

// A folded page's cursor is its last, not its last item: after a newest
// page whose newest event is a change (folded into an older message), the
// member's view continues from the change, so the next live message (prev:
// the change) is delivered as is — no gap fill, no change sent again —
// and the history frame's last and SSE id are the change's id. Split
// frames carry the cursor of what each accounts for.
func TestHistoryFrameLastIsTheCursor(t *testing.T) {
	for _, frameBytes := range []int{0, 300} {
		t.Run(fmt.Sprintf("frame bytes %d", frameBytes), func(t *testing.T) {
			be := newFakeLog(t, "r")
			var msgs []wire.Message
			for i := range 4 {
				msgs = append(msgs, be.add(strings.Repeat("x", 80)+fmt.Sprint(i)))
			}
			edit := be.addChange(msgs[0], "fixed")
			obs := newObserver()
			h := startHub(t, fanout.Config{FrameBytes: frameBytes}, be, obs)
			s := &sink{}
			join(t, h, "r", "amy", nil, s)
			v := s.view(t)
			if n := len(v.histories); n == 0 || (frameBytes > 0) != (n > 1) {
				t.Fatalf("%d history frames", n)
			}
			if !slices.Equal(ids(v.msgs), ids(msgs)) || v.msgs[0].Body != "fixed" || v.msgs[0].Edited == 0 {
				t.Fatalf("page %+v, want the 4 messages, the first edited", v.msgs)
			}
			frames := s.got()
			for i, hf := range v.histories {
				want := hf.Items[len(hf.Items)-1].ID
				if i == len(v.histories)-1 {
					want = edit.ID
				}
				if hf.Last != want || frames[i].ID != want {
					t.Fatalf("history frame %d: last %d, id %d; want %d", i, hf.Last, frames[i].ID, want)
				}
			}
			next := be.publish(t, "live")
			if next.Prev != edit.ID {
				t.Fatalf("live prev %d, want the edit %d", next.Prev, edit.ID)
			}
			natstest.Until(t, wait, "the live message", func() bool { return len(s.view(t).live) > 0 })
			lastDelivered(t, h, "r", next.ID)
			if live := s.view(t).live; len(live) != 1 || live[0].ID != next.ID {
				t.Fatalf("live %v, want only %d (the edit was accounted for by the page)", ids(live), next.ID)
			}
			if n := obs.gapFilled(); n != 0 {
				t.Fatalf("%d messages gap-filled after a folded page", n)
			}
		})
	}
}
