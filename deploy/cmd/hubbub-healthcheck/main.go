// Command hubbub-healthcheck GETs a Hubbub ops endpoint and exits 0 when it
// answers 2xx, 1 otherwise. It is copied into every Hubbub image (which has
// no shell or curl) for Docker and compose healthchecks:
//
//	hubbub-healthcheck                     # http://127.0.0.1:<port of $HUBBUB_HTTP_ADDR>/healthz
//	hubbub-healthcheck -path /readyz       # readiness instead of liveness
//	hubbub-healthcheck http://host:8080/readyz
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/hubbub-chat/hubbub/deploy/healthcheck"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("hubbub-healthcheck", flag.ContinueOnError)
	path := fs.String("path", "/healthz", "path probed when no URL is given")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hubbub-healthcheck [-path /healthz] [-timeout 3s] [URL]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	target := fs.Arg(0)
	if target == "" {
		addr, ok := os.LookupEnv("HUBBUB_HTTP_ADDR")
		if !ok || addr == "" {
			addr = ":8080"
		}
		var err error
		if target, err = healthcheck.URLFor(addr, *path); err != nil {
			fmt.Fprintln(os.Stderr, "hubbub-healthcheck:", err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if err := healthcheck.Check(ctx, client, target); err != nil {
		fmt.Fprintln(os.Stderr, "hubbub-healthcheck:", err)
		return 1
	}
	return 0
}
