package memprobe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestMetricsReadsUnlabelledSamples(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("# HELP go_goroutines x\ngo_goroutines 42\nhubbub_edge_closes_total{reason=\"x\"} 3\ngo_memstats_heap_alloc_bytes 1.5e+06\n"))
	}))
	defer srv.Close()
	m := metrics(srv.URL)
	if m["go_goroutines"] != 42 || m["go_memstats_heap_alloc_bytes"] != 1.5e6 || len(m) != 2 {
		t.Fatalf("metrics = %v", m)
	}
}

func TestBadCountsRefused(t *testing.T) {
	for _, n := range []string{"0", "x", "10,-1"} {
		if err := Main(context.Background(), []string{"-n", n}, nil); err == nil {
			t.Errorf("-n %s accepted", n)
		}
	}
}
