package topology_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// TestTopologyHistoryDown runs one nats-server with the shipped users and
// permissions (deploy/nats/auth.conf), history, presence and an edge as
// separate processes, then stops history. A client joining a room with
// messages gets its join page from the stream (the edge's fallback), a
// client resuming with since gets what it missed from the stream too,
// sending still works and reaches both — and nats-server reports no
// permission violation (the fallback once created consumers, which the
// edge's user may not).
func TestTopologyHistoryDown(t *testing.T) {
	freePort := portPicker(t)
	bin := build(t)
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	// --- NATS: one node, the repository's users and permissions.
	auth, err := os.ReadFile(filepath.Join("..", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o600); err != nil {
		t.Fatal(err)
	}
	natsEnv := []string{}
	for user, pw := range passwords {
		natsEnv = append(natsEnv, "HUBBUB_NATS_"+strings.ToUpper(user)+"_PASSWORD="+pw)
	}
	node := &natsNode{name: "n1", client: freePort(), http: freePort()}
	conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\njetstream { store_dir: %q }\ninclude ./auth.conf\n",
		node.name, node.client, node.http, filepath.Join(dir, node.name))
	confPath := filepath.Join(dir, node.name+".conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	node.proc = start(t, "nats-"+node.name, filepath.Join(bin, "nats-server"), []string{"--config", confPath}, natsEnv, logs)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", node.http), node.proc, 30*time.Second)

	admin, err := nats.Connect(node.url(), nats.UserInfo("admin", passwords["admin"]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)

	// --- Services, each as its own NATS user.
	ports := map[string]int{"history": freePort(), "presence": freePort(), "edge": freePort()}
	procs := map[string]*proc{}
	for _, svc := range []struct {
		name  string
		extra map[string]string
	}{
		{"history", map[string]string{"HUBBUB_DATA_DIR": filepath.Join(dir, "history")}},
		{"presence", nil},
		{"edge", map[string]string{"HUBBUB_EDGE_ID": "edge-1", "HUBBUB_DRAIN_PERIOD": "1s"}},
	} {
		env := map[string]string{
			"HUBBUB_NATS_URL":      node.url(),
			"HUBBUB_NATS_USER":     svc.name,
			"HUBBUB_NATS_PASSWORD": passwords[svc.name],
			"HUBBUB_LOG_FORMAT":    "text",
			"HUBBUB_LOG_LEVEL":     "info",
			"HUBBUB_HTTP_ADDR":     fmt.Sprintf("127.0.0.1:%d", ports[svc.name]),
		}
		for k, v := range svc.extra {
			env[k] = v
		}
		procs[svc.name] = start(t, svc.name, filepath.Join(bin, "hubbub-"+svc.name), nil, envList(env), logs)
		waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[svc.name]), procs[svc.name], 60*time.Second)
	}

	const room = "fallback"
	ws := fmt.Sprintf("ws://127.0.0.1:%d/ws", ports["edge"])
	cctx, stopClients := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		stopClients()
		wg.Wait()
	})
	run := func(c *client) {
		wg.Go(func() { c.run(cctx) })
		waitFor(t, c.user+" joined", 30*time.Second, func() bool { return c.snapshot().connected })
	}
	send := func(c *client, n int) []uint64 {
		t.Helper()
		before := len(c.snapshot().acks)
		for range n {
			c.sendNew()
		}
		waitFor(t, fmt.Sprintf("%s's %d messages acked", c.user, n), 30*time.Second, func() bool {
			c.resend(2 * time.Second)
			return len(c.snapshot().acks) >= before+n
		})
		var ids []uint64
		for _, id := range c.snapshot().acks {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	}
	sees := func(c *client, ids []uint64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%s sees messages %v", c.user, ids), 30*time.Second, func() bool {
			var view []uint64
			for _, m := range c.snapshot().view {
				view = append(view, m.ID)
			}
			for _, id := range ids {
				if !slices.Contains(view, id) {
					return false
				}
			}
			return true
		})
	}

	// With history up: alice chats; history stores it.
	alice := newClient("alice", room, []string{ws})
	run(alice)
	before := send(alice, 5)
	sees(alice, before)
	waitFor(t, "history stored alice's messages", 30*time.Second, func() bool {
		page := historySince(t, admin, room)
		return len(page) > 0 && page[len(page)-1].ID >= before[len(before)-1]
	})

	// History goes away.
	procs["history"].stop()
	waitFor(t, "history no longer answers", 30*time.Second, func() bool {
		_, err := admin.Request(subjects.HistoryRecent, []byte(`{"room":"fallback","limit":1}`), time.Second)
		return errors.Is(err, nats.ErrNoResponders)
	})

	// A new member's join page comes from the stream.
	bob := newClient("bob", room, []string{ws})
	run(bob)
	sees(bob, before)
	// A member resuming from its second message gets the rest from the stream.
	carol := newClient("carol", room, []string{ws})
	carol.view = alice.snapshot().view[:2]
	run(carol)
	sees(carol, before)

	// Sending still works and reaches everyone.
	after := send(bob, 3)
	for _, c := range []*client{alice, bob, carol} {
		sees(c, after)
	}

	// Every view is what the stream holds: a chain, no gap, no duplicate.
	ajs, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	stored := readRoom(t, ajs, room)
	byID := map[uint64]string{}
	for _, m := range stored {
		byID[m.ID] = m.Body
	}
	for _, c := range []*client{alice, bob, carol} {
		s := c.snapshot()
		for _, v := range s.violations {
			t.Errorf("%s: %s", c.user, v)
		}
		for _, m := range s.view {
			if body, ok := byID[m.ID]; !ok || body != m.Body {
				t.Errorf("%s: message %d %q is not the stream's %q", c.user, m.ID, m.Body, body)
			}
		}
	}

	// The edge did serve from the stream, and nothing was refused.
	edgeLog, err := os.ReadFile(procs["edge"].log)
	if err != nil {
		t.Fatal(err)
	}
	// (pages.Log logs each read it serves from the stream: a join's newest
	// page is a recent read, a catch-up after an id a since read.)
	for _, want := range []string{"recent page served from the stream", "since page served from the stream"} {
		if !strings.Contains(string(edgeLog), want) {
			t.Errorf("the edge never logged %q: the fallback was not exercised", want)
		}
	}
	natsLog, err := os.ReadFile(node.proc.log)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(natsLog), "\n") {
		if strings.Contains(line, "Violation") {
			t.Errorf("nats-server: %s", line)
		}
	}
}
