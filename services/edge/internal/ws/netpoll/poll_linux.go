//go:build linux

package netpoll

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller waits for readiness of registered sockets with one epoll
// instance and one goroutine.
type Poller struct {
	epfd   int
	wakefd int
	done   chan struct{}

	shut atomic.Bool // Close began: epfd may be gone

	mu     sync.Mutex
	descs  []*Desc // by file descriptor number
	gen    uint32
	closed bool
	pool   *Pool
}

// Desc is a socket registered with a Poller.
type Desc struct {
	p   *Poller
	rc  syscall.RawConn
	h   Handler
	fd  int32
	gen uint32

	mu      sync.Mutex
	added   bool // in the epoll set
	removed bool
}

const armEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// New starts a poller.
func New(cfg Config) (*Poller, error) {
	cfg = cfg.withDefaults()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: eventfd: %w", err)
	}
	// The wake-up descriptor carries generation 0, which no socket gets.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return nil, fmt.Errorf("netpoll: epoll_ctl: %w", err)
	}
	p := &Poller{epfd: epfd, wakefd: wakefd, done: make(chan struct{}), pool: NewPool(cfg.Workers)}
	go p.loop(cfg.Events)
	return p, nil
}

// Close stops the poller goroutine and releases its descriptors.
// Registered sockets are not closed; handlers already queued still run.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.shut.Store(true)
	p.mu.Unlock()
	var one = [8]byte{1}
	if _, err := unix.Write(p.wakefd, one[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("netpoll: wake: %w", err)
	}
	<-p.done
	p.mu.Lock()
	clear(p.descs)
	p.descs = nil
	p.mu.Unlock()
	return errors.Join(unix.Close(p.epfd), unix.Close(p.wakefd))
}

// Add registers conn (whose handler is h) without arming it: call Arm to
// be told of readiness, or Dispatch to run h at once.
func (p *Poller) Add(conn syscall.Conn, h Handler) (*Desc, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	d := &Desc{p: p, rc: rc, h: h, fd: -1}
	var addErr error
	err = rc.Control(func(fd uintptr) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			addErr = ErrClosed
			return
		}
		p.gen++
		if p.gen == 0 {
			p.gen = 1
		}
		d.fd, d.gen = int32(fd), p.gen
		if int(fd) >= len(p.descs) {
			grown := make([]*Desc, max(int(fd)+1, 2*len(p.descs), 64))
			copy(grown, p.descs)
			p.descs = grown
		}
		p.descs[fd] = d // replaces a stale entry of a closed socket
	})
	if err != nil {
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	if addErr != nil {
		return nil, addErr
	}
	return d, nil
}

// Arm asks for one readiness report (readable, peer hang-up or error).
func (d *Desc) Arm() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.removed {
		return ErrRemoved
	}
	if d.p.shut.Load() {
		return ErrClosed
	}
	op := unix.EPOLL_CTL_MOD
	if !d.added {
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: armEvents, Fd: d.fd, Pad: int32(d.gen)}
	var cerr error
	// Control keeps the descriptor open while epoll_ctl runs, so the
	// number cannot meanwhile name another socket.
	err := d.rc.Control(func(fd uintptr) { cerr = unix.EpollCtl(d.p.epfd, op, int(fd), &ev) })
	if err != nil {
		return fmt.Errorf("netpoll: arm: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("netpoll: epoll_ctl: %w", cerr)
	}
	d.added = true
	return nil
}

// Remove unregisters the socket (idempotent). Call it before closing the
// socket; a socket closed first is dropped by the kernel anyway.
func (d *Desc) Remove() {
	d.mu.Lock()
	if d.removed {
		d.mu.Unlock()
		return
	}
	d.removed = true
	if d.added && !d.p.shut.Load() {
		_ = d.rc.Control(func(fd uintptr) { _ = unix.EpollCtl(d.p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	}
	d.mu.Unlock()
	p := d.p
	p.mu.Lock()
	if int(d.fd) < len(p.descs) && p.descs[d.fd] == d {
		p.descs[d.fd] = nil
	}
	p.mu.Unlock()
}

// TryWrite writes what the socket takes of b without waiting: n < len(b)
// with a nil error when the socket buffer is full.
func (d *Desc) TryWrite(b []byte) (int, error) {
	var n int
	var werr error
	err := d.rc.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

// TryRead reads what the socket holds without waiting: ErrNoData when
// nothing is there, io.EOF at the end of the stream. Deadlines set on the
// connection apply: an expired read deadline fails it.
func (d *Desc) TryRead(b []byte) (int, error) {
	var n int
	var rerr error
	err := d.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), b)
			if rerr != syscall.EINTR {
				return true
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, ErrNoData
	case rerr != nil:
		return 0, rerr
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (p *Poller) loop(size int) {
	defer close(p.done)
	events := make([]unix.EpollEvent, size)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		var start int
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		q := p.pool
		q.mu.Lock()
		for i := range events[:n] {
			ev := &events[i]
			gen := uint32(ev.Pad)
			if gen == 0 || int(ev.Fd) >= len(p.descs) {
				continue
			}
			if d := p.descs[ev.Fd]; d != nil && d.gen == gen {
				if q.pushLocked(d.h) {
					start++
				}
			}
		}
		q.mu.Unlock()
		p.mu.Unlock()
		for range start {
			go q.work()
		}
	}
}
