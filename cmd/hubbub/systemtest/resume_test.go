package systemtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// publishMany stores n user messages in room (async publishes, all acked)
// and returns their ids in order.
func (e *env) publishMany(room string, n int, body string) []uint64 {
	e.t.Helper()
	ctx := tctx(e.t)
	ids := make([]uint64, 0, n)
	for start := 0; start < n; start += 500 {
		futures := make([]jetstream.PubAckFuture, 0, 500)
		for i := start; i < min(n, start+500); i++ {
			f, err := e.JS.PublishAsync(subjects.Room(room), mustPost(room, "pub", body, i))
			if err != nil {
				e.t.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case ack := <-f.Ok():
				ids = append(ids, ack.Sequence)
			case err := <-f.Err():
				e.t.Fatal(err)
			case <-ctx.Done():
				e.t.Fatal(ctx.Err())
			}
		}
	}
	return ids
}

// waitStored waits until history serves id as the newest message of room.
func waitStored(t *testing.T, te *testEdge, room string, id uint64) {
	t.Helper()
	natstest.Until(t, 20*time.Second, fmt.Sprintf("history to store %d", id), func() bool {
		code, body := httpGet(t, te.httpURL("/api/rooms/"+room+"/messages?limit=1"))
		var p wire.Page
		return code == 200 && json.Unmarshal([]byte(body), &p) == nil && len(p.Items) == 1 && p.Items[0].ID >= id
	})
}

// Reconnecting with since after 3,000 missed messages yields all of them:
// several history frames of at most 200 items, chained, paced so that a
// reader behind a small hard queue bound is never cut off, then live
// messages with no hole and no duplicate — also while messages keep
// arriving during the catch-up.
func TestResumeLongCatchUp(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(func(c *edge.Config) {
		c.WS.SoftQueue = 32 << 10
		c.WS.HardQueue = 128 << 10 // far below the 3,000 messages' size
	})
	c := dial(t, te.wsURL("carol"))
	c.join("general", nil)
	seen := c.say("general", "before going away", "away-0")
	c.message(seen)
	_ = c.c.Close()

	body := strings.Repeat("y", 200)
	missed := e.publishMany("general", 3000, body)
	waitStored(t, te, "general", missed[len(missed)-1])

	// Keep publishing while the client catches up.
	done := make(chan []uint64, 1)
	go func() {
		var ids []uint64
		for i := range 100 {
			ids = append(ids, e.publish("general", "late", fmt.Sprintf("late %d", i), fmt.Sprintf("late-%d", i)))
		}
		done <- ids
	}()

	c2 := dial(t, te.wsURL("carol"))
	c2.send(wire.ClientFrame{Type: wire.TypeJoin, Room: "general", Since: &seen})
	var got []wire.Message
	historyFrames, liveFrames := 0, 0
	var late []uint64
	for late == nil || len(got) == 0 || got[len(got)-1].ID < late[len(late)-1] {
		if late == nil {
			select {
			case late = <-done:
			default:
			}
		}
		f, err := c2.next()
		if err != nil {
			t.Fatalf("after %d messages (%d history frames): %v", len(got), historyFrames, err)
		}
		switch f.Type {
		case wire.TypeHistory:
			if liveFrames > 0 {
				t.Fatal("history frame after live message frames")
			}
			h := decode[wire.History](t, f)
			if !h.Recovered || len(h.Items) > 200 {
				t.Fatalf("history frame %d: %d items, recovered %v", historyFrames, len(h.Items), h.Recovered)
			}
			historyFrames++
			got = append(got, h.Items...)
		case wire.TypeMessage:
			liveFrames++
			got = append(got, decode[wire.MessageFrame](t, f).Message)
		case wire.TypeError:
			t.Fatalf("error frame during catch-up: %s", f.Raw)
		}
	}
	if historyFrames < 15 {
		t.Fatalf("%d history frames for 3,000+ messages, want at least 15", historyFrames)
	}
	if got[0].Prev != seen {
		t.Fatalf("catch-up starts at %d with prev %d, want prev %d", got[0].ID, got[0].Prev, seen)
	}
	checkChain(t, got)
	want := append(append([]uint64(nil), missed...), late...)
	if len(got) != len(want) {
		t.Fatalf("resumed %d messages, want %d", len(got), len(want))
	}
	for i, id := range want {
		if got[i].ID != id {
			t.Fatalf("message %d is %d, want %d", i, got[i].ID, id)
		}
	}
	if n := te.Metrics().Drops("slow_consumer"); n != 0 {
		t.Fatalf("%v slow-consumer closes during a paced catch-up", n)
	}
	// Live after the catch-up.
	id := c2.say("general", "caught up", "away-1")
	if m := c2.nextMessage(); m.ID != id || m.Prev != want[len(want)-1] {
		t.Fatalf("live after catch-up %+v, want id %d prev %d", m, id, want[len(want)-1])
	}
}

