// Command hubbub-edge runs a Hubbub edge: WebSocket protocol v1 on /ws,
// the HTTP API, SSE, the web UI and /healthz, /readyz, /metrics on one
// listener. Settings come from flags or HUBBUB_* environment variables
// (see -h).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hubbub-edge:", err)
		os.Exit(1)
	}
}

type settings struct {
	nats                natsconn.Config
	logFormat, logLevel string
	replicas            int
	origins             string
	jwtKeysFile         string
	svc                 edge.Config
}

func parse(args []string) (settings, error) {
	var st settings
	f := config.New("hubbub-edge")
	f.String(&st.nats.URL, "nats-url", "HUBBUB_NATS_URL", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated")
	f.String(&st.nats.User, "nats-user", "HUBBUB_NATS_USER", "", "NATS user")
	f.String(&st.nats.Password, "nats-password", "HUBBUB_NATS_PASSWORD", "", "NATS password")
	f.String(&st.nats.CredsFile, "nats-creds", "HUBBUB_NATS_CREDS", "", "NATS credentials file")
	f.String(&st.logFormat, "log-format", "HUBBUB_LOG_FORMAT", "json", "log format: json or text")
	f.String(&st.logLevel, "log-level", "HUBBUB_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	f.Int(&st.replicas, "stream-replicas", "HUBBUB_STREAM_REPLICAS", 1, "JetStream replicas of the stream and buckets")
	f.String(&st.svc.HTTPAddr, "http-addr", "HUBBUB_HTTP_ADDR", edge.DefaultHTTPAddr, "listen address (WebSocket, API, UI, ops endpoints)")
	f.String(&st.svc.EdgeID, "edge-id", "HUBBUB_EDGE_ID", "", "edge id (lease key); default hostname-<random>")
	f.String(&st.svc.Auth.Mode, "auth", "HUBBUB_AUTH", "none", "authentication: none (?user=NAME) or jwt")
	f.String(&st.svc.Auth.Secret, "jwt-secret", "HUBBUB_JWT_SECRET", "", "HS256 secret (jwt mode)")
	f.String(&st.jwtKeysFile, "jwt-public-keys", "HUBBUB_JWT_PUBLIC_KEYS", "", "PEM file of RS256 or EdDSA public keys (jwt mode)")
	f.String(&st.svc.Auth.Algorithm, "jwt-algorithm", "HUBBUB_JWT_ALGORITHM", "", "pinned JWT algorithm: HS256, RS256 or EdDSA (default: from the key)")
	f.String(&st.svc.Auth.Audience, "jwt-audience", "HUBBUB_JWT_AUDIENCE", "", "required JWT audience")
	f.String(&st.svc.Auth.Issuer, "jwt-issuer", "HUBBUB_JWT_ISSUER", "", "required JWT issuer")
	f.String(&st.origins, "allowed-origins", "HUBBUB_ALLOWED_ORIGINS", "", "comma-separated origins allowed to open WebSockets (default: same host)")
	f.Duration(&st.svc.DrainPeriod, "drain-period", "HUBBUB_DRAIN_PERIOD", edge.DefaultDrainPeriod, "period over which connections are closed with 1012 on shutdown")
	f.Int(&st.svc.MaxBody, "max-body", "HUBBUB_MAX_BODY", 2000, "longest message body in characters")
	f.Int(&st.svc.MaxFrame, "max-frame", "HUBBUB_MAX_FRAME", 16<<10, "largest client frame in bytes")
	f.Int(&st.svc.MaxRooms, "max-rooms", "HUBBUB_MAX_ROOMS", 100, "rooms per connection")
	f.Duration(&st.svc.PingInterval, "ping-interval", "HUBBUB_PING_INTERVAL", edge.DefaultPingInterval, "WebSocket ping interval")
	f.Duration(&st.svc.LeaseTTL, "lease-ttl", "HUBBUB_LEASE_TTL", provision.DefaultLeaseTTL, "TTL of the edge lease")
	if err := f.Parse(args); err != nil {
		return settings{}, err
	}
	st.nats.Name = "hubbub-edge"
	if st.origins != "" {
		st.svc.AllowedOrigins = strings.Split(st.origins, ",")
	}
	if st.jwtKeysFile != "" {
		b, err := os.ReadFile(st.jwtKeysFile)
		if err != nil {
			return settings{}, fmt.Errorf("jwt public keys: %w", err)
		}
		st.svc.Auth.PublicKeysPEM = b
	}
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
	pcfg := provision.Config{Replicas: st.replicas, LeaseTTL: st.svc.LeaseTTL}
	if err := ensure(ctx, js, pcfg, log); err != nil || ctx.Err() != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := edge.New(st.svc, edge.Deps{NC: nc, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	if err := svc.Run(ctx); err != nil {
		return err
	}
	return nil
}

// ensure provisions the stream and buckets, retrying while NATS is not
// reachable yet, until ctx ends (nil then: a clean shutdown).
func ensure(ctx context.Context, js jetstream.JetStream, cfg provision.Config, log *slog.Logger) error {
	backoff := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := provision.Ensure(actx, js, cfg)
		cancel()
		if err == nil || ctx.Err() != nil {
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
