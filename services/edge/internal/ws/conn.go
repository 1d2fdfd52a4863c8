// Package ws terminates WebSocket connections (RFC 6455) on top of
// github.com/gobwas/ws with a small memory footprint. An idle connection
// owns no goroutine and no buffer: Transport.Serve registers it with an
// epoll poller (package netpoll) and a pool worker reads a readable
// connection's frames into pooled buffers, hands messages to the
// connection's Handler and re-arms it (elsewhere than Linux, or with
// ReadGoroutine, one reader goroutine per connection does the same). The
// outbound queue is bounded (in bytes) and flushed by a writer goroutine
// that exists only while the queue is non-empty and writes every pending
// frame in one writev.
package ws

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	gws "github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws/netpoll"
	"github.com/hubbub-chat/hubbub/shared/defaults"
)

// ErrClosed is returned by Read once the close handshake is complete.
var ErrClosed = errors.New("websocket: connection closed")

// Config bounds one connection.
type Config struct {
	// MaxMessage is the largest client message in bytes (16 KiB);
	// bigger ones close the connection with 1009.
	MaxMessage int
	// SoftQueue is the outbound queue size in bytes above which sheddable
	// frames (typing, presence) are dropped (default 64 KiB).
	SoftQueue int
	// HardQueue is the outbound queue size in bytes above which the
	// connection is closed with 1013 (default 1 MiB).
	HardQueue int
	// PingInterval is how often the server pings (the caller drives pings
	// with Conn.Ping); a peer silent for two intervals is dropped. Zero
	// disables the read deadline.
	PingInterval time.Duration
	// WriteTimeout bounds one write of pending frames (default 10 s).
	WriteTimeout time.Duration
	// CloseTimeout is how long to wait for the peer's close reply (default 3 s).
	CloseTimeout time.Duration
	// HandshakeTimeout bounds writing the upgrade response (default 5 s).
	HandshakeTimeout time.Duration
	// ReadMode selects how served connections are read (ReadAuto).
	ReadMode ReadMode
	// ReadTimeout bounds reading the frames a poller reported readable
	// (default 5 s): a peer that sends part of a frame and stalls (a
	// slowloris) is closed with 1008 rather than holding a worker.
	ReadTimeout time.Duration
	// Workers bounds the poll workers reading and handling at once (1024).
	Workers int
	// Writers bounds the goroutines writing to polled connections whose
	// sockets have room (64); a connection whose socket is full gets a
	// writer goroutine of its own until its queue is empty.
	Writers int
}

// ReadMode selects how Transport.Serve reads connections.
type ReadMode string

// Read modes.
const (
	// ReadAuto polls where the platform allows (Linux), else ReadGoroutine.
	ReadAuto ReadMode = ""
	// ReadPoll registers connections with an epoll poller; idle ones have
	// no goroutine. Connections the poller cannot take (not a socket) get
	// a goroutine.
	ReadPoll ReadMode = "poll"
	// ReadGoroutine runs one reader goroutine per connection.
	ReadGoroutine ReadMode = "goroutine"
)

// ParseReadMode parses "auto", "poll" or "goroutine".
func ParseReadMode(s string) (ReadMode, error) {
	switch s {
	case "", "auto":
		return ReadAuto, nil
	case string(ReadPoll), string(ReadGoroutine):
		return ReadMode(s), nil
	}
	return "", fmt.Errorf("websocket read mode %q: want auto, poll or goroutine", s)
}

// Defaults for Config. DefaultPingInterval is the edge's ping interval
// (a zero Config.PingInterval disables pings here).
const (
	DefaultMaxMessage       = 16 << 10
	DefaultSoftQueue        = 64 << 10
	DefaultHardQueue        = 1 << 20
	DefaultPingInterval     = 30 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultCloseTimeout     = 3 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultReadTimeout      = 5 * time.Second
	DefaultWorkers          = netpoll.DefaultWorkers
	DefaultWriters          = 64
)

