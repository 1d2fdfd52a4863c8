package wsbase

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// frame is the union of the server frames the tests read.
type frame struct {
	Type      string          `json:"type"`
	User      string          `json:"user"`
	Protocol  int             `json:"protocol"`
	Room      string          `json:"room"`
	Items     []wire.Message  `json:"items"`
	Recovered bool            `json:"recovered"`
	Message   json.RawMessage `json:"message"`
	CID       string          `json:"cid"`
	ID        uint64          `json:"id"`
	Code      string          `json:"code"`
}

// msg decodes a message frame's message.
func (f frame) msg(t *testing.T) wire.Message {
	t.Helper()
	var m wire.Message
	if err := json.Unmarshal(f.Message, &m); err != nil {
		t.Fatalf("message of %+v: %v", f, err)
	}
	return m
}

// serve runs a Server on a loopback port until the test ends and returns
// the server and its address.
func serve(t *testing.T) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// client is one WebSocket connection to the server.
type client struct {
	t  *testing.T
	nc net.Conn
	rw io.ReadWriter
}

func dial(t *testing.T, addr, user string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, "ws://"+addr+"/ws?user="+user)
	if err != nil {
		t.Fatalf("dial as %q: %v", user, err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &client{t: t, nc: nc, rw: nc}
	if br != nil {
		c.rw = struct {
			io.Reader
			io.Writer
		}{br, nc}
	}
	return c
}

// send writes one masked text frame of v as JSON ([]byte as it is).
func (c *client) send(v any) {
	c.t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := wsutil.WriteClientText(c.rw, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next reads the next data frame (or a pong, as type "pong") within a
// deadline.
func (c *client) next() frame {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := ws.ReadHeader(c.rw)
	if err != nil {
		c.t.Fatalf("read header: %v", err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.rw, p); err != nil {
		c.t.Fatalf("read payload: %v", err)
	}
	if h.Masked {
		c.t.Fatalf("server sent a masked frame")
	}
	switch h.OpCode {
	case ws.OpPong:
		return frame{Type: "pong", Code: string(p)}
	case ws.OpClose:
		code, _ := ws.ParseCloseFrameData(p)
		return frame{Type: "close", ID: uint64(code)}
	case ws.OpText:
	default:
		c.t.Fatalf("unexpected opcode %v", h.OpCode)
	}
	var f frame
	if err := json.Unmarshal(p, &f); err != nil {
		c.t.Fatalf("decode %q: %v", p, err)
	}
	return f
}

// expect reads the next frame and checks its type.
func (c *client) expect(typ string) frame {
	c.t.Helper()
	f := c.next()
	if f.Type != typ {
		c.t.Fatalf("got a %q frame %+v, want %q", f.Type, f, typ)
	}
	return f
}

// sync sends a ping and reads up to its pong: every frame sent before it
// has been handled, and the server queued nothing else for c meanwhile.
func (c *client) sync(payload string) {
	c.t.Helper()
	if err := wsutil.WriteClientMessage(c.rw, ws.OpPing, []byte(payload)); err != nil {
		c.t.Fatal(err)
	}
	if f := c.expect("pong"); f.Code != payload {
		c.t.Fatalf("pong payload %q, want %q", f.Code, payload)
	}
}

// closed checks that the server ends the connection.
func (c *client) closed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var err error
	for err == nil {
		_, err = io.Copy(io.Discard, c.rw)
		if err == nil {
			return // EOF
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatal("server did not close the connection")
	}
}

func join(c *client, room string) {
	c.t.Helper()
	c.send(wire.ClientFrame{Type: wire.TypeJoin, Room: room})
	f := c.expect(wire.TypeHistory)
	if f.Room != room || len(f.Items) != 0 || !f.Recovered {
		c.t.Fatalf("join %s: history %+v, want an empty recovered page", room, f)
	}
}

func TestWelcome(t *testing.T) {
	_, addr := serve(t)
	f := dial(t, addr, "alice").expect(wire.TypeWelcome)
	if f.User != "alice" || f.Protocol != wire.ProtocolVersion {
		t.Errorf("welcome %+v, want user alice, protocol %d", f, wire.ProtocolVersion)
	}
}

func TestRejectsWithoutUser(t *testing.T) {
	_, addr := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, _, _, err := ws.Dial(ctx, "ws://"+addr+"/ws")
	if err == nil {
		nc.Close()
		t.Fatal("upgrade without user succeeded")
	}
	if se, ok := err.(ws.StatusError); !ok || int(se) != 401 {
		t.Errorf("upgrade without user: %v, want status 401", err)
	}
}

// TestMessages follows messages through two rooms: every member gets the
// message frame, the sender then its ack; ids are global like stream
// sequences, prev links within a room.
func TestMessages(t *testing.T) {
	_, addr := serve(t)
	alice, bob := dial(t, addr, "alice"), dial(t, addr, "bob")
	alice.expect(wire.TypeWelcome)
	bob.expect(wire.TypeWelcome)
	join(alice, "r")
	join(bob, "r")
	join(alice, "s")

	steps := []struct {
		room, body, cid string
		id, prev        uint64
		bobGets         bool
	}{
		{"r", "hello", "c1", 1, 0, true},
		{"r", "again", "c2", 2, 1, true},
		{"s", "elsewhere", "c3", 3, 0, false},
		{"r", "back", "c4", 4, 2, true},
	}
	for _, st := range steps {
		alice.send(wire.ClientFrame{Type: wire.TypeMessage, Room: st.room, Body: st.body, CID: st.cid})
		want := wire.Message{ID: st.id, Prev: st.prev, Room: st.room, User: "alice", Body: st.body, Kind: wire.KindMessage, CID: st.cid}
		check := func(who string, f frame) {
			got := f.msg(t)
			if f.Room != st.room || got.TS == 0 {
				t.Errorf("%s got %+v for %s", who, f, st.cid)
			}
			got.TS = 0
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s got message %+v, want %+v", who, got, want)
			}
		}
		check("alice", alice.expect(wire.TypeMessage))
		if ack := alice.expect(wire.TypeAck); ack.CID != st.cid || ack.ID != st.id {
			t.Errorf("ack %+v, want cid %s id %d", ack, st.cid, st.id)
		}
		if st.bobGets {
			check("bob", bob.expect(wire.TypeMessage))
		}
	}
	bob.sync("nothing from s")
}

func TestErrors(t *testing.T) {
	_, addr := serve(t)
	c := dial(t, addr, "carol")
	c.expect(wire.TypeWelcome)
	tests := []struct {
		name string
		send any
		code string
		cid  string
		room string
	}{
		{"not joined", wire.ClientFrame{Type: wire.TypeMessage, Room: "r", Body: "hi", CID: "x1"}, wire.CodeNotJoined, "x1", "r"},
		{"bad json", []byte(`{"type":`), wire.CodeBadJSON, "", ""},
		{"unknown type", map[string]string{"type": "shout"}, wire.CodeUnknownType, "", ""},
		{"empty body", wire.ClientFrame{Type: wire.TypeMessage, Room: "r", CID: "x2"}, wire.CodeInvalidBody, "x2", "r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.send(tt.send)
			f := c.expect(wire.TypeError)
			if f.Code != tt.code || f.CID != tt.cid || f.Room != tt.room {
				t.Errorf("error frame %+v, want code %s cid %q room %q", f, tt.code, tt.cid, tt.room)
			}
		})
	}
}

// TestLeave: after leave (and after a disconnect) a member gets no more
// of the room's messages, and the server forgets it.
func TestLeave(t *testing.T) {
	s, addr := serve(t)
	alice, bob, dave := dial(t, addr, "alice"), dial(t, addr, "bob"), dial(t, addr, "dave")
	for _, c := range []*client{alice, bob, dave} {
		c.expect(wire.TypeWelcome)
		join(c, "r")
	}
	bob.send(wire.ClientFrame{Type: wire.TypeLeave, Room: "r"})
	bob.sync("left")
	_ = dave.nc.Close()
	members := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.rooms["r"].members)
	}
	for deadline := time.Now().Add(10 * time.Second); members() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("room r has %d members, want alice only", members())
		}
		time.Sleep(10 * time.Millisecond)
	}
	alice.send(wire.ClientFrame{Type: wire.TypeMessage, Room: "r", Body: "anyone?", CID: "a1"})
	alice.expect(wire.TypeMessage)
	alice.expect(wire.TypeAck)
	// The fan-out to members was queued before alice's ack.
	bob.sync("after")
	bob.send(wire.ClientFrame{Type: wire.TypeMessage, Room: "r", Body: "hi", CID: "b1"})
	if f := bob.expect(wire.TypeError); f.Code != wire.CodeNotJoined {
		t.Errorf("message after leave: %+v, want not_joined", f)
	}
}

