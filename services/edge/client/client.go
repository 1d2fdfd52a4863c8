// Package client is a small Go client for Hubbub's WebSocket protocol v1.
// The tests, the load tool and bots use it; it speaks only the public
// protocol described in docs/protocol.md.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrClosed is returned by Next once the connection is closed and every
// received frame has been read.
var ErrClosed = errors.New("connection closed")

// Frame is one server frame: its type and the raw JSON.
type Frame struct {
	Type string
	Raw  json.RawMessage
}

// Decode unmarshals the frame into v (e.g. *wire.MessageFrame).
func (f Frame) Decode(v any) error {
	if err := json.Unmarshal(f.Raw, v); err != nil {
		return fmt.Errorf("decode %s frame: %w", f.Type, err)
	}
	return nil
}

// Client is one WebSocket connection. Frames are read in the background
// into an unbounded queue so that a test never stalls the server by not
// reading (use a raw connection to test a slow reader).
type Client struct {
	conn net.Conn

	mu        sync.Mutex
	cond      *sync.Cond
	queue     []Frame
	closed    bool
	closeCode ws.StatusCode
	closeText string
	readErr   error

	wmu sync.Mutex
}

// Options adjust Dial.
type Options struct {
	// Header is sent with the upgrade request (Origin, Authorization, Cookie).
	Header http.Header
	// Timeout bounds the dial and upgrade; default 10 s.
	Timeout time.Duration
}

// Dial connects to url (ws://host/ws?user=…).
func Dial(ctx context.Context, url string, o Options) (*Client, error) {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	d := ws.Dialer{}
	if o.Header != nil {
		d.Header = ws.HandshakeHeaderHTTP(o.Header)
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c := &Client{conn: conn}
	c.cond = sync.NewCond(&c.mu)
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	// Buffered: a frame header read straight from the socket costs a few
	// syscalls, which under -race makes this reader slower than a busy
	// server, and an edge closes a reader that falls behind (1013).
	go c.readLoop(bufio.NewReaderSize(r, 64<<10))
	return c, nil
}

func (c *Client) readLoop(r io.Reader) {
	rd := wsutil.Reader{Source: r, State: ws.StateClientSide, CheckUTF8: true}
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			c.finish(0, "", err)
			return
		}
		switch hdr.OpCode {
		case ws.OpClose:
			payload, _ := io.ReadAll(&rd)
			code, reason := ws.ParseCloseFrameData(payload)
			c.wmu.Lock()
			_ = ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))))
			c.wmu.Unlock()
			c.finish(code, reason, nil)
			return
		case ws.OpPing:
			payload, _ := io.ReadAll(&rd)
			c.wmu.Lock()
			_ = ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewPongFrame(payload)))
			c.wmu.Unlock()
			continue
		case ws.OpPong:
			_, _ = io.Copy(io.Discard, &rd)
			continue
		}
		data, err := io.ReadAll(&rd)
		if err != nil {
			c.finish(0, "", err)
			return
		}
		var head struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(data, &head)
		c.mu.Lock()
		c.queue = append(c.queue, Frame{Type: head.Type, Raw: data})
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (c *Client) finish(code ws.StatusCode, reason string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed, c.closeCode, c.closeText, c.readErr = true, code, reason, err
	_ = c.conn.Close()
	c.cond.Broadcast()
}

// Send marshals v and writes it as one text frame.
func (c *Client) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	return c.SendRaw(ws.OpText, b)
}

// SendRaw writes one frame with the given opcode and payload, unvalidated.
func (c *Client) SendRaw(op ws.OpCode, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := wsutil.WriteClientMessage(c.conn, op, payload); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// Next returns the next frame, waiting until ctx ends.
func (c *Client) Next(ctx context.Context) (Frame, error) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) == 0 {
		if c.closed {
			return Frame{}, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return Frame{}, fmt.Errorf("waiting for a frame: %w", err)
		}
		c.cond.Wait()
	}
	f := c.queue[0]
	c.queue = c.queue[1:]
	return f, nil
}

// take removes and returns the first queued frame for which match is true,
// waiting for one; the frames before it stay queued, in order.
func (c *Client) take(ctx context.Context, match func(Frame) bool) (Frame, error) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		// The whole queue each time: a concurrent Next may have taken
		// frames from its front meanwhile.
		if i := slices.IndexFunc(c.queue, match); i >= 0 {
			f := c.queue[i]
			c.queue = slices.Delete(c.queue, i, i+1)
			return f, nil
		}
		if c.closed {
			return Frame{}, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return Frame{}, fmt.Errorf("waiting for a frame: %w", err)
		}
		c.cond.Wait()
	}
}

// Await returns the next frame of type typ, discarding others.
func (c *Client) Await(ctx context.Context, typ string) (Frame, error) {
	for {
		f, err := c.Next(ctx)
		if err != nil {
			return Frame{}, fmt.Errorf("awaiting %s: %w", typ, err)
		}
		if f.Type == typ {
			return f, nil
		}
	}
}

