package systemtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/shared/natstest"
)

// rawJoiner opens a WebSocket, joins rooms and then never reads again: a
// killed tab whose socket the edge still writes to.
func rawJoiner(t *testing.T, url string, rooms []string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A small receive window, so the edge's writes to it block soon.
	d := gws.Dialer{NetDial: smallRcvBuf(2048).DialContext}
	c, _, _, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	for _, r := range rooms {
		b, _ := json.Marshal(map[string]any{"type": "join", "room": r})
		if err := wsutil.WriteClientText(c, b); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	return c
}

// reset closes c with a TCP RST (SO_LINGER 0), as a dropped phone or a
// proxy would.
func reset(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
}

// Guarantee 8: connections that join busy rooms, stop reading and are then
// reset while the edge is writing to them are all released within two
// ping intervals: the sessions, the per-user quota, the rosters and the
// connections gauge come back to what the live clients hold.
func TestResetConnectionsAreReleased(t *testing.T) {
	const (
		ghosts = 300
		ping   = 500 * time.Millisecond
	)
	rooms := []string{"busy-a", "busy-b", "busy-c", "busy-d"}
	e := newSystem(t)
	te := e.startEdge(func(c *edge.Config) {
		c.WS.PingInterval = ping
		c.WS.WriteTimeout = time.Minute // only the resets end the ghosts
		c.WS.HardQueue = 64 << 20
		c.UserLimits.MaxConns = ghosts + 10
	})
	live := dial(t, te.wsURL("live"))
	for _, r := range rooms {
		live.join(r, nil)
	}

	var mu sync.Mutex
	socks := make([]net.Conn, 0, ghosts)
	var wg sync.WaitGroup
	for i := range ghosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := rawJoiner(t, te.wsURL(fmt.Sprintf("ghost-%d", i%20)), rooms)
			mu.Lock()
			socks = append(socks, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	natstest.Until(t, 20*time.Second, "all connected", func() bool { return te.Connections() == ghosts+1 })

	// Keep the edge writing to every ghost (messages with big bodies, so
	// the unread sockets fill), and reset them mid-stream.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flooded := make(chan struct{})
	var sent atomic.Int64
	go func() {
		defer close(flooded)
		body := strings.Repeat("x", 1500)
		for i := 0; ctx.Err() == nil; i++ {
			e.publish(rooms[i%len(rooms)], "flood", body, fmt.Sprintf("f%d", i))
			sent.Add(1)
		}
	}()
	natstest.Until(t, 30*time.Second, "ghost sockets filling", func() bool { return sent.Load() > 1500 })
	for _, c := range socks {
		reset(t, c)
	}
	// The flood goes on while the edge finds the resets.
	natstest.Until(t, 30*time.Second, "ghost sessions released", func() bool { return te.Connections() == 1 })
	cancel()
	<-flooded
	if got := te.Metrics().Connections(); got != 1 {
		t.Fatalf("connections gauge %v, want 1", got)
	}
	var last string
	natstest.Eventually(t, 30*time.Second, "rosters back to the live client", func() error {
		if rostersLive(t, te, rooms, &last) {
			return nil
		}
		return fmt.Errorf("%s (edge: %d presence registrations unconfirmed)", last, te.PresenceUnconfirmed())
	})
	// The quota is free again: a ghost's user can open its full share.
	for range 5 {
		_ = dial(t, te.wsURL("ghost-0"))
	}
	// And the live client still gets messages.
	id := e.publish(rooms[0], "amy", "after", "after")
	live.message(id)
}

// rostersLive reports whether every room's roster lists only the live
// client; last is set to the first roster that does not.
func rostersLive(t *testing.T, te *testEdge, rooms []string, last *string) bool {
	for _, r := range rooms {
		code, body := httpGet(t, te.httpURL("/api/rooms/"+r+"/presence"))
		if code != 200 || strings.Contains(body, "ghost-") || !strings.Contains(body, `"live"`) {
			*last = fmt.Sprintf("%s: %d %s", r, code, body)
			return false
		}
	}
	return true
}
