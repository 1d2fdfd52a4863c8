package systemtest_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	gws "github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// dialToken opens a client of te with a JWT and reads its welcome.
func dialToken(t *testing.T, te *testEdge, tok string) *conn {
	t.Helper()
	return dial(t, "ws://"+te.Addr()+"/ws?token="+tok)
}

// Guarantee 10: in JWT mode every read path checks the rule join checks.
// The lobby, a room's messages and presence need a token and honour its
// rooms claim; a WebSocket history frame needs the room joined (and the
// token to allow it); SSE was already checked.
func TestReadsAreAuthorized(t *testing.T) {
	e := newSystem(t)
	te := e.startEdge(func(c *edge.Config) { c.Auth = edge.AuthConfig{Mode: edge.AuthJWT, Secret: jwtSecret} })
	owner := dialToken(t, te, signToken(t, "owner", nil))
	owner.join("secret", nil)
	owner.join("open", nil)
	id := owner.say("secret", "classified", "s1")
	owner.say("open", "hello", "o1")

	all := signToken(t, "reader", nil)
	openOnly := signToken(t, "reader", []string{"open"})
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	reads := []string{"/api/rooms/secret/messages", "/api/rooms/secret/presence"}
	for _, path := range reads {
		if code, body := do(t, "GET", te.httpURL(path), nil, ""); code != 401 || !strings.Contains(body, wire.CodeAuthRequired) {
			t.Errorf("GET %s without a token: %d %s", path, code, body)
		}
		if code, body := do(t, "GET", te.httpURL(path), bearer("bad.token.here"), ""); code != 401 {
			t.Errorf("GET %s with a bad token: %d %s", path, code, body)
		}
		if code, body := do(t, "GET", te.httpURL(path), bearer(openOnly), ""); code != 403 || !strings.Contains(body, wire.CodeForbidden) {
			t.Errorf("GET %s with a token for other rooms: %d %s", path, code, body)
		}
		if code, _ := do(t, "GET", te.httpURL(path), bearer(all), ""); code != 200 {
			t.Errorf("GET %s with a token: %d", path, code)
		}
	}
	if code, _ := do(t, "GET", te.httpURL("/api/rooms/secret/messages"), bearer(all), ""); code != 200 {
		t.Fatal("messages with a token refused")
	}
	if code, body := do(t, "GET", te.httpURL("/api/lobby"), nil, ""); code != 401 {
		t.Errorf("lobby without a token: %d %s", code, body)
	}
	natstest.Until(t, 20*time.Second, "lobby lists both rooms", func() bool {
		code, body := do(t, "GET", te.httpURL("/api/lobby"), bearer(all), "")
		return code == 200 && strings.Contains(body, `"secret"`) && strings.Contains(body, `"open"`)
	})
	if code, body := do(t, "GET", te.httpURL("/api/lobby"), bearer(openOnly), ""); code != 200 || strings.Contains(body, `"secret"`) || !strings.Contains(body, `"open"`) {
		t.Errorf("lobby for a token restricted to open: %d %s", code, body)
	}

	// WebSocket: history of a room never joined, and of a forbidden room.
	r := dialToken(t, te, all)
	r.send(wire.ClientFrame{Type: wire.TypeHistory, Room: "secret", Before: id + 1})
	if ef := r.errorFrame(wire.CodeNotJoined); ef.Room != "secret" {
		t.Errorf("not_joined for room %q", ef.Room)
	}
	ro := dialToken(t, te, openOnly)
	ro.send(wire.ClientFrame{Type: wire.TypeHistory, Room: "secret", Before: id + 1})
	ro.errorFrame(wire.CodeForbidden)
	// After joining, history works.
	r.join("secret", nil)
	r.send(wire.ClientFrame{Type: wire.TypeHistory, Room: "secret", Before: id + 1})
	h := decode[wire.History](t, r.await("history", isType(wire.TypeHistory)))
	if len(h.Items) == 0 || h.Items[len(h.Items)-1].ID != id {
		t.Errorf("history after joining: %+v", h)
	}
}

