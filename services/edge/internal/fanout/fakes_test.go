package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// wait bounds every poll of these tests.
const wait = 10 * time.Second

// errDown is what a fake tier answers while it is down.
var errDown = errors.New("fake: unavailable")

// fakeLog is an in-memory room log behind the hub: one room's messages
// (ids ascending, with holes for other rooms), answered as history's pages
// or, while history is down, as the stream fallback's (the choice
// pages.Log makes); each source can be taken down. Live
// traffic goes over a real NATS connection (core NATS only), published by
// the test with the headers JetStream RePublish sets.
type fakeLog struct {
	nc *nats.Conn

	mu          sync.Mutex
	room        string
	msgs        []wire.Message // Prev unset; linked when served
	nextID      uint64
	step        uint64 // id step between the room's messages (0: 2, holes for other rooms)
	historyDown bool
	streamDown  bool
	notStored   uint64        // history answers nothing above it (0: no bound)
	kept        uint64        // history's retention: a since below it is not recovered
	gate        chan struct{} // when set, history's Since waits for it to close
	waiting     int           // Since calls that reached the gate
	lagCalls    int           // after this many Since calls (> 0), notStored is lifted
	sinceCalls  int
	calls       []string
}

func newFakeLog(t *testing.T, room string) *fakeLog {
	t.Helper()
	srv := natstest.Start(t)
	return &fakeLog{nc: srv.Connect(), room: room, nextID: 1}
}

// add appends a message to the log without publishing it live (a message
// the hub missed) and returns it.
func (f *fakeLog) add(body string) wire.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := wire.Message{ID: f.nextID, Room: f.room, User: "u", Body: body, Kind: wire.KindMessage, TS: 1}
	f.nextID += f.stepLocked()
	f.msgs = append(f.msgs, m)
	return m
}

// skip takes an id for a stored message that is not part of the room (as
// history parks it, so it is not in the log) and returns it with the prev
// the stream republishes it with.
func (f *fakeLog) skip() (id, prev uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id = f.nextID
	f.nextID += f.stepLocked()
	if n := len(f.msgs); n > 0 {
		prev = f.msgs[n-1].ID
	}
	return id, prev
}

// publish adds a message and publishes it live.
func (f *fakeLog) publish(t *testing.T, body string) wire.Message {
	t.Helper()
	f.mu.Lock()
	var prev uint64
	if n := len(f.msgs); n > 0 {
		prev = f.msgs[n-1].ID
	}
	f.mu.Unlock()
	m := f.add(body)
	data, _ := json.Marshal(wire.Post{Room: f.room, User: m.User, Body: m.Body, Kind: m.Kind, TS: m.TS})
	f.publishRaw(t, m.ID, prev, data)
	m.Prev = prev
	return m
}

// publishRaw publishes data live as the stream's message id with prev.
func (f *fakeLog) publishRaw(t *testing.T, id, prev uint64, data []byte) {
	t.Helper()
	if err := f.nc.PublishMsg(natsMsg(f, id, prev, string(data))); err != nil {
		t.Fatal(err)
	}
}

// natsMsg is data as JetStream republishes it on the room's live subject:
// id and prev in the headers.
func natsMsg(f *fakeLog, id, prev uint64, data string) *nats.Msg {
	msg := &nats.Msg{Subject: subjects.Live(f.room), Data: []byte(data), Header: nats.Header{}}
	msg.Header.Set(subjects.HeaderSequence, strconv.FormatUint(id, 10))
	msg.Header.Set(subjects.HeaderLastSequence, strconv.FormatUint(prev, 10))
	return msg
}

// stepLocked is the id step: holes, as other rooms' messages leave, unless
// step is set.
func (f *fakeLog) stepLocked() uint64 {
	if f.step == 0 {
		return 2
	}
	return f.step
}

func (f *fakeLog) set(fn func(*fakeLog)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeLog) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// linkedLocked is the room's log, linked: all of it, or with history set
// what history holds (up to notStored).
func (f *fakeLog) linkedLocked(history bool) []wire.Message {
	var out []wire.Message
	for _, m := range f.msgs {
		if history && f.notStored > 0 && m.ID > f.notStored {
			break
		}
		out = append(out, m)
	}
	return roomlog.Link(slices.Clone(out), 0)
}

// recentLocked is the newest page, folded as history folds (change events
// applied to their targets, not items); Last is the newest event.
func (f *fakeLog) recentLocked(history bool, limit int) wire.Page {
	all, last := roomlog.Fold(f.linkedLocked(history))
	start := max(len(all)-limit, 0)
	return wire.Page{Room: f.room, Items: slices.Clone(all[start:]), HasMore: start > 0, Recovered: true, Last: last}
}

// addChange appends an edit of target to the log without publishing it
// live and returns it.
func (f *fakeLog) addChange(target wire.Message, body string) wire.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := wire.Message{ID: f.nextID, Room: f.room, User: target.User, Body: body, Kind: wire.KindEdit, TS: 2, Target: target.ID}
	f.nextID += f.stepLocked()
	f.msgs = append(f.msgs, m)
	return m
}

func (f *fakeLog) sinceLocked(history bool, after uint64, limit int) wire.Page {
	if history && after < f.kept {
		p := f.recentLocked(history, limit)
		p.Recovered = false
		return p
	}
	p := wire.Page{Room: f.room, Items: []wire.Message{}, Recovered: true}
	for _, m := range f.linkedLocked(history) {
		if m.ID <= after {
			continue
		}
		if len(p.Items) == limit {
			p.HasMore = true
			break
		}
		p.Items = append(p.Items, m)
	}
	p.Last = after
	if n := len(p.Items); n > 0 {
		p.Last = p.Items[n-1].ID
	}
	return p
}

