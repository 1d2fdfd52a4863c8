package edge_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

// The edge's own tests need only NATS; the black-box tests of an edge with
// real history and presence are in cmd/hubbub/systemtest.

// startEdge runs an edge on 127.0.0.1:0 against a provisioned test server.
func startEdge(t *testing.T, mod func(*edge.Config)) *edge.Service {
	t.Helper()
	ne := natstest.Provisioned(t, provision.Config{TypingTTL: 2 * time.Second, LeaseTTL: 3 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := edge.Config{Listener: ln, RequestTimeout: time.Second, DrainPeriod: 300 * time.Millisecond, LeaseTTL: 3 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := edge.New(cfg, edge.Deps{NC: ne.Connect(), Log: logging.Discard(), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("edge.New: %v", err)
	}
	natstest.Serve(t, "edge", svc)
	return svc
}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// With MetricsAddr set, /metrics is served only on the internal listener;
// health endpoints answer on both.
func TestMetricsOnInternalListener(t *testing.T) {
	te := startEdge(t, func(c *edge.Config) { c.MetricsAddr = "127.0.0.1:0" })
	internal, public := "http://"+te.MetricsAddr(), "http://"+te.Addr()
	if code, body := get(t, internal+"/metrics"); code != 200 || !strings.Contains(body, "hubbub_edge_connections") {
		t.Fatalf("internal /metrics: %d", code)
	}
	if code, _ := get(t, public+"/metrics"); code == 200 {
		t.Fatal("/metrics served on the public listener")
	}
	for _, base := range []string{internal, public} {
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, _ := get(t, base+p); code != 200 {
				t.Errorf("%s%s: %d", base, p, code)
			}
		}
	}
}
