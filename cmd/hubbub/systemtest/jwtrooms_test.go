package systemtest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

const jwtSecret = "0123456789abcdef0123456789abcdef"

func signToken(t *testing.T, sub string, rooms []string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
	if rooms != nil {
		claims["rooms"] = rooms
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A token's rooms claim restricts the rooms its user may join: a
// WebSocket join of another room is refused with a forbidden error frame
// (the connection stays), the HTTP API and SSE answer 403. Without the claim every room is allowed.
func TestJWTRoomRestrictions(t *testing.T) {
	e := newEnv(t)
	te := e.startEdge(func(c *edge.Config) {
		c.Auth = edge.AuthConfig{Mode: edge.AuthJWT, Secret: jwtSecret}
	})
	tests := []struct {
		name    string
		rooms   []string // the token's claim; nil: no claim
		room    string
		allowed bool
	}{
		{"listed room", []string{"General", "ops"}, "general", true},
		{"second listed room", []string{"general", "ops"}, "ops", true},
		{"unlisted room", []string{"general"}, "secret", false},
		{"empty list", []string{}, "general", false},
		{"no claim", nil, "secret", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := signToken(t, "alice", tt.rooms)

			// WebSocket join.
			ctx := tctx(t)
			cc := dialToken(t, te, tok)
			if tt.allowed {
				cc.joinLive(tt.room)
				cc.say(tt.room, "hello", "ws"+string(rune('a'+i)))
			} else {
				cc.send(wire.ClientFrame{Type: wire.TypeJoin, Room: tt.room})
				if ef := cc.errorFrame(wire.CodeForbidden); ef.Room != tt.room {
					t.Errorf("forbidden error frame for room %q, want %q", ef.Room, tt.room)
				}
				cc.send(wire.ClientFrame{Type: wire.TypeJoin, Room: "#" + tt.room}) // the connection is still served
				cc.errorFrame(wire.CodeForbidden)
			}

			// HTTP post and SSE.
			want := http.StatusOK
			if !tt.allowed {
				want = http.StatusForbidden
			}
			req, _ := http.NewRequest(http.MethodPost, te.httpURL("/api/rooms/"+tt.room+"/messages"), strings.NewReader(`{"body":"via http"}`))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("POST: status %d, want %d", resp.StatusCode, want)
			}
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, te.httpURL("/api/rooms/"+tt.room+"/events"), nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("SSE: status %d, want %d", resp.StatusCode, want)
			}
		})
	}
}
