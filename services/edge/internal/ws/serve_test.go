package ws

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	gws "github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
)

// echo is a Handler that echoes text messages and records the end.
type echo struct {
	c      *Conn
	msgs   chan string
	closed chan struct{}
	slow   time.Duration // each Message takes this long
}

func (e *echo) Message(m Message) {
	time.Sleep(e.slow)
	e.msgs <- string(m.Payload)
	e.c.Send(&frame.Frame{Type: "message", JSON: bytes.Clone(m.Payload)})
}

func (e *echo) Closed() {
	e.c.Finish()
	close(e.closed)
}

func (e *echo) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-e.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed")
	}
}

var modes = []ReadMode{ReadAuto, ReadGoroutine}

// server accepts real TCP connections and serves each with an echo.
type server struct {
	t  *testing.T
	tr *Transport
	ln net.Listener
}

func newServer(t *testing.T, cfg Config) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport(cfg, nil)
	t.Cleanup(func() {
		_ = ln.Close()
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	return &server{t: t, tr: tr, ln: ln}
}

// dial connects a client and serves the server side.
func (s *server) dial() (net.Conn, *echo) {
	s.t.Helper()
	return s.dialSlow(0)
}

// dialSlow is dial with a handler taking slow per message.
func (s *server) dialSlow(slow time.Duration) (net.Conn, *echo) {
	s.t.Helper()
	client, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = client.Close() })
	nc, err := s.ln.Accept()
	if err != nil {
		s.t.Fatal(err)
	}
	c := s.tr.NewConn(nc)
	e := &echo{c: c, msgs: make(chan string, 64), closed: make(chan struct{}), slow: slow}
	s.tr.Serve(c, e)
	return client, e
}

func (e *echo) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-e.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
		return ""
	}
}

func expectClose(t *testing.T, r io.Reader, code uint16) {
	t.Helper()
	for {
		f := readServerFrame(t, r)
		if f.Header.OpCode != gws.OpClose {
			continue
		}
		if got, _ := gws.ParseCloseFrameData(f.Payload); uint16(got) != code {
			t.Fatalf("close code %d, want %d", got, code)
		}
		return
	}
}

