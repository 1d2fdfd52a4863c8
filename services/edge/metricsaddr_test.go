package edge_test

import (
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/services/edge"
)

// With MetricsAddr set, /metrics is served only on the internal listener;
// health endpoints answer on both.
func TestMetricsOnInternalListener(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(func(c *edge.Config) { c.MetricsAddr = "127.0.0.1:0" })
	internal := "http://" + te.MetricsAddr()
	if code, body := httpGet(t, internal+"/metrics"); code != 200 || !strings.Contains(body, "hubbub_edge_connections") {
		t.Fatalf("internal /metrics: %d", code)
	}
	if code, _ := httpGet(t, te.httpURL("/metrics")); code == 200 {
		t.Fatal("/metrics served on the public listener")
	}
	for _, base := range []string{internal, te.httpURL("")} {
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, _ := httpGet(t, base+p); code != 200 {
				t.Errorf("%s%s: %d", base, p, code)
			}
		}
	}
}
