// Package ops serves the operational HTTP endpoints every Hubbub binary
// exposes: /healthz (the process is alive), /readyz (it can do its job now)
// and /metrics (Prometheus).
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports why a component is not ready, or nil.
type Check func(ctx context.Context) error

// ErrNATSDisconnected is reported by NATSCheck while the connection is down.
var ErrNATSDisconnected = errors.New("nats not connected")

// NATSCheck is ready while nc is connected.
func NATSCheck(nc *nats.Conn) Check {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("%w: %s", ErrNATSDisconnected, nc.Status())
		}
		return nil
	}
}

// ErrNATSClosed is reported by NATSAlive once the connection is closed
// for good.
var ErrNATSClosed = errors.New("nats connection closed for good")

// NATSAlive fails once nc is closed for good (reconnect attempts
// exhausted, or closed): nothing in the process will bring it back, so
// liveness fails and the orchestrator restarts the process.
func NATSAlive(nc *nats.Conn) Check {
	return func(context.Context) error {
		if nc.IsClosed() {
			return ErrNATSClosed
		}
		return nil
	}
}

// Endpoints are the operational endpoints of one listener.
type Endpoints struct {
	// Metrics is served at /metrics (nil: no /metrics here).
	Metrics prometheus.Gatherer
	// Live checks make /healthz fail (503): the process is broken for
	// good and must be restarted.
	Live []Check
	// Ready checks make /readyz fail (503): do not send traffic now.
	Ready []Check
}

// Register adds /healthz, /readyz and (with Metrics) /metrics to mux.
// Each check runs with a short timeout; a failing endpoint answers 503
// with the first failure.
func (e Endpoints) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", checkHandler("ok", e.Live))
	mux.HandleFunc("GET /readyz", checkHandler("ready", append(slices.Clip(e.Live), e.Ready...)))
	if e.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(e.Metrics, promhttp.HandlerOpts{}))
	}
}

func checkHandler(ok string, checks []Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, c := range checks {
			if err := c(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not %s: %v\n", ok, err)
				return
			}
		}
		_, _ = w.Write([]byte(ok + "\n"))
	}
}

// Pprof is a handler of the runtime profiles under /debug/pprof/, for a
// separate loopback listener (never the public one: profiles reveal
// internals and cost CPU).
func Pprof() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Serve runs an HTTP server for h on addr until ctx ends, then shuts it down
// gracefully. A nil error means a clean shutdown.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, h, log)
}

// ServeListener is Serve on an existing listener.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("http listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("http serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