// Many connections are served, twice each (re-arming works); with the
// poller, idle connections hold no goroutine.
func TestServeManyConnections(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode)+"mode", func(t *testing.T) {
			s := newServer(t, Config{ReadMode: mode})
			before := runtime.NumGoroutine()
			const n = 200
			clients := make([]net.Conn, n)
			echoes := make([]*echo, n)
			for i := range n {
				clients[i], echoes[i] = s.dial()
			}
			for round := range 2 {
				for i, c := range clients {
					if _, err := c.Write(clientFrame(t, gws.OpText, true, fmt.Appendf(nil, "m%d-%d", i, round))); err != nil {
						t.Fatal(err)
					}
				}
				for i, c := range clients {
					want := fmt.Sprintf("m%d-%d", i, round)
					if got := echoes[i].next(t); got != want {
						t.Fatalf("got %q, want %q", got, want)
					}
					if f := readServerFrame(t, c); string(f.Payload) != want {
						t.Fatalf("echo %q, want %q", f.Payload, want)
					}
				}
			}
			if s.tr.Polling() {
				deadline := time.Now().Add(10 * time.Second)
				for runtime.NumGoroutine() > before+20 {
					if time.Now().After(deadline) {
						t.Fatalf("%d goroutines for %d idle polled connections (%d before)", runtime.NumGoroutine(), n, before)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

// A frame that arrives in pieces is read whole.
func TestServePartialFrame(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode)+"mode", func(t *testing.T) {
			s := newServer(t, Config{ReadMode: mode})
			c, e := s.dial()
			b := clientFrame(t, gws.OpText, true, []byte(`{"type":"join","room":"general"}`))
			for _, part := range [][]byte{b[:1], b[1:4], b[4:10], b[10:]} {
				if _, err := c.Write(part); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond) // let each piece arrive alone
			}
			if got := e.next(t); got != `{"type":"join","room":"general"}` {
				t.Fatalf("got %q", got)
			}
			// A fragmented message with a ping between fragments.
			for _, part := range [][]byte{
				clientFrame(t, gws.OpText, false, []byte("hel")),
				clientFrame(t, gws.OpPing, true, []byte("p")),
				clientFrame(t, gws.OpContinuation, true, []byte("lo")),
			} {
				if _, err := c.Write(part); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if got := e.next(t); got != "hello" {
				t.Fatalf("got %q", got)
			}
		})
	}
}

// Bad input is answered with the matching close code, and the
// connection ends.
func TestServeCloseCodes(t *testing.T) {
	tests := []struct {
		name  string
		input func(t *testing.T) []byte
		code  uint16
		label string
	}{
		{"too big", func(t *testing.T) []byte { return clientFrame(t, gws.OpText, true, bytes.Repeat([]byte("x"), 100)) }, CodeTooBig, "too_big"},
		{"invalid utf-8", func(t *testing.T) []byte { return clientFrame(t, gws.OpText, true, []byte{0xff}) }, CodeInvalidData, "invalid_utf8"},
		{"unmasked", func(t *testing.T) []byte { return unmaskedFrame(t, gws.OpText, []byte("x")) }, CodeProtocolError, "protocol"},
	}
	for _, mode := range modes {
		for _, tt := range tests {
			t.Run(string(mode)+"mode/"+tt.name, func(t *testing.T) {
				s := newServer(t, Config{ReadMode: mode, MaxMessage: 64, CloseTimeout: time.Second})
				c, e := s.dial()
				if _, err := c.Write(tt.input(t)); err != nil {
					t.Fatal(err)
				}
				expectClose(t, c, tt.code)
				e.waitClosed(t)
				if got := e.c.CloseReason(); got != tt.label {
					t.Fatalf("close reason %q, want %q", got, tt.label)
				}
			})
		}
	}
}

// A peer that starts a frame and stalls is closed with 1008 once the read
// timeout passes (with the poller; a reader goroutine waits for pings).
func TestServeSlowloris(t *testing.T) {
	s := newServer(t, Config{ReadTimeout: 200 * time.Millisecond, CloseTimeout: time.Second})
	if !s.tr.Polling() {
		t.Fatal("no poller on this platform")
	}
	c, e := s.dial()
	b := clientFrame(t, gws.OpText, true, []byte("0123456789"))
	if _, err := c.Write(b[:8]); err != nil { // header and two payload bytes
		t.Fatal(err)
	}
	expectClose(t, c, CodePolicy)
	e.waitClosed(t)
	if got := e.c.CloseReason(); got != "read_timeout" {
		t.Fatalf("close reason %q", got)
	}
}

// A handler slower than ReadTimeout does not get its connection closed:
// the timeout bounds reading a frame, not handling it.
func TestServeSlowHandler(t *testing.T) {
	s := newServer(t, Config{ReadTimeout: 100 * time.Millisecond})
	c, e := s.dialSlow(300 * time.Millisecond)
	for _, m := range []string{"a", "b", "c"} {
		if _, err := c.Write(clientFrame(t, gws.OpText, true, []byte(m))); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "b", "c"} {
		if got := e.next(t); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	select {
	case <-e.closed:
		t.Fatalf("connection closed: %s", e.c.CloseReason())
	default:
	}
}

// A peer that hangs up is noticed.
func TestServeHangup(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode)+"mode", func(t *testing.T) {
			s := newServer(t, Config{ReadMode: mode})
			c, e := s.dial()
			if _, err := c.Write(clientFrame(t, gws.OpText, true, []byte("last words"))); err != nil {
				t.Fatal(err)
			}
			if got := e.next(t); got != "last words" {
				t.Fatalf("got %q", got)
			}
			_ = c.Close()
			e.waitClosed(t)
			if got := e.c.CloseReason(); got != "transport" {
				t.Fatalf("close reason %q", got)
			}
		})
	}
}

// A server close completes when the peer answers, or after CloseTimeout
// when it does not.
func TestServeCloseHandshake(t *testing.T) {
	for _, mode := range modes {
		for _, answer := range []bool{true, false} {
			t.Run(fmt.Sprintf("%smode/answer=%v", mode, answer), func(t *testing.T) {
				s := newServer(t, Config{ReadMode: mode, CloseTimeout: 300 * time.Millisecond})
				c, e := s.dial()
				e.c.Close(CodeRestart, "restart")
				f := readServerFrame(t, c)
				if f.Header.OpCode != gws.OpClose {
					t.Fatalf("got %v, want close", f.Header.OpCode)
				}
				if answer {
					if _, err := c.Write(clientFrame(t, gws.OpClose, true, f.Payload[:2])); err != nil {
						t.Fatal(err)
					}
				}
				e.waitClosed(t)
				if got := e.c.CloseReason(); got != "restart" {
					t.Fatalf("close reason %q", got)
				}
			})
		}
	}
}

