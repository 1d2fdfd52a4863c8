package ops

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/natstest"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// Liveness fails once the NATS connection is closed for good; readiness
// fails while it is down and when a readiness check fails.
func TestEndpoints(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	notReady := errors.New("warming up")
	var ready error
	mux := http.NewServeMux()
	Endpoints{
		Live:  []Check{NATSAlive(nc)},
		Ready: []Check{NATSCheck(nc), func(context.Context) error { return ready }},
	}.Register(mux)
	if code, _ := get(t, mux, "/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get(t, mux, "/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	ready = notReady
	if code, body := get(t, mux, "/readyz"); code != 503 || !strings.Contains(body, "warming up") {
		t.Fatalf("readyz %d %q", code, body)
	}
	if code, _ := get(t, mux, "/healthz"); code != 200 {
		t.Fatal("a readiness failure failed liveness")
	}
	if code, _ := get(t, mux, "/metrics"); code == 200 {
		t.Fatal("/metrics served without a gatherer")
	}
	nc.Close() // closed for good: nothing will reconnect it
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, mux, "/healthz")
		if code == 503 && strings.Contains(body, ErrNATSClosed.Error()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz after close: %d %q", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
