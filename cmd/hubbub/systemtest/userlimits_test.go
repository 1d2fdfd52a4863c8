package systemtest_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	gws "github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Limits shared by all of a user's connections on the edge: connections
// per user (the next upgrade is closed with 1008), and message, join and
// typing rates across connections, each answered with rate_limited.
func TestPerUserLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit func(*edge.Config)
		use   func(c *conn, i int) (code string)
	}{
		{
			name:  "messages",
			limit: func(c *edge.Config) { c.UserLimits.MessageRate, c.UserLimits.MessageBurst = 0.001, 3 },
			use: func(c *conn, i int) string {
				if _, ef := c.trySay("general", "hi", fmt.Sprintf("m%d", i)); ef != nil {
					return ef.Code
				}
				return ""
			},
		},
		{
			name:  "joins",
			limit: func(c *edge.Config) { c.UserLimits.JoinRate, c.UserLimits.JoinBurst = 0.001, 2+3 },
			use: func(c *conn, i int) string {
				room := fmt.Sprintf("room%d", i)
				c.send(wire.ClientFrame{Type: wire.TypeJoin, Room: room})
				f := c.await("join answer", func(f client.Frame) bool {
					return (f.Type == wire.TypeHistory || f.Type == wire.TypeError) && contains(f.Raw, `"room":"`+room+`"`)
				})
				if f.Type == wire.TypeError {
					ef := decode[wire.ErrorFrame](c.t, f)
					if ef.Code == wire.CodeUnavailable {
						return ""
					}
					return ef.Code
				}
				return ""
			},
		},
		{
			name:  "typing",
			limit: func(c *edge.Config) { c.UserLimits.TypingRate, c.UserLimits.TypingBurst = 0.001, 3 },
			use: func(c *conn, i int) string {
				state := wire.TypingOn
				if i%2 == 1 {
					state = wire.TypingOff
				}
				c.send(wire.ClientFrame{Type: wire.TypeTyping, Room: "general", State: state})
				// A message after it tells whether an error came first.
				c.send(wire.ClientFrame{Type: wire.TypeHistory, Room: "general", Limit: 1})
				f := c.await("typing answer", func(f client.Frame) bool {
					return f.Type == wire.TypeError || f.Type == wire.TypeHistory
				})
				if f.Type == wire.TypeError {
					return decode[wire.ErrorFrame](c.t, f).Code
				}
				return ""
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSystem(t)
			te := e.startEdge(func(c *edge.Config) {
				c.UserLimits = edge.UserLimits{MaxConns: 10, Rates: edge.Rates{MessageRate: 100, MessageBurst: 100, JoinRate: 100, JoinBurst: 100, TypingRate: 100, TypingBurst: 100}}
				tc.limit(c)
			})
			a := dial(t, te.wsURL("amy"))
			b := dial(t, te.wsURL("amy"))
			a.join("general", nil)
			b.join("general", nil)
			other := dial(t, te.wsURL("zed"))
			other.join("general", nil)
			// 3 uses pass, spread over both connections; the 4th is refused
			// on either; another user is unaffected.
			for i := range 3 {
				c := a
				if i%2 == 1 {
					c = b
				}
				if code := tc.use(c, i); code != "" {
					t.Fatalf("use %d refused: %s", i, code)
				}
			}
			for i, c := range []*conn{a, b} {
				if code := tc.use(c, 11+i); code != wire.CodeRateLimited { // typing: "off" on a typing connection, "on" on the other: no renewal
					t.Fatalf("use over the user's budget on connection %d: %q, want rate_limited", i, code)
				}
			}
			if code := tc.use(other, 20); code != "" {
				t.Fatalf("another user refused: %s", code)
			}
		})
	}
}

// The per-connection join limit applies before the user's.
func TestPerConnectionJoinLimit(t *testing.T) {
	e := newSystem(t)
	te := e.startEdge(func(c *edge.Config) { c.Session.JoinRate, c.Session.JoinBurst = 0.001, 2 })
	c := dial(t, te.wsURL("amy"))
	c.joinLive("a")
	c.joinLive("b")
	c.send(wire.ClientFrame{Type: wire.TypeJoin, Room: "c"})
	if ef := c.errorFrame(wire.CodeRateLimited); ef.Room != "c" {
		t.Fatalf("error %+v", ef)
	}
	// A second connection of the same user has its own budget.
	c2 := dial(t, te.wsURL("amy"))
	c2.joinLive("c")
}

// A user at the connection limit gets the next WebSocket closed with 1008
// and the next SSE stream refused with 429; a closed connection frees a
// slot.
func TestConnectionsPerUser(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(func(c *edge.Config) { c.UserLimits.MaxConns = 2 })
	first := dial(t, te.wsURL("amy"))
	_ = dial(t, te.wsURL("amy"))
	third := dialRaw(t, te.wsURL("amy"))
	if code := third.closed(); code != gws.StatusCode(1008) {
		t.Fatalf("third connection closed with %d, want 1008", code)
	}
	if code, body := httpGet(t, te.httpURL("/api/rooms/general/events?user=amy")); code != 429 || !contains([]byte(body), wire.CodeRateLimited) {
		t.Fatalf("SSE over the limit: %d %s", code, body)
	}
	if n := te.Metrics().Closes("refused_too_many_connections"); n != 1 {
		t.Fatalf("refused closes %v, want 1", n)
	}
	_ = dial(t, te.wsURL("bob")) // other users are not affected
	_ = first.c.Close()
	natstest.Until(t, 5*time.Second, "slot freed", func() bool { return te.Connections() == 2 })
	_ = dial(t, te.wsURL("amy"))
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
