package edge

import (
	"net/netip"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/userlimit"
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

// ParseTrustedProxies parses comma-separated CIDRs or addresses for
// AdmitConfig.TrustedProxies.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) { return admit.ParsePrefixes(s) }
