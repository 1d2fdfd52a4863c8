package topology_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

var passwords = map[string]string{
	"admin":    "topology-admin",
	"edge":     "topology-edge",
	"history":  "topology-history",
	"presence": "topology-presence",
}

// natsNode is one nats-server process of the cluster.
type natsNode struct {
	name               string
	client, http, rout int
	proc               *proc
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.client) }

// TestTopologySurvivesKills runs the system as separate processes — a
// 3-node NATS JetStream cluster with the per-service users of
// deploy/nats/auth.conf, history, presence and two edges — with WebSocket
// clients on both edges chatting in one room. It kills the CHAT stream's
// leader node and then one edge with SIGKILL while messages flow, and shows
// that no acknowledged message is lost, no cid is stored twice, and every
// client's view is a complete, gap-free, duplicate-free chain after
// reconnecting with since; history holds every message exactly once.
func TestTopologySurvivesKills(t *testing.T) {
	freePort := portPicker(t)
	t0 := time.Now()
	bin := build(t)
	t.Logf("built the binaries in %v", time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() { t.Logf("stopped everything at %v", time.Since(t0).Round(time.Millisecond)) })
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	// --- NATS: three nodes, the repository's users and permissions.
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
	nodes := make([]*natsNode, 3)
	var routes []string
	for i := range nodes {
		nodes[i] = &natsNode{name: fmt.Sprintf("n%d", i+1), client: freePort(), http: freePort(), rout: freePort()}
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", nodes[i].rout))
	}
	for _, n := range nodes {
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: hubbub
  listen: 127.0.0.1:%d
  routes: [%s]
}
include ./auth.conf
`, n.name, n.client, n.http, filepath.Join(dir, n.name), n.rout, strings.Join(routes, ", "))
		path := filepath.Join(dir, n.name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n.proc = start(t, "nats-"+n.name, filepath.Join(bin, "nats-server"), []string{"--config", path}, natsEnv, logs)
	}
	for _, n := range nodes {
		waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", n.http), n.proc, 30*time.Second)
	}
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	natsURLs := strings.Join(urls, ",")

	admin, err := nats.Connect(natsURLs, nats.UserInfo("admin", passwords["admin"]), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "JetStream cluster ready", 30*time.Second, func() bool {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(actx)
		return err == nil
	})

	// --- Services.
	service := func(name, user string, port int, extra map[string]string) *proc {
		env := map[string]string{
			"HUBBUB_NATS_URL":        natsURLs,
			"HUBBUB_NATS_USER":       user,
			"HUBBUB_NATS_PASSWORD":   passwords[user],
			"HUBBUB_LOG_FORMAT":      "text",
			"HUBBUB_LOG_LEVEL":       "info",
			"HUBBUB_STREAM_REPLICAS": "3",
			"HUBBUB_HTTP_ADDR":       fmt.Sprintf("127.0.0.1:%d", port),
		}
		for k, v := range extra {
			env[k] = v
		}
		p := start(t, name, filepath.Join(bin, "hubbub-"+user), nil, envList(env), logs)
		return p
	}
	historyEnv := map[string]string{"HUBBUB_DATA_DIR": filepath.Join(dir, "history")}
	if dbURL := os.Getenv("HUBBUB_TEST_DATABASE_URL"); dbURL != "" {
		historyEnv["HUBBUB_DATABASE_URL"] = freshDatabase(t, dbURL)
	}
	ports := map[string]int{"history": freePort(), "presence": freePort(), "edge-a": freePort(), "edge-b": freePort()}
	// Started in the order compose and Kubernetes bring them up (history and
	// presence, then the edges), each once the previous one is ready.
	procs := map[string]*proc{}
	for _, svc := range []struct {
		name, user string
		extra      map[string]string
	}{
		{"history", "history", historyEnv},
		{"presence", "presence", nil},
		{"edge-a", "edge", map[string]string{"HUBBUB_EDGE_ID": "edge-a", "HUBBUB_DRAIN_PERIOD": "1s"}},
		{"edge-b", "edge", map[string]string{"HUBBUB_EDGE_ID": "edge-b", "HUBBUB_DRAIN_PERIOD": "1s"}},
	} {
		procs[svc.name] = service(svc.name, svc.user, ports[svc.name], svc.extra)
		waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[svc.name]), procs[svc.name], 60*time.Second)
		t.Logf("%s ready after %v", svc.name, time.Since(t0).Round(time.Millisecond))
	}
	t.Logf("system ready after %v", time.Since(t0).Round(time.Millisecond))
	for name := range procs {
		for _, path := range []string{"/healthz", "/readyz"} {
			if err := healthcheck(t, bin, ports[name], path); err != nil {
				t.Fatalf("hubbub-healthcheck %s on %s: %v", path, name, err)
			}
		}
	}
	chat, err := js.Stream(ctx, subjects.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if info := chat.CachedInfo(); info.Config.Replicas != 3 {
		t.Fatalf("CHAT has %d replicas, want 3 (HUBBUB_STREAM_REPLICAS)", chat.CachedInfo().Config.Replicas)
	}

	// --- Clients: two on each edge, one room.
	const room = "topology"
	wsA := fmt.Sprintf("ws://127.0.0.1:%d/ws", ports["edge-a"])
	wsB := fmt.Sprintf("ws://127.0.0.1:%d/ws", ports["edge-b"])
	clients := []*client{
		newClient("alice", room, []string{wsA, wsB}),
		newClient("bob", room, []string{wsA, wsB}),
		newClient("carol", room, []string{wsB, wsA}),
		newClient("dave", room, []string{wsB, wsA}),
	}
	cctx, stopClients := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		stopClients()
		wg.Wait()
	})
	for _, c := range clients {
		wg.Go(func() { c.run(cctx) })
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range clients {
				s := c.snapshot()
				t.Logf("%s: joined=%v, view up to %d, %d acked, %d pending, events %q, errors %v",
					c.user, s.connected, lastID(s.view), len(s.acks), s.pending, s.events, s.errorCodes)
			}
		}
	})
	waitFor(t, "every client joined", 30*time.Second, func() bool {
		for _, c := range clients {
			if !c.snapshot().connected {
				return false
			}
		}
		return true
	})

	// Traffic: each client sends ~6 messages a second (under the edge's
	// per-connection limit) and resends what is not acked after 2 s.
	sctx, stopSending := context.WithCancel(cctx)
	defer stopSending()
	for _, c := range clients {
		wg.Go(func() {
			tick := time.NewTicker(150 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-sctx.Done():
					return
				case <-tick.C:
					c.sendNew()
					c.resend(2 * time.Second)
				}
			}
		})
	}
	acked := func() int {
		n := 0
		for _, c := range clients {
			n += len(c.snapshot().acks)
		}
		return n
	}
	began := time.Now()
	progress := func(what string, more int) {
		t.Helper()
		defer func() { t.Logf("%v: %d acks %s", time.Since(began).Round(time.Millisecond), acked(), what) }()
		target := acked() + more
		waitFor(t, fmt.Sprintf("%d more acked messages %s", more, what), 60*time.Second, func() bool { return acked() >= target })
	}
	progress("before the faults", 40)

	// Fault 1: SIGKILL the NATS node leading the CHAT stream.
	sinfo, err := chat.Info(ctx)
	if err != nil || sinfo.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	var leader *natsNode
	for _, n := range nodes {
		if n.name == sinfo.Cluster.Leader {
			leader = n
		}
	}
	if leader == nil {
		t.Fatalf("CHAT leader %q is not one of the nodes", sinfo.Cluster.Leader)
	}
	t.Logf("killing NATS node %s (CHAT leader) after %d acks", leader.name, acked())
	leader.proc.kill(t)
	progress("after losing a NATS node", 40)

	// Fault 2: SIGKILL edge A; its clients reconnect to edge B with since.
	t.Logf("killing edge-a after %d acks", acked())
	procs["edge-a"].kill(t)
	if err := healthcheck(t, bin, ports["edge-a"], "/healthz"); err == nil {
		t.Error("hubbub-healthcheck reports a killed edge healthy")
	}
	waitFor(t, "alice and bob reconnected to edge B", 30*time.Second, func() bool {
		for _, c := range clients[:2] {
			s := c.snapshot()
			if !s.connected || s.edge != wsB || s.connections < 2 {
				return false
			}
		}
		return true
	})
	progress("after losing an edge", 40)

	// Stop sending new messages; resend until everything is acked.
	stopSending()
	waitFor(t, "every message acked", 60*time.Second, func() bool {
		done := true
		for _, c := range clients {
			c.resend(time.Second)
			if c.snapshot().pending > 0 {
				done = false
			}
		}
		return done
	})

	t.Logf("%v: every message acked", time.Since(began).Round(time.Millisecond))

	// --- What the stream holds is the truth.
	stored := readRoom(t, js, room)
	last := stored[len(stored)-1].ID
	waitFor(t, "every client caught up with the stream", 30*time.Second, func() bool {
		for _, c := range clients {
			s := c.snapshot()
			if len(s.view) == 0 || s.view[len(s.view)-1].ID < last {
				return false
			}
		}
		return true
	})
	stored = readRoom(t, js, room) // presence may have added leave messages meanwhile
	byID := map[uint64]wire.Message{}
	cids := map[string]uint64{}
	for _, m := range stored {
		byID[m.ID] = m
		if m.Kind == wire.KindMessage {
			key := m.User + "/" + m.CID
			if prev, dup := cids[key]; dup {
				t.Errorf("cid %s stored twice: ids %d and %d", key, prev, m.ID)
			}
			cids[key] = m.ID
		}
	}

	totalAcks := 0
	for _, c := range clients {
		s := c.snapshot()
		totalAcks += len(s.acks)
		t.Logf("%s: %d acked, view of %d messages (%d..%d), connections %q, errors %v",
			c.user, len(s.acks), len(s.view), s.view[0].ID, s.view[len(s.view)-1].ID, s.events, s.errorCodes)
		for _, v := range s.violations {
			t.Errorf("%s: %s", c.user, v)
		}
		// No acked message lost: each ack names the stored message with that cid.
		for cid, id := range s.acks {
			m, ok := byID[id]
			if !ok {
				t.Errorf("%s: acked id %d (cid %s) is not in the stream", c.user, id, cid)
				continue
			}
			if m.CID != cid || m.User != c.user {
				t.Errorf("%s: ack %d for cid %s, but the stream holds %s/%s there", c.user, id, cid, m.User, m.CID)
			}
		}
		if s.pending != 0 {
			t.Errorf("%s: %d messages never acked", c.user, s.pending)
		}
		// Complete: the view is exactly the stream from the client's first id on.
		var want []uint64
		for _, m := range stored {
			if m.ID >= s.view[0].ID && m.ID <= s.view[len(s.view)-1].ID {
				want = append(want, m.ID)
			}
		}
		var got []uint64
		for _, m := range s.view {
			got = append(got, m.ID)
			if sm := byID[m.ID]; sm.Body != m.Body || sm.User != m.User || sm.Prev != m.Prev {
				t.Errorf("%s: message %d differs from the stream: %+v vs %+v", c.user, m.ID, m, sm)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: view %v\nwant (stream) %v", c.user, compact(got), compact(want))
		}
		// Every acked message of every client is in this client's view.
		for _, other := range clients {
			for cid, id := range other.snapshot().acks {
				if id >= s.view[0].ID && !slices.Contains(got, id) {
					t.Errorf("%s misses %s's acked message %d (%s)", c.user, other.user, id, cid)
				}
			}
		}
	}
	if totalAcks < 120 {
		t.Errorf("only %d messages acked", totalAcks)
	}

	t.Logf("%v: views checked", time.Since(began).Round(time.Millisecond))
	// History (its own process, its own store) holds each message exactly once.
	waitFor(t, "history caught up, exactly once", 30*time.Second, func() bool {
		page := historySince(t, admin, room)
		if len(page) != len(stored) {
			return false
		}
		for i := range page {
			if page[i].ID != stored[i].ID || page[i].Prev != stored[i].Prev || page[i].Body != stored[i].Body {
				return false
			}
		}
		return true
	})
}

// readRoom reads every message of room from the stream with an ordered
// consumer. A cluster that just lost a node can answer JetStream API calls
// with "no responders" or time out for a while, so a failed read is
// retried from the start for up to 30 seconds.
func readRoom(t *testing.T, js jetstream.JetStream, room string) []wire.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := readRoomOnce(t.Context(), js, room)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("read room %s from the stream: %v", room, err)
		}
		t.Logf("read room %s from the stream: %v (retrying)", room, err)
		time.Sleep(250 * time.Millisecond)
	}
}

func readRoomOnce(ctx context.Context, js jetstream.JetStream, room string) ([]wire.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, subjects.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjects.Room(room)},
	})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	var out []wire.Message
	var prev uint64
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		var pending uint64
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("metadata: %w", err)
			}
			var p wire.Post
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				return nil, fmt.Errorf("stored message %d: %w", md.Sequence.Stream, err)
			}
			out = append(out, p.Stored(md.Sequence.Stream, prev))
			prev = md.Sequence.Stream
			pending = md.NumPending
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		if n == 0 || pending == 0 {
			if len(out) == 0 {
				return nil, errors.New("the room is empty in the stream")
			}
			return out, nil
		}
	}
}

// historySince pages through hubbub.history.since from the start.
func historySince(t *testing.T, nc *nats.Conn, room string) []wire.Message {
	t.Helper()
	var out []wire.Message
	var after uint64
	for {
		req, _ := json.Marshal(wire.SinceRequest{Room: room, After: after, Limit: 200})
		msg, err := nc.Request(subjects.HistorySince, req, 5*time.Second)
		if err != nil {
			return nil
		}
		var page wire.Page
		if err := json.Unmarshal(msg.Data, &page); err != nil {
			return nil
		}
		out = append(out, page.Items...)
		if !page.HasMore || len(page.Items) == 0 {
			return out
		}
		after = page.Items[len(page.Items)-1].ID
	}
}

// freshDatabase creates an empty database for this test on the server of
// baseURL and drops it afterwards.
func freshDatabase(t *testing.T, baseURL string) string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		t.Fatalf("HUBBUB_TEST_DATABASE_URL: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	name := fmt.Sprintf("hubbub_topology_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), baseURL)
		if err != nil {
			return
		}
		defer func() { _ = c.Close(context.Background()) }()
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func lastID(view []wire.Message) uint64 {
	if len(view) == 0 {
		return 0
	}
	return view[len(view)-1].ID
}

// compact renders an id list as runs: [1-5 7 9-12].
func compact(ids []uint64) string {
	var b strings.Builder
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ids[i], ids[j])
		} else {
			fmt.Fprintf(&b, "%d", ids[i])
		}
		i = j + 1
	}
	return "[" + b.String() + "]"
}
