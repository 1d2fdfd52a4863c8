package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const secret = "0123456789abcdef0123456789abcdef"

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bearer(tok string) *http.Request {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

func TestJWT(t *testing.T) {
	_, rsaKey := mustRSA(t)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	good := jwt.MapClaims{"sub": "alice@example", "exp": exp, "aud": "hubbub", "iss": "idp"}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	hs, err := New(Config{Mode: ModeJWT, Secret: secret, Audience: "hubbub", Issuer: "idp"})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := New(Config{Mode: ModeJWT, PublicKeysPEM: pemOf(t, &rsaKey.PublicKey), Audience: "hubbub", Issuer: "idp"})
	if err != nil {
		t.Fatal(err)
	}
	ed, err := New(Config{Mode: ModeJWT, PublicKeysPEM: pemOf(t, edPub), Audience: "hubbub"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		a       Authenticator
		req     *http.Request
		user    string
		wantErr error
		rooms   []string // allowed rooms; nil: all
	}{
		{"hs256 bearer", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), good)), "alice@example", nil, nil},
		{"hs256 cookie", hs, func() *http.Request {
			r := httptest.NewRequest("GET", "/ws", nil)
			r.AddCookie(&http.Cookie{Name: CookieName, Value: sign(t, jwt.SigningMethodHS256, []byte(secret), good)})
			return r
		}(), "alice@example", nil, nil},
		{"hs256 query", hs, httptest.NewRequest("GET", "/ws?token="+url.QueryEscape(sign(t, jwt.SigningMethodHS256, []byte(secret), good)), nil), "alice@example", nil, nil},
		{"missing", hs, httptest.NewRequest("GET", "/ws", nil), "", ErrMissing, nil},
		{"garbage", hs, bearer("not.a.jwt"), "", ErrInvalid, nil},
		{"wrong secret", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), good)), "", ErrInvalid, nil},
		{"expired", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", time.Now().Add(-time.Minute).Unix()))), "", ErrInvalid, nil},
		{"no exp", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", nil))), "", ErrInvalid, nil},
		{"wrong audience", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("aud", "other"))), "", ErrInvalid, nil},
		{"wrong issuer", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("iss", "evil"))), "", ErrInvalid, nil},
		{"no subject", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("sub", nil))), "", ErrInvalid, nil},
		{"alg none", hs, bearer(sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good)), "", ErrInvalid, nil},
		{"hs512 refused when hs256 pinned", hs, bearer(sign(t, jwt.SigningMethodHS512, []byte(secret), good)), "", ErrInvalid, nil},
		{"rs256", rs, bearer(sign(t, jwt.SigningMethodRS256, rsaKey, good)), "alice@example", nil, nil},
		{"rs256 key confusion: hs256 signed with the public key", rs, bearer(sign(t, jwt.SigningMethodHS256, pemOf(t, &rsaKey.PublicKey), good)), "", ErrInvalid, nil},
		{"eddsa", ed, bearer(sign(t, jwt.SigningMethodEdDSA, edPriv, with("iss", nil))), "alice@example", nil, nil},
		{"eddsa token to rs256 edge", rs, bearer(sign(t, jwt.SigningMethodEdDSA, edPriv, good)), "", ErrInvalid, nil},
		{"rooms claim normalised", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("rooms", []string{"General", "#ops", "general"}))), "alice@example", nil, []string{"general", "ops"}},
		{"empty rooms claim allows none", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("rooms", []string{}))), "alice@example", nil, []string{}},
		{"invalid room in claim", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("rooms", []string{"ok", "not a room"}))), "", ErrInvalid, nil},
		{"exp as a numeric string", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", strconv.FormatInt(exp, 10)))), "", ErrInvalid, nil},
		{"nbf as a string", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("nbf", "0"))), "", ErrInvalid, nil},
		{"iat as a string", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("iat", "1700000000"))), "", ErrInvalid, nil},
		{"exp as a float", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", float64(exp)+0.5))), "alice@example", nil, nil},
		{"rooms claim not a list", hs, bearer(sign(t, jwt.SigningMethodHS256, []byte(secret), with("rooms", "general"))), "", ErrInvalid, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.a.Authenticate(tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || id.User != tt.user {
				t.Fatalf("got %q, %v; want %q", id.User, err, tt.user)
			}
			if (id.Rooms == nil) != (tt.rooms == nil) || !slices.Equal(id.Rooms, tt.rooms) {
				t.Fatalf("rooms %#v, want %#v", id.Rooms, tt.rooms)
			}
			for _, room := range []string{"general", "ops", "random"} {
				want := tt.rooms == nil || slices.Contains(tt.rooms, room)
				if got := id.Allows(room); got != want {
					t.Errorf("Allows(%q) = %v, want %v", room, got, want)
				}
			}
		})
	}
}