// TestControlFrames: pings are answered with their payload, binary frames
// are ignored, a close is answered with a normal close and ends the
// connection.
func TestControlFrames(t *testing.T) {
	_, addr := serve(t)
	c := dial(t, addr, "erin")
	c.expect(wire.TypeWelcome)
	if err := wsutil.WriteClientBinary(c.rw, []byte(`{"type":"join","room":"r"}`)); err != nil {
		t.Fatal(err)
	}
	c.sync("p1")
	if err := wsutil.WriteClientMessage(c.rw, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")); err != nil {
		t.Fatal(err)
	}
	if f := c.expect("close"); f.ID != uint64(ws.StatusNormalClosure) {
		t.Errorf("close code %d, want %d", f.ID, ws.StatusNormalClosure)
	}
	c.closed()
}

// TestProtocolViolations: an unmasked client frame or one over 64 KiB ends
// the connection.
func TestProtocolViolations(t *testing.T) {
	_, addr := serve(t)
	tests := []struct {
		name  string
		write func(w io.Writer) error
	}{
		{"unmasked", func(w io.Writer) error {
			return ws.WriteFrame(w, ws.NewTextFrame([]byte(`{"type":"join","room":"r"}`)))
		}},
		{"too long", func(w io.Writer) error {
			return ws.WriteHeader(w, ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: ws.NewMask(), Length: 64<<10 + 1})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, addr, "mallory")
			c.t = t
			c.expect(wire.TypeWelcome)
			if err := tt.write(c.rw); err != nil {
				t.Fatal(err)
			}
			c.closed()
		})
	}
}

// TestServeStops: cancelling Serve's context closes the listener and every
// connection, and Serve returns nil once the handlers are done.
func TestServeStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- New(slog.New(slog.DiscardHandler)).Serve(ctx, ln) }()
	c := dial(t, ln.Addr().String(), "frank")
	c.expect(wire.TypeWelcome)
	cancel()
	c.closed()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after Serve returned")
	}
}

// TestServeAcceptError: Serve returns an error when accepting fails for
// another reason than its context ending.
func TestServeAcceptError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := New(slog.New(slog.DiscardHandler)).Serve(context.Background(), ln); err == nil {
		t.Error("Serve on a closed listener returned nil")
	}
}
