package systemtest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// dialUser opens a client of the edge at url and reads its welcome.
func dialUser(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.Dial(tctx(t), url, client.Options{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Welcome(tctx(t)); err != nil {
		t.Fatalf("welcome: %v", err)
	}
	return c
}

func awaitUnread(t *testing.T, c *client.Client, what, room string, match func(wire.Unread) bool) wire.Unread {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	u, err := c.AwaitUnread(ctx, room, match)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return u
}

// Read state is the user's, not a connection's or an edge's: a mention
// reaches both of alice's connections on two edges, a read on one clears
// both, and after an edge restart the join pushes the same counts (they
// are in the reads bucket and history, not in an edge); the lobby carries
// them too.
func TestReadStateAcrossEdges(t *testing.T) {
	e := newSystem(t)
	one, two := e.startEdge(nil), e.startEdge(nil)
	a1, a2 := dialUser(t, one.wsURL("alice")), dialUser(t, two.wsURL("alice"))
	bob := dial(t, one.wsURL("bob"))
	for _, c := range []*client.Client{a1, a2} {
		if _, err := c.Join(tctx(t), "r", nil); err != nil {
			t.Fatal(err)
		}
		awaitUnread(t, c, "the join's unread", "r", func(u wire.Unread) bool { return u.Count == 0 })
	}
	bob.join("r", nil)

	first := bob.say("r", "hello @alice", "m1") // the edge resolves the mention
	for i, c := range []*client.Client{a1, a2} {
		u := awaitUnread(t, c, "the mention's unread", "r", func(u wire.Unread) bool { return u.Mentions >= 1 })
		if u.Count < 1 {
			t.Fatalf("connection %d: %+v, want at least one unread", i, u)
		}
	}
	if err := a1.Read("r", first); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{a1, a2} {
		awaitUnread(t, c, "the read's unread", "r", func(u wire.Unread) bool {
			return u.Read == first && u.Count == 0 && u.Mentions == 0
		})
	}
	bob.say("r", "still there, @alice?", "m2")
	bob.say("r", "anyone", "m3")
	awaitUnread(t, a2, "two more", "r", func(u wire.Unread) bool { return u.Read == first && u.Count == 2 && u.Mentions == 1 })

	two.stop()
	three := e.startEdge(nil)
	again := dialUser(t, three.wsURL("alice"))
	if _, err := again.Join(tctx(t), "r", nil); err != nil {
		t.Fatal(err)
	}
	u := awaitUnread(t, again, "the join's unread after the restart", "r", func(wire.Unread) bool { return true })
	if u.Read != first || u.Count != 2 || u.Mentions != 1 {
		t.Fatalf("after the restart: %+v, want read %d, 2 unread, 1 mention", u, first)
	}

	status, body := httpGet(t, one.httpURL("/api/lobby?user=alice"))
	if status != http.StatusOK {
		t.Fatalf("lobby: %d %s", status, body)
	}
	var lobby wire.LobbyReply
	if err := json.Unmarshal([]byte(body), &lobby); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rs := range lobby.Rooms {
		if rs.Room == "r" {
			found = true
			if rs.Unread != 2 || rs.Mentions != 1 {
				t.Fatalf("lobby: %+v, want 2 unread and 1 mention", rs)
			}
		}
	}
	if !found {
		t.Fatalf("room r not in the lobby: %s", body)
	}
	// A read over HTTP reaches the WebSockets the same way.
	status, body = do(t, http.MethodPut, one.httpURL("/api/rooms/r/read?user=alice"), nil, `{"id":`+jsonID(u.Read+100)+`}`)
	if status != http.StatusNoContent {
		t.Fatalf("PUT read: %d %s", status, body)
	}
	awaitUnread(t, again, "the HTTP read's unread", "r", func(u wire.Unread) bool { return u.Count == 0 && u.Read > first })

	// Connections that end leave nothing in the edge's push index.
	if one.ReadStateUsers() != 2 {
		t.Fatalf("edge one pushes to %d users, want 2 (alice, bob)", one.ReadStateUsers())
	}
	_ = a1.Close()
	_ = bob.c.Close()
	natstest.Until(t, 10*time.Second, "edge one's push index empties", func() bool { return one.ReadStateUsers() == 0 })
}

func jsonID(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