func (c Config) withDefaults() Config {
	defaults.Positive(&c.MaxMessage, DefaultMaxMessage)
	defaults.Positive(&c.HardQueue, DefaultHardQueue)
	defaults.Positive(&c.SoftQueue, min(DefaultSoftQueue, c.HardQueue/2))
	defaults.Positive(&c.WriteTimeout, DefaultWriteTimeout)
	defaults.Positive(&c.CloseTimeout, DefaultCloseTimeout)
	defaults.Positive(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	defaults.Positive(&c.ReadTimeout, DefaultReadTimeout)
	defaults.Positive(&c.Workers, DefaultWorkers)
	defaults.Positive(&c.Writers, DefaultWriters)
	return c
}

// Observer receives transport events for metrics. Methods must not block.
type Observer interface {
	// Shed is called when a sheddable frame is dropped.
	Shed(f *frame.Frame)
	// QueueBytes reports a change of queued outbound bytes.
	QueueBytes(delta int)
	// Overflow is called when a connection passes its hard queue bound
	// (it is then closed with 1013).
	Overflow()
}

type nopObserver struct{}

func (nopObserver) Shed(*frame.Frame) {}
func (nopObserver) QueueBytes(int)    {}
func (nopObserver) Overflow()         {}

// Transport upgrades HTTP requests to Conns sharing one buffer pool and
// configuration.
type Transport struct {
	cfg  Config
	pool *Pool
	obs  Observer
	ping *frame.Frame

	pollOnce sync.Once
	poller   *netpoll.Poller // nil: goroutine per connection
	writers  *netpoll.Pool   // write turns of polled connections
}

// NewTransport returns a Transport; obs may be nil.
func NewTransport(cfg Config, obs Observer) *Transport {
	if obs == nil {
		obs = nopObserver{}
	}
	cfg = cfg.withDefaults()
	return &Transport{cfg: cfg, pool: NewPool(), obs: obs, ping: frame.Control(frame.OpPing, nil), writers: netpoll.NewPool(cfg.Writers)}
}

// Config returns the effective configuration.
func (t *Transport) Config() Config { return t.cfg }

// Upgrade performs the WebSocket handshake on r and hijacks the
// connection. On error the HTTP response has been written and the
// connection closed.
func (t *Transport) Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	up := gws.HTTPUpgrader{Timeout: t.cfg.HandshakeTimeout}
	nc, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	// Drop the HTTP server's bufio buffers (8 KiB): keep only bytes the
	// client pipelined after the handshake, if any.
	var pre []byte
	if n := rw.Reader.Buffered(); n > 0 {
		pre = make([]byte, n)
		if _, err := io.ReadFull(rw.Reader, pre); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("websocket upgrade: %w", err)
		}
	}
	return t.newConn(nc, pre), nil
}

// NewConn wraps an already upgraded connection (tests, custom listeners).
func (t *Transport) NewConn(nc net.Conn) *Conn { return t.newConn(nc, nil) }

func (t *Transport) newConn(nc net.Conn, pre []byte) *Conn {
	c := &Conn{nc: nc, t: t}
	if len(pre) > 0 {
		c.pre = &pre
	}
	c.rd = Reader{r: source{c}, max: t.cfg.MaxMessage, pool: t.pool}
	c.touch()
	return c
}

// Conn is a server-side WebSocket connection. Read must be called from one
// goroutine (the connection's reader) and only on a connection not given to
// Transport.Serve; Send, Ping and Close may be called from any goroutine
// and never block.
type Conn struct {
	nc  net.Conn
	t   *Transport
	pd  *netpoll.Desc // polled connections (Transport.Serve with a poller)
	h   Handler       // set with pd
	pre *[]byte       // bytes the client sent with the handshake, not yet read
	rd  Reader

	mu         sync.Mutex
	queue      []*frame.Frame
	queued     int // bytes in queue
	inflight   int // bytes being written
	drained    chan struct{}
	closeCode  uint16
	label      closeLabel // why the connection is closing
	pstate     pollState
	probe      bool // next socket read must not wait (the reader's own)
	abort      bool // end the running read round
	heard      bool // something was read since the last ping
	pinged     bool // a ping was sent by Ping
	writing    bool
	closing    bool         // a close frame is queued or sent
	closeFrame *frame.Frame // the close frame queued when closing began
	peerClosed bool
	finished   bool
}

