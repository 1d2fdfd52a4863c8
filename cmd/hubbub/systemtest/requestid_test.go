package systemtest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// The edge sends the id of the client request with the NATS requests it
// makes for it (Hubbub-Request-Id): the HTTP request's X-Request-Id (or a
// new one, echoed back), and "<conn>.<frame>" for a WebSocket frame.
func TestRequestIDsReachNATS(t *testing.T) {
	e := newEnv(t)
	e.startHistory()
	te := e.startEdge(nil)
	tap := make(chan *nats.Msg, 64)
	sub, err := e.NC.ChanSubscribe("hubbub.history.>", tap)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.NC.Flush(); err != nil { // the tap is in place before the first request
		t.Fatal(err)
	}
	awaitID := func(match func(string) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m := <-tap:
				if match(m.Header.Get(subjects.HeaderRequestID)) {
					return
				}
			case <-deadline:
				t.Fatal("no history request carried the expected request id")
			}
		}
	}

	req, _ := http.NewRequest("GET", te.httpURL("/api/rooms/general/messages"), nil)
	req.Header.Set("X-Request-Id", "trace-me-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "trace-me-42" {
		t.Fatalf("X-Request-Id echoed %q", got)
	}
	awaitID(func(id string) bool { return id == "trace-me-42" })

	resp, err = http.Get(te.httpURL("/api/lobby"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	gen := resp.Header.Get("X-Request-Id")
	if gen == "" {
		t.Fatal("no request id generated")
	}
	awaitID(func(id string) bool { return id == gen })

	c := dial(t, te.wsURL("amy"))
	c.join("general", nil)
	awaitID(func(id string) bool { return strings.HasSuffix(id, ".1") && len(id) > 2 })
}
