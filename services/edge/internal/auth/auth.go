// Package auth resolves an HTTP request (a WebSocket upgrade, an SSE
// stream, an API call) to an identity: a user id and, optionally, the
// rooms it may join. Mode "none" trusts ?user=NAME (development); mode
// "jwt" verifies a signed token with a pinned algorithm, a required expiry
// and checked audience/issuer, and honours an optional "rooms" claim.
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hubbub-chat/hubbub/shared/names"
)

// Errors callers branch on (missing → 4001 / 401, invalid → 4002 / 401).
var (
	ErrMissing = errors.New("auth: credentials required")
	ErrInvalid = errors.New("auth: credentials invalid")
)

// CookieName is the cookie carrying a token.
const CookieName = "hubbub_token"

// Modes.
const (
	ModeNone = "none"
	ModeJWT  = "jwt"
)

// Authenticator resolves a request to an identity.
type Authenticator interface {
	Authenticate(r *http.Request) (Identity, error)
}

// Identity is an authenticated client.
type Identity struct {
	// User is the user id.
	User string
	// Rooms lists the (normalised) rooms the user may join; nil allows
	// every room, an empty non-nil list none.
	Rooms []string
	// Ambient is set when the credentials came from a cookie, which a
	// browser attaches to requests other sites make: state changes then
	// need the CSRF checks (allowed Origin, JSON content type).
	Ambient bool
}

// Allows reports whether the identity may join room (a normalised name).
func (id Identity) Allows(room string) bool {
	if id.Rooms == nil {
		return true
	}
	return slices.Contains(id.Rooms, room)
}

// Config selects and configures the mode.
type Config struct {
	// Mode is "none" (default) or "jwt".
	Mode string
	// Algorithm is the one accepted JWT algorithm: HS256, RS256 or EdDSA.
	// Empty: HS256 when Secret is set, else inferred from the first key.
	Algorithm string
	// Secret is the HS256 shared secret.
	Secret string
	// PublicKeysPEM holds one or more PEM public keys (RS256 or EdDSA).
	PublicKeysPEM []byte
	// Audience and Issuer, when set, must match the token's aud / iss.
	Audience string
	Issuer   string
}

// New builds the authenticator for cfg.
func New(cfg Config) (Authenticator, error) {
	switch cfg.Mode {
	case "", ModeNone:
		return None{}, nil
	case ModeJWT:
		return newJWT(cfg)
	}
	return nil, fmt.Errorf("auth mode %q: want none or jwt", cfg.Mode)
}

// None is development mode: the user picks a name with ?user=NAME; without
// one a guest name is generated.
type None struct{}

// Authenticate implements Authenticator.
func (None) Authenticate(r *http.Request) (Identity, error) {
	u := r.URL.Query().Get("user")
	if u == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		return Identity{User: "guest-" + hex.EncodeToString(b[:])}, nil
	}
	u, err := names.User(u)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return Identity{User: u}, nil
}

// JWT verifies bearer tokens.
type JWT struct {
	alg    string
	keys   []any
	parser *jwt.Parser
}

func newJWT(cfg Config) (*JWT, error) {
	j := &JWT{alg: cfg.Algorithm}
	if cfg.Secret != "" {
		if j.alg == "" {
			j.alg = "HS256"
		}
		if j.alg != "HS256" {
			return nil, fmt.Errorf("jwt: a secret needs algorithm HS256, not %s", j.alg)
		}
		if len(cfg.Secret) < 32 {
			return nil, errors.New("jwt: HS256 secret must be at least 32 bytes")
		}
		j.keys = []any{[]byte(cfg.Secret)}
	} else {
		keys, err := parseKeys(cfg.PublicKeysPEM)
		if err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			return nil, errors.New("jwt: no secret or public keys configured")
		}
		for _, k := range keys {
			alg := ""
			switch k.(type) {
			case *rsa.PublicKey:
				alg = "RS256"
			case ed25519.PublicKey:
				alg = "EdDSA"
			}
			if j.alg == "" {
				j.alg = alg
			}
			if alg != j.alg {
				return nil, fmt.Errorf("jwt: key of type %T does not fit algorithm %s", k, j.alg)
			}
			j.keys = append(j.keys, k)
		}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{j.alg}), jwt.WithExpirationRequired()}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	j.parser = jwt.NewParser(opts...)
	return j, nil
}

