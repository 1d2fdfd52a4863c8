package topology_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// serverFrame is any frame the edge sends; "message" is an object in a
// message frame and a string in an error frame.
type serverFrame struct {
	Type      string          `json:"type"`
	Items     []wire.Message  `json:"items"`
	Recovered bool            `json:"recovered"`
	Message   json.RawMessage `json:"message"`
	CID       string          `json:"cid"`
	ID        uint64          `json:"id"`
	Code      string          `json:"code"`
}

// client is a chat user on a WebSocket, the way a browser tab behaves: it
// keeps its view of the room as a chain of messages, reconnects to the next
// edge when its connection dies and resumes with since = the last id seen,
// and resends unacknowledged messages with the same cid.
type client struct {
	user string
	room string
	urls []string // edges, in the order they are tried

	mu          sync.Mutex
	conn        net.Conn
	connected   bool
	connections int
	edge        string
	view        []wire.Message
	acks        map[string]uint64    // cid -> acked id
	pending     map[string]time.Time // cid -> last sent, not acked yet
	bodies      map[string]string
	violations  []string
	errorCodes  map[string]int
	events      []string
	seq         int

	wmu sync.Mutex // one writer at a time on conn
}

func newClient(user, room string, urls []string) *client {
	return &client{
		user: user, room: room, urls: urls,
		acks: map[string]uint64{}, pending: map[string]time.Time{}, bodies: map[string]string{},
		errorCodes: map[string]int{},
	}
}

// run connects and keeps the client connected until ctx ends. A lost
// connection is retried on the next edge, as behind a load balancer.
func (c *client) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for i := 0; ctx.Err() == nil; i++ {
		url := c.urls[i%len(c.urls)]
		conn, r, err := c.dial(ctx, url)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		c.read(ctx, conn, r, url)
	}
}

func (c *client) dial(ctx context.Context, url string) (net.Conn, io.Reader, error) {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(dctx, url+"?user="+c.user)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", url, err)
	}
	var r io.Reader = conn
	if br != nil {
		r = br
	}
	c.mu.Lock()
	since := c.last()
	c.conn = conn
	c.connections++
	c.edge = url
	c.events = append(c.events, fmt.Sprintf("connected to %s since %d", url, since))
	c.mu.Unlock()
	if err := c.write(c.joinFrame(since)); err != nil {
		_ = conn.Close()
		c.mu.Lock()
		c.events = append(c.events, "join failed: "+err.Error())
		c.mu.Unlock()
		return nil, nil, err
	}
	return conn, r, nil
}

func (c *client) joinFrame(since uint64) map[string]any {
	join := map[string]any{"type": wire.TypeJoin, "room": c.room}
	if since > 0 {
		join["since"] = since
	}
	return join
}

// read handles frames until the connection ends.
func (c *client) read(ctx context.Context, conn net.Conn, r io.Reader, url string) {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer func() {
		c.mu.Lock()
		c.connected = false
		c.conn = nil
		c.mu.Unlock()
		_ = conn.Close()
	}()
	br := bufio.NewReader(r)
	var text []byte
	ended := func(reason string) {
		if ctx.Err() == nil {
			c.mu.Lock()
			c.events = append(c.events, fmt.Sprintf("lost %s: %s", url, reason))
			c.mu.Unlock()
		}
	}
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			ended(err.Error())
			return
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(br, payload); err != nil {
			ended(err.Error())
			return
		}
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			c.wmu.Lock()
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			err := ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewPongFrame(payload)))
			c.wmu.Unlock()
			if err != nil {
				ended("pong: " + err.Error())
				return
			}
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(payload)
			ended(fmt.Sprintf("close %d %s", code, reason))
			return
		case ws.OpText, ws.OpContinuation:
			text = append(text, payload...)
			if !h.Fin {
				continue
			}
			c.handle(text)
			text = nil
		}
	}
}

