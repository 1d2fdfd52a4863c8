package systemtest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, b.String()
}

func TestHTTPAPI(t *testing.T) {
	e := newSystem(t)
	te := e.startEdge(nil)
	alice := dial(t, te.wsURL("alice"))
	alice.join("general", nil)
	alice.await("roster", isType(wire.TypeRoster))
	first := alice.say("general", "hello api", "a-1")

	// POST: acked with the id, deduplicated by cid, delivered once.
	code, body := postJSON(t, te.httpURL("/api/rooms/general/messages?user=bob"), `{"body":"from http","cid":"p-1"}`)
	if code != 200 {
		t.Fatalf("post: %d %s", code, body)
	}
	var pr wire.PostReply
	if err := json.Unmarshal([]byte(body), &pr); err != nil || pr.ID == 0 {
		t.Fatalf("post reply %s", body)
	}
	code, body = postJSON(t, te.httpURL("/api/rooms/general/messages?user=bob"), `{"body":"from http","cid":"p-1"}`)
	var pr2 wire.PostReply
	if code != 200 || json.Unmarshal([]byte(body), &pr2) != nil || pr2.ID != pr.ID || !pr2.Duplicate {
		t.Fatalf("repost: %d %s, want id %d duplicate", code, body, pr.ID)
	}
	if m := alice.message(pr.ID); m.User != "bob" || m.Body != "from http" {
		t.Fatalf("message %+v", m)
	}
	for _, tc := range []struct{ url, body, code string }{
		{"/api/rooms/general/messages?user=bob", `{"body":"  ","cid":"p-2"}`, wire.CodeInvalidBody},
		{"/api/rooms/Bad.Room/messages?user=bob", `{"body":"x","cid":"p-3"}`, wire.CodeInvalidRoom},
		{"/api/rooms/general/messages?user=bob", `{"body":`, wire.CodeBadJSON},
	} {
		code, body := postJSON(t, te.httpURL(tc.url), tc.body)
		var ef wire.ErrorFrame
		if code != 400 || json.Unmarshal([]byte(body), &ef) != nil || ef.Code != tc.code {
			t.Fatalf("POST %s %s: %d %s, want 400 %s", tc.url, tc.body, code, body, tc.code)
		}
	}

	// Messages page (history ingests asynchronously).
	var page wire.Page
	natstest.Until(t, 10*time.Second, "history to store the messages", func() bool {
		code, body := httpGet(t, te.httpURL("/api/rooms/general/messages?limit=10"))
		return code == 200 && json.Unmarshal([]byte(body), &page) == nil && len(page.Items) > 0 && page.Items[len(page.Items)-1].ID == pr.ID
	})
	checkChain(t, page.Items)

	// Presence roster.
	code, body = httpGet(t, te.httpURL("/api/rooms/general/presence"))
	var rr wire.RosterReply
	if code != 200 || json.Unmarshal([]byte(body), &rr) != nil || rr.Online != 1 || len(rr.Users) != 1 || rr.Users[0] != "alice" {
		t.Fatalf("presence: %d %s", code, body)
	}

	// Lobby with online counts.
	code, body = httpGet(t, te.httpURL("/api/lobby"))
	var lobby wire.LobbyReply
	if code != 200 || json.Unmarshal([]byte(body), &lobby) != nil || len(lobby.Rooms) != 1 {
		t.Fatalf("lobby: %d %s", code, body)
	}
	if r := lobby.Rooms[0]; r.Room != "general" || r.Online != 1 || r.LastID != pr.ID {
		t.Fatalf("lobby room %+v", r)
	}

	// SSE resuming after the first message: a history event with what
	// followed, then live message events carrying their ids.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", te.httpURL("/api/rooms/general/events?user=sse"), nil)
	req.Header.Set("Last-Event-ID", strconv.FormatUint(first, 10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	events := sseEvents(resp.Body)
	ev := nextEvent(t, events, "history")
	var h wire.History
	if err := json.Unmarshal([]byte(ev.data), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Items) == 0 || h.Items[0].Prev != first || !h.Recovered {
		t.Fatalf("sse history %s", ev.data)
	}
	if ev.id != strconv.FormatUint(h.Items[len(h.Items)-1].ID, 10) {
		t.Fatalf("history event id %q, want the last item's id", ev.id)
	}
	live := alice.say("general", "to sse", "a-2")
	for {
		ev = nextEvent(t, events, "message")
		var mf wire.MessageFrame
		if err := json.Unmarshal([]byte(ev.data), &mf); err != nil || ev.id != strconv.FormatUint(mf.Message.ID, 10) {
			t.Fatalf("sse message event id %q data %s", ev.id, ev.data)
		}
		if mf.Message.ID == live {
			break
		}
		if mf.Message.Kind != wire.KindSystem {
			t.Fatalf("unexpected message before %d: %s", live, ev.data)
		}
	}
}

type sseEvent struct{ id, event, data string }

func sseEvents(r interface{ Read([]byte) (int, error) }) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" || ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
	}()
	return ch
}

func nextEvent(t *testing.T, ch <-chan sseEvent, event string) sseEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended awaiting %s", event)
			}
			if ev.event == event {
				return ev
			}
		case <-deadline:
			t.Fatalf("timed out awaiting %s event", event)
		}
	}
}
