package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/cmd/hubbub/app"
	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// hubDomain is the JetStream domain of the hub in TestJetStreamDomain.
const hubDomain = "hub"

// startHubAndLeaf runs a hub nats-server with JetStream in domain "hub"
// and a leaf-node server without JetStream connected to it (both on
// loopback, random ports), and returns them once the hub's JetStream
// answers leaf clients in its domain. Clients of the leaf reach it only
// through $JS.hub.API: the servers deny the domain-less JetStream API
// ($JS.API.>, $KV.>) across the leaf connection.
func startHubAndLeaf(t *testing.T) (hub, leaf *server.Server) {
	t.Helper()
	run := func(opts *server.Options) *server.Server {
		t.Helper()
		opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			s.Shutdown()
			t.Fatalf("nats-server %s not ready", opts.ServerName)
		}
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		return s
	}
	hubOpts := &server.Options{
		ServerName: "hub", JetStream: true, JetStreamDomain: hubDomain, StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: server.RANDOM_PORT},
	}
	hub = run(hubOpts)
	if !hub.JetStreamEnabled() {
		t.Fatal("hub: JetStream not enabled")
	}
	// The server writes the port it bound back into its options.
	hubLeafURL, err := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", hubOpts.LeafNode.Port))
	if err != nil {
		t.Fatal(err)
	}
	leaf = run(&server.Options{
		ServerName: "leaf",
		LeafNode:   server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{hubLeafURL}}}},
	})
	if leaf.JetStreamEnabled() {
		t.Fatal("leaf: JetStream enabled; the test needs a leaf without it")
	}
	waitUntil(t, "the leaf node connected to the hub", func() error {
		if hub.NumLeafNodes() != 1 || leaf.NumLeafNodes() != 1 {
			return fmt.Errorf("leaf connections: hub %d, leaf %d", hub.NumLeafNodes(), leaf.NumLeafNodes())
		}
		return nil
	})
	// The hub's domain API is reachable from the leaf once the leaf
	// connection has exchanged interest.
	nc, err := nats.Connect(leaf.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, hubDomain)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the hub's JetStream reachable from the leaf in domain "+hubDomain, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	return hub, leaf
}

// waitUntil polls f until it returns nil, failing the test with f's last
// error after 20 s.
func waitUntil(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// subjectLog records the subjects of the messages a subscription sees.
type subjectLog struct {
	mu   sync.Mutex
	subj []string
}

func (l *subjectLog) add(m *nats.Msg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subj = append(l.subj, m.Subject)
}

func (l *subjectLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.subj)
}

// watchSubjects subscribes on nc to each of subjs and records what arrives.
func watchSubjects(t *testing.T, nc *nats.Conn, subjs ...string) *subjectLog {
	t.Helper()
	l := &subjectLog{}
	for _, s := range subjs {
		if _, err := nc.Subscribe(s, l.add); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l
}

func domainConfig(t *testing.T, leafURL, domain string) app.Config {
	var cfg app.Config
	cfg.DataDir = t.TempDir()
	cfg.NATS = natsconn.Config{URL: leafURL, JSDomain: domain}
	cfg.Presence.Grace = 300 * time.Millisecond
	cfg.Edge.HTTPAddr = "127.0.0.1:0"
	cfg.Edge.DrainPeriod = 200 * time.Millisecond
	cfg.Log = logging.Discard()
	cfg.Provision.Log = cfg.Log
	return cfg
}

func wsDial(t *testing.T, addr, user string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+addr+"/ws?user="+url.QueryEscape(user), client.Options{})
	if err != nil {
		t.Fatalf("dial as %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Welcome(ctx); err != nil {
		t.Fatalf("welcome for %s: %v", user, err)
	}
	return c
}

// awaitFrame reads c's frames until one satisfies pred, failing on an
// error frame.
func awaitFrame(t *testing.T, c *client.Client, what string, pred func(client.Frame) bool) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	for {
		f, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if f.Type == wire.TypeError {
			t.Fatalf("waiting for %s: error frame %s", what, f.Raw)
		}
		if pred(f) {
			return f
		}
	}
}

func messageIDs(items []wire.Message) []uint64 {
	out := make([]uint64, len(items))
	for i, m := range items {
		out[i] = m.ID
	}
	return out
}

