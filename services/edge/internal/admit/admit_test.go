package admit

import (
	"errors"
	"net/http"
	"net/netip"
	"testing"
)

func req(remote string, xff ...string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://edge/ws", nil)
	r.RemoteAddr = remote
	for _, h := range xff {
		r.Header.Add("X-Forwarded-For", h)
	}
	return r
}

func TestClientAddr(t *testing.T) {
	trusted, err := ParsePrefixes("10.0.0.0/8, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	g := New(Config{TrustedProxies: trusted})
	tests := []struct {
		name string
		r    *http.Request
		want string
	}{
		{"direct", req("203.0.113.5:4000"), "203.0.113.5"},
		{"direct ignores the header", req("203.0.113.5:4000", "198.51.100.1"), "203.0.113.5"},
		{"via a trusted proxy", req("10.1.2.3:4000", "198.51.100.1"), "198.51.100.1"},
		{"spoofed left entries are skipped", req("10.1.2.3:4000", "6.6.6.6, 198.51.100.1"), "198.51.100.1"},
		{"chain of trusted proxies", req("10.1.2.3:4000", "198.51.100.1, 192.0.2.7, 10.9.9.9"), "198.51.100.1"},
		{"several headers", req("10.1.2.3:4000", "198.51.100.1", "10.2.2.2"), "198.51.100.1"},
		{"garbage stops at the last trusted hop", req("10.1.2.3:4000", "198.51.100.1, nonsense"), "10.1.2.3"},
		{"only proxies", req("10.1.2.3:4000", "10.2.2.2"), "10.2.2.2"},
		{"mapped v4", req("[::ffff:203.0.113.5]:4000"), "203.0.113.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := g.ClientAddr(tt.r); got != netip.MustParseAddr(tt.want) {
				t.Fatalf("ClientAddr = %v, want %s", got, tt.want)
			}
		})
	}
	if _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Fatal("bad prefix accepted")
	}
}

func TestCaps(t *testing.T) {
	g := New(Config{MaxConns: 5, MaxConnsPerIP: 2})
	a1, err := g.Acquire(req("203.0.113.5:1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Acquire(req("203.0.113.5:2")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Acquire(req("203.0.113.5:3")); !errors.Is(err, ErrAddressFull) {
		t.Fatalf("third from one address: %v, want ErrAddressFull", err)
	}
	// IPv6 is counted per /64.
	if _, err := g.Acquire(req("[2001:db8:1:1::1]:1")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Acquire(req("[2001:db8:1:1::2]:1")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Acquire(req("[2001:db8:1:1::3]:1")); !errors.Is(err, ErrAddressFull) {
		t.Fatalf("third from one /64: %v, want ErrAddressFull", err)
	}
	if _, err := g.Acquire(req("198.51.100.1:1")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Acquire(req("198.51.100.2:1")); !errors.Is(err, ErrEdgeFull) {
		t.Fatalf("sixth: %v, want ErrEdgeFull", err)
	}
	a1.Release()
	a1.Release() // idempotent
	if g.Held() != 4 {
		t.Fatalf("held %d, want 4", g.Held())
	}
	if _, err := g.Acquire(req("203.0.113.5:4")); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.MaxConnsPerIP != DefaultMaxConnsPerIP || c.MaxConns < 1000 {
		t.Fatalf("defaults %+v", c)
	}
}
