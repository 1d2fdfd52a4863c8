// Command hubbub-presence runs the Hubbub presence service: rosters, typing
// state and edge-lease cleanup, as a NATS micro service. Settings come from
// flags or HUBBUB_* environment variables (see -h).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hubbub-chat/hubbub/services/presence"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/ops"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hubbub-presence:", err)
		os.Exit(1)
	}
}

type settings struct {
	nats                      natsconn.Config
	logFormat, logLevel, addr string
	replicas                  int
	svc                       presence.Config
}

func parse(args []string) (settings, error) {
	var st settings
	f := config.New("hubbub-presence")
	f.String(&st.nats.URL, "nats-url", "HUBBUB_NATS_URL", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated")
	f.String(&st.nats.User, "nats-user", "HUBBUB_NATS_USER", "", "NATS user")
	f.String(&st.nats.Password, "nats-password", "HUBBUB_NATS_PASSWORD", "", "NATS password")
	f.String(&st.nats.CredsFile, "nats-creds", "HUBBUB_NATS_CREDS", "", "NATS credentials file")
	f.String(&st.logFormat, "log-format", "HUBBUB_LOG_FORMAT", "json", "log format: json or text")
	f.String(&st.logLevel, "log-level", "HUBBUB_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	f.String(&st.addr, "http-addr", "HUBBUB_HTTP_ADDR", ":8082", "listen address of /healthz, /readyz, /metrics")
	f.Int(&st.replicas, "stream-replicas", "HUBBUB_STREAM_REPLICAS", 1, "JetStream replicas of the stream and buckets")
	f.Duration(&st.svc.Grace, "grace", "HUBBUB_PRESENCE_GRACE", presence.DefaultGrace, "how long a user stays online after their last connection left")
	f.Duration(&st.svc.TypingTTL, "typing-ttl", "HUBBUB_TYPING_TTL", presence.DefaultTypingTTL, "TTL of typing entries")
	f.Duration(&st.svc.LeaseTTL, "lease-ttl", "HUBBUB_LEASE_TTL", presence.DefaultLeaseTTL, "TTL of edge leases")
	f.Duration(&st.svc.SweepInterval, "sweep-interval", "HUBBUB_PRESENCE_SWEEP_INTERVAL", presence.DefaultSweepInterval, "how often grace periods are checked")
	if err := f.Parse(args); err != nil {
		return settings{}, err
	}
	st.nats.Name = "hubbub-presence"
	st.svc.Replicas = st.replicas
	return st, nil
}

func run(args []string) error {
	st, err := parse(args)
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, st.logFormat, st.logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	nc, err := natsconn.Connect(st.nats, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := presence.New(st.svc, presence.Deps{NC: nc, Log: log, Registry: reg})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	ops.Register(mux, reg, ops.NATSCheck(nc), func(context.Context) error { return svc.Ready() })
	var wg sync.WaitGroup
	httpErr := make(chan error, 1)
	wg.Go(func() { httpErr <- ops.Serve(ctx, st.addr, mux, log) })

	pcfg := provision.Config{Replicas: st.replicas, TypingTTL: st.svc.TypingTTL, LeaseTTL: st.svc.LeaseTTL}
	if err := ensure(ctx, js, pcfg, log); err != nil {
		stop()
		wg.Wait()
		return err
	}
	runErr := svc.Run(ctx)
	stop()
	wg.Wait()
	if err := <-httpErr; err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		log.Info("hubbub-presence stopped")
	}
	return runErr
}

// ensure provisions the stream and buckets, retrying while NATS is not
// reachable yet, until ctx ends (nil then: a clean shutdown).
func ensure(ctx context.Context, js jetstream.JetStream, cfg provision.Config, log *slog.Logger) error {
	backoff := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := provision.Ensure(actx, js, cfg)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return err
		}
		log.Warn("provisioning failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