// openSSE opens a room's event stream, resuming after lastID when > 0.
func openSSE(t *testing.T, te *testEdge, room, user string, lastID uint64) (<-chan sseEvent, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", te.httpURL("/api/rooms/"+room+"/events?user="+user), nil)
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(lastID, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	return sseEvents(resp.Body), resp
}

// An SSE stream that reconnects with Last-Event-ID after a gap of 1,000
// messages gets them all (several history events, each with the id of its
// last item), then live events.
func TestSSEResumeAfterGap(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(nil)
	first := e.publish("general", "pub", "first", "first")
	waitStored(t, te, "general", first)

	events, resp := openSSE(t, te, "general", "sse", 0)
	h := decode[wire.History](t, clientFrame(nextEvent(t, events, "history")))
	if len(h.Items) != 1 || h.Items[0].ID != first {
		t.Fatalf("first history %+v", h)
	}
	_ = resp.Body.Close() // the reader goes away

	missed := e.publishMany("general", 1000, "missed while away")
	waitStored(t, te, "general", missed[len(missed)-1])

	events, _ = openSSE(t, te, "general", "sse", first)
	var got []wire.Message
	frames := 0
	for len(got) < len(missed) {
		ev := nextEvent(t, events, "history")
		h := decode[wire.History](t, clientFrame(ev))
		if len(h.Items) == 0 || len(h.Items) > 200 || !h.Recovered {
			t.Fatalf("history event %d: %d items, recovered %v", frames, len(h.Items), h.Recovered)
		}
		if ev.id != strconv.FormatUint(h.Items[len(h.Items)-1].ID, 10) {
			t.Fatalf("history event id %q, want its last item's id", ev.id)
		}
		frames++
		got = append(got, h.Items...)
	}
	if frames < 5 || got[0].Prev != first {
		t.Fatalf("%d history events, first prev %d", frames, got[0].Prev)
	}
	checkChain(t, got)
	for i, id := range missed {
		if got[i].ID != id {
			t.Fatalf("item %d is %d, want %d", i, got[i].ID, id)
		}
	}
	live := e.publish("general", "pub", "live", "live")
	mf := decode[wire.MessageFrame](t, clientFrame(nextEvent(t, events, "message")))
	if mf.Message.ID != live || mf.Message.Prev != missed[len(missed)-1] {
		t.Fatalf("live event %+v", mf.Message)
	}
}

// Draining ends every SSE stream; Run still returns.
func TestSSEDrainEndsStreams(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(nil)
	var streams []<-chan sseEvent
	for _, u := range []string{"s1", "s2"} {
		ev, _ := openSSE(t, te, "general", u, 0)
		streams = append(streams, ev)
	}
	natstest.Until(t, 5*time.Second, "streams counted", func() bool { return te.Metrics().Connections() == 2 })
	stopped := make(chan struct{})
	go func() { te.stop(); close(stopped) }()
	for i, ch := range streams {
		deadline := time.After(15 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					break drain
				}
			case <-deadline:
				t.Fatalf("stream %d still open after drain", i)
			}
		}
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	if n := te.Metrics().Closes("restart"); n != 2 {
		t.Fatalf("restart closes %v, want 2", n)
	}
}

// clientFrame wraps an SSE event's data for decode.
func clientFrame(ev sseEvent) client.Frame {
	return client.Frame{Type: ev.event, Raw: json.RawMessage(ev.data)}
}

// An SSE reader that stops reading is cut off once its queue passes the
// bound (or a write times out), so its memory stays bounded; a reading
// stream keeps receiving.
func TestSSESlowReaderCutOff(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(func(c *edge.Config) {
		c.API.SSEQueue = 256 << 10
		// Generous for the healthy reader on a loaded machine; the slow one
		// is cut off by its queue bound or this timeout either way.
		c.API.WriteTimeout = 3 * time.Second
	})
	good, _ := openSSE(t, te, "general", "good", 0)
	var goodMu sync.Mutex
	var goodIDs []uint64
	go func() { // a healthy reader: takes every event as it comes
		for ev := range good {
			if ev.event != wire.TypeMessage {
				continue
			}
			var mf wire.MessageFrame
			if json.Unmarshal([]byte(ev.data), &mf) == nil {
				goodMu.Lock()
				goodIDs = append(goodIDs, mf.Message.ID)
				goodMu.Unlock()
			}
		}
	}()
	slow := tinyTCP(t, te.Addr()) // small receive buffer; never read
	if _, err := fmt.Fprintf(slow, "GET /api/rooms/general/events?user=slow HTTP/1.1\r\nHost: %s\r\n\r\n", te.Addr()); err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 5*time.Second, "both streams open", func() bool { return te.Metrics().Connections() == 2 })
	body := strings.Repeat("z", 1000)
	var ids []uint64
	for batch := 0; te.Metrics().Closes("slow_consumer")+te.Metrics().Closes("transport") == 0; batch++ {
		if batch == 1000 {
			t.Fatalf("slow SSE reader not cut off after %d messages", len(ids))
		}
		ids = append(ids, e.publishMany("general", 20, body)...)
		// Pace on the healthy reader so it is never more than one batch
		// behind however loaded the machine is: only the reader that
		// stopped reading may fall behind.
		natstest.Until(t, 10*time.Second, "healthy reader keeping up", func() bool {
			goodMu.Lock()
			defer goodMu.Unlock()
			return len(goodIDs) >= len(ids)
		})
	}
	natstest.Until(t, 10*time.Second, "slow stream gone", func() bool { return te.Metrics().Connections() == 1 })
	// The good reader got every message, in order.
	natstest.Eventually(t, 10*time.Second, "good reader has every message", func() error {
		goodMu.Lock()
		n := len(goodIDs)
		goodMu.Unlock()
		if n >= len(ids) {
			return nil
		}
		return fmt.Errorf("got %d of %d messages; closes slow %v transport %v", n, len(ids), te.Metrics().Closes("slow_consumer"), te.Metrics().Closes("transport"))
	})
	goodMu.Lock()
	defer goodMu.Unlock()
	for i, id := range ids {
		if goodIDs[i] != id {
			t.Fatalf("good reader's message %d is %d, want %d", i, goodIDs[i], id)
		}
	}
}

// tinyTCP dials addr with a 4 KiB receive buffer.
func tinyTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := smallRcvBuf(4096)
	c, err := d.DialContext(tctx(t), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
