package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/framescan"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Limits of the lean client.
const (
	readBufSize  = 2048
	maxFrameSize = 8 << 20
	writeTimeout = 10 * time.Second
)

// errServerClosed reports a close frame from the server.
var errServerClosed = errors.New("server closed the connection")

// errBadFrame reports a frame the client cannot accept.
var errBadFrame = errors.New("bad frame")

// wsClient is one WebSocket connection with no goroutine of its own except
// its reader. Fields without a comment are owned by the reader goroutine.
type wsClient struct {
	f    *fleet
	spec *ConnectSpec
	g    int
	room string
	user string
	url  int // index in spec.URLs in use

	wmu   sync.Mutex // guards nc writes and wbuf
	nc    net.Conn
	wbuf  []byte
	seq   uint64
	hdr   []byte
	pay   []byte
	fr    framescan.Frame
	alive atomic.Bool // connected and joined (senders skip others)

	lastID   uint64
	joined   bool
	resuming bool

	// Reconnect bookkeeping (under f.mu when read by stats).
	affected   bool
	resumedAt  int64
	dirtyAfter bool // a gap/dup/unrecovered since the disconnect
	unrecov    bool
}

// dial connects, reads the welcome, joins the room (with since when
// resuming) and waits for the history frame.
func (c *wsClient) dial(timeout time.Duration) (*bufio.Reader, error) {
	d := ws.Dialer{Timeout: timeout, ReadBufferSize: readBufSize}
	url := c.spec.URLs[c.url] + "?user=" + c.user
	nc, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, readBufSize)
	}
	c.wmu.Lock()
	c.nc = nc
	c.wmu.Unlock()
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = nc.SetReadDeadline(time.Time{}) }()
	join := []byte(`{"type":"join","room":"` + c.room + `"`)
	c.resuming = c.joined
	if c.resuming {
		join = append(join, `,"since":`...)
		join = strconv.AppendUint(join, c.lastID, 10)
	}
	join = append(join, '}')
	if err := c.write(join); err != nil {
		_ = nc.Close()
		return nil, err
	}
	for {
		data, buf, err := c.readFrame(br)
		if err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("join %s: %w", c.room, err)
		}
		if data == nil {
			continue
		}
		done, err := c.handle(data)
		c.f.putBuf(buf)
		if err != nil {
			_ = nc.Close()
			return nil, err
		}
		if done {
			return br, nil
		}
	}
}

// write sends one masked text frame.
func (c *wsClient) write(payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(ws.OpText, payload)
}

func (c *wsClient) writeLocked(op ws.OpCode, payload []byte) error {
	if c.nc == nil {
		return net.ErrClosed
	}
	b := c.wbuf[:0]
	b = append(b, 0x80|byte(op))
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	var mask [4]byte
	r := rand.Uint32()
	mask[0], mask[1], mask[2], mask[3] = byte(r), byte(r>>8), byte(r>>16), byte(r>>24)
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	ws.Cipher(b[start:], mask, 0)
	c.wbuf = b
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// send writes one chat message of this run, stamped with the send time.
func (c *wsClient) send(tag string, bodySize int) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	now := time.Now().UnixNano()
	c.seq++
	p := c.pay[:0]
	p = append(p, `{"type":"message","room":"`...)
	p = append(p, c.room...)
	p = append(p, `","body":"bench `...)
	p = append(p, tag...)
	p = append(p, ' ')
	p = strconv.AppendInt(p, now, 10)
	for n := len("bench   ") + len(tag) + 19; n < bodySize; n++ {
		if n == len("bench   ")+len(tag)+19 {
			p = append(p, ' ')
		}
		p = append(p, 'x')
	}
	p = append(p, `","cid":"`...)
	p = append(p, tag...)
	p = append(p, '.')
	p = strconv.AppendInt(p, now, 10)
	p = append(p, `"}`...)
	c.pay = p
	return c.writeLocked(ws.OpText, p)
}

// readFrame returns the next data frame's payload in a pooled buffer the
// caller returns with c.f.putBuf, or nil after handling a control frame.
func (c *wsClient) readFrame(br *bufio.Reader) ([]byte, *[]byte, error) {
	var buf *[]byte
	fail := func(err error) ([]byte, *[]byte, error) {
		if buf != nil {
			c.f.putBuf(buf)
		}
		return nil, nil, err
	}
	n := 0
	for {
		h, err := ws.ReadHeaderBuffer(br, c.hdr)
		if err != nil {
			return fail(err)
		}
		if h.Length > maxFrameSize || int64(n)+h.Length > maxFrameSize {
			return fail(fmt.Errorf("%w: %d bytes", errBadFrame, h.Length))
		}
		if h.OpCode.IsControl() {
			var ctl [125]byte
			if h.Length > 125 {
				return fail(fmt.Errorf("%w: control frame of %d bytes", errBadFrame, h.Length))
			}
			p := ctl[:h.Length]
			if _, err := io.ReadFull(br, p); err != nil {
				return fail(err)
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				c.wmu.Lock()
				err = c.writeLocked(ws.OpPong, p)
				c.wmu.Unlock()
				if err != nil {
					return fail(err)
				}
			case ws.OpClose:
				code, _ := ws.ParseCloseFrameDataUnsafe(p)
				c.f.closeCode(int(code))
				c.wmu.Lock()
				_ = c.writeLocked(ws.OpClose, ws.NewCloseFrameBody(code, ""))
				c.wmu.Unlock()
				return fail(fmt.Errorf("%w: %d", errServerClosed, code))
			}
			if buf == nil {
				return nil, nil, nil
			}
			continue
		}
		if buf == nil {
			buf = c.f.getBuf()
		}
		need := n + int(h.Length)
		if cap(*buf) < need {
			nb := make([]byte, need, max(need, 2*cap(*buf)))
			copy(nb, (*buf)[:n])
			*buf = nb
		}
		b := (*buf)[:need]
		if _, err := io.ReadFull(br, b[n:]); err != nil {
			return fail(err)
		}
		if h.Masked {
			ws.Cipher(b[n:], h.Mask, 0)
		}
		n = need
		*buf = b
		if h.Fin {
			return b, buf, nil
		}
	}
}