// A forbidden join is refused with an error frame; the connection and its
// other rooms go on.
func TestForbiddenJoinKeepsConnection(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(func(c *edge.Config) { c.Auth = edge.AuthConfig{Mode: edge.AuthJWT, Secret: jwtSecret} })
	c := dialToken(t, te, signToken(t, "amy", []string{"general"}))
	c.join("general", nil)
	c.send(wire.ClientFrame{Type: wire.TypeJoin, Room: "secret"})
	if ef := c.errorFrame(wire.CodeForbidden); ef.Room != "secret" {
		t.Fatalf("forbidden for %q", ef.Room)
	}
	id := c.say("general", "still here", "c1")
	c.message(id)
}

// A since / Last-Event-ID beyond the room's newest message (a cursor from
// another room or deployment) gets the newest page, not recovered, and
// live delivery follows; it used to be answered recovered with nothing and
// then mute the room.
func TestCursorFromElsewhere(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(nil)
	old := e.publish("quiet", "amy", "old", "q1")
	for i := range 20 {
		e.publish("busy", "bob", "chatter", fmt.Sprintf("b%d", i))
	}
	busyLast := e.publish("busy", "bob", "last", "blast")
	waitStored(t, te, "busy", busyLast)
	waitStored(t, te, "quiet", old)

	for _, cursor := range []uint64{busyLast, 1 << 40} {
		c := dial(t, te.wsURL("carol"))
		h := c.join("quiet", &cursor)
		if h.Recovered || len(h.Items) == 0 {
			t.Fatalf("cursor %d: history %+v, want the newest page, not recovered", cursor, h)
		}
		events, _ := openSSE(t, te, "quiet", "sse", cursor)
		sh := decode[wire.History](t, clientFrame(nextEvent(t, events, "history")))
		if sh.Recovered || len(sh.Items) == 0 {
			t.Fatalf("SSE cursor %d: %+v", cursor, sh)
		}
		id := e.publish("quiet", "amy", "new", fmt.Sprintf("new%d", cursor))
		c.message(id)
		for {
			mf := decode[wire.MessageFrame](t, clientFrame(nextEvent(t, events, "message")))
			if mf.Message.ID == id {
				break
			}
		}
	}
}

