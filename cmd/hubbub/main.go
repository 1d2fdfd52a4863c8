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
	"github.com/hubbub-chat/hubbub/shared/ops"
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
		common config.Common
		cfg    app.Config
	)
	common.Register(f)
	f.String(&cfg.NATSListen, "nats-listen", "HUBBUB_NATS_LISTEN", "127.0.0.1:4222", "client address of the embedded NATS server (unless -nats-url is given)")
	cfg.History.RegisterFlags(f)
	cfg.Presence.RegisterFlags(f)
	finishEdge := cfg.Edge.RegisterFlags(f)
	// The all-in-one is for people at a terminal: text logs unless asked.
	if _, ok := os.LookupEnv("HUBBUB_LOG_FORMAT"); !ok {
		_ = f.Set("log-format", "text")
	}
	var version bool
	f.BoolVar(&version, "version", false, "print the build (version, commit, Go) and exit")
	if err := f.Parse(args); err != nil {
		return err
	}
	if version {
		fmt.Println("hubbub", ops.BuildInfo())
		return nil
	}
	if err := finishEdge(); err != nil {
		return err
	}
	log, err := common.Logger(os.Stderr)
	if err != nil {
		return err
	}
	cfg.Log = log
	cfg.NATS = common.NATS("hubbub")
	if !explicit(f, "nats-url", "HUBBUB_NATS_URL") {
		cfg.NATS.URL = "" // embed a server
	}
	cfg.Provision = common.Provision()
	cfg.Presence.FromCommon(common)
	cfg.Edge.LeaseTTL = common.LeaseTTL
	cfg.DataDir, err = filepath.Abs(cfg.History.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	cfg.History.DataDir = cfg.DataDir
	// One process, one body limit: history must store whatever the edge
	// accepts (a longer body would be parked).
	cfg.History.MaxBody = max(cfg.History.MaxBody, cfg.Edge.Session.MaxBody)

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

// explicit reports whether a flag was given on the command line or its
// variable is set in the environment.
func explicit(f *config.Flags, name, env string) bool {
	if _, ok := os.LookupEnv(env); ok {
		return true
	}
	set := false
	f.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return set
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i:]
		}
	}
	return ""
}