func (c *client) handle(data []byte) {
	var f serverFrame
	if err := json.Unmarshal(data, &f); err != nil {
		c.violate("undecodable frame %q: %v", data, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.Type {
	case wire.TypeHistory:
		if !f.Recovered {
			c.violateLocked("history frame with recovered=false after id %d", c.last())
		}
		for _, m := range f.Items {
			c.applyLocked(m)
		}
		c.connected = true
	case wire.TypeMessage:
		var m wire.Message
		if err := json.Unmarshal(f.Message, &m); err != nil {
			c.violateLocked("bad message frame %s", data)
			return
		}
		c.applyLocked(m)
	case wire.TypeAck:
		if prev, ok := c.acks[f.CID]; ok && prev != f.ID {
			c.violateLocked("cid %s acked as %d and as %d", f.CID, prev, f.ID)
		}
		c.acks[f.CID] = f.ID
		delete(c.pending, f.CID)
	case wire.TypeError:
		c.errorCodes[f.Code]++
		if f.CID == "" && !c.connected && f.Code == wire.CodeUnavailable {
			// the join was refused for now ("try again"): retry shortly
			c.events = append(c.events, "join refused: "+f.Code)
			time.AfterFunc(300*time.Millisecond, func() {
				c.mu.Lock()
				since := c.last() // live messages may have arrived meanwhile
				c.mu.Unlock()
				_ = c.write(c.joinFrame(since))
			})
		}
		if _, ok := c.pending[f.CID]; ok {
			// not stored (unavailable, rate limited...): resend later
			c.pending[f.CID] = time.Now()
		}
	}
}

// applyLocked extends the view: each message must follow the last one.
func (c *client) applyLocked(m wire.Message) {
	last := c.last()
	switch {
	case last != 0 && m.ID <= last:
		c.violateLocked("duplicate or out of order: id %d after %d", m.ID, last)
		return
	case last != 0 && m.Prev != last:
		c.violateLocked("gap: id %d has prev %d, last seen %d", m.ID, m.Prev, last)
	}
	c.view = append(c.view, m)
}

func (c *client) last() uint64 {
	if len(c.view) == 0 {
		return 0
	}
	return c.view[len(c.view)-1].ID
}

func (c *client) violate(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violateLocked(format, args...)
}

func (c *client) violateLocked(format string, args ...any) {
	c.violations = append(c.violations, fmt.Sprintf(format, args...))
}

func (c *client) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return net.ErrClosed
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	return ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewTextFrame(b)))
}

// sendNew sends a new message with a fresh cid.
func (c *client) sendNew() {
	c.mu.Lock()
	if !c.connected {
		c.mu.Unlock()
		return
	}
	c.seq++
	cid := fmt.Sprintf("%s-%d", c.user, c.seq)
	c.bodies[cid] = fmt.Sprintf("message %d from %s", c.seq, c.user)
	c.pending[cid] = time.Now()
	body := c.bodies[cid]
	c.mu.Unlock()
	_ = c.write(map[string]any{"type": wire.TypeMessage, "room": c.room, "body": body, "cid": cid})
}

// resend sends again, with the same cid, every message not acked within
// olderThan (or refused with an error frame).
func (c *client) resend(olderThan time.Duration) {
	c.mu.Lock()
	if !c.connected {
		c.mu.Unlock()
		return
	}
	var cids []string
	for cid, at := range c.pending {
		// a few at a time: the edge limits messages per connection
		if time.Since(at) > olderThan && len(cids) < 3 {
			cids = append(cids, cid)
			c.pending[cid] = time.Now()
		}
	}
	c.mu.Unlock()
	for _, cid := range cids {
		_ = c.write(map[string]any{"type": wire.TypeMessage, "room": c.room, "body": c.bodies[cid], "cid": cid})
	}
}

type snapshot struct {
	view        []wire.Message
	acks        map[string]uint64
	pending     int
	connected   bool
	connections int
	edge        string
	violations  []string
	errorCodes  map[string]int
	events      []string
}

func (c *client) snapshot() snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := snapshot{
		view: append([]wire.Message(nil), c.view...), acks: map[string]uint64{},
		pending: len(c.pending), connected: c.connected, connections: c.connections, edge: c.edge,
		violations: append([]string(nil), c.violations...), errorCodes: map[string]int{},
		events: append([]string(nil), c.events...),
	}
	for k, v := range c.acks {
		s.acks[k] = v
	}
	for k, v := range c.errorCodes {
		s.errorCodes[k] = v
	}
	return s
}
