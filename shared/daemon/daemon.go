// Package daemon is the common body of Hubbub's service binaries: flags and
// HUBBUB_* variables, the slog logger, the NATS connection, provisioning,
// the operational HTTP endpoints and signal handling. Each binary's main
// only names itself and builds its service.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/ops"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

// Service is what a binary runs: Run blocks until ctx ends (nil after a
// clean shutdown); Ready reports whether it can do its job now.
type Service interface {
	Run(ctx context.Context) error
	Ready() error
}

// Deps are handed to Build once the process is connected.
type Deps struct {
	NC       *nats.Conn
	Log      *slog.Logger
	Registry *prometheus.Registry
	// Common holds the shared settings as parsed.
	Common config.Common
}

// Build constructs the service after flags are parsed.
type Build func(Deps) (Service, error)

// Binary describes one service binary.
type Binary struct {
	// Name is the binary and NATS client name, e.g. "hubbub-history".
	Name string
	// Inbox is the prefix of the service's NATS reply subjects
	// (subjects.HistoryInbox, …), matching its NATS permissions.
	Inbox string
	// OpsAddr is the default listen address of /healthz, /readyz and
	// /metrics (flag -http-addr, $HUBBUB_HTTP_ADDR). Empty when the service
	// serves them itself on its own listener (the edge).
	OpsAddr string
	// Flags registers the service's own flags and returns the builder to
	// call once they are parsed.
	Flags func(f *config.Flags) Build
}

// Main runs the binary with os.Args and exits non-zero on failure.
func (b Binary) Main() {
	err := b.Run(context.Background(), os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", b.Name, err)
		os.Exit(1)
	}
}

// Run parses args, connects, provisions and runs the service until ctx ends
// or SIGINT/SIGTERM arrives. Logs go to logw.
func (b Binary) Run(ctx context.Context, args []string, logw io.Writer) error {
	f := config.New(b.Name)
	var common config.Common
	common.Register(f)
	var opsAddr string
	if b.OpsAddr != "" {
		f.String(&opsAddr, "http-addr", "HUBBUB_HTTP_ADDR", b.OpsAddr, "listen address of /healthz, /readyz, /metrics")
	}
	var pprofAddr string
	f.String(&pprofAddr, "pprof-addr", "HUBBUB_PPROF_ADDR", "",
		"listen address of net/http/pprof (/debug/pprof/), off when empty; bind it to loopback")
	build := b.Flags(f)
	var version bool
	f.BoolVar(&version, "version", false, "print the build (version, commit, Go) and exit")
	if err := f.Parse(args); err != nil {
		return err
	}
	if version {
		fmt.Println(b.Name, ops.BuildInfo())
		return nil
	}
	log, err := common.Logger(logw)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	ncfg := common.NATS(b.Name)
	ncfg.InboxPrefix = b.Inbox
	nc, err := natsconn.Connect(ncfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := natsconn.NewJetStream(nc, ncfg.JSDomain)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	reg := prometheus.NewRegistry()
	if err := ops.RegisterBuildInfo(reg, b.Name); err != nil {
		return err
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := build(Deps{NC: nc, Log: log, Registry: reg, Common: common})
	if err != nil {
		return err
	}

	httpErr := make(chan error, 1)
	if opsAddr != "" {
		mux := http.NewServeMux()
		ops.Endpoints{
			Metrics: reg,
			Live:    []ops.Check{ops.NATSAlive(nc)},
			Ready:   []ops.Check{ops.NATSCheck(nc), func(context.Context) error { return svc.Ready() }},
		}.Register(mux)
		go func() {
			err := ops.Serve(ctx, opsAddr, mux, log)
			if err != nil {
				stop() // no health endpoints: stop rather than run blind
			}
			httpErr <- err
		}()
	} else {
		httpErr <- nil
	}

	pprofErr := make(chan error, 1)
	if pprofAddr != "" {
		go func() {
			// A profiler that cannot listen is logged, not fatal: it is a
			// diagnostic, and the service is healthy without it.
			if err := ops.Serve(ctx, pprofAddr, ops.Pprof(), log); err != nil {
				log.Error("pprof listener", "addr", pprofAddr, "err", err)
			}
			pprofErr <- nil
		}()
	} else {
		pprofErr <- nil
	}

	var runErr error
	if err := provision.EnsureRetry(ctx, js, common.Provision(), log); err != nil {
		if ctx.Err() == nil {
			runErr = err
		}
	} else {
		runErr = svc.Run(ctx)
	}
	stop()
	<-pprofErr
	if err := <-httpErr; err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		log.Info(b.Name + " stopped")
	}
	return runErr
}
