package edge

import (
	"fmt"
	"os"
	"strings"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// RegisterFlags defines the edge's settings on f (HUBBUB_HTTP_ADDR,
// HUBBUB_AUTH, HUBBUB_JWT_*, limits …). Call the returned function after
// f.Parse: it completes the settings that need work (reading the key file,
// splitting lists). LeaseTTL comes from config.Common.
func (c *Config) RegisterFlags(f *config.Flags) func() error {
	var origins, public, proxies, keysFile, readMode string
	ul, sc := &c.UserLimits, &c.Session
	f.String(&c.HTTPAddr, "http-addr", "HUBBUB_HTTP_ADDR", DefaultHTTPAddr, "listen address (WebSocket, API, UI, ops endpoints)")
	f.String(&c.MetricsAddr, "metrics-addr", "HUBBUB_METRICS_ADDR", "", "internal address serving /metrics (then not on -http-addr), /healthz and /readyz, e.g. :9090")
	f.String(&c.EdgeID, "edge-id", "HUBBUB_EDGE_ID", "", "edge id (lease key); default hostname-<random>")
	f.String(&c.Auth.Mode, "auth", "HUBBUB_AUTH", "none", "authentication: none (?user=NAME) or jwt")
	f.String(&c.Auth.Secret, "jwt-secret", "HUBBUB_JWT_SECRET", "", "HS256 secret (jwt mode)")
	f.String(&keysFile, "jwt-public-keys", "HUBBUB_JWT_PUBLIC_KEYS", "", "PEM file of RS256 or EdDSA public keys (jwt mode)")
	f.String(&c.Auth.Algorithm, "jwt-algorithm", "HUBBUB_JWT_ALGORITHM", "", "pinned JWT algorithm: HS256, RS256 or EdDSA (default: from the key)")
	f.String(&c.Auth.Audience, "jwt-audience", "HUBBUB_JWT_AUDIENCE", "", "required JWT audience")
	f.String(&c.Auth.Issuer, "jwt-issuer", "HUBBUB_JWT_ISSUER", "", "required JWT issuer")
	f.String(&origins, "allowed-origins", "HUBBUB_ALLOWED_ORIGINS", "", "comma-separated other origins allowed to open WebSockets and post with the cookie (\"*\": any)")
	f.String(&public, "public-origins", "HUBBUB_PUBLIC_ORIGINS", "", "comma-separated origins Hubbub is served from, e.g. https://chat.example (default: the request's Host; set it in production)")
	f.Int(&c.Admit.MaxConns, "max-conns", "HUBBUB_MAX_CONNS", 0, "connections (WebSocket and SSE) this edge holds; more get HTTP 503 (default: open-file limit less 1024)")
	f.Int(&c.Admit.MaxConnsPerIP, "max-conns-per-ip", "HUBBUB_MAX_CONNS_PER_IP", admit.DefaultMaxConnsPerIP, "connections from one client address (IPv6: per /64); more are closed with 1013 (SSE: 503)")
	f.String(&proxies, "trusted-proxies", "HUBBUB_TRUSTED_PROXIES", "", "comma-separated CIDRs of proxies whose X-Forwarded-For names the client")
	f.Duration(&c.DrainPeriod, "drain-period", "HUBBUB_DRAIN_PERIOD", DefaultDrainPeriod, "period over which connections are closed with 1012 on shutdown")
	f.Int(&sc.MaxBody, "max-body", "HUBBUB_MAX_BODY", wire.DefaultMaxBody, "longest message body in characters")
	f.Int(&c.WS.MaxMessage, "max-frame", "HUBBUB_MAX_FRAME", ws.DefaultMaxMessage, "largest client frame in bytes")
	f.Int(&sc.MaxRooms, "max-rooms", "HUBBUB_MAX_ROOMS", session.DefaultMaxRooms, "rooms per connection")
	f.Duration(&c.WS.PingInterval, "ping-interval", "HUBBUB_PING_INTERVAL", ws.DefaultPingInterval, "WebSocket ping interval")
	f.String(&readMode, "ws-read", "HUBBUB_WS_READ", "auto", "how WebSockets are read: auto (epoll poller on Linux, no goroutine per idle connection), poll or goroutine")
	f.Int(&c.WS.Workers, "ws-read-workers", "HUBBUB_WS_READ_WORKERS", ws.DefaultWorkers, "poll workers reading and handling client frames at once")
	f.Float((*float64)(&sc.MessageRate), "message-rate", "HUBBUB_MESSAGE_RATE", session.DefaultMessageRate, "messages per second per connection")
	f.Int(&sc.MessageBurst, "message-burst", "HUBBUB_MESSAGE_BURST", session.DefaultMessageBurst, "message burst per connection")
	f.Float((*float64)(&sc.JoinRate), "join-rate", "HUBBUB_JOIN_RATE", session.DefaultJoinRate, "joins per second per connection")
	f.Int(&sc.JoinBurst, "join-burst", "HUBBUB_JOIN_BURST", session.DefaultJoinBurst, "join burst per connection")
	f.Float((*float64)(&sc.TypingRate), "typing-rate", "HUBBUB_TYPING_RATE", session.DefaultTypingRate, "typing frames per second per connection")
	f.Int(&sc.TypingBurst, "typing-burst", "HUBBUB_TYPING_BURST", session.DefaultTypingBurst, "typing burst per connection")
	f.Int(&ul.MaxConns, "user-max-conns", "HUBBUB_USER_MAX_CONNS", userlimit.DefaultMaxConns, "connections (WebSocket and SSE) per user on this edge; more are closed with 1008")
	f.Float((*float64)(&ul.MessageRate), "user-message-rate", "HUBBUB_USER_MESSAGE_RATE", userlimit.DefaultMessageRate, "messages per second per user, over all of the user's connections")
	f.Int(&ul.MessageBurst, "user-message-burst", "HUBBUB_USER_MESSAGE_BURST", userlimit.DefaultMessageBurst, "message burst per user")
	f.Float((*float64)(&ul.JoinRate), "user-join-rate", "HUBBUB_USER_JOIN_RATE", userlimit.DefaultJoinRate, "joins per second per user")
	f.Int(&ul.JoinBurst, "user-join-burst", "HUBBUB_USER_JOIN_BURST", userlimit.DefaultJoinBurst, "join burst per user")
	f.Float((*float64)(&ul.TypingRate), "user-typing-rate", "HUBBUB_USER_TYPING_RATE", userlimit.DefaultTypingRate, "typing frames per second per user")
	f.Int(&ul.TypingBurst, "user-typing-burst", "HUBBUB_USER_TYPING_BURST", userlimit.DefaultTypingBurst, "typing burst per user")
	return func() error {
		mode, err := ws.ParseReadMode(readMode)
		if err != nil {
			return err
		}
		c.WS.ReadMode = mode
		if origins != "" {
			c.AllowedOrigins = strings.Split(origins, ",")
		}
		if public != "" {
			c.PublicOrigins = strings.Split(public, ",")
		}
		if c.Admit.TrustedProxies, err = admit.ParsePrefixes(proxies); err != nil {
			return err
		}
		if keysFile != "" {
			b, err := os.ReadFile(keysFile)
			if err != nil {
				return fmt.Errorf("jwt public keys: %w", err)
			}
			c.Auth.PublicKeysPEM = b
		}
		return nil
	}
}
