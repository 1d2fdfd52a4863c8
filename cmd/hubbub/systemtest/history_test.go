package systemtest_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// checkChain fails unless msgs are consecutive in the room's chain.
func checkChain(t *testing.T, msgs []wire.Message) {
	t.Helper()
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Prev != msgs[i-1].ID {
			t.Fatalf("chain broken at %d: id %d has prev %d, previous id %d", i, msgs[i].ID, msgs[i].Prev, msgs[i-1].ID)
		}
	}
}

// Join without since gets the newest 50 messages as a chain, then live.
func TestJoinGetsRecentHistoryThenLive(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(nil)
	var ids []uint64
	for i := range 60 {
		ids = append(ids, e.publish("general", "pub", fmt.Sprintf("m%d", i), fmt.Sprintf("c%d", i)))
	}
	c := dial(t, te.wsURL("alice"))
	h := c.join("general", nil)
	if !h.Recovered || !h.HasMore || len(h.Items) != 50 {
		t.Fatalf("history: %d items, has_more %v, recovered %v; want 50, true, true", len(h.Items), h.HasMore, h.Recovered)
	}
	checkChain(t, h.Items)
	if h.Items[49].ID != ids[59] || h.Items[0].ID != ids[10] {
		t.Fatalf("history spans %d..%d, want %d..%d", h.Items[0].ID, h.Items[49].ID, ids[10], ids[59])
	}
	id := c.say("general", "live now", "live-1")
	if m := c.nextMessage(); m.ID != id || m.Prev != ids[59] {
		t.Fatalf("first live message %+v, want id %d prev %d", m, id, ids[59])
	}
	// Paging backwards.
	c.send(wire.ClientFrame{Type: wire.TypeHistory, Room: "general", Before: h.Items[0].ID, Limit: 20})
	p := decode[wire.History](t, c.await("history page", isType(wire.TypeHistory)))
	if len(p.Items) != 10 || p.HasMore || p.Items[9].ID != ids[9] {
		t.Fatalf("page before %d: %d items (has_more %v), want the 10 oldest", h.Items[0].ID, len(p.Items), p.HasMore)
	}
	checkChain(t, p.Items)
}

// Join with since returns exactly the missed messages then live, with no
// hole and no duplicate, even while messages keep arriving during the join.
func TestJoinSinceResumesGaplessly(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(nil)

	c := dial(t, te.wsURL("carol"))
	c.join("general", nil)
	seen := c.say("general", "before the reload", "r-0")
	c.message(seen)
	_ = c.c.Close()

	// Missed while away.
	var missed []uint64
	for i := range 5 {
		missed = append(missed, e.publish("general", "pub", fmt.Sprintf("missed %d", i), fmt.Sprintf("x%d", i)))
	}
	c2 := dial(t, te.wsURL("carol"))
	h := c2.join("general", &seen)
	if !h.Recovered || len(h.Items) != len(missed) {
		t.Fatalf("since %d: %d items (recovered %v), want %d", seen, len(h.Items), h.Recovered, len(missed))
	}
	for i, m := range h.Items {
		if m.ID != missed[i] {
			t.Fatalf("item %d id %d, want %d", i, m.ID, missed[i])
		}
	}
	if h.Items[0].Prev != seen {
		t.Fatalf("first replayed prev %d, want %d", h.Items[0].Prev, seen)
	}
	checkChain(t, h.Items)
	live := c2.say("general", "back", "r-1")
	if m := c2.nextMessage(); m.ID != live || m.Prev != missed[len(missed)-1] {
		t.Fatalf("after replay got %+v, want id %d", m, live)
	}

	// Now resume while a publisher is busy: history + live must be the
	// complete chain after since.
	var wg sync.WaitGroup
	var pubMu sync.Mutex
	var published []uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 150 {
			id := e.publish("general", "busy", fmt.Sprintf("busy %d", i), fmt.Sprintf("b%d", i))
			pubMu.Lock()
			published = append(published, id)
			pubMu.Unlock()
		}
	}()
	natstest.Until(t, 10*time.Second, "the publisher under way", func() bool {
		pubMu.Lock()
		defer pubMu.Unlock()
		return len(published) > 0
	})
	c3 := dial(t, te.wsURL("dave"))
	h3 := c3.join("general", &live)
	wg.Wait()
	got := append([]wire.Message(nil), h3.Items...)
	last := published[len(published)-1]
	for len(got) == 0 || got[len(got)-1].ID < last {
		got = append(got, c3.nextMessage())
	}
	if got[0].Prev != live {
		t.Fatalf("resume starts at %d (prev %d), want prev %d", got[0].ID, got[0].Prev, live)
	}
	checkChain(t, got)
	if len(got) != len(published) {
		t.Fatalf("resumed %d messages, published %d", len(got), len(published))
	}
}

// A live message whose prev the edge has not delivered triggers a fill
// from history before it is delivered. The fault: the edge's NATS
// connection is cut while messages are stored, so their live copies are
// lost.
func TestGapFillAfterLostLiveMessages(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	edgeNC, err := nats.Connect(e.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edgeNC.Close)
	te := e.startEdgeWith(edgeNC, nil)
	alice := dial(t, te.wsURL("alice"))
	bob := dial(t, te.wsURL("bob"))
	alice.join("general", nil)
	bob.join("general", nil)
	first := alice.say("general", "first", "g-0")
	bob.message(first)
	alice.message(first)

	cid, err := edgeNC.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	reconnected := make(chan struct{}, 1)
	edgeNC.SetReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} })
	if err := e.Server.Server.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	var lost []uint64
	for i := range 3 {
		lost = append(lost, e.publish("general", "pub", fmt.Sprintf("lost %d", i), fmt.Sprintf("l%d", i)))
	}
	select {
	case <-reconnected:
	case <-time.After(15 * time.Second):
		t.Fatal("edge did not reconnect")
	}
	// Subscriptions are re-established on reconnect; make sure the server
	// has them before the next publish.
	if err := edgeNC.Flush(); err != nil {
		t.Fatal(err)
	}
	next := e.publish("general", "pub", "after the gap", "l-next")
	want := append(lost, next)
	for _, c := range []*conn{alice, bob} {
		prev := first
		for _, id := range want {
			m := c.nextMessage()
			if m.ID != id || m.Prev != prev {
				t.Fatalf("got message %d (prev %d), want %d (prev %d)", m.ID, m.Prev, id, prev)
			}
			prev = id
		}
	}
	if n := te.Metrics().GapFilledTotal(); n != float64(len(lost)) {
		t.Fatalf("gap filled %v messages, want %d", n, len(lost))
	}
}
