package auth

import (
	"net/http"
	"net/url"
	"strings"
)

// OriginChecker decides whether a browser Origin may open a WebSocket or
// make a cookie-authenticated state change.
type OriginChecker struct {
	allowed []string // lower-case origins ("https://chat.example") or "*"
	public  []string // the edge's own public origins
}

// NewOriginChecker allows the origins in allowed (other sites that may
// embed Hubbub; "*" allows any origin) and public (the origins Hubbub
// itself is served from, e.g. "https://chat.example"). With neither, only
// same-host origins are allowed: the Origin's host must equal the
// request's Host header, which a DNS-rebinding page controls, so
// production deployments should configure their public origins.
func NewOriginChecker(allowed, public []string) *OriginChecker {
	return &OriginChecker{allowed: normOrigins(allowed), public: normOrigins(public)}
}

func normOrigins(in []string) []string {
	var out []string
	for _, a := range in {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, strings.ToLower(strings.TrimRight(a, "/")))
		}
	}
	return out
}

// Allowed reports whether r's Origin is acceptable. Requests without an
// Origin header (non-browser clients) are allowed; "null" (sandboxed
// frames, file: pages, some redirects) never is, unless "*" is allowed.
func (oc *OriginChecker) Allowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	return oc.AllowedOrigin(origin, r.Host)
}

// AllowedOrigin reports whether origin is acceptable for a request that
// named host in its Host header.
func (oc *OriginChecker) AllowedOrigin(origin, host string) bool {
	o := strings.ToLower(strings.TrimRight(origin, "/"))
	for _, a := range oc.allowed {
		if a == "*" || a == o {
			return true
		}
	}
	for _, p := range oc.public {
		if p == o {
			return true
		}
	}
	if len(oc.allowed) > 0 || len(oc.public) > 0 || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host)
}