// CSRF: a cookie-authenticated post must come from an allowed origin with
// a JSON body; bearer clients without an Origin keep working.
func TestCookiePostCSRF(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(func(c *edge.Config) {
		c.Auth = edge.AuthConfig{Mode: edge.AuthJWT, Secret: jwtSecret}
		c.PublicOrigins = []string{"https://chat.example"}
	})
	tok := signToken(t, "victim", nil)
	cookie := "hubbub_token=" + tok
	url := te.httpURL("/api/rooms/general/messages")
	tests := []struct {
		name string
		hdr  map[string]string
		body string
		want int
	}{
		{"evil origin, form-shaped text/plain", map[string]string{"Cookie": cookie, "Origin": "http://evil.example", "Content-Type": "text/plain"}, `{"body":"forged"}`, 403},
		{"null origin", map[string]string{"Cookie": cookie, "Origin": "null", "Content-Type": "text/plain"}, `{"body":"forged"}`, 403},
		{"evil origin, JSON", map[string]string{"Cookie": cookie, "Origin": "http://evil.example", "Content-Type": "application/json"}, `{"body":"forged"}`, 403},
		{"own origin, text/plain", map[string]string{"Cookie": cookie, "Origin": "https://chat.example", "Content-Type": "text/plain"}, `{"body":"forged"}`, 415},
		{"no origin, form content type", map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}, `{"body":"forged"}`, 415},
		{"cross-site fetch metadata", map[string]string{"Cookie": cookie, "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, `{"body":"forged"}`, 403},
		{"own origin, JSON", map[string]string{"Cookie": cookie, "Origin": "https://chat.example", "Content-Type": "application/json; charset=utf-8"}, `{"body":"from the page"}`, 200},
		{"bearer without origin or content type", map[string]string{"Authorization": "Bearer " + tok}, `{"body":"from a bot"}`, 200},
		{"too big", map[string]string{"Authorization": "Bearer " + tok}, `{"body":"` + strings.Repeat("x", 70<<10) + `"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := do(t, "POST", url, tt.hdr, tt.body); code != tt.want {
				t.Fatalf("status %d (%s), want %d", code, body, tt.want)
			}
		})
	}
	for _, m := range e.roomMessages("general") {
		if m.Body == "forged" {
			t.Fatalf("a forged post was stored: %+v", m)
		}
	}
}

// HTTP posts draw on the per-user message budget even when the user has
// no WebSocket open.
func TestHTTPPostsAreRateLimited(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(func(c *edge.Config) {
		c.UserLimits.MessageRate = 0.01
		c.UserLimits.MessageBurst = 5
	})
	url := te.httpURL("/api/rooms/general/messages?user=poster")
	accepted, limited := 0, 0
	for i := range 50 {
		code, _ := do(t, "POST", url, map[string]string{"Content-Type": "application/json"}, fmt.Sprintf(`{"body":"post %d"}`, i))
		switch code {
		case 200:
			accepted++
		case 429:
			limited++
		default:
			t.Fatalf("post %d: status %d", i, code)
		}
	}
	if accepted != 5 || limited != 45 {
		t.Fatalf("accepted %d, limited %d; want 5 and 45", accepted, limited)
	}
	// The same budget applies on the WebSocket.
	c := dial(t, te.wsURL("poster"))
	c.join("general", nil)
	if _, ef := c.trySay("general", "over", "ws1"); ef == nil || ef.Code != wire.CodeRateLimited {
		t.Fatalf("WebSocket message after the HTTP budget: %+v", ef)
	}
}

// Connection caps: per client address (WebSocket: close 1013, SSE: 503)
// and per edge (HTTP 503 before the upgrade), counted in metrics; a
// trusted proxy's X-Forwarded-For names the client.
func TestConnectionCaps(t *testing.T) {
	e := newEnv(t)
	proxies, err := edge.ParseTrustedProxies("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	te := e.startEdge(func(c *edge.Config) {
		c.Admit = edge.AdmitConfig{MaxConns: 6, MaxConnsPerIP: 3, TrustedProxies: proxies}
	})
	dialFrom := func(addr string) (*client.Client, error) {
		ctx := tctx(t)
		c, err := client.Dial(ctx, te.wsURL("u"), client.Options{Header: http.Header{"X-Forwarded-For": {addr}}})
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
		return c, err
	}
	for range 3 {
		c, err := dialFrom("198.51.100.1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Welcome(tctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := dialFrom("198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := c.WaitClosed(tctx(t)); err != nil || code != gws.StatusCode(1013) {
		t.Fatalf("fourth from one address: close %d %v, want 1013", code, err)
	}
	req, _ := http.NewRequest("GET", te.httpURL("/api/rooms/general/events?user=u"), nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("SSE over the address cap: %d", resp.StatusCode)
	}
	// Other addresses fill the edge; then everyone gets 503.
	for i := range 3 {
		c, err := dialFrom(fmt.Sprintf("198.51.100.%d", 10+i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Welcome(tctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Until(t, 10*time.Second, "refused close counted", func() bool { return te.Metrics().Closes("refused_address_full") == 2 })
	if _, err := dialFrom("203.0.113.9"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("dial of a full edge: %v, want HTTP 503", err)
	}
	if n := te.Metrics().Closes("refused_edge_full"); n != 1 {
		t.Fatalf("edge-full refusals %v, want 1", n)
	}
}