func getJSONInto(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestJetStreamDomain runs the all-in-one against a leaf node whose
// JetStream is a hub's, in domain "hub" (HUBBUB_NATS_JS_DOMAIN=hub):
// provisioning creates the stream and buckets in the hub; a message
// posted over a WebSocket is stored by history (its consumer acks it) and
// read back through a join's history and GET /api/rooms/{room}/messages;
// presence keeps the roster in the hub's bucket and answers; typing goes
// through. Then, with history down, a lone edge serves a join from the
// stream with direct gets to $JS.hub.API.DIRECT.GET.CHAT.
//
// Two checks make sure no JetStream handle ignores the domain: without
// the domain the same all-in-one fails to start, and with it a watcher on
// the leaf sees no request to the domain-less API ($JS.API.>, $KV.>) at
// any point.
func TestJetStreamDomain(t *testing.T) {
	hub, leaf := startHubAndLeaf(t)
	leafURL := leaf.ClientURL()

	// The hub, seen directly (its own JetStream, no domain needed).
	hubNC, err := nats.Connect(hub.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hubNC.Close)
	hubJS, err := jetstream.New(hubNC)
	if err != nil {
		t.Fatal(err)
	}
	hubStreams := func() []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var names []string
		l := hubJS.StreamNames(ctx)
		for n := range l.Name() {
			names = append(names, n)
		}
		if err := l.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		return names
	}

	// Without the domain: the leaf has no JetStream of its own and does
	// not pass the hub's domain-less API on, so start-up fails.
	t.Run("without the domain start-up fails", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		sys, err := app.Start(ctx, domainConfig(t, leafURL, ""))
		if err == nil {
			_ = sys.Stop()
			t.Fatal("the all-in-one started on the leaf without the JetStream domain")
		}
		t.Logf("without the domain: %v", err)
		if !errors.Is(err, jetstream.ErrJetStreamNotEnabled) && !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("error %v: want JetStream unavailable", err)
		}
		if names := hubStreams(); len(names) != 0 {
			t.Fatalf("the hub has streams %v after a start without the domain", names)
		}
	})
	if t.Failed() {
		return
	}

	// Every request a Hubbub client on the leaf sends to the domain-less
	// JetStream API lands here.
	tripNC, err := nats.Connect(leafURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tripNC.Close)
	domainless := watchSubjects(t, tripNC, "$JS.API.>", "$KV.>")
	t.Cleanup(func() {
		if got := domainless.get(); t.Failed() && len(got) > 0 {
			t.Logf("requests to the domain-less JetStream API on the leaf (a handle ignores the domain): %v", got)
		}
	})
	noDomainless := func(when string) {
		t.Helper()
		if err := tripNC.Flush(); err != nil { // what the leaf delivered so far has arrived
			t.Fatal(err)
		}
		if got := domainless.get(); len(got) > 0 {
			t.Fatalf("%s: requests to the domain-less JetStream API on the leaf (a handle ignores the domain): %v", when, got)
		}
	}
	// Direct gets of CHAT, seen in the hub after its domain mapping
	// ($JS.hub.API.DIRECT.> → $JS.API.DIRECT.>). Not on the leaf: the hub
	// drops a leaf connection that subscribes to its domain's API.
	directGets := watchSubjects(t, hubNC, "$JS.API.DIRECT.GET."+subjects.Stream)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	sys, err := app.Start(ctx, domainConfig(t, leafURL, hubDomain))
	if err != nil {
		t.Fatalf("start with JetStream domain %q: %v", hubDomain, err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = sys.Stop()
		}
	})

	// Provisioning created everything in the hub.
	want := []string{subjects.Stream}
	for _, b := range provision.Buckets(provision.Config{}) {
		want = append(want, "KV_"+b.Bucket)
	}
	slices.Sort(want)
	if got := hubStreams(); !slices.Equal(got, want) {
		t.Fatalf("hub streams %v, want %v", got, want)
	}

	// Real WebSocket clients on the edge, chatting.
	const room = "general"
	alice := wsDial(t, sys.Addr(), "alice")
	if _, err := alice.Join(ctx, room, nil); err != nil {
		t.Fatalf("alice joins: %v", err)
	}
	bob := wsDial(t, sys.Addr(), "bob")
	if _, err := bob.Join(ctx, room, nil); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	awaitFrame(t, alice, "presence: bob joined", func(f client.Frame) bool {
		var p wire.Presence
		return f.Type == wire.TypePresence && f.Decode(&p) == nil && p.User == "bob" && p.Event == wire.EventJoin && p.Online == 2
	})
	if err := bob.Send(wire.ClientFrame{Type: wire.TypeTyping, Room: room, State: wire.TypingOn}); err != nil {
		t.Fatal(err)
	}
	awaitFrame(t, alice, "bob typing", func(f client.Frame) bool {
		var tf wire.Typing
		return f.Type == wire.TypeTyping && f.Decode(&tf) == nil && tf.User == "bob" && tf.State == wire.TypingOn
	})
	const body = "hello from a leaf node"
	if err := alice.Send(wire.ClientFrame{Type: wire.TypeMessage, Room: room, Body: body, CID: "d1"}); err != nil {
		t.Fatal(err)
	}
	var ack wire.Ack
	f := awaitFrame(t, alice, "ack d1", func(f client.Frame) bool {
		return f.Type == wire.TypeAck && f.Decode(&ack) == nil && ack.CID == "d1"
	})
	if err := f.Decode(&ack); err != nil || ack.ID == 0 {
		t.Fatalf("ack %s: %v", f.Raw, err)
	}
	id := ack.ID
	awaitFrame(t, bob, "alice's message", func(f client.Frame) bool {
		var mf wire.MessageFrame
		return f.Type == wire.TypeMessage && f.Decode(&mf) == nil && mf.Message.ID == id && mf.Message.Body == body
	})

	// Stored in the hub's CHAT stream, and by history: its durable
	// consumer (in the hub) acks a message only after committing it.
	st, err := hubJS.Stream(ctx, subjects.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.GetMsg(ctx, id); err != nil || m.Subject != subjects.Room(room) || !strings.Contains(string(m.Data), body) {
		t.Fatalf("hub CHAT message %d: %+v, %v", id, m, err)
	}
	waitUntil(t, "history stores the message", func() error {
		cons, err := hubJS.Consumer(ctx, subjects.Stream, "history")
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < id {
			return fmt.Errorf("history's ack floor %d, want ≥ %d", info.AckFloor.Stream, id)
		}
		return nil
	})

	// Read back through history: the REST API and a join's history.
	var page wire.Page
	if err := getJSONInto(sys.BaseURL()+"/api/rooms/"+room+"/messages?user=carol", &page); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(messageIDs(page.Items), id) {
		t.Fatalf("GET /api/rooms/%s/messages: ids %v, want %d", room, messageIDs(page.Items), id)
	}
	carol := wsDial(t, sys.Addr(), "carol")
	h, err := carol.Join(ctx, room, nil)
	if err != nil {
		t.Fatalf("carol joins: %v", err)
	}
	if !slices.Contains(messageIDs(h.Items), id) {
		t.Fatalf("carol's join history: ids %v, want %d", messageIDs(h.Items), id)
	}

	// Presence: the roster (in the hub's bucket) and the edge's lease.
	waitUntil(t, "roster of "+room, func() error {
		var r wire.RosterReply
		if err := getJSONInto(sys.BaseURL()+"/api/rooms/"+room+"/presence?user=carol", &r); err != nil {
			return err
		}
		for _, u := range []string{"alice", "bob", "carol"} {
			if !slices.Contains(r.Users, u) {
				return fmt.Errorf("roster %v lacks %s", r.Users, u)
			}
		}
		return nil
	})
	for _, b := range []string{subjects.BucketRoster, subjects.BucketEdges} {
		kv, err := hubJS.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Values() == 0 {
			t.Errorf("hub bucket %s is empty", b)
		}
	}
	noDomainless("with the system running")

	// History down: a lone edge on the leaf serves a join from the
	// stream, with direct gets in the hub's domain.
	for _, c := range []*client.Client{alice, bob, carol} {
		_ = c.Close()
	}
	if err := sys.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	stopped = true
	before := len(directGets.get())
	addr := startLoneEdge(t, leafURL, hubDomain)
	dave := wsDial(t, addr, "dave")
	h, err = dave.Join(ctx, room, nil)
	if err != nil {
		t.Fatalf("dave joins with history down: %v", err)
	}
	if !slices.Contains(messageIDs(h.Items), id) {
		t.Fatalf("dave's join history from the stream: ids %v, want %d", messageIDs(h.Items), id)
	}
	// (The watcher's copy of a request may arrive after the answer.)
	waitUntil(t, "a direct get of the join", func() error {
		if len(directGets.get()) == before {
			return fmt.Errorf("the join was served without a direct get to $JS.%s.API.DIRECT.GET.%s", hubDomain, subjects.Stream)
		}
		return nil
	})
	noDomainless("with history down")
	if hub.NumLeafNodes() != 1 {
		t.Fatalf("the leaf connection dropped (hub has %d leaf connections): the checks above did not test it", hub.NumLeafNodes())
	}
}

// startLoneEdge runs an edge alone (no history, no presence) on the NATS
// at natsURL with JetStream domain domain, and returns its address.
func startLoneEdge(t *testing.T, natsURL, domain string) string {
	t.Helper()
	nc, err := natsconn.Connect(natsconn.Config{URL: natsURL, Name: "hubbub-edge", InboxPrefix: subjects.EdgeInbox, JSDomain: domain}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := edge.New(edge.Config{Listener: ln, RequestTimeout: 2 * time.Second, DrainPeriod: 200 * time.Millisecond, LeaseTTL: 3 * time.Second},
		edge.Deps{NC: nc, Log: logging.Discard(), Registry: prometheus.NewRegistry(), JSDomain: domain})
	if err != nil {
		t.Fatalf("edge.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("lone edge: %v", err)
		}
	})
	waitUntil(t, "lone edge ready", svc.Ready)
	return svc.Addr()
}