func parseKeys(data []byte) ([]any, error) {
	var keys []any
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return keys, nil
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("jwt public key: %w", err)
		}
		switch k.(type) {
		case *rsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("jwt public key: unsupported type %T", k)
		}
	}
}

// Algorithm is the pinned algorithm.
func (j *JWT) Algorithm() string { return j.alg }

// claims are the JWT claims the edge reads: the registered ones and the
// optional list of rooms the token allows.
type claims struct {
	jwt.RegisteredClaims
	Rooms []string `json:"rooms,omitempty"`
}

// MaxRoomsClaim bounds the rooms one token may list.
const MaxRoomsClaim = 1000

// Authenticate implements Authenticator: the token comes from
// "Authorization: Bearer", the hubbub_token cookie or ?token=. A "rooms"
// claim (array of room names) restricts the rooms the user may join.
func (j *JWT) Authenticate(r *http.Request) (Identity, error) {
	tok, src := TokenFrom(r)
	if tok == "" {
		return Identity{}, ErrMissing
	}
	if err := numericDates(tok); err != nil {
		return Identity{}, err
	}
	var lastErr error
	for _, k := range j.keys {
		c := &claims{}
		t, err := j.parser.ParseWithClaims(tok, c, func(*jwt.Token) (any, error) { return k, nil })
		if err != nil {
			lastErr = err
			if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
				continue // another key may verify it
			}
			break
		}
		sub, err := t.Claims.GetSubject()
		if err != nil {
			return Identity{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		u, err := names.User(sub)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: subject: %w", ErrInvalid, err)
		}
		rooms, err := normaliseRooms(c.Rooms)
		if err != nil {
			return Identity{}, err
		}
		return Identity{User: u, Rooms: rooms, Ambient: src == SourceCookie}, nil
	}
	return Identity{}, fmt.Errorf("%w: %w", ErrInvalid, lastErr)
}

// numericDates refuses a token whose exp, nbf or iat claim is not a JSON
// number: RFC 7519 §2 makes them NumericDate values, but the JWT library
// also accepts numeric strings ("exp":"4102444800").
func numericDates(tok string) error {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%w: token is not a JWS compact serialization", ErrInvalid)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fmt.Errorf("%w: token payload: %w", ErrInvalid, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		return fmt.Errorf("%w: token payload: %w", ErrInvalid, err)
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		v, ok := raw[name]
		if !ok {
			continue
		}
		var n json.Number
		if len(v) == 0 || v[0] == '"' || json.Unmarshal(v, &n) != nil {
			return fmt.Errorf("%w: claim %q must be a number (RFC 7519 NumericDate)", ErrInvalid, name)
		}
	}
	return nil
}

// normaliseRooms validates and normalises a rooms claim; nil stays nil
// (no restriction).
func normaliseRooms(in []string) ([]string, error) {
	if in == nil {
		return nil, nil
	}
	if len(in) > MaxRoomsClaim {
		return nil, fmt.Errorf("%w: rooms claim lists more than %d rooms", ErrInvalid, MaxRoomsClaim)
	}
	out := make([]string, 0, len(in))
	for _, r := range in {
		n, err := names.Room(r)
		if err != nil {
			return nil, fmt.Errorf("%w: rooms claim: %w", ErrInvalid, err)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Source says where a request's token came from.
type Source int

// Token sources, in the order TokenFrom looks.
const (
	SourceNone Source = iota
	SourceHeader
	SourceCookie
	SourceQuery
)

// Token extracts a bearer token from r, or "".
func Token(r *http.Request) string {
	t, _ := TokenFrom(r)
	return t
}

// TokenFrom extracts a bearer token from r ("Authorization: Bearer",
// then the hubbub_token cookie, then ?token=) and says where it was.
func TokenFrom(r *http.Request) (string, Source) {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:]), SourceHeader
		}
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return c.Value, SourceCookie
	}
	if t := r.URL.Query().Get("token"); t != "" {
		return t, SourceQuery
	}
	return "", SourceNone
}
