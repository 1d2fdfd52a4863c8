//go:build linux

package netpoll

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sock is a registered server-side socket whose handler reads what is
// there and re-arms.
type sock struct {
	t    *testing.T
	d    *Desc
	mu   sync.Mutex
	got  []byte
	eof  bool
	runs atomic.Int32
	// hold, if set, blocks Ready until closed (worker bound test).
	hold chan struct{}
	busy *atomic.Int32
	peak *atomic.Int32
}

func (s *sock) Ready() {
	s.runs.Add(1)
	if s.busy != nil {
		n := s.busy.Add(1)
		for {
			p := s.peak.Load()
			if n <= p || s.peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer s.busy.Add(-1)
	}
	if s.hold != nil {
		<-s.hold
	}
	s.mu.Lock()
	d := s.d
	s.mu.Unlock()
	buf := make([]byte, 64)
	for {
		n, err := d.TryRead(buf)
		s.mu.Lock()
		s.got = append(s.got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			s.eof = true
		}
		s.mu.Unlock()
		if err != nil {
			break
		}
	}
	s.mu.Lock()
	eof := s.eof
	s.mu.Unlock()
	if eof {
		d.Remove()
		return
	}
	// A socket the test already closed (its cleanup may run while this
	// handler is still finishing the last round) cannot be re-armed; any
	// other failure is a bug.
	if err := d.Arm(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.mu.Lock()
		s.t.Errorf("arm: %v", err)
		s.mu.Unlock()
	}
}

func (s *sock) received() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.got), s.eof
}

// pair returns a connected client and the server side registered (armed)
// with p.
func pair(t *testing.T, p *Poller, ln net.Listener, s *sock) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	d, err := p.Add(srv.(*net.TCPConn), s)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.t, s.d = t, d
	s.mu.Unlock()
	if err := d.Arm(); err != nil {
		t.Fatal(err)
	}
	return c
}

func newPoller(t *testing.T, cfg Config) (*Poller, net.Listener) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return p, ln
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Many sockets: each one's data is reported, in two rounds (re-arming
// works), and a silent socket's handler never runs.
func TestManySockets(t *testing.T) {
	p, ln := newPoller(t, Config{Workers: 8})
	const n = 300
	socks := make([]*sock, n)
	clients := make([]net.Conn, n)
	for i := range n {
		socks[i] = &sock{}
		clients[i] = pair(t, p, ln, socks[i])
	}
	silent := &sock{}
	pair(t, p, ln, silent)
	for round, msg := range []string{"ab", "cd"} {
		for _, c := range clients {
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		want := "abcd"[:2*(round+1)]
		for i, s := range socks {
			waitFor(t, "socket data", func() bool { got, _ := s.received(); return got == want })
			_ = i
		}
	}
	if r := silent.runs.Load(); r != 0 {
		t.Fatalf("silent socket's handler ran %d times", r)
	}
}

// A partial write is reported, and the rest is reported again after the
// handler re-armed.
func TestReadinessAfterPartialData(t *testing.T) {
	p, ln := newPoller(t, Config{})
	s := &sock{}
	c := pair(t, p, ln, s)
	if _, err := c.Write([]byte{0x81}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first byte", func() bool { got, _ := s.received(); return got == "\x81" })
	if _, err := c.Write([]byte{0x02, 'h', 'i'}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rest of the frame", func() bool { got, _ := s.received(); return got == "\x81\x02hi" })
}

// A peer closing (or half-closing) its side is reported; TryRead then
// returns io.EOF.
func TestHangupDetected(t *testing.T) {
	for _, tt := range []struct {
		name  string
		close func(net.Conn) error
	}{
		{"close", func(c net.Conn) error { return c.Close() }},
		{"half-close", func(c net.Conn) error { return c.(*net.TCPConn).CloseWrite() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, ln := newPoller(t, Config{})
			s := &sock{}
			c := pair(t, p, ln, s)
			if _, err := c.Write([]byte("bye")); err != nil {
				t.Fatal(err)
			}
			if err := tt.close(c); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "hang-up", func() bool { got, eof := s.received(); return eof && got == "bye" })
		})
	}
}

// TryRead on a socket with nothing to read does not wait.
func TestTryReadNoData(t *testing.T) {
	p, ln := newPoller(t, Config{})
	s := &sock{}
	pair(t, p, ln, s)
	if _, err := s.d.TryRead(make([]byte, 8)); !errors.Is(err, ErrNoData) {
		t.Fatalf("TryRead = %v, want ErrNoData", err)
	}
}

// A removed socket is not reported; after its descriptor number is reused
// by a new socket, events reach only the new socket's handler.
func TestRemoveAndReuse(t *testing.T) {
	p, ln := newPoller(t, Config{})
	old := &sock{}
	c1 := pair(t, p, ln, old)
	old.d.Remove()
	if err := old.d.Arm(); !errors.Is(err, ErrRemoved) {
		t.Fatalf("Arm after Remove = %v", err)
	}
	if _, err := c1.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	fresh := &sock{}
	c2 := pair(t, p, ln, fresh)
	if _, err := c2.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new socket's data", func() bool { got, _ := fresh.received(); return got == "y" })
	if r := old.runs.Load(); r != 0 {
		t.Fatalf("removed socket's handler ran %d times", r)
	}
}

// At most Workers handlers run at once; the others wait their turn.
func TestWorkerBound(t *testing.T) {
	p, ln := newPoller(t, Config{Workers: 3})
	hold := make(chan struct{})
	var busy, peak atomic.Int32
	const n = 20
	socks := make([]*sock, n)
	for i := range n {
		socks[i] = &sock{hold: hold, busy: &busy, peak: &peak}
		c := pair(t, p, ln, socks[i])
		if _, err := c.Write([]byte("z")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "workers busy", func() bool { return busy.Load() == 3 && p.Pending() == n-3 })
	close(hold)
	for _, s := range socks {
		waitFor(t, "every socket served", func() bool { got, _ := s.received(); return got == "z" })
	}
	if pk := peak.Load(); pk > 3 {
		t.Fatalf("%d handlers ran at once, bound 3", pk)
	}
}
