// Package healthcheck probes the HTTP ops endpoint (/healthz, /readyz) of a
// Hubbub binary from inside its own container. Distroless images have no
// shell or curl, so every image carries the tiny static hubbub-healthcheck
// binary built from this package for Docker HEALTHCHECK and compose
// healthchecks.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// ErrUnhealthy is returned by Check when the endpoint answers with a status
// other than 2xx.
var ErrUnhealthy = errors.New("unhealthy")

// ErrBadAddr is returned by URLFor for a listen address it cannot probe.
var ErrBadAddr = errors.New("bad listen address")

// URLFor returns the URL of path on the server listening on addr, given in
// the form of HUBBUB_HTTP_ADDR (":8080", "0.0.0.0:8081", "[::]:8082",
// "10.1.2.3:8080"). A wildcard or empty host is probed on 127.0.0.1.
func URLFor(addr, path string) (string, error) {
	host, port, err := net.SplitHostPort(strings.TrimSpace(addr))
	if err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrBadAddr, addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("%w %q: port %q", ErrBadAddr, addr, port)
	}
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		host = "127.0.0.1"
	}
	if !validHost(host) {
		return "", fmt.Errorf("%w %q: host %q", ErrBadAddr, addr, host)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(n)), Path: path}
	return u.String(), nil
}

// validHost accepts an IP address or a DNS name.
func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// Check GETs target with client and returns nil when it answers 2xx,
// ErrUnhealthy (wrapped, with the start of the body) for any other status,
// or the transport error.
func Check(ctx context.Context, client *http.Client, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("health request %s: %w", target, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health request %s: %w", target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s answered %s: %s", ErrUnhealthy, target, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