// A polled peer that does not answer a ping by the next one is closed
// with 1001; one that answers stays.
func TestServeDeadPeer(t *testing.T) {
	s := newServer(t, Config{PingInterval: time.Hour})
	if !s.tr.Polling() {
		t.Fatal("no poller on this platform")
	}
	alive, ae := s.dial()
	dead, de := s.dial()
	for range 3 {
		ae.c.Ping()
		de.c.Ping()
		f := readServerFrame(t, alive)
		if f.Header.OpCode != gws.OpPing {
			t.Fatalf("got %v, want ping", f.Header.OpCode)
		}
		if _, err := alive.Write(clientFrame(t, gws.OpPong, true, f.Payload)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			ae.c.mu.Lock()
			heard := ae.c.heard
			ae.c.mu.Unlock()
			if heard {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("pong not read")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	de.waitClosed(t)
	if got := de.c.CloseReason(); got != "ping_timeout" {
		t.Fatalf("dead peer close reason %q", got)
	}
	expectClose(t, dead, CodeGoingAway)
	select {
	case <-ae.closed:
		t.Fatal("a peer answering pings was closed")
	default:
	}
}

// Bytes a client sends right behind the handshake (buffered by the HTTP
// server) are read before the socket.
func TestServePipelinedAfterHandshake(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode)+"mode", func(t *testing.T) {
			tr := NewTransport(Config{ReadMode: mode}, nil)
			t.Cleanup(func() { _ = tr.Close() })
			got := make(chan *echo, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := tr.Upgrade(w, r)
				if err != nil {
					t.Error(err)
					return
				}
				e := &echo{c: c, msgs: make(chan string, 64), closed: make(chan struct{})}
				tr.Serve(c, e)
				got <- e
			}))
			t.Cleanup(srv.Close)
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
			payload := append([]byte(req), clientFrame(t, gws.OpText, true, []byte("one"))...)
			payload = append(payload, clientFrame(t, gws.OpText, true, []byte("two"))...)
			if _, err := c.Write(payload); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			status, err := br.ReadString('\n')
			if err != nil || !strings.Contains(status, "101") {
				t.Fatalf("handshake: %q %v", status, err)
			}
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if line == "\r\n" {
					break
				}
			}
			e := <-got
			for _, want := range []string{"one", "two"} {
				if m := e.next(t); m != want {
					t.Fatalf("got %q, want %q", m, want)
				}
				if f := readServerFrame(t, br); string(f.Payload) != want {
					t.Fatalf("echo %q", f.Payload)
				}
			}
		})
	}
}

// Frames sent faster than the peer reads arrive complete and in order:
// writes that do not fit the socket continue on a writer goroutine.
func TestServeWriteBackpressure(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode)+"mode", func(t *testing.T) {
			const writeTimeout = 2 * time.Second
			s := newServer(t, Config{ReadMode: mode, HardQueue: 4 << 20, WriteTimeout: writeTimeout})
			c, e := s.dial()
			if _, err := c.Write(clientFrame(t, gws.OpText, true, []byte("go"))); err != nil {
				t.Fatal(err) // make the connection polled before sending
			}
			if m := e.next(t); m != "go" {
				t.Fatalf("got %q", m)
			}
			if f := readServerFrame(t, c); string(f.Payload) != "go" {
				t.Fatalf("echo %q", f.Payload)
			}
			const n = 300
			pad := strings.Repeat("x", 4000)
			for i := range n {
				if !e.c.Send(&frame.Frame{Type: "message", JSON: fmt.Appendf(nil, "%d %s", i, pad)}) {
					t.Fatalf("frame %d refused", i)
				}
			}
			br := bufio.NewReader(c)
			for i := range n {
				f := readServerFrame(t, br)
				if want := fmt.Sprintf("%d ", i); !strings.HasPrefix(string(f.Payload), want) {
					t.Fatalf("frame %d starts %q", i, f.Payload[:10])
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for e.c.QueuedBytes() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d bytes still queued", e.c.QueuedBytes())
				}
				time.Sleep(5 * time.Millisecond)
			}
			// The blocking writes above ran under a write deadline. Let it
			// pass (the fault): later writes, non-blocking on a polled
			// connection, must not fail with that stale deadline.
			time.Sleep(writeTimeout + writeTimeout/4)
			for i := range 3 {
				if !e.c.Send(&frame.Frame{Type: "message", JSON: fmt.Appendf(nil, "after %d", i)}) {
					t.Fatalf("frame after the deadline refused")
				}
				if f := readServerFrame(t, br); string(f.Payload) != fmt.Sprintf("after %d", i) {
					t.Fatalf("after the deadline got %q", f.Payload)
				}
			}
		})
	}
}
