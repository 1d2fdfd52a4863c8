package ws

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/ws/netpoll"
)

// Handler receives what a served connection reads.
type Handler interface {
	// Message handles one text or binary message; its payload is valid
	// until Message returns. Messages of one connection are handled one
	// at a time, in order; while Message runs nothing more is read from
	// that connection.
	Message(m Message)
	// Closed is called once, on its own goroutine, after reading ended
	// (close handshake, error, dead peer); it must call Conn.Finish.
	Closed()
}

// maxRound bounds the messages one poll worker reads from a connection
// before re-arming it, so that a flooding peer cannot keep a worker (bytes
// pipelined with the handshake, at most a few KiB, are read in one go).
const maxRound = 16

type pollState uint8

const (
	pollOff     pollState = iota // not polled
	pollArmed                    // waiting for readiness, no worker
	pollRunning                  // a worker is reading
	pollDone                     // reading ended
)

// errAborted ends a read round because the connection was terminated.
var errAborted = errors.New("websocket: connection terminated")

// Serve reads c in the background until it ends, handing messages to h.
// With a poller, an idle connection holds no goroutine; otherwise (or for
// connections that are not sockets) a reader goroutine runs. Serve
// returns at once; call Read on c no more.
func (t *Transport) Serve(c *Conn, h Handler) {
	if p := t.pollerOrNil(); p != nil {
		if sc, ok := c.nc.(syscall.Conn); ok && t.servePoll(p, c, sc, h) == nil {
			return
		}
	}
	go func() {
		for {
			m, err := c.Read()
			if err != nil {
				break
			}
			h.Message(m)
		}
		h.Closed()
	}()
}

// Polling reports whether Serve uses a poller.
func (t *Transport) Polling() bool { return t.pollerOrNil() != nil }

// Close stops the poller (after every served connection ended).
func (t *Transport) Close() error {
	t.pollOnce.Do(func() {}) // no poller may start after Close
	if t.poller != nil {
		return t.poller.Close()
	}
	return nil
}

func (t *Transport) pollerOrNil() *netpoll.Poller {
	t.pollOnce.Do(func() {
		if t.cfg.ReadMode == ReadGoroutine {
			return
		}
		p, err := netpoll.New(netpoll.Config{Workers: t.cfg.Workers})
		if err == nil {
			t.poller = p
		}
	})
	return t.poller
}

func (t *Transport) servePoll(p *netpoll.Poller, c *Conn, sc syscall.Conn, h Handler) error {
	d, err := p.Add(sc, c)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.pd, c.h, c.pstate = d, h, pollArmed
	pre := c.pre != nil
	c.mu.Unlock()
	// Stop the goroutine-style ping deadline set by newConn.
	_ = c.nc.SetReadDeadline(time.Time{})
	if pre {
		d.Dispatch() // bytes pipelined with the handshake: epoll won't tell
		return nil
	}
	if err := d.Arm(); err != nil {
		d.Remove()
		c.mu.Lock()
		c.pd, c.h, c.pstate = nil, nil, pollOff
		c.mu.Unlock()
		return err
	}
	return nil
}

// Ready reads what a polled connection has (netpoll.Handler); it runs on
// a poll worker.
func (c *Conn) Ready() {
	c.mu.Lock()
	if c.pstate != pollArmed {
		c.mu.Unlock()
		return // ended meanwhile
	}
	c.pstate = pollRunning
	c.mu.Unlock()

	err := c.readRound()
	if err == nil {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	c.mu.Lock()
	if err == nil && c.abort {
		err = errAborted
	}
	if err != nil {
		c.pstate = pollDone
		c.mu.Unlock()
		c.endPoll()
		return
	}
	c.pstate = pollArmed
	c.mu.Unlock()
	if err := c.pd.Arm(); err != nil {
		// The socket was closed underneath (a failed write).
		c.mu.Lock()
		ended := c.pstate == pollArmed
		if ended {
			c.pstate = pollDone
		}
		c.mu.Unlock()
		if ended {
			c.endPoll()
		}
	}
}

// readRound reads and handles the messages that are ready, up to
// maxRound (a fragmented message is always read to its end). nil means
// the connection waits for more.
func (c *Conn) readRound() error {
	for i := 0; ; i++ {
		if i >= maxRound && !c.rd.frag && c.pre == nil {
			c.rd.Release()
			return nil // the level-triggered poller reports the rest
		}
		c.mu.Lock()
		abort := c.abort
		c.mu.Unlock()
		if abort {
			return errAborted
		}
		// Each message gets ReadTimeout to arrive whole, however long the
		// handler took with the previous one.
		_ = c.nc.SetReadDeadline(time.Now().Add(c.t.cfg.ReadTimeout))
		// At a message boundary the first socket read must not wait: the
		// readiness may be spurious or already consumed.
		c.probe = !c.rd.frag
		m, err := c.rd.Next()
		c.probe = false
		if errors.Is(err, netpoll.ErrNoData) {
			c.rd.Release()
			return nil
		}
		if err != nil {
			c.readFailed(err)
			return err
		}
		c.mu.Lock()
		c.heard = true
		c.mu.Unlock()
		data, err := c.control(m)
		if err != nil {
			return err
		}
		if data {
			c.h.Message(m)
		}
	}
}

// readFailed sends the close frame a read error calls for.
func (c *Conn) readFailed(err error) {
	var ne net.Error
	switch code := CloseCode(err); {
	case code != 0:
		c.Close(code, err.Error())
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		c.closeAs(CodePolicy, "frame read timeout", labelReadTimeout)
	}
}

// terminate ends reading a polled connection now (dead peer, close
// handshake timed out).
func (c *Conn) terminate() {
	c.mu.Lock()
	switch c.pstate {
	case pollArmed:
		c.pstate = pollDone
		c.mu.Unlock()
		c.endPoll()
	case pollRunning:
		c.abort = true
		c.mu.Unlock()
		_ = c.nc.SetReadDeadline(time.Now()) // wake a worker waiting in Read
	default:
		c.mu.Unlock()
	}
}

// endPoll unregisters the connection and tells the handler, once.
func (c *Conn) endPoll() {
	c.pd.Remove()
	go c.h.Closed()
}

// source is what a connection's Reader reads: first the bytes pipelined
// with the handshake, then the socket; when probe is set, the first
// socket read does not wait (netpoll.ErrNoData when nothing is there).
type source struct{ c *Conn }

func (s source) Read(p []byte) (int, error) {
	c := s.c
	if c.pre != nil {
		n := copy(p, *c.pre)
		if *c.pre = (*c.pre)[n:]; len(*c.pre) == 0 {
			c.pre = nil
		}
		c.probe = false
		return n, nil
	}
	if c.probe {
		c.probe = false
		return c.pd.TryRead(p)
	}
	return c.nc.Read(p)
}