// handle processes one text frame. It reports true when a history frame
// completed the pending join.
func (c *wsClient) handle(data []byte) (bool, error) {
	f := c.f
	f.frames.Add(1)
	if err := framescan.Scan(data, &c.fr); err != nil {
		return false, fmt.Errorf("%w: %w", errBadFrame, err)
	}
	fr := &c.fr
	switch string(fr.Type) {
	case wire.TypeMessage:
		c.chain(fr.MsgID, fr.MsgPrev)
		if rest, ok := bytes.CutPrefix(fr.Body, f.bodyPrefix.Load().([]byte)); ok {
			if sent, ok := digits(firstField(rest)); ok {
				f.received.Add(1)
				now := time.Now().UnixNano()
				f.latency.Record(time.Duration(now - sent))
				f.noteRecv(now)
			}
		}
	case wire.TypeAck:
		if rest, ok := bytes.CutPrefix(fr.CID, f.cidPrefix.Load().([]byte)); ok {
			if sent, ok := digits(rest); ok {
				f.latencyAck.Record(time.Duration(time.Now().UnixNano() - sent))
				f.ack(c.room)
			}
		}
	case wire.TypeError:
		f.errorCode(string(fr.Code))
		if (!c.joined || c.resuming) && string(fr.Room) == c.room {
			// The join was refused (e.g. history unavailable): fail fast.
			return false, fmt.Errorf("%w: join refused: %s", errBadFrame, fr.Code)
		}
	case wire.TypeHistory:
		var h wire.History
		if err := json.Unmarshal(data, &h); err != nil {
			return false, fmt.Errorf("%w: history: %w", errBadFrame, err)
		}
		if h.Room != c.room {
			return false, nil
		}
		if c.resuming {
			if !h.Recovered {
				c.noteDirty(true)
			}
			for _, m := range h.Items {
				c.chain(m.ID, m.Prev)
			}
		} else {
			// The newest page: check its internal chain, then follow it.
			for i, m := range h.Items {
				if i > 0 && m.Prev != h.Items[i-1].ID {
					f.gaps.Add(1)
				}
			}
			if n := len(h.Items); n > 0 && h.Items[n-1].ID > c.lastID {
				c.lastID = h.Items[n-1].ID
			}
		}
		if !c.joined || c.resuming {
			c.joined = true
			if c.resuming {
				c.resuming = false
				f.noteResumed(c)
			}
			return true, nil
		}
	}
	return false, nil
}

// chain checks that message id follows the client's view of its room.
func (c *wsClient) chain(id, prev uint64) {
	switch {
	case id <= c.lastID && c.lastID != 0:
		c.f.dups.Add(1)
		c.noteDirty(false)
		return
	case prev != c.lastID && (c.joined || c.lastID != 0):
		c.f.gaps.Add(1)
		c.noteDirty(false)
	}
	c.lastID = id
}

func (c *wsClient) noteDirty(unrecovered bool) {
	if !c.affected {
		return
	}
	c.f.mu.Lock()
	c.dirtyAfter = true
	if unrecovered {
		c.unrecov = true
	}
	c.f.mu.Unlock()
}

// digits parses a non-negative decimal integer without allocating.
func digits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

// firstField returns b up to the first space.
func firstField(b []byte) []byte {
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		return b[:i]
	}
	return b
}

// run connects the client and then reads until the fleet closes, resuming
// on another URL after a drop when the spec asks for it.
func (c *wsClient) run(ctx context.Context, connected func(error)) {
	timeout := c.spec.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	start := time.Now()
	br, err := c.dial(timeout)
	connected(err)
	if err != nil {
		return
	}
	c.f.connectTime.Record(time.Since(start))
	for {
		c.alive.Store(true)
		err := c.readLoop(br)
		c.alive.Store(false)
		c.wmu.Lock()
		_ = c.nc.Close()
		c.wmu.Unlock()
		if ctx.Err() != nil {
			return
		}
		c.f.disconnects.Add(1)
		c.f.lost(err)
		if !c.spec.Reconnect {
			return
		}
		c.f.noteAffected(c)
		for attempt := 0; ; attempt++ {
			wait := time.Duration(rand.Int64N(int64(c.spec.Jitter) + 1))
			if attempt > 0 {
				wait = 100*time.Millisecond + wait/4
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if n := len(c.spec.URLs); n > 1 {
				c.url = (c.url + 1 + rand.IntN(n-1)) % n
			}
			br, err = c.dial(timeout)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
		}
	}
}

func (c *wsClient) readLoop(br *bufio.Reader) error {
	for {
		data, buf, err := c.readFrame(br)
		if err != nil {
			return err
		}
		if data == nil {
			continue
		}
		_, err = c.handle(data)
		c.f.putBuf(buf)
		if err != nil {
			return err
		}
	}
}

func (c *wsClient) close() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.nc != nil {
		_ = c.writeLocked(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		_ = c.nc.Close()
	}
}