func (f *fakeLog) Conn() *nats.Conn { return f.nc }

func (f *fakeLog) Flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, wait) // as nreq.Client bounds it
	defer cancel()
	return f.nc.FlushWithContext(ctx)
}

func (f *fakeLog) LastID(context.Context, string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "last")
	if n := len(f.msgs); n > 0 {
		return f.msgs[n-1].ID, nil
	}
	return 0, nil
}

func (f *fakeLog) Recent(_ context.Context, req wire.RecentRequest) (wire.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "recent")
	if !f.historyDown {
		return f.recentLocked(true, req.Limit), nil
	}
	// pages.Log's fallback: the stream, while history does not answer.
	f.calls = append(f.calls, "stream recent")
	if f.streamDown {
		return wire.Page{}, errDown
	}
	return f.recentLocked(false, req.Limit), nil
}

func (f *fakeLog) Since(ctx context.Context, req wire.SinceRequest) (wire.Page, error) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		f.mu.Lock()
		f.waiting++
		f.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return wire.Page{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("since %d", req.After))
	f.sinceCalls++
	if f.lagCalls > 0 && f.sinceCalls > f.lagCalls {
		f.notStored = 0 // history has caught up
	}
	if !f.historyDown {
		return f.sinceLocked(true, req.After, req.Limit), nil
	}
	f.calls = append(f.calls, fmt.Sprintf("stream since %d", req.After))
	if f.streamDown {
		return wire.Page{}, errDown
	}
	return f.sinceLocked(false, req.After, req.Limit), nil
}

// sink records the frames a member is sent. With backlog set it reports
// that many queued bytes (see fanout.Backlogged).
type sink struct {
	mu      sync.Mutex
	frames  []*frame.Frame
	closed  bool
	backlog atomic.Int64
}

func (s *sink) Send(f *frame.Frame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.frames = append(s.frames, f)
	return true
}

func (s *sink) QueuedBytes() int { return int(s.backlog.Load()) }

func (s *sink) got() []*frame.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.frames)
}

// view is what a member's client makes of its frames: the history frames
// and the messages, in order.
type view struct {
	histories []wire.History
	msgs      []wire.Message // history items and live messages, in order
	live      []wire.Message // message frames only
	other     []*frame.Frame // typing, presence
}

func (s *sink) view(t *testing.T) view {
	t.Helper()
	var v view
	for _, f := range s.got() {
		switch f.Type {
		case wire.TypeHistory:
			var h wire.History
			if err := json.Unmarshal(f.JSON, &h); err != nil {
				t.Fatal(err)
			}
			v.histories = append(v.histories, h)
			v.msgs = append(v.msgs, h.Items...)
		case wire.TypeMessage:
			var m wire.MessageFrame
			if err := json.Unmarshal(f.JSON, &m); err != nil {
				t.Fatal(err)
			}
			if f.ID != m.Message.ID {
				t.Fatalf("message frame id %d for message %d", f.ID, m.Message.ID)
			}
			v.msgs = append(v.msgs, m.Message)
			v.live = append(v.live, m.Message)
		default:
			v.other = append(v.other, f)
		}
	}
	return v
}

// ids lists the ids of msgs.
func ids(msgs []wire.Message) []uint64 {
	out := []uint64{}
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

// chained fails unless msgs are exactly want (ids and prevs): the
// gapless, duplicate-free chain a client must see.
func chained(t *testing.T, msgs, want []wire.Message) {
	t.Helper()
	if !slices.Equal(ids(msgs), ids(want)) {
		t.Fatalf("view %v, want %v", ids(msgs), ids(want))
	}
	for i := range want {
		if msgs[i].Prev != want[i].Prev {
			t.Fatalf("message %d: prev %d, want %d", msgs[i].ID, msgs[i].Prev, want[i].Prev)
		}
	}
}

// observer counts the hub's events.
type observer struct {
	mu        sync.Mutex
	delivered map[string]int
	filled    int
	dropped   map[string]int
}

func newObserver() *observer {
	return &observer{delivered: map[string]int{}, dropped: map[string]int{}}
}

func (o *observer) Delivered(typ string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.delivered[typ] += n
}

func (o *observer) GapFilled(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.filled += n
}

func (o *observer) Dropped(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dropped[reason]++
}

func (o *observer) drops(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped[reason]
}

func (o *observer) gapFilled() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.filled
}

// startHub runs a hub over be for the length of the test.
func startHub(t *testing.T, cfg fanout.Config, be fanout.Backend, obs fanout.Observer) *fanout.Hub {
	t.Helper()
	h := fanout.New(cfg, be, slog.New(slog.DiscardHandler), obs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(ctx)
	}()
	t.Cleanup(func() {
		h.Close()
		cancel()
		<-done
	})
	return h
}

// join joins sink to room as user, since nil for the newest page.
func join(t *testing.T, h *fanout.Hub, room, user string, since *uint64, s fanout.Sink) *fanout.Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	m, err := h.Join(ctx, fanout.JoinRequest{Room: room, User: user, Since: since, Sink: s})
	if err != nil {
		t.Fatalf("join %s: %v", room, err)
	}
	return m
}

// lastDelivered waits until the hub has delivered id in room.
func lastDelivered(t *testing.T, h *fanout.Hub, room string, id uint64) {
	t.Helper()
	natstest.Until(t, wait, fmt.Sprintf("room %s delivers %d", room, id), func() bool {
		last, ok := h.LastID(room)
		return ok && last >= id
	})
}

// linked returns msgs with prevs set along them, from floor.
func linked(floor uint64, msgs ...wire.Message) []wire.Message {
	return roomlog.Link(slices.Clone(msgs), floor)
}

func ptr(v uint64) *uint64 { return &v }
