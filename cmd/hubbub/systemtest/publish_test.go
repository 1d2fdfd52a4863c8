package systemtest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// A publish never blocks reading: while JetStream does not answer (the
// NATS server is down, then restarts) the client keeps sending; the
// connection stays open and every message is eventually acked or refused
// with an error frame carrying its cid. Resending a refused cid after the
// outage stores it once.
func TestPublishDuringNATSOutage(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(func(c *edge.Config) {
		c.Session.MessageRate = 100
		c.Session.MessageBurst = 100
	})
	c := dial(t, te.wsURL("alice"))
	e.startPresence()
	e.startHistory()
	c.join("outage", nil)
	c.say("outage", "before", "before")

	e.Stop()
	// Once the edge has seen NATS go (nats.go fails the async publishes
	// pending at that moment at once, which could answer them all before
	// the last frame is read), the client sends on during the outage, then
	// a frame the edge answers without any backend (an unknown type): its
	// answer must not wait for the PubAcks of the messages before it.
	natstest.Until(t, 10*time.Second, "edge sees NATS down", func() bool { return te.Ready() != nil })
	const n = 20
	for i := range n {
		c.send(wire.ClientFrame{Type: wire.TypeMessage, Room: "outage", Body: fmt.Sprintf("during %d", i), CID: fmt.Sprintf("d%d", i)})
	}
	c.send(map[string]string{"type": "nonsense"})

	answered := map[string]string{} // cid → "ack" or error code
	ctx := tctx(t)
	restarted := false
	for len(answered) < n || !restarted {
		f, err := c.next()
		if err != nil {
			t.Fatalf("connection ended with %d/%d messages answered: %v", len(answered), n, err)
		}
		switch f.Type {
		case wire.TypeAck:
			a := decode[wire.Ack](t, f)
			record(t, answered, a.CID, "ack")
		case wire.TypeError:
			ef := decode[wire.ErrorFrame](t, f)
			if ef.Code == wire.CodeUnknownType {
				if restarted {
					t.Fatal("two unknown_type answers")
				}
				if len(answered) == n {
					t.Fatalf("the unknown frame was answered only after all %d publishes: reading waited for PubAcks", n)
				}
				e.Restart()
				restarted = true
				continue
			}
			if ef.CID == "" {
				t.Fatalf("error frame without cid: %s", f.Raw)
			}
			if ef.Code != wire.CodeUnavailable && ef.Code != wire.CodeRateLimited {
				t.Fatalf("error frame %s, want unavailable or rate_limited", f.Raw)
			}
			record(t, answered, ef.CID, ef.Code)
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d/%d messages answered", len(answered), n)
		}
	}
	t.Logf("answers during the outage: %v", answered)

	// After the outage every refused message can be resent with its cid
	// and is stored exactly once.
	deadline := time.Now().Add(20 * time.Second)
	for cid, got := range answered {
		if got == "ack" {
			continue
		}
		for {
			_, ef := c.trySay("outage", "during "+strings.TrimPrefix(cid, "d"), cid)
			if ef == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("resend %s after the outage: %s %s", cid, ef.Code, ef.Message)
			}
		}
	}
	var stored []wire.Message
	natstest.Until(t, 10*time.Second, "all messages stored", func() bool {
		stored = e.roomMessages("outage")
		return len(stored) >= n+1
	})
	seen := map[string]int{}
	for _, m := range stored {
		seen[m.CID]++
	}
	for cid, k := range seen {
		if k != 1 {
			t.Errorf("cid %s stored %d times", cid, k)
		}
	}
	if len(seen) != n+1 {
		t.Errorf("%d distinct messages stored, want %d", len(seen), n+1)
	}
}

func record(t *testing.T, answered map[string]string, cid, what string) {
	t.Helper()
	if prev, ok := answered[cid]; ok {
		t.Fatalf("cid %s answered twice: %s, then %s", cid, prev, what)
	}
	answered[cid] = what
}

// When a connection's or the edge's bound of messages awaiting a PubAck
// is reached, further messages are refused at once (rate_limited for the
// connection's bound, unavailable for the edge's) instead of waiting.
func TestPublishPendingBounds(t *testing.T) {
	tests := []struct {
		name          string
		conn, perEdge int
		code          string
	}{
		{"connection bound", 2, 0, wire.CodeRateLimited},
		{"edge bound", 0, 2, wire.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			te := e.startEdge(func(c *edge.Config) {
				c.Session.MaxPendingPosts = tt.conn
				c.MaxPendingPosts = tt.perEdge
			})
			c := dial(t, te.wsURL("alice"))
			c.joinLive("bounded")
			e.Stop()
			// Send only once the edge has seen NATS go: nats.go fails every
			// async publish pending at that moment (ErrDisconnected), which
			// would answer b0 early and free a slot before b2 is read.
			natstest.Until(t, 10*time.Second, "edge sees NATS down", func() bool { return te.Ready() != nil })
			for i := range 5 {
				c.send(wire.ClientFrame{Type: wire.TypeMessage, Room: "bounded", Body: "x", CID: fmt.Sprintf("b%d", i)})
			}
			// The three over the bound are refused before either pending
			// message is answered.
			for i := 2; i < 5; i++ {
				f := c.await("an answer", func(f client.Frame) bool { return f.Type == wire.TypeAck || f.Type == wire.TypeError })
				ef := decode[wire.ErrorFrame](t, f)
				if f.Type != wire.TypeError || ef.Code != tt.code || ef.CID != fmt.Sprintf("b%d", i) {
					t.Fatalf("answer %d: %s, want %s for b%d", i-2, f.Raw, tt.code, i)
				}
			}
			e.Restart()
			answered := map[string]string{}
			for len(answered) < 2 {
				f := c.await("an answer", func(f client.Frame) bool { return f.Type == wire.TypeAck || f.Type == wire.TypeError })
				if f.Type == wire.TypeAck {
					record(t, answered, decode[wire.Ack](t, f).CID, "ack")
				} else {
					ef := decode[wire.ErrorFrame](t, f)
					record(t, answered, ef.CID, ef.Code)
				}
			}
			if _, ok := answered["b0"]; !ok {
				t.Fatalf("answers %v, want b0 and b1", answered)
			}
		})
	}
}
