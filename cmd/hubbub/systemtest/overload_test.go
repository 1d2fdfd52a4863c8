package systemtest_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// rawDial opens a WebSocket with a tiny receive buffer and returns a
// reader that includes bytes the dialer buffered.
func rawDial(t *testing.T, url string) (net.Conn, io.Reader) {
	t.Helper()
	d := gws.Dialer{NetDial: smallRcvBuf(4096).DialContext}
	c, br, _, err := d.Dial(tctx(t), url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var r io.Reader = c
	if br != nil {
		r = io.MultiReader(br, c)
	}
	return c, r
}

// A client that stops reading is closed with 1013 once its queue passes
// the hard bound, while other members keep receiving every message.
func TestSlowConsumerClosed1013(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(func(c *edge.Config) {
		c.WS.SoftQueue = 64 << 10
		c.WS.HardQueue = 256 << 10
		c.WS.WriteTimeout = 20 * time.Second
	})
	bob := dial(t, te.wsURL("bob"))
	bob.joinLive("general")

	slow, r := rawDial(t, te.wsURL("slow"))
	if err := wsutil.WriteClientText(slow, []byte(`{"type":"join","room":"general"}`)); err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 10*time.Second, "slow client joined", func() bool { return te.Connections() == 2 })
	// The client reads up to its join's answer (a history frame, or without
	// history an "unavailable" error) and never reads from here on.
	_ = slow.SetReadDeadline(time.Now().Add(15 * time.Second))
	for answered := false; !answered; {
		data, err := wsutil.ReadServerText(struct {
			io.Reader
			io.Writer
		}{r, slow})
		if err != nil {
			t.Fatalf("slow client's join answer: %v", err)
		}
		answered = strings.Contains(string(data), `"room":"general"`) &&
			(strings.Contains(string(data), `"type":"history"`) || strings.Contains(string(data), `"type":"error"`))
	}
	_ = slow.SetReadDeadline(time.Time{})

	body := strings.Repeat("x", 1000)
	var ids []uint64
	for batch := 0; te.Metrics().Drops("slow_consumer") == 0; batch++ {
		if batch == 200 {
			t.Fatalf("no 1013 after %d messages", len(ids))
		}
		ctx := tctx(t)
		futures := make([]jetstream.PubAckFuture, 0, 50)
		for i := range 50 {
			f, err := e.JS.PublishAsync(subjects.Room("general"), mustPost("general", "pub", body, batch*50+i))
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case ack := <-f.Ok():
				ids = append(ids, ack.Sequence)
				// Bob reads each message before the next batch, so he is
				// never more than a batch (~50 KiB) behind however loaded
				// the machine is: only the client that stopped reading may
				// pass the hard bound. Bob gets everything, in order.
				if got := bob.messageFrom(ack.Sequence); got != ack.Sequence {
					t.Fatalf("bob got message %d, want %d", got, ack.Sequence)
				}
			case err := <-f.Err():
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
	}
	if closed, code, _ := bob.c.CloseStatus(); closed {
		t.Fatalf("bob was closed (%d) along with the slow client", code)
	}
	// The slow client, reading at last, finds a close frame with 1013.
	_ = slow.SetReadDeadline(time.Now().Add(15 * time.Second))
	if code := readUntilClose(t, r); code != 1013 {
		t.Fatalf("close code %d, want 1013", code)
	}
	natstest.Until(t, 10*time.Second, "slow session ended", func() bool { return te.Connections() == 1 })
	// Bob is unaffected.
	id := bob.say("general", "still fine", "after-slow")
	bob.message(id)
}

// messageFrom waits for the first message frame with an id of at least
// from and returns its id (earlier ones are kept for later calls).
func (c *conn) messageFrom(from uint64) uint64 {
	c.t.Helper()
	f := c.await(fmt.Sprintf("message %d", from), func(f client.Frame) bool {
		var mf wire.MessageFrame
		return f.Type == wire.TypeMessage && f.Decode(&mf) == nil && mf.Message.ID >= from
	})
	return decode[wire.MessageFrame](c.t, f).Message.ID
}

// readUntilClose reads server frames until a close frame and returns its
// code (gobwas' wsutil rejects 1012/1013 as undefined, so read by hand).
func readUntilClose(t *testing.T, r io.Reader) int {
	t.Helper()
	for {
		h, err := gws.ReadHeader(r)
		if err != nil {
			t.Fatalf("reading frames: %v (want a close frame)", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(r, p); err != nil {
			t.Fatalf("reading payload: %v", err)
		}
		if h.OpCode == gws.OpClose {
			if len(p) < 2 {
				return 0
			}
			return int(p[0])<<8 | int(p[1])
		}
	}
}

func mustPost(room, user, body string, n int) []byte {
	return []byte(`{"room":"` + room + `","user":"` + user + `","body":"` + body + `","kind":"message","ts":1,"cid":"c` + itoa(n) + `"}`)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// Drain: /readyz answers 503 at once, every connection gets close 1012,
// Run returns nil and the lease is released.
func TestDrainCloses1012(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(func(c *edge.Config) { c.DrainPeriod = 1500 * time.Millisecond })
	if code, _ := httpGet(t, te.httpURL("/readyz")); code != 200 {
		t.Fatalf("readyz %d before drain", code)
	}
	kv, err := e.JS.KeyValue(tctx(t), subjects.BucketEdges)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(tctx(t), te.EdgeID()); err != nil {
		t.Fatalf("lease missing while running: %v", err)
	}
	var conns []*conn
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		c := dial(t, te.wsURL(u))
		c.joinLive("general")
		conns = append(conns, c)
	}
	stopped := make(chan struct{})
	go func() { te.stop(); close(stopped) }()
	natstest.Until(t, 5*time.Second, "readyz 503", func() bool {
		code, _ := httpGet(t, te.httpURL("/readyz"))
		return code == 503
	})
	for i, c := range conns {
		if code := c.closed(); code != gws.StatusCode(1012) {
			t.Fatalf("connection %d closed with %d, want 1012", i, code)
		}
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after drain")
	}
	if _, err := kv.Get(tctx(t), te.EdgeID()); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease after drain: %v, want deleted", err)
	}
}
