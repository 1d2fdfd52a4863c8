package ws

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	gws "github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
)

// makePolled sends one message through c and reads its echo, so the
// connection is served (and, with the poller, armed) before the test.
func makePolled(t *testing.T, c net.Conn, e *echo, r *bufio.Reader) {
	t.Helper()
	if _, err := c.Write(clientFrame(t, gws.OpText, true, []byte("go"))); err != nil {
		t.Fatal(err)
	}
	if m := e.next(t); m != "go" {
		t.Fatalf("got %q", m)
	}
	if f := readServerFrame(t, r); string(f.Payload) != "go" {
		t.Fatalf("echo %q", f.Payload)
	}
}

// A write that fails ends the connection: the handler's Closed runs (so
// the session is released) however the connection is read. With the
// poller this is guarantee 8's hole: a failed write used to close the
// socket, which silently dropped it from epoll, so Closed never ran.
func TestServeWriteErrorEndsConnection(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode)+"mode", func(t *testing.T) {
			s := newServer(t, Config{ReadMode: mode, PingInterval: time.Hour})
			c, e := s.dial()
			makePolled(t, c, e, bufio.NewReader(c))
			// The fault: the socket can no longer be written (as after
			// a reset), and no read event will come to tell.
			if err := e.c.nc.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			e.c.Send(&frame.Frame{Type: "message", JSON: []byte(`{"type":"message"}`)})
			e.waitClosed(t)
			if got := e.c.CloseReason(); got != "write_error" {
				t.Fatalf("close reason %q, want write_error", got)
			}
		})
	}
}

// A connection already closing whose peer never answers is ended by the
// pings (within two intervals), whatever stalled its close.
func TestPingEndsClosingConnection(t *testing.T) {
	s := newServer(t, Config{PingInterval: time.Hour, CloseTimeout: time.Hour})
	if !s.tr.Polling() {
		t.Fatal("no poller on this platform")
	}
	c, e := s.dial()
	makePolled(t, c, e, bufio.NewReader(c))
	e.c.Close(CodeGoingAway, "bye") // the peer never answers; CloseTimeout is far away
	e.c.Ping()
	e.c.Ping()
	e.waitClosed(t)
}

// A peer that stops reading gets the documented 1013 close frame after
// the data already on its way, once it reads again, rather than a bare
// TCP close: whether its queue overflowed or a write timed out.
func TestServeStalledReaderGets1013(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		count int // frames sent while the peer does not read
	}{
		{"overflow", Config{HardQueue: 256 << 10, WriteTimeout: 300 * time.Millisecond, CloseTimeout: 10 * time.Second}, 200},
		{"write timeout", Config{HardQueue: 64 << 20, WriteTimeout: 300 * time.Millisecond, CloseTimeout: 10 * time.Second}, 200},
	}
	for _, mode := range modes {
		for _, tc := range cases {
			t.Run(string(mode)+"mode/"+tc.name, func(t *testing.T) {
				cfg := tc.cfg
				cfg.ReadMode = mode
				s := newServer(t, cfg)
				c, e := s.dial()
				br := bufio.NewReader(c)
				makePolled(t, c, e, br)
				pad := strings.Repeat("x", 64<<10)
				for i := range tc.count {
					if !e.c.Send(&frame.Frame{Type: "message", JSON: fmt.Appendf(nil, "%d %s", i, pad)}) {
						break
					}
				}
				// The fault: the peer reads nothing for longer than the
				// write timeout.
				time.Sleep(3 * cfg.WriteTimeout)
				for {
					f, err := readFrame(br)
					if err != nil {
						t.Fatalf("connection ended without a close frame: %v", err)
					}
					if f.Header.OpCode != gws.OpClose {
						continue
					}
					if code, _ := gws.ParseCloseFrameData(f.Payload); uint16(code) != CodeTryAgainLater {
						t.Fatalf("close code %d, want 1013", code)
					}
					break
				}
				if got := e.c.CloseReason(); got != "slow_consumer" {
					t.Fatalf("close reason %q, want slow_consumer", got)
				}
			})
		}
	}
}
