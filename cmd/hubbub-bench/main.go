// Command hubbub-bench is Hubbub's load tool. It speaks only the public
// protocol (WebSocket protocol v1; NATS request-reply for history reads)
// and spreads its clients over worker processes — itself, re-executed as
// "hubbub-bench worker" — so no process exceeds the open-file limit.
//
//	hubbub-bench suite [-quick] [-bin DIR] [-out DIR] ...   the standard suite against a local deployment
//	hubbub-bench baseline-ws -addr 127.0.0.1:0              the WebSocket baseline server
//	hubbub-bench report results.json                        print a saved run's markdown tables
//	hubbub-bench worker                                     a worker (driven over stdin/stdout)
//	hubbub-bench memprobe [-n 1000,5000,19000] ...          RSS per idle joined WebSocket of one edge process
//	hubbub-bench history [-database-url URL] ...            history ingest and recent pages, in one process
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/historybench"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/memprobe"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/report"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/wsbase"
	"github.com/hubbub-chat/hubbub/shared/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubbub-bench:", err)
		os.Exit(1)
	}
}

// errUsage is returned for an unknown subcommand.
var errUsage = errors.New("usage: hubbub-bench suite|baseline-ws|report FILE|worker|memprobe|history [flags] (-h for flags)")

func dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "worker":
		return worker.Serve(ctx, os.Stdin, os.Stdout)
	case "baseline-ws":
		return baselineWS(ctx, args[1:])
	case "report":
		if len(args) != 2 {
			return errUsage
		}
		return printReport(args[1])
	case "suite":
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("own path: %w", err)
		}
		return runSuite(ctx, args[1:], []string{self})
	case "memprobe":
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("own path: %w", err)
		}
		return memprobe.Main(ctx, args[1:], []string{self, "memprobe"})
	case "history":
		return historybench.Main(ctx, args[1:])
	default:
		return errUsage
	}
}

func baselineWS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("baseline-ws", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, "text", "info")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("baseline-ws listening", "addr", ln.Addr().String())
	return wsbase.New(log).Serve(ctx, ln)
}

func printReport(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	var run report.Run
	if err := json.Unmarshal(b, &run); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	report.Markdown(os.Stdout, &run)
	return nil
}
