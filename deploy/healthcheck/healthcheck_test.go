package healthcheck_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/deploy/healthcheck"
)

func TestURLFor(t *testing.T) {
	cases := []struct {
		addr, path, want string
		err              bool
	}{
		{":8080", "/healthz", "http://127.0.0.1:8080/healthz", false},
		{"0.0.0.0:8081", "/readyz", "http://127.0.0.1:8081/readyz", false},
		{"[::]:8082", "readyz", "http://127.0.0.1:8082/readyz", false},
		{"10.1.2.3:9000", "/healthz", "http://10.1.2.3:9000/healthz", false},
		{"[::1]:8080", "/healthz", "http://[::1]:8080/healthz", false},
		{"localhost:8080", "/healthz", "http://localhost:8080/healthz", false},
		{"8080", "/healthz", "", true},
		{":0", "/healthz", "", true},
		{":99999", "/healthz", "", true},
		{":http", "/healthz", "", true},
		{"", "/healthz", "", true},
		{"evil@host:80", "/healthz", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			got, err := healthcheck.URLFor(tc.addr, tc.path)
			if tc.err {
				if !errors.Is(err, healthcheck.ErrBadAddr) {
					t.Fatalf("URLFor(%q) = %q, %v; want ErrBadAddr", tc.addr, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("URLFor(%q, %q) = %q, %v; want %q", tc.addr, tc.path, got, err, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			_, _ = w.Write([]byte("ok\n"))
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: nats not connected\n"))
		case "/moved":
			http.Redirect(w, r, "/healthz", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	cases := []struct {
		path      string
		unhealthy bool
	}{
		{"/healthz", false},
		{"/readyz", true},
		{"/missing", true},
		{"/moved", true}, // a redirect is not health
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			err := healthcheck.Check(t.Context(), client, srv.URL+tc.path)
			if tc.unhealthy != (err != nil) {
				t.Fatalf("Check(%s) = %v, unhealthy want %v", tc.path, err, tc.unhealthy)
			}
			if tc.unhealthy && !errors.Is(err, healthcheck.ErrUnhealthy) {
				t.Fatalf("Check(%s) = %v, want ErrUnhealthy", tc.path, err)
			}
		})
	}
	t.Run("readiness failure carries the reason", func(t *testing.T) {
		err := healthcheck.Check(t.Context(), client, srv.URL+"/readyz")
		if err == nil || !strings.Contains(err.Error(), "nats not connected") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		u, _ := url.Parse(srv.URL)
		srv.Close()
		err := healthcheck.Check(t.Context(), client, "http://"+u.Host+"/healthz")
		if err == nil || errors.Is(err, healthcheck.ErrUnhealthy) {
			t.Fatalf("got %v, want a transport error", err)
		}
	})
}

// FuzzURLFor feeds arbitrary listen addresses: URLFor never panics, and what
// it accepts is an http URL on the given port whose path is the probe path.
func FuzzURLFor(f *testing.F) {
	for _, s := range []string{":8080", "0.0.0.0:8081", "[::]:8082", "10.1.2.3:9000", "host:1", "8080", ":", "[::1]:80", "a@b:1", "x/y:2", ":65536"} {
		f.Add(s, "/healthz")
	}
	f.Fuzz(func(t *testing.T, addr, path string) {
		got, err := healthcheck.URLFor(addr, path)
		if err != nil {
			if !errors.Is(err, healthcheck.ErrBadAddr) {
				t.Fatalf("URLFor(%q): error %v is not ErrBadAddr", addr, err)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("URLFor(%q) = %q: not a URL: %v", addr, got, err)
		}
		if u.Scheme != "http" || u.User != nil || u.Port() == "" || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("URLFor(%q) = %q: unexpected URL", addr, got)
		}
	})
}
