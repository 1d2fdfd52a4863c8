// Package admit caps the connections one edge holds, in total and per
// client address, so that one address (a script, a misbehaving proxy)
// cannot take the edge's file descriptors and memory from everyone else.
// The client address is the TCP peer, or, when the peer is a trusted
// proxy, the nearest untrusted address in X-Forwarded-For.
package admit

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
)

// Errors Acquire returns; callers branch on them to refuse clearly.
var (
	// ErrEdgeFull: the edge holds Config.MaxConns connections.
	ErrEdgeFull = errors.New("admit: edge is at its connection cap")
	// ErrAddressFull: the client address holds Config.MaxConnsPerIP.
	ErrAddressFull = errors.New("admit: too many connections from this address")
)

// Defaults.
const (
	// DefaultMaxConnsPerIP is generous enough for an office or a carrier
	// NAT behind one address.
	DefaultMaxConnsPerIP = 10000
	// reservedFiles are descriptors kept for everything but client
	// connections (NATS, listeners, logs) when MaxConns defaults from the
	// process's open-file limit.
	reservedFiles = 1024
)

// Config sets the caps. Zero values take the defaults noted.
type Config struct {
	// MaxConns caps the edge's connections, WebSocket and SSE (default:
	// the open-file limit less 1024, at least 1000, so that accept never
	// fails for want of descriptors).
	MaxConns int
	// MaxConnsPerIP caps the connections from one client address
	// (DefaultMaxConnsPerIP). IPv6 clients are counted per /64, the block
	// one subscriber usually gets.
	MaxConnsPerIP int
	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// (e.g. the load balancer's). Empty: the header is ignored.
	TrustedProxies []netip.Prefix
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxConns <= 0 {
		c.MaxConns = 1000
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur > reservedFiles+1000 && rl.Cur < 1<<31 {
			c.MaxConns = int(rl.Cur) - reservedFiles
		}
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	return c
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes or bare
// addresses ("10.0.0.0/8,192.0.2.7").
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Gate counts the connections an edge holds.
type Gate struct {
	cfg Config

	mu     sync.Mutex
	total  int
	byAddr map[netip.Addr]int
}

// New returns a gate with cfg (defaults filled).
func New(cfg Config) *Gate {
	return &Gate{cfg: cfg.WithDefaults(), byAddr: make(map[netip.Addr]int)}
}

// Config returns the effective configuration.
func (g *Gate) Config() Config { return g.cfg }

// Ticket is one admitted connection; Release it exactly once.
type Ticket struct {
	g    *Gate
	addr netip.Addr
	once sync.Once
}

// Release gives the connection's place back.
func (t *Ticket) Release() {
	t.once.Do(func() {
		g := t.g
		g.mu.Lock()
		g.total--
		if n := g.byAddr[t.addr] - 1; n > 0 {
			g.byAddr[t.addr] = n
		} else {
			delete(g.byAddr, t.addr)
		}
		g.mu.Unlock()
	})
}

// Acquire admits one more connection from the client of r, or fails with
// ErrEdgeFull or ErrAddressFull.
func (g *Gate) Acquire(r *http.Request) (*Ticket, error) {
	addr := bucket(g.ClientAddr(r))
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.total >= g.cfg.MaxConns {
		return nil, ErrEdgeFull
	}
	if g.byAddr[addr] >= g.cfg.MaxConnsPerIP {
		return nil, ErrAddressFull
	}
	g.total++
	g.byAddr[addr]++
	return &Ticket{g: g, addr: addr}, nil
}

// Held is the number of admitted connections.
func (g *Gate) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total
}

// ClientAddr is the address of r's client: the TCP peer, unless the peer
// is a trusted proxy, in which case X-Forwarded-For is read from the
// right, skipping trusted proxies, and the first other address is the
// client. A malformed entry stops the walk at the last trusted hop (the
// client cannot be known past it). The zero Addr means unknown.
func (g *Gate) ClientAddr(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	if !g.trusted(addr) {
		return addr
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return addr
			}
			addr = a.Unmap()
			if !g.trusted(addr) {
				return addr
			}
		}
	}
	return addr
}

func (g *Gate) trusted(a netip.Addr) bool {
	for _, p := range g.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// bucket is the counting unit of a: the address for IPv4, its /64 for
// IPv6.
func bucket(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}