// RemoteAddr is the peer address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// touch pushes the read deadline two ping intervals ahead (goroutine
// reading only: a polled connection's liveness is checked by Ping).
func (c *Conn) touch() {
	if c.t.cfg.PingInterval > 0 && c.pd == nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(2 * c.t.cfg.PingInterval))
	}
}

// Read returns the next text or binary message. Pings are answered, pongs
// absorbed, a close frame completes the handshake (ErrClosed). On a framing
// error the matching close code is sent and the error returned. The payload
// is valid until the next Read.
func (c *Conn) Read() (Message, error) {
	for {
		m, err := c.rd.Next()
		if err != nil {
			var ne net.Error
			switch code := CloseCode(err); {
			case code != 0:
				c.Close(code, err.Error())
			case errors.As(err, &ne) && ne.Timeout():
				c.closeAs(CodeGoingAway, "ping timeout", labelPingTimeout)
			}
			return Message{}, err
		}
		c.mu.Lock()
		if !c.closing {
			c.touch()
		}
		c.mu.Unlock()
		data, err := c.control(m)
		if err != nil {
			return Message{}, err
		}
		if data {
			return m, nil
		}
	}
}

// control answers a control frame, as both read paths (Read and the
// served readRound) do: a ping is ponged, a pong ignored, a close
// completes the handshake (ErrClosed). data is true for a data message,
// which is the caller's.
func (c *Conn) control(m Message) (data bool, err error) {
	switch m.Op {
	case gws.OpPing:
		c.pong(m.Payload)
	case gws.OpPong:
	case gws.OpClose:
		c.peerClose(m.Payload)
		return false, ErrClosed
	default:
		return true, nil
	}
	return false, nil
}

// Send queues f. It returns false if f was shed or the connection is
// closing; a connection whose queue would pass the hard bound is closed
// with 1013.
func (c *Conn) Send(f *frame.Frame) bool {
	n := len(f.WS())
	c.mu.Lock()
	if c.closing || c.finished {
		c.mu.Unlock()
		return false
	}
	pending := c.queued + c.inflight
	if f.Class == frame.Sheddable && pending+n > c.t.cfg.SoftQueue {
		c.mu.Unlock()
		c.t.obs.Shed(f)
		return false
	}
	if pending > 0 && pending+n > c.t.cfg.HardQueue {
		c.t.obs.Overflow()
		c.startCloseLocked(CodeTryAgainLater, "slow consumer", labelSlowConsumer, true)
		c.mu.Unlock()
		return false
	}
	c.enqueueLocked(f, n)
	c.mu.Unlock()
	return true
}

// pong answers a ping with its payload.
func (c *Conn) pong(p []byte) {
	c.Send(frame.Control(frame.OpPong, append([]byte(nil), p...)))
}

// Ping queues a ping frame. The edge calls it once per PingInterval for
// each connection: a polled connection from which nothing was read since
// the previous Ping (the peer did not answer it) is closed with 1001 and
// its reading ended. That holds for a connection already closing too, so
// whatever stalls a close, the connection ends within two intervals.
func (c *Conn) Ping() {
	if c.t.cfg.PingInterval > 0 {
		c.mu.Lock()
		dead := c.pd != nil && c.pstate == pollArmed && c.pinged && !c.heard
		c.pinged, c.heard = true, false
		c.mu.Unlock()
		if dead {
			c.closeAs(CodeGoingAway, "ping timeout", labelPingTimeout)
			c.terminate()
			return
		}
	}
	c.Send(c.t.ping)
}

// QueuedBytes is the number of outbound bytes not yet written.
func (c *Conn) QueuedBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued + c.inflight
}

// Close starts the closing handshake with code: frames already queued are
// still written (except for 1013, which drops them), then the close frame.
// Read returns once the peer answers or CloseTimeout passes.
func (c *Conn) Close(code uint16, reason string) {
	c.closeAs(code, reason, labelCode)
}

func (c *Conn) closeAs(code uint16, reason string, label closeLabel) {
	c.mu.Lock()
	c.startCloseLocked(code, reason, label, code == CodeTryAgainLater)
	c.mu.Unlock()
}

