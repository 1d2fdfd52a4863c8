package pages

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// readerPermissions are what the edge's user in deploy/nats/auth.conf
// may do with CHAT to read it: stream info and direct gets, no consumers.
var readerPermissions = &server.Permissions{
	Publish: &server.SubjectPermission{Allow: []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.CHAT",
		"$JS.API.DIRECT.GET.CHAT", "$JS.API.DIRECT.GET.CHAT.>",
		"$JS.API.STREAM.MSG.GET.CHAT",
	}},
	Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
}

// startPermissioned runs a JetStream server with an "admin" user who may
// do anything and a "reader" user with readerPermissions.
func startPermissioned(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "reader", Password: "reader", Permissions: readerPermissions},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

// violations collects the asynchronous errors (permission violations) the
// server reports to a connection.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

func (v *violations) list() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.errs)
}

// TestStreamFallbackWithoutConsumers reads pages of a room from the stream
// as a user that may read CHAT with direct gets but create no consumer
// (the edge's permissions): since pages chain and page on, the newest page
// is the room's newest messages, a cursor older than the stream is answered
// recovered=false, what history's decoder refuses is skipped, and the server reports no
// permission violation.
func TestStreamFallbackWithoutConsumers(t *testing.T) {
	url := startPermissioned(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	admin, err := nats.Connect(url, nats.UserInfo("admin", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ajs, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := provision.Ensure(ctx, ajs, provision.Config{}); err != nil {
		t.Fatal(err)
	}
	// Room a: 300 messages (more than one direct-get batch), interleaved
	// with room b, and one payload that is not a message.
	var roomA []uint64
	for i := range 300 {
		post, _ := json.Marshal(wire.Post{Room: "a", User: "alice", Body: fmt.Sprintf("a%d", i), Kind: wire.KindMessage, TS: 1, CID: fmt.Sprint(i)})
		ack, err := ajs.Publish(ctx, subjects.Room("a"), post)
		if err != nil {
			t.Fatal(err)
		}
		roomA = append(roomA, ack.Sequence)
		if _, err := ajs.Publish(ctx, subjects.Room("b"), []byte(`{"room":"b","body":"b"}`)); err != nil {
			t.Fatal(err)
		}
		if i == 100 {
			// Stored, but not messages of the room by history's rule:
			// not JSON, a NUL in the body, a body over the limit.
			for _, bad := range []string{"not json", `{"user":"u","body":"a\u0000b","ts":1}`, `{"user":"u","body":"` + strings.Repeat("x", 101) + `","ts":1}`} {
				if _, err := ajs.Publish(ctx, subjects.Room("a"), []byte(bad)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	var v violations
	nc, err := nats.Connect(url, nats.UserInfo("reader", "reader"), nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := New(nreq.New(nc, 10*time.Second), "", roomlog.Decoder{MaxBody: 100}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dec := roomlog.Decoder{MaxBody: 100}
	ids := func(p wire.Page) []uint64 {
		var out []uint64
		for _, m := range p.Items {
			out = append(out, m.ID)
		}
		return out
	}

	t.Run("since pages chain through the whole room", func(t *testing.T) {
		var got []uint64
		after := uint64(0)
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("no end after %d pages", pages)
			}
			p, err := c.StreamSince(ctx, dec, "a", after, 50)
			if err != nil {
				t.Fatalf("StreamSince after %d: %v", after, err)
			}
			if !p.Recovered {
				t.Fatalf("after %d: recovered=false", after)
			}
			prev := after
			for _, m := range p.Items {
				if m.Prev != prev || m.Room != "a" || m.Body != fmt.Sprintf("a%d", len(got)) || m.Kind != wire.KindMessage {
					t.Fatalf("after %d: item %+v, want prev %d, body a%d", after, m, prev, len(got))
				}
				prev = m.ID
				got = append(got, m.ID)
			}
			if !p.HasMore {
				break
			}
			if len(p.Items) != 50 {
				t.Fatalf("page of %d with has_more", len(p.Items))
			}
			after = prev
		}
		if !slices.Equal(got, roomA) {
			t.Fatalf("read %d ids %v…, want %d %v…", len(got), got[:min(5, len(got))], len(roomA), roomA[:5])
		}
	})

	t.Run("since the newest id is empty", func(t *testing.T) {
		p, err := c.StreamSince(ctx, dec, "a", roomA[len(roomA)-1], 50)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != 0 || p.HasMore || !p.Recovered || p.Last != roomA[len(roomA)-1] {
			t.Fatalf("page %v has_more=%v recovered=%v last %d, want empty, recovered, last %d", ids(p), p.HasMore, p.Recovered, p.Last, roomA[len(roomA)-1])
		}
	})

	t.Run("recent is the newest page", func(t *testing.T) {
		p, err := c.StreamRecent(ctx, dec, "a", 50)
		if err != nil {
			t.Fatal(err)
		}
		if want := roomA[len(roomA)-50:]; !slices.Equal(ids(p), want) {
			t.Fatalf("recent %v, want %v", ids(p), want)
		}
		// The first item's prev is the room's event before it (read with
		// the window), the page's last the newest event.
		if !p.HasMore || !p.Recovered || p.Items[0].Prev != roomA[len(roomA)-51] || p.Last != roomA[len(roomA)-1] {
			t.Fatalf("has_more=%v recovered=%v first prev %d (want %d) last %d", p.HasMore, p.Recovered, p.Items[0].Prev, roomA[len(roomA)-51], p.Last)
		}
		for i := 1; i < len(p.Items); i++ {
			if p.Items[i].Prev != p.Items[i-1].ID {
				t.Fatalf("item %d prev %d, want %d", i, p.Items[i].Prev, p.Items[i-1].ID)
			}
		}
		empty, err := c.StreamRecent(ctx, dec, "nobody-here", 50)
		if err != nil || len(empty.Items) != 0 || !empty.Recovered {
			t.Fatalf("recent of an empty room: %+v, %v", empty, err)
		}
	})

	t.Run("a cursor older than the stream is not recovered", func(t *testing.T) {
		st, err := ajs.Stream(ctx, subjects.Stream)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Purge(ctx, jetstream.WithPurgeSequence(roomA[200])); err != nil {
			t.Fatal(err)
		}
		p, err := c.StreamSince(ctx, dec, "a", roomA[10], 50)
		if err != nil {
			t.Fatal(err)
		}
		if p.Recovered || !slices.Equal(ids(p), roomA[len(roomA)-50:]) {
			t.Fatalf("recovered=%v items %v, want the newest page, recovered=false", p.Recovered, ids(p))
		}
	})

	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, e := range v.list() {
		if strings.Contains(strings.ToLower(e), "permission") {
			t.Errorf("server reported: %s", e)
		}
	}
}
