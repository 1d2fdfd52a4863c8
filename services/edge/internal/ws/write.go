package ws

import (
	"errors"
	"net"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
)

// The outbound queue is written by a writer that exists only while the
// queue is non-empty. For a polled connection the writer is a turn on the
// transport's writer pool that writes without waiting; only when the
// socket cannot take everything (a slow reader) does the connection get a
// goroutine of its own, which waits for the socket until the queue is
// empty. So a broadcast to thousands of healthy connections does not start
// thousands of goroutines (each of which the runtime keeps for good).

const (
	// maxCopyBatch is the largest batch of frames written by copying them
	// into one buffer; bigger batches are written with writev by a
	// connection goroutine.
	maxCopyBatch = 32 << 10
	// maxFlushRounds bounds the batches one pool turn writes before the
	// connection queues for another turn.
	maxFlushRounds = 8
)

func (c *Conn) enqueueLocked(f *frame.Frame, n int) {
	c.queue = append(c.queue, f)
	c.queued += n
	c.t.obs.QueueBytes(n)
	if !c.writing {
		c.writing = true
		if c.pd != nil {
			c.t.writers.Run((*flusher)(c))
		} else {
			go c.writeLoop()
		}
	}
}

// takeBatch moves the queue into the batch to write. When the queue is
// empty it ends the writer and reports false.
func (c *Conn) takeBatch() ([]*frame.Frame, int, bool) {
	c.mu.Lock()
	if len(c.queue) == 0 {
		c.writing = false
		c.queue = nil // an idle connection keeps no queue array
		d := c.drained
		c.drained = nil
		c.mu.Unlock()
		if d != nil {
			close(d)
		}
		return nil, 0, false
	}
	batch := c.queue
	c.queue = nil
	n := c.queued
	c.inflight, c.queued = n, 0
	c.mu.Unlock()
	return batch, n, true
}

// wrote ends the write of a batch of n bytes.
func (c *Conn) wrote(n int, err error) {
	c.mu.Lock()
	c.inflight = 0
	if err != nil {
		// The peer cannot take more: give up on the connection.
		c.closing = true
		if c.label == labelNone {
			c.label = labelWriteError
		}
		if q := c.queued; q > 0 {
			c.queued = 0
			n += q
		}
		clear(c.queue)
		c.queue = nil
		polled := c.pd != nil
		c.mu.Unlock()
		if polled {
			// Never close a polled socket here: closing it silently drops
			// it from the poller, the read side would never report the
			// end, and the session would stay for good (a ghost). End
			// reading instead; the handler's Finish closes the socket.
			c.terminate()
		} else {
			_ = c.nc.Close() // wakes the reader goroutine
		}
	} else {
		c.mu.Unlock()
	}
	c.t.obs.QueueBytes(-n)
}

// stalled is called when a blocking write timed out with rest unwritten:
// the peer stopped reading. It closes the connection with 1013 (unless it
// is already closing), drops what is still queued and gives the rest of
// the interrupted frame plus the close frame one CloseTimeout more, so a
// peer that resumes reading learns why it was closed (a peer that does not
// would otherwise get a bare TCP close). It returns the error that ends
// the write, nil if the close frame went out.
func (c *Conn) stalled(rest net.Buffers, err error) error {
	c.mu.Lock()
	if !c.closing {
		c.t.obs.Overflow()
		c.startCloseLocked(CodeTryAgainLater, "slow consumer", labelSlowConsumer, true)
	}
	var cf *frame.Frame // the close frame, if it is still queued
	for _, f := range c.queue {
		if f == c.closeFrame {
			cf = f
		}
	}
	dropped := c.queued
	clear(c.queue)
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
	c.t.obs.QueueBytes(-dropped)
	if cf == nil {
		return err
	}
	rest = append(rest, cf.WS())
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.t.cfg.CloseTimeout))
	_, err = rest.WriteTo(c.nc)
	return err
}

// writeAll writes bufs under WriteTimeout; a write that times out is
// handed to stalled.
func (c *Conn) writeAll(bufs net.Buffers) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.t.cfg.WriteTimeout))
	w := bufs // WriteTo consumes its receiver: w keeps what is unwritten
	_, err := w.WriteTo(c.nc)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		return c.stalled(w, err)
	}
	return err
}

// writeLoop writes queued frames in batches, waiting for the socket, until
// the queue is empty, then exits.
func (c *Conn) writeLoop() {
	var bufs net.Buffers
	for {
		batch, n, ok := c.takeBatch()
		if !ok {
			// Clear the deadline of the blocking writes: a polled
			// connection's later non-blocking writes (TryWrite through the
			// raw conn) would otherwise fail with a stale i/o timeout.
			_ = c.nc.SetWriteDeadline(time.Time{})
			return
		}
		var err error
		switch {
		case len(batch) == 1:
			err = c.writeAll(net.Buffers{batch[0].WS()})
		case n <= maxCopyBatch:
			// Copy small batches into one pooled buffer: writev would make
			// the socket keep an iovec array for as long as it lives.
			b := c.join(batch, n)
			err = c.writeAll(net.Buffers{b})
			c.t.pool.Put(b)
		default:
			bufs = bufs[:0]
			for _, f := range batch {
				bufs = append(bufs, f.WS())
			}
			err = c.writeAll(bufs)
			clear(bufs[:cap(bufs)])
		}
		clear(batch)
		c.wrote(n, err)
	}
}

// join copies a batch of n bytes into a pooled buffer.
func (c *Conn) join(batch []*frame.Frame, n int) []byte {
	b := c.t.pool.Get(n)[:0]
	for _, f := range batch {
		b = append(b, f.WS()...)
	}
	return b
}

// flusher is a polled connection's turn on the writer pool.
type flusher Conn

// Ready writes what the socket takes without waiting (netpoll.Handler).
func (f *flusher) Ready() { (*Conn)(f).flush() }

func (c *Conn) flush() {
	for range maxFlushRounds {
		batch, n, ok := c.takeBatch()
		if !ok {
			return
		}
		if n > maxCopyBatch {
			go c.finishBatch(batch, nil, nil, n)
			return
		}
		var b, pooled []byte
		if len(batch) == 1 {
			b = batch[0].WS()
		} else {
			b = c.join(batch, n)
			pooled = b
		}
		w, err := c.pd.TryWrite(b)
		if err == nil && w < len(b) {
			// The socket is full: wait for it on a goroutine of its own.
			go c.finishBatch(batch, b[w:], pooled, n)
			return
		}
		if pooled != nil {
			c.t.pool.Put(pooled)
		}
		clear(batch)
		c.wrote(n, err)
	}
	c.t.writers.Run((*flusher)(c)) // still writing: take another turn
}

// finishBatch writes the rest of a batch (all of it when rest is nil),
// waiting for the socket, then goes on as writeLoop.
func (c *Conn) finishBatch(batch []*frame.Frame, rest, pooled []byte, n int) {
	var err error
	if rest != nil {
		err = c.writeAll(net.Buffers{rest})
	} else {
		bufs := make(net.Buffers, 0, len(batch))
		for _, f := range batch {
			bufs = append(bufs, f.WS())
		}
		err = c.writeAll(bufs)
	}
	if pooled != nil {
		c.t.pool.Put(pooled)
	}
	clear(batch)
	c.wrote(n, err)
	c.writeLoop()
}
