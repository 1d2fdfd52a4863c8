package auth

import (
	"net/http"
	"net/url"
	"strings"
)

// OriginChecker decides whether a browser Origin may open a WebSocket.
type OriginChecker struct {
	allowed []string // lower-case origins ("https://chat.example") or "*"
}

// NewOriginChecker allows the listed origins; with none, only same-host
// origins (Origin's host equals the request's Host) are allowed. "*"
// allows any origin.
func NewOriginChecker(allowed []string) *OriginChecker {
	oc := &OriginChecker{}
	for _, a := range allowed {
		if a = strings.TrimSpace(a); a != "" {
			oc.allowed = append(oc.allowed, strings.ToLower(strings.TrimRight(a, "/")))
		}
	}
	return oc
}

// Allowed reports whether r's Origin is acceptable. Requests without an
// Origin header (non-browser clients) are allowed.
func (oc *OriginChecker) Allowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o := strings.ToLower(origin)
	if len(oc.allowed) == 0 {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" {
			return false
		}
		return strings.EqualFold(u.Host, r.Host)
	}
	for _, a := range oc.allowed {
		if a == "*" || a == o {
			return true
		}
	}
	return false
}
