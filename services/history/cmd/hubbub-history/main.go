// Command hubbub-history runs the Hubbub history service: it stores every
// room message of the CHAT stream exactly once in SQLite (embedded default)
// or Postgres and answers recent/since/lobby requests as a NATS micro
// service. Settings come from flags or HUBBUB_* environment variables (-h).
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

	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/ops"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hubbub-history:", err)
		os.Exit(1)
	}
}

type settings struct {
	common config.Common
	addr   string
	svc    history.Config
}

func parse(args []string) (settings, error) {
	var st settings
	f := config.New("hubbub-history")
	st.common.Register(f)
	f.String(&st.addr, "http-addr", "HUBBUB_HTTP_ADDR", ":8081", "listen address of /healthz, /readyz, /metrics")
	f.String(&st.svc.DatabaseURL, "database-url", "HUBBUB_DATABASE_URL", "", "Postgres URL (postgres://…); empty: SQLite in the data dir")
	f.String(&st.svc.DataDir, "data-dir", "HUBBUB_DATA_DIR", "./hubbub-data", "directory of the SQLite database history.db")
	f.Duration(&st.svc.Retention, "retention", "HUBBUB_HISTORY_RETENTION", 0, "delete messages older than this; 0 keeps everything")
	f.Int(&st.svc.BatchSize, "batch-size", "HUBBUB_HISTORY_BATCH_SIZE", 500, "most messages inserted per transaction")
	f.Duration(&st.svc.BatchWait, "batch-wait", "HUBBUB_HISTORY_BATCH_WAIT", 20*time.Millisecond, "how long a partial batch waits for more messages")
	f.Duration(&st.svc.AckWait, "ack-wait", "HUBBUB_HISTORY_ACK_WAIT", 30*time.Second, "how long a delivered, unacknowledged message waits before redelivery")
	f.Int(&st.svc.MaxAckPending, "max-ack-pending", "HUBBUB_HISTORY_MAX_ACK_PENDING", 0, "most unacknowledged messages in flight (0: 8 × batch size)")
	f.Int(&st.svc.Inserts, "inserts", "HUBBUB_HISTORY_INSERTS", 2, "insert batches in flight at once")
	f.Int(&st.svc.Workers, "workers", "HUBBUB_HISTORY_WORKERS", 64, "requests handled concurrently")
	f.Bool(&st.svc.ReadOnly, "read-only", "HUBBUB_HISTORY_READ_ONLY", false, "serve requests without consuming the stream")
	if err := f.Parse(args); err != nil {
		return settings{}, err
	}
	return st, nil
}

func run(args []string) error {
	st, err := parse(args)
	if err != nil {
		return err
	}
	log, err := st.common.Logger(os.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	nc, err := natsconn.Connect(st.common.NATS("hubbub-history"), log)
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
	svc, err := history.New(st.svc, history.Deps{NC: nc, Log: log, Registry: reg})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	ops.Register(mux, reg, ops.NATSCheck(nc), func(context.Context) error { return svc.Ready() })
	var wg sync.WaitGroup
	httpErr := make(chan error, 1)
	wg.Go(func() { httpErr <- ops.Serve(ctx, st.addr, mux, log) })

	if err := ensure(ctx, js, st.common.Provision(), log); err != nil {
		stop()
		wg.Wait()
		if ctx.Err() != nil {
			return nil // signalled before NATS was reachable: a clean stop
		}
		return err
	}
	runErr := svc.Run(ctx)
	stop()
	wg.Wait()
	if err := <-httpErr; err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		log.Info("hubbub-history stopped")
	}
	return runErr
}

// ensure provisions the stream and buckets, retrying while NATS is not
// reachable yet (the connection retries in the background).
func ensure(ctx context.Context, js jetstream.JetStream, cfg provision.Config, log *slog.Logger) error {
	delay := 250 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := provision.Ensure(pctx, js, cfg)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		log.Warn("provisioning failed; retrying", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