// CloseReason is a metrics label for why the connection closed: "client"
// when the peer closed first, "transport" when the TCP connection failed,
// otherwise a label for the close code sent.
func (c *Conn) CloseReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.peerClosed:
		return "client"
	case c.label == labelCode:
		return CodeLabel(c.closeCode)
	case c.label != labelNone:
		return c.label.String()
	}
	return "transport"
}

// CloseCode is the close code sent to the peer (0 if none).
func (c *Conn) CloseCode() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode
}

// closeLabel says why a connection closes, for CloseReason.
type closeLabel uint8

const (
	labelNone         closeLabel = iota
	labelCode                    // CodeLabel of the close code sent
	labelClient                  // the peer closed first
	labelPingTimeout             // dead peer
	labelSlowConsumer            // outbound queue over the hard bound
	labelWriteError              // a socket write failed
	labelReadTimeout             // a frame did not arrive in ReadTimeout
)

func (l closeLabel) String() string {
	switch l {
	case labelClient:
		return "client"
	case labelPingTimeout:
		return "ping_timeout"
	case labelSlowConsumer:
		return "slow_consumer"
	case labelWriteError:
		return "write_error"
	case labelReadTimeout:
		return "read_timeout"
	}
	return ""
}

// CodeLabel names a close code for metrics.
func CodeLabel(code uint16) string {
	switch code {
	case CodeNormal:
		return "normal"
	case CodeGoingAway:
		return "going_away"
	case CodeProtocolError:
		return "protocol"
	case CodeInvalidData:
		return "invalid_utf8"
	case CodePolicy:
		return "policy"
	case CodeTooBig:
		return "too_big"
	case CodeInternal:
		return "internal"
	case CodeRestart:
		return "restart"
	case CodeTryAgainLater:
		return "try_again_later"
	case CodeAuthRequired:
		return "auth_required"
	case CodeAuthInvalid:
		return "auth_invalid"
	case CodeForbidden:
		return "forbidden"
	}
	return "other"
}

// Finish ends the connection once Read has returned an error: it waits
// (at most WriteTimeout) for queued frames and the close frame to be
// written, then closes the TCP connection and releases buffers. Call it
// exactly once, from the reader goroutine.
func (c *Conn) Finish() {
	c.rd.Release()
	c.mu.Lock()
	pd := c.pd
	c.pstate = pollDone
	c.mu.Unlock()
	if pd != nil {
		pd.Remove()
	}
	c.mu.Lock()
	c.finished = true
	var wait chan struct{}
	if c.writing {
		wait = make(chan struct{})
		c.drained = wait
	}
	c.mu.Unlock()
	if wait != nil {
		t := time.NewTimer(c.t.cfg.WriteTimeout)
		select {
		case <-wait:
		case <-t.C:
		}
		t.Stop()
	}
	_ = c.nc.Close()
	c.mu.Lock()
	if n := c.queued; n > 0 {
		c.queue, c.queued = nil, 0
		c.t.obs.QueueBytes(-n)
	}
	c.mu.Unlock()
}

// peerClose answers a close frame from the peer with the same code.
func (c *Conn) peerClose(payload []byte) {
	code := CodeNormal
	if len(payload) >= 2 {
		code = uint16(payload[0])<<8 | uint16(payload[1])
	}
	c.mu.Lock()
	if !c.closing {
		c.peerClosed = true
		c.startCloseLocked(code, "", labelClient, false)
	}
	c.mu.Unlock()
}

func (c *Conn) startCloseLocked(code uint16, reason string, label closeLabel, dropQueued bool) {
	if c.closing || c.finished {
		return
	}
	c.closing = true
	c.closeCode = code
	c.label = label
	if dropQueued && c.queued > 0 {
		c.t.obs.QueueBytes(-c.queued)
		clear(c.queue)
		c.queue = c.queue[:0]
		c.queued = 0
	}
	f := frame.Close(code, reason)
	c.closeFrame = f
	c.enqueueLocked(f, len(f.WS()))
	if c.pd != nil {
		time.AfterFunc(c.t.cfg.CloseTimeout, c.terminate)
	} else {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.t.cfg.CloseTimeout))
	}
}
