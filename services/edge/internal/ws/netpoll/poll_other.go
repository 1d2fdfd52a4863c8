//go:build !linux

package netpoll

import "syscall"

// Poller is unavailable on this platform: New returns ErrUnsupported.
type Poller struct {
	pool *Pool
}

// Desc is a socket registered with a Poller.
type Desc struct {
	p *Poller
	h Handler
}

// New returns ErrUnsupported.
func New(Config) (*Poller, error) { return nil, ErrUnsupported }

// Close does nothing.
func (p *Poller) Close() error { return nil }

// Add returns ErrUnsupported.
func (p *Poller) Add(syscall.Conn, Handler) (*Desc, error) { return nil, ErrUnsupported }

// Arm returns ErrUnsupported.
func (d *Desc) Arm() error { return ErrUnsupported }

// Remove does nothing.
func (d *Desc) Remove() {}

// TryWrite returns ErrUnsupported.
func (d *Desc) TryWrite([]byte) (int, error) { return 0, ErrUnsupported }

// TryRead returns ErrUnsupported.
func (d *Desc) TryRead([]byte) (int, error) { return 0, ErrUnsupported }
