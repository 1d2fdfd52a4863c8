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
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/time/rate"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/ws"
	"github.com/hubbub-chat/hubbub/shared/config"
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
	common      config.Common
	origins     string
	jwtKeysFile string
	wsRead      string
	gcPercent   int
	svc         edge.Config
	// Rates as float flags are not offered by config.Flags: per-second
	// rates are whole numbers here.
	msgRate, joinRate, typingRate             int
	userMsgRate, userJoinRate, userTypingRate int
}

func parse(args []string) (settings, error) {
	var st settings
	f := config.New("hubbub-edge")
	st.common.Register(f)
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
	f.String(&st.wsRead, "ws-read", "HUBBUB_WS_READ", "auto", "how WebSockets are read: auto (epoll poller on Linux, no goroutine per idle connection), poll or goroutine")
	f.Int(&st.svc.ReadWorkers, "ws-read-workers", "HUBBUB_WS_READ_WORKERS", 1024, "poll workers reading and handling client frames at once")
	f.Int(&st.gcPercent, "gc-percent", "HUBBUB_GC_PERCENT", 50, "Go GC target percentage when $GOGC is unset: an edge's heap is mostly long-lived connection state, so a lower value saves memory per connection for little CPU")
	f.Int(&st.msgRate, "message-rate", "HUBBUB_MESSAGE_RATE", 10, "messages per second per connection")
	f.Int(&st.svc.MessageBurst, "message-burst", "HUBBUB_MESSAGE_BURST", 20, "message burst per connection")
	f.Int(&st.joinRate, "join-rate", "HUBBUB_JOIN_RATE", 10, "joins per second per connection")
	f.Int(&st.svc.JoinBurst, "join-burst", "HUBBUB_JOIN_BURST", 100, "join burst per connection")
	f.Int(&st.typingRate, "typing-rate", "HUBBUB_TYPING_RATE", 5, "typing frames per second per connection")
	f.Int(&st.svc.TypingBurst, "typing-burst", "HUBBUB_TYPING_BURST", 10, "typing burst per connection")
	f.Int(&st.svc.UserLimits.MaxConns, "user-max-conns", "HUBBUB_USER_MAX_CONNS", 20, "connections (WebSocket and SSE) per user on this edge; more are closed with 1008")
	f.Int(&st.userMsgRate, "user-message-rate", "HUBBUB_USER_MESSAGE_RATE", 20, "messages per second per user, over all of the user's connections")
	f.Int(&st.svc.UserLimits.MessageBurst, "user-message-burst", "HUBBUB_USER_MESSAGE_BURST", 40, "message burst per user")
	f.Int(&st.userJoinRate, "user-join-rate", "HUBBUB_USER_JOIN_RATE", 20, "joins per second per user")
	f.Int(&st.svc.UserLimits.JoinBurst, "user-join-burst", "HUBBUB_USER_JOIN_BURST", 200, "join burst per user")
	f.Int(&st.userTypingRate, "user-typing-rate", "HUBBUB_USER_TYPING_RATE", 10, "typing frames per second per user")
	f.Int(&st.svc.UserLimits.TypingBurst, "user-typing-burst", "HUBBUB_USER_TYPING_BURST", 20, "typing burst per user")
	if err := f.Parse(args); err != nil {
		return settings{}, err
	}
	mode, err := ws.ParseReadMode(st.wsRead)
	if err != nil {
		return settings{}, err
	}
	st.svc.ReadMode = mode
	st.svc.LeaseTTL = st.common.LeaseTTL
	st.svc.MessageRate = float64(st.msgRate)
	st.svc.JoinRate = float64(st.joinRate)
	st.svc.TypingRate = float64(st.typingRate)
	st.svc.UserLimits.MessageRate = rate.Limit(st.userMsgRate)
	st.svc.UserLimits.JoinRate = rate.Limit(st.userJoinRate)
	st.svc.UserLimits.TypingRate = rate.Limit(st.userTypingRate)
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
	if _, ok := os.LookupEnv("GOGC"); !ok && st.gcPercent > 0 {
		debug.SetGCPercent(st.gcPercent)
	}
	log, err := st.common.Logger(os.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	nc, err := natsconn.Connect(st.common.NATS("hubbub-edge"), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := ensure(ctx, js, st.common.Provision(), log); err != nil || ctx.Err() != nil {
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
