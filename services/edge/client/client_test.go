package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// scriptedServer answers each client text frame with the frames reply
// returns for it (a stand-in for an edge, for the client's own rules).
func scriptedServer(t *testing.T, reply func(wire.ClientFrame) []any) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			data, err := wsutil.ReadClientText(conn)
			if err != nil {
				return
			}
			var f wire.ClientFrame
			if err := json.Unmarshal(data, &f); err != nil {
				return
			}
			for _, out := range reply(f) {
				b, _ := json.Marshal(out)
				if err := wsutil.WriteServerText(conn, b); err != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

// Say returns the ack's id, and the frames that arrived before the ack
// (another user's message here) are still there for Next, in order.
func TestSayKeepsOtherFrames(t *testing.T) {
	url := scriptedServer(t, func(f wire.ClientFrame) []any {
		if f.Type != wire.TypeMessage {
			return nil
		}
		if f.Body == "refuse me" {
			return []any{wire.ErrorFrame{Type: wire.TypeError, Code: wire.CodeRateLimited, Message: "slow down", CID: f.CID}}
		}
		return []any{
			wire.MessageFrame{Type: wire.TypeMessage, Room: f.Room, Message: wire.Message{ID: 5, Room: f.Room, User: "bob", Body: "first", Kind: wire.KindMessage}},
			wire.Ack{Type: wire.TypeAck, CID: "someone-else", ID: 6},
			wire.Ack{Type: wire.TypeAck, CID: f.CID, ID: 7},
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	id, err := c.Say(ctx, "general", "hello", "c1")
	if err != nil || id != 7 {
		t.Fatalf("Say = %d, %v; want 7", id, err)
	}
	f, err := c.Next(ctx)
	if err != nil || f.Type != wire.TypeMessage {
		t.Fatalf("first frame after Say: %+v, %v; want bob's message", f, err)
	}
	var m wire.MessageFrame
	if err := f.Decode(&m); err != nil || m.Message.ID != 5 {
		t.Fatalf("message %+v, %v; want id 5", m, err)
	}
	if f, err = c.Next(ctx); err != nil || f.Type != wire.TypeAck {
		t.Fatalf("second frame after Say: %+v, %v; want the other cid's ack", f, err)
	}

	_, err = c.Say(ctx, "general", "refuse me", "c2")
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeRateLimited {
		t.Fatalf("refused Say: %v; want a %s wire.Error", err, wire.CodeRateLimited)
	}
}
