package ws

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
)

type countObs struct{ shed, overflow, queued atomic.Int64 }

func (o *countObs) Shed(*frame.Frame) { o.shed.Add(1) }
func (o *countObs) QueueBytes(d int)  { o.queued.Add(int64(d)) }
func (o *countObs) Overflow()         { o.overflow.Add(1) }
func payload(n int, typ string) []byte {
	return []byte(`{"type":"` + typ + `","x":"` + strings.Repeat("x", n) + `"}`)
}
func essential(n int) *frame.Frame { return &frame.Frame{Type: "message", JSON: payload(n, "message")} }
func sheddable(n int) *frame.Frame {
	return &frame.Frame{Type: "typing", JSON: payload(n, "typing"), Class: frame.Sheddable}
}
func readServerFrame(t *testing.T, r io.Reader) gws.Frame {
	t.Helper()
	f, err := readFrame(r)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// Over the soft bound sheddable frames are dropped and essential ones
// kept; over the hard bound the queue is dropped and the connection closed
// with 1013 after the frames already being written.
func TestConnQueueBounds(t *testing.T) {
	obs := &countObs{}
	tr := NewTransport(Config{SoftQueue: 1000, HardQueue: 4000, WriteTimeout: 5 * time.Second, CloseTimeout: time.Second}, obs)
	server, peer := net.Pipe()
	defer peer.Close()
	c := tr.NewConn(server)

	first := essential(600)
	if !c.Send(first) { // the writer takes it at once and blocks on the pipe
		t.Fatal("first frame refused")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		inflight := c.inflight
		c.mu.Unlock()
		if inflight > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writer never started")
		}
		time.Sleep(time.Millisecond)
	}
	if !c.Send(essential(600)) {
		t.Fatal("second essential frame refused under the soft bound")
	}
	if c.Send(sheddable(10)) || obs.shed.Load() != 1 {
		t.Fatalf("sheddable frame over the soft bound was queued (shed %d)", obs.shed.Load())
	}
	// 629-byte frames: 1258 bytes pending, room for 4 more under 4000.
	for i := range 4 {
		if !c.Send(essential(600)) {
			t.Fatalf("essential frame %d refused under the hard bound (%d pending)", i, c.QueuedBytes())
		}
	}
	if c.Send(essential(600)) || obs.overflow.Load() != 1 {
		t.Fatal("frame over the hard bound accepted")
	}
	if c.CloseCode() != CodeTryAgainLater || c.CloseReason() != "slow_consumer" {
		t.Fatalf("close %d %q", c.CloseCode(), c.CloseReason())
	}
	if c.Send(essential(1)) {
		t.Fatal("frame accepted after close")
	}
	// The peer reads: the in-flight frame, then the close frame.
	got := readServerFrame(t, peer)
	if !bytes.Equal(got.Payload, first.JSON) {
		t.Fatalf("first frame %q", got.Payload)
	}
	got = readServerFrame(t, peer)
	if got.Header.OpCode != gws.OpClose {
		t.Fatalf("got opcode %v, want close", got.Header.OpCode)
	}
	if code, _ := gws.ParseCloseFrameData(got.Payload); code != 1013 {
		t.Fatalf("close code %d", code)
	}
	go func() { _, _ = io.Copy(io.Discard, peer) }()
	if _, err := c.Read(); err == nil {
		t.Fatal("Read succeeded on a closing connection")
	}
	c.Finish()
	if q := obs.queued.Load(); q != 0 {
		t.Fatalf("queue bytes gauge %d after finish, want 0", q)
	}
}

// Pings are answered with pongs carrying the same payload.
func TestConnAnswersPing(t *testing.T) {
	tr := NewTransport(Config{}, nil)
	server, peer := net.Pipe()
	defer peer.Close()
	c := tr.NewConn(server)
	go func() {
		_, _ = peer.Write(clientFrame(t, gws.OpPing, true, []byte("hi")))
		_, _ = peer.Write(clientFrame(t, gws.OpText, true, []byte(`{}`)))
	}()
	m, err := c.Read()
	if err != nil || string(m.Payload) != "{}" {
		t.Fatalf("read %q, %v", m.Payload, err)
	}
	f := readServerFrame(t, peer)
	if f.Header.OpCode != gws.OpPong || string(f.Payload) != "hi" {
		t.Fatalf("got %v %q, want pong hi", f.Header.OpCode, f.Payload)
	}
	c.Close(CodeNormal, "bye")
	f = readServerFrame(t, peer)
	if f.Header.OpCode != gws.OpClose {
		t.Fatalf("got %v, want close", f.Header.OpCode)
	}
	reply := clientFrame(t, gws.OpClose, true, f.Payload[:2])
	go func() { _, _ = peer.Write(reply) }()
	if _, err := c.Read(); err != ErrClosed {
		t.Fatalf("read after close handshake: %v", err)
	}
	c.Finish()
}

// readFrame reads one unmasked server frame (test input is our own).
func readFrame(r io.Reader) (gws.Frame, error) {
	h, err := gws.ReadHeader(r)
	if err != nil {
		return gws.Frame{}, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return gws.Frame{}, err
	}
	return gws.Frame{Header: h, Payload: p}, nil
}