func mustRSA(t *testing.T) (*rsa.PublicKey, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey, k
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Mode: "ldap"},
		{Mode: ModeJWT},
		{Mode: ModeJWT, Secret: "short"},
		{Mode: ModeJWT, Secret: secret, Algorithm: "RS256"},
		{Mode: ModeJWT, PublicKeysPEM: []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestNone(t *testing.T) {
	tests := []struct {
		query string
		user  string
		err   error
	}{
		{"user=alice", "alice", nil},
		{"user=" + url.QueryEscape("Zoë Ünïcode"), "Zoë Ünïcode", nil},
		{"user=%20alice", "", ErrInvalid},
		{"user=a%01b", "", ErrInvalid},
		{"user=" + strings.Repeat("x", 200), "", ErrInvalid},
	}
	for _, tt := range tests {
		id, err := None{}.Authenticate(httptest.NewRequest("GET", "/ws?"+tt.query, nil))
		if !errors.Is(err, tt.err) || (tt.err == nil && (id.User != tt.user || id.Rooms != nil)) {
			t.Errorf("%s: %+v, %v; want %q, %v", tt.query, id, err, tt.user, tt.err)
		}
	}
	id, err := None{}.Authenticate(httptest.NewRequest("GET", "/ws", nil))
	if err != nil || !strings.HasPrefix(id.User, "guest-") {
		t.Errorf("no user: %q, %v", id.User, err)
	}
}

func TestOriginChecker(t *testing.T) {
	tests := []struct {
		allowed, public []string
		origin          string
		host            string
		ok              bool
	}{
		{nil, nil, "", "chat.example", true},
		{nil, nil, "https://chat.example", "chat.example", true},
		{nil, nil, "https://CHAT.example", "chat.example", true},
		{nil, nil, "https://evil.example", "chat.example", false},
		{nil, nil, "null", "chat.example", false},
		{nil, nil, "file://chat.example", "chat.example", false},
		{[]string{"https://app.example/"}, nil, "https://app.example", "chat.example", true},
		{[]string{"https://app.example"}, nil, "https://chat.example", "chat.example", false},
		{[]string{"*"}, nil, "https://any.example", "chat.example", true},
		// DNS rebinding: the attacker's name resolves to the edge, so
		// Origin and Host agree; with public origins configured the
		// Host header is not trusted.
		{nil, nil, "http://rebind.evil:8080", "rebind.evil:8080", true},
		{nil, []string{"https://chat.example"}, "http://rebind.evil:8080", "rebind.evil:8080", false},
		{nil, []string{"https://chat.example"}, "https://chat.example", "chat.example", true},
		{[]string{"https://app.example"}, []string{"https://chat.example"}, "https://chat.example", "internal:8080", true},
		{[]string{"https://app.example"}, []string{"https://chat.example"}, "https://app.example", "internal:8080", true},
		{nil, []string{"https://chat.example"}, "null", "chat.example", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "http://"+tt.host+"/ws", nil)
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if got := NewOriginChecker(tt.allowed, tt.public).Allowed(r); got != tt.ok {
			t.Errorf("allowed %v public %v origin %q host %q: %v, want %v", tt.allowed, tt.public, tt.origin, tt.host, got, tt.ok)
		}
	}
}

// The token's source is reported: only a cookie is an ambient credential.
func TestAmbient(t *testing.T) {
	a, err := New(Config{Mode: ModeJWT, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "amy", "exp": time.Now().Add(time.Hour).Unix()})
	cookie := httptest.NewRequest("POST", "/api/rooms/a/messages", nil)
	cookie.AddCookie(&http.Cookie{Name: CookieName, Value: tok})
	for _, tc := range []struct {
		name    string
		r       *http.Request
		ambient bool
	}{
		{"bearer", bearer(tok), false},
		{"query", httptest.NewRequest("GET", "/ws?token="+tok, nil), false},
		{"cookie", cookie, true},
	} {
		id, err := a.Authenticate(tc.r)
		if err != nil || id.Ambient != tc.ambient {
			t.Errorf("%s: ambient %v err %v, want %v", tc.name, id.Ambient, err, tc.ambient)
		}
	}
}

// FuzzAuthenticate feeds arbitrary tokens and user names: no panic, and
// nothing but a verified token yields a user in jwt mode.
func FuzzAuthenticate(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.x", "alice")
	f.Add("a.b.c", "%20x")
	f.Add("", "")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.", "\x00")
	a, err := New(Config{Mode: ModeJWT, Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token, user string) {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		r.URL.RawQuery = url.Values{"user": {user}}.Encode()
		if id, err := a.Authenticate(r); err == nil {
			t.Fatalf("forged token accepted for %q", id.User)
		}
		if id, err := (None{}).Authenticate(r); err == nil && id.User == "" {
			t.Fatal("empty user accepted")
		}
		r.Header.Set("Origin", token)
		_ = NewOriginChecker(nil, nil).Allowed(r)
	})
}
