package edge

import (
	"net/netip"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/api"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/internal/readstate"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
)

// The edge's implementation packages are internal; these names are the
// part of them a caller configuring an edge needs.

// AuthConfig selects how clients authenticate (Config.Auth).
type AuthConfig = auth.Config

// Authentication modes for AuthConfig.Mode.
const (
	// AuthNone trusts ?user=NAME (development only).
	AuthNone = auth.ModeNone
	// AuthJWT requires a signed token.
	AuthJWT = auth.ModeJWT
)

// AdmitConfig caps connections per edge and per client address
// (Config.Admit).
type AdmitConfig = admit.Config

// UserLimits bounds one user's connections and rates across all of them
// (Config.UserLimits).
type UserLimits = userlimit.Config

// Rates are message, join and typing token buckets (UserLimits.Rates,
// SessionConfig.Rates).
type Rates = userlimit.Rates

// WSConfig bounds each WebSocket (Config.WS).
type WSConfig = ws.Config

// ReadMode selects how WebSockets are read (WSConfig.ReadMode).
type ReadMode = ws.ReadMode

// WebSocket read modes for WSConfig.ReadMode.
const (
	// ReadAuto polls where the platform allows (Linux), else ReadGoroutine.
	ReadAuto = ws.ReadAuto
	// ReadPoll registers connections with an epoll poller.
	ReadPoll = ws.ReadPoll
	// ReadGoroutine runs one reader goroutine per connection.
	ReadGoroutine = ws.ReadGoroutine
)

// SessionConfig holds the rules of every client connection (Config.Session).
type SessionConfig = session.Config

// APIConfig tunes the HTTP API and SSE (Config.API).
type APIConfig = api.Config

// ReadsConfig tunes the unread pushes (Config.Reads).
type ReadsConfig = readstate.Config

// FanoutConfig tunes the fan-out hub (Config.Fanout).
type FanoutConfig = fanout.Config

// ParseTrustedProxies parses comma-separated CIDRs or addresses for
// AdmitConfig.TrustedProxies.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) { return admit.ParsePrefixes(s) }
