package edge

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/api"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/readstate"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/web"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
	"github.com/hubbub-chat/hubbub/shared/defaults"
)

// Config configures an edge. Zero values take the defaults of the package
// that owns the setting (each named below); the nested configs are the
// owners' own types (WSConfig, SessionConfig, APIConfig …).
type Config struct {
	// HTTPAddr is the listen address (DefaultHTTPAddr) when Listener is
	// nil.
	HTTPAddr string
	// Listener, if set, is used instead of listening on HTTPAddr.
	Listener net.Listener
	// MetricsAddr, when set, is a second, internal listen address for
	// /metrics (and /healthz, /readyz): /metrics is then not served on the
	// public listener, so a load balancer never exposes it.
	MetricsAddr string
	// EdgeID names the edge (its lease key, and Session.EdgeID); default
	// hostname-<random>.
	EdgeID string

	// Auth selects the authentication mode.
	Auth auth.Config
	// AllowedOrigins are other sites' origins allowed to open WebSockets
	// and make cookie-authenticated posts ("*": any).
	AllowedOrigins []string
	// PublicOrigins are the origins Hubbub is served from
	// ("https://chat.example"). With neither list set, the Origin must
	// name the request's Host, which a DNS-rebinding page controls: set
	// this in production.
	PublicOrigins []string
	// Admit caps connections per edge and per client address and says
	// which proxies' X-Forwarded-For to trust.
	Admit admit.Config

	// WS bounds each WebSocket: the largest client frame (MaxMessage:
	// 1009 beyond), the outbound queue (SoftQueue: typing/presence shed;
	// HardQueue: closed with 1013), PingInterval (a peer silent for two
	// intervals is dropped; DefaultPingInterval), WriteTimeout, ReadMode
	// and the poll Workers reading client frames at once.
	WS ws.Config
	// Session holds the rules of every client connection, whatever its
	// transport: the body limit (MaxBody), rooms per connection, the
	// per-connection message/join/typing rates and MaxPendingPosts (the
	// messages of one connection awaiting their PubAck). Its EdgeID is
	// this Config's.
	Session session.Config
	// API tunes the HTTP API and SSE: SSEQueue, KeepAlive (default
	// WS.PingInterval), WriteTimeout (default WS.WriteTimeout), LobbyLimit.
	API api.Config
	// UserLimits are shared by all of a user's connections on this edge:
	// connections per user (more are closed with 1008) and message, join
	// and typing rates.
	UserLimits userlimit.Config
	// Fanout tunes the hub (history page sizes, replay cap, buffers). Its
	// MaxBody defaults to Session.MaxBody and its PaceBytes to
	// WS.SoftQueue.
	Fanout fanout.Config

	// Reads tunes the unread pushes: workers computing them at once and
	// the bound on pushes waiting for one.
	Reads readstate.Config

	// MaxPendingPosts bounds the messages awaiting their PubAck on the
	// whole edge (publish.DefaultMaxPending): beyond it messages are
	// refused (unavailable) rather than holding up reading.
	MaxPendingPosts int
	// DrainPeriod spreads the 1012 closes on shutdown (DefaultDrainPeriod).
	DrainPeriod time.Duration
	// RequestTimeout bounds each request to history/presence/JetStream
	// (nreq.DefaultTimeout, 3 s).
	RequestTimeout time.Duration
	// LeaseTTL is the edges bucket TTL (15 s); the lease is renewed at TTL/3.
	LeaseTTL time.Duration
	// Web serves "/" (default: the embedded UI, web.Handler()).
	Web http.Handler
}

// Defaults of the settings the edge itself owns.
const (
	DefaultHTTPAddr    = ":8080"
	DefaultDrainPeriod = 10 * time.Second
)

// withDefaults fills the zero settings. The rules by which one setting
// defaults to another live here and nowhere else.
func (c Config) withDefaults() Config {
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.EdgeID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "edge"
		}
		c.EdgeID = host + "-" + randomHex(4)
	}
	defaults.Positive(&c.DrainPeriod, DefaultDrainPeriod)
	defaults.Positive(&c.RequestTimeout, nreq.DefaultTimeout)
	defaults.Positive(&c.MaxPendingPosts, publish.DefaultMaxPending)
	defaults.Positive(&c.WS.PingInterval, ws.DefaultPingInterval)
	defaults.Positive(&c.WS.WriteTimeout, ws.DefaultWriteTimeout)
	c.Session.EdgeID = c.EdgeID
	c.Session = c.Session.WithDefaults()
	// SSE keeps the WebSocket's pace and patience unless told otherwise.
	defaults.Positive(&c.API.KeepAlive, c.WS.PingInterval)
	defaults.Positive(&c.API.WriteTimeout, c.WS.WriteTimeout)
	c.API = c.API.WithDefaults()
	c.UserLimits = c.UserLimits.WithDefaults()
	// The hub applies the body rule the session accepts messages by.
	defaults.Positive(&c.Fanout.MaxBody, c.Session.MaxBody)
	if c.Web == nil {
		c.Web = web.Handler()
	}
	return c
}

// withTransport fills the settings that default to the WebSocket
// transport's resolved ones (wsc: ws.Transport.Config()).
func (c Config) withTransport(wsc ws.Config) Config {
	if c.Fanout.PaceBytes <= 0 {
		// Pace catch-ups on the WebSocket soft bound.
		c.Fanout.PaceBytes = wsc.SoftQueue
	}
	return c
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
