// Command hubbub runs the whole Hubbub system in one process: an embedded
// NATS server with JetStream, history on SQLite (or Postgres), presence and
// the edge serving the web UI on http://localhost:8080.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/hubbub-chat/hubbub/cmd/hubbub/app"
	"github.com/hubbub-chat/hubbub/shared/config"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "hubbub:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	f := config.New("hubbub")
	var (
		common   config.Common
		cfg      app.Config
		natsURL  string
		httpAddr string
	)
	common.Register(f)
	f.String(&httpAddr, "http-addr", "HUBBUB_HTTP_ADDR", ":8080", "HTTP address of the web UI, /ws and /api")
	f.String(&cfg.DataDir, "data-dir", "HUBBUB_DATA_DIR", "./hubbub-data", "JetStream store and SQLite history")
	f.String(&cfg.NATSListen, "nats-listen", "HUBBUB_NATS_LISTEN", "127.0.0.1:4222", "client address of the embedded NATS server")
	f.String(&natsURL, "nats-external", "HUBBUB_NATS_URL", "", "use this external NATS server instead of embedding one")
	f.String(&cfg.History.DatabaseURL, "database-url", "HUBBUB_DATABASE_URL", "", "postgres:// URL: store history in Postgres instead of SQLite")
	registerEdge(f, &cfg)
	// The all-in-one is for people at a terminal: text logs unless asked.
	if _, ok := os.LookupEnv("HUBBUB_LOG_FORMAT"); !ok {
		common.LogFormat = "text"
		_ = f.Set("log-format", "text")
	}
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := common.Logger(os.Stderr)
	if err != nil {
		return err
	}
	cfg.Log = log
	cfg.NATS = common.NATS("hubbub")
	cfg.NATS.URL = natsURL
	cfg.Provision = common.Provision()
	cfg.Presence.TypingTTL = common.TypingTTL
	cfg.Presence.LeaseTTL = common.LeaseTTL
	cfg.DataDir, err = filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	cfg.Edge.HTTPAddr = httpAddr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sys, err := app.Start(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("open the web UI", "url", "http://localhost"+portOf(sys.Addr()))
	select {
	case <-ctx.Done():
		log.Info("shutting down: the edge drains its connections first")
	case <-sys.Done():
	}
	if err := sys.Stop(); err != nil {
		return err
	}
	log.Info("hubbub stopped cleanly")
	return nil
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i:]
		}
	}
	return ""
}

// registerEdge is temporary: replaced by the edge's own flag registration.
func registerEdge(f *config.Flags, cfg *app.Config) {
	f.String(&cfg.Edge.Auth.Mode, "auth", "HUBBUB_AUTH", "none", "authentication: none (?user=NAME) or jwt")
}