// AwaitMatch returns the next frame for which match is true, discarding others.
func (c *Client) AwaitMatch(ctx context.Context, match func(Frame) bool) (Frame, error) {
	for {
		f, err := c.Next(ctx)
		if err != nil {
			return Frame{}, err
		}
		if match(f) {
			return f, nil
		}
	}
}

// Welcome reads the welcome frame.
func (c *Client) Welcome(ctx context.Context) (wire.Welcome, error) {
	var w wire.Welcome
	f, err := c.Await(ctx, wire.TypeWelcome)
	if err != nil {
		return w, err
	}
	return w, f.Decode(&w)
}

// Join sends a join (since nil: newest page) and returns the history frame.
func (c *Client) Join(ctx context.Context, room string, since *uint64) (wire.History, error) {
	var h wire.History
	if err := c.Send(wire.ClientFrame{Type: wire.TypeJoin, Room: room, Since: since}); err != nil {
		return h, err
	}
	f, err := c.AwaitMatch(ctx, func(f Frame) bool {
		if f.Type == wire.TypeError {
			return true
		}
		if f.Type != wire.TypeHistory {
			return false
		}
		var x wire.History
		return f.Decode(&x) == nil && x.Room == room
	})
	if err != nil {
		return h, err
	}
	if f.Type == wire.TypeError {
		var e wire.ErrorFrame
		_ = f.Decode(&e)
		return h, fmt.Errorf("join %s: %w", room, &wire.Error{Code: e.Code, Message: e.Message})
	}
	return h, f.Decode(&h)
}

// Say sends a message and waits for its ack (or the error frame with its
// cid), returning the id. Other frames that arrive meanwhile stay queued,
// in order, for Next: messages from others are not lost to a Say.
func (c *Client) Say(ctx context.Context, room, body, cid string) (uint64, error) {
	return c.Write(ctx, wire.ClientFrame{Type: wire.TypeMessage, Room: room, Body: body, CID: cid})
}

// Reply sends a message answering message replyTo of room, as Say.
func (c *Client) Reply(ctx context.Context, room string, replyTo uint64, body, cid string) (uint64, error) {
	return c.Write(ctx, wire.ClientFrame{Type: wire.TypeMessage, Room: room, Body: body, CID: cid, ReplyTo: replyTo})
}

// Edit replaces the body of message id (the user's own) of room, as Say:
// it returns the edit event's id.
func (c *Client) Edit(ctx context.Context, room string, id uint64, body, cid string) (uint64, error) {
	return c.Write(ctx, wire.ClientFrame{Type: wire.TypeEdit, Room: room, ID: id, Body: body, CID: cid})
}

// Delete deletes message id of room, as Say: it returns the delete
// event's id.
func (c *Client) Delete(ctx context.Context, room string, id uint64, cid string) (uint64, error) {
	return c.Write(ctx, wire.ClientFrame{Type: wire.TypeDelete, Room: room, ID: id, CID: cid})
}

// React gives (on) or takes back (!on) emoji on message id of room, as
// Say: it returns the reaction event's id.
func (c *Client) React(ctx context.Context, room string, id uint64, emoji string, on bool, cid string) (uint64, error) {
	return c.Write(ctx, wire.ClientFrame{Type: wire.TypeReact, Room: room, ID: id, Emoji: emoji, On: &on, CID: cid})
}

// Write sends f, a write with a cid (message, edit, delete, react), and
// waits for its ack or the error frame with its cid (returned as a
// *wire.Error), returning the acked id. Other frames that arrive
// meanwhile stay queued, in order, for Next.
func (c *Client) Write(ctx context.Context, f wire.ClientFrame) (uint64, error) {
	if err := c.Send(f); err != nil {
		return 0, err
	}
	cid := f.CID
	got, err := c.take(ctx, func(f Frame) bool {
		if f.Type != wire.TypeAck && f.Type != wire.TypeError {
			return false
		}
		var x struct {
			CID string `json:"cid"`
		}
		return f.Decode(&x) == nil && x.CID == cid
	})
	if err != nil {
		return 0, err
	}
	if got.Type == wire.TypeError {
		var e wire.ErrorFrame
		_ = got.Decode(&e)
		return 0, &wire.Error{Code: e.Code, Message: e.Message}
	}
	var a wire.Ack
	return a.ID, got.Decode(&a)
}

// CloseStatus reports whether the server closed the connection, and with
// which close code and reason.
func (c *Client) CloseStatus() (closed bool, code ws.StatusCode, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.closeCode, c.closeText
}

// WaitClosed waits until the connection is closed and returns the close code
// (0 if it ended without a close frame).
func (c *Client) WaitClosed(ctx context.Context) (ws.StatusCode, error) {
	for {
		_, err := c.Next(ctx)
		if errors.Is(err, ErrClosed) {
			_, code, _ := c.CloseStatus()
			return code, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// Close sends a normal close frame and closes the connection.
func (c *Client) Close() error {
	c.wmu.Lock()
	_ = ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	c.wmu.Unlock()
	c.finish(ws.StatusNormalClosure, "", nil)
	return nil
}

// Abort drops the TCP connection without a close frame (a dead peer).
func (c *Client) Abort() {
	c.finish(0, "", nil)
}
