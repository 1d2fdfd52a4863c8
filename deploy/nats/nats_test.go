package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// passwordEnv maps each NATS user to the variable its password comes from.
var passwordEnv = map[string]string{
	"admin":    "HUBBUB_NATS_ADMIN_PASSWORD",
	"edge":     "HUBBUB_NATS_EDGE_PASSWORD",
	"history":  "HUBBUB_NATS_HISTORY_PASSWORD",
	"presence": "HUBBUB_NATS_PRESENCE_PASSWORD",
}

// inboxOf is the reply prefix each service user connects with.
var inboxOf = map[string]string{
	"edge":     subjects.EdgeInbox,
	"history":  subjects.HistoryInbox,
	"presence": subjects.PresenceInbox,
}

// setPasswords gives every user a test password through the environment,
// as compose and Kubernetes do, and returns them.
func setPasswords(t *testing.T) map[string]string {
	t.Helper()
	pw := map[string]string{}
	for user, env := range passwordEnv {
		pw[user] = "test-" + user + "-secret"
		t.Setenv(env, pw[user])
	}
	// The Kubernetes config names the server after its pod, and routes with the
	// route password in its route URLs (the StatefulSet composes them).
	t.Setenv("POD_NAME", "nats-0")
	t.Setenv("HUBBUB_NATS_ROUTE_PASSWORD", "test-route-secret")
	t.Setenv("HUBBUB_NATS_ROUTES", "[nats://route:test-route-secret@nats-1.nats-headless:6222]")
	return pw
}

// systemUsers lists the users of the system account each config file
// defines beyond the users of auth.conf.
var systemUsers = map[string][]string{
	"nats.conf": {"sys"},
	filepath.Join("..", "k8s", "base", "nats", "nats.conf"): {"sys"},
}

// configFiles lists every nats-server configuration in the repository.
func configFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"nats.conf", filepath.Join("..", "k8s", "base", "nats", "nats.conf")}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("nats config %s: %v", f, err)
		}
	}
	return files
}

func TestConfigFilesParse(t *testing.T) {
	setPasswords(t)
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			opts, err := server.ProcessConfigFile(f)
			if err != nil {
				t.Fatalf("parse %s: %v", f, err)
			}
			if !opts.JetStream {
				t.Errorf("%s: JetStream is not enabled", f)
			}
			if opts.StoreDir == "" {
				t.Errorf("%s: no JetStream store_dir", f)
			}
			if opts.HTTPPort == 0 {
				t.Errorf("%s: no monitoring port (http)", f)
			}
			if opts.LameDuckDuration <= 0 {
				t.Errorf("%s: no lame_duck_duration", f)
			}
			if opts.NoAuthUser != "" {
				t.Errorf("%s: no_auth_user %q lets unauthenticated clients in", f, opts.NoAuthUser)
			}
			got := map[string]bool{}
			for _, u := range opts.Users {
				got[u.Username] = true
				if u.Permissions == nil {
					t.Errorf("%s: user %s has no permissions", f, u.Username)
				}
				if u.Password == "" || strings.HasPrefix(u.Password, "$") {
					t.Errorf("%s: user %s: password not resolved from the environment", f, u.Username)
				}
			}
			for user := range passwordEnv {
				if !got[user] {
					t.Errorf("%s: user %s missing", f, user)
				}
			}
			sys := systemUsers[f]
			for _, user := range sys {
				if !got[user] {
					t.Errorf("%s: system account user %s missing", f, user)
				}
			}
			if len(opts.Users) != len(passwordEnv)+len(sys) {
				t.Errorf("%s: %d users, want exactly %d", f, len(opts.Users), len(passwordEnv)+len(sys))
			}
			if len(sys) > 0 && opts.SystemAccount != "SYS" {
				t.Errorf("%s: system_account = %q, want SYS", f, opts.SystemAccount)
			}
		})
	}
}

// TestConfigNeedsPasswords proves no password is baked into a config file: a
// missing variable is a start-up error, not an empty password.
func TestConfigNeedsPasswords(t *testing.T) {
	for _, f := range configFiles(t) {
		for user, env := range passwordEnv {
			t.Run(f+"/"+user, func(t *testing.T) {
				setPasswords(t)
				if err := os.Unsetenv(env); err != nil {
					t.Fatal(err)
				}
				if _, err := server.ProcessConfigFile(f); err == nil {
					t.Fatalf("%s parsed without $%s", f, env)
				}
			})
		}
	}
}

// TestKubernetesAuthMatchesCompose keeps the Kubernetes copy of the
// permissions identical to the compose one.
func TestKubernetesAuthMatchesCompose(t *testing.T) {
	a, err := os.ReadFile("auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("..", "k8s", "base", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("deploy/k8s/base/nats/auth.conf differs from deploy/nats/auth.conf: copy it over")
	}
}

// startServer runs a real JetStream nats-server on a random loopback port
// with the compose configuration (its authorization section included).
func startServer(t *testing.T) (string, map[string]string) {
	t.Helper()
	pw := setPasswords(t)
	opts, err := server.ProcessConfigFile("nats.conf")
	if err != nil {
		t.Fatalf("parse nats.conf: %v", err)
	}
	opts.Host = "127.0.0.1"
	opts.Port = server.RANDOM_PORT
	opts.HTTPHost = "127.0.0.1"
	opts.HTTPPort = server.RANDOM_PORT
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	opts.NoLog = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL(), pw
}

// client is one authenticated connection collecting its async errors, where
// the server reports permission violations.
type client struct {
	user string
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

func connect(t *testing.T, url string, pw map[string]string, user string) *client {
	t.Helper()
	c := &client{user: user, errs: make(chan error, 256)}
	opts := []nats.Option{
		nats.UserInfo(user, pw[user]),
		nats.Name("permtest-" + user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}),
	}
	if p := inboxOf[user]; p != "" { // as the service binaries connect
		opts = append(opts, nats.CustomInboxPrefix(p))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	c.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// drainErrs forgets errors reported so far.
func (c *client) drainErrs() {
	for {
		select {
		case <-c.errs:
		default:
			return
		}
	}
}

// waitViolation waits for the server to report a permission violation of
// kind ("Publish" or "Subscription") on a subject starting with prefix.
func (c *client) waitViolation(t *testing.T, kind, prefix string) {
	t.Helper()
	want := strings.ToLower("Permissions Violation for " + kind + ` to "` + prefix)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if strings.Contains(strings.ToLower(err.Error()), want) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: no permissions violation for %s to %q", c.user, kind, prefix)
		}
	}
}

func within(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// deniedOp runs a JetStream operation that must be refused: it waits for the
// server's violation report on a subject starting with prefix, then cancels
// the operation (a refused request is never answered) and checks it failed.
func (c *client) deniedOp(t *testing.T, prefix string, op func(ctx context.Context) error) {
	t.Helper()
	c.drainErrs()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	c.waitViolation(t, "Publish", prefix)
	cancel()
	if err := <-done; err == nil {
		t.Fatalf("%s: operation on %q succeeded, want it refused", c.user, prefix)
	}
}

func TestPublishPermissions(t *testing.T) {
	url, pw := startServer(t)
	admin := connect(t, url, pw, "admin")
	conns := map[string]*client{}
	for user := range passwordEnv {
		conns[user] = connect(t, url, pw, user)
	}
	cases := []struct {
		user, subject string
		allowed       bool
	}{
		// edge
		{"edge", "chat.room.general", true},
		{"edge", "chat.typing.general", true},
		{"edge", "hubbub.history.recent", true},
		{"edge", "hubbub.presence.join", true},
		{"edge", "$KV.hubbub_edges.edge-1", true},
		{"edge", "$KV.hubbub_reads.YWxpY2U.general", true},
		{"edge", "$KV.hubbub_members.general.YWxpY2U", false}, // memberships are presence's
		{"edge", "chat.mention.YWxpY2U", false},               // mentions only come from history
		{"edge", "chat.live.general", false},                  // live delivery only comes from the stream
		{"edge", "chat.presence.general", false},              // presence diffs only come from presence
		{"edge", "_INBOX.abc.def", false},                     // cannot forge a reply to anyone
		{"edge", "_INBOX_history.abc.def", false},
		{"edge", "_INBOX_edge.abc.def", false}, // its own inbox is subscribe-only
		{"edge", "$KV.hubbub_roster.general.x", false},
		{"edge", "$KV.hubbub_typing.general.x", false},
		{"edge", "$JS.API.STREAM.DELETE.CHAT", false},
		{"edge", "$JS.API.STREAM.PURGE.CHAT", false},
		{"edge", "$JS.API.CONSUMER.CREATE.CHAT.history", false},
		{"edge", "$JS.ACK.CHAT.history.1.1.1.1.1.1", false},
		{"edge", "$SRV.PING", false},
		{"edge", "hubbub.other.thing", false},
		// history
		{"history", "chat.room.general", false},
		{"history", "chat.live.general", false},
		{"history", "chat.typing.general", false},
		{"history", "chat.presence.general", false},
		{"history", "hubbub.presence.join", false},
		{"history", "_INBOX.abc.def", false}, // only replies to requests it received
		{"history", "_INBOX_edge.abc.def", false},
		{"history", "$KV.hubbub_roster.general.x", false},
		{"history", "$KV.hubbub_edges.edge-1", false},
		{"history", "chat.mention.YWxpY2U", true},
		{"history", "$KV.hubbub_reads.YWxpY2U.general", false},
		{"history", "$JS.ACK.CHAT.history.1.1.1.1.1.1", true},
		{"history", "$JS.API.CONSUMER.CREATE.CHAT.evil", false},
		{"history", "$JS.API.CONSUMER.DELETE.CHAT.history", true}, // a fresh database replays the stream
		{"history", "$JS.API.CONSUMER.DELETE.CHAT.other", false},
		{"history", "$JS.API.STREAM.DELETE.CHAT", false},
		{"history", "$JS.API.STREAM.MSG.DELETE.CHAT", false},
		// presence
		{"presence", "chat.room.general", true},
		{"presence", "chat.presence.general", true},
		{"presence", "chat.typing.general", true},
		{"presence", "$KV.hubbub_roster.general.x", true},
		{"presence", "$KV.hubbub_typing.general.x", true},
		{"presence", "$KV.hubbub_members.general.YWxpY2U", true},
		{"presence", "$KV.hubbub_reads.YWxpY2U.general", false}, // read marks are the edges'
		{"presence", "chat.live.general", false},
		{"presence", "$KV.hubbub_edges.edge-1", false}, // cannot forge or renew a lease
		{"presence", "hubbub.history.recent", false},
		{"presence", "_INBOX.abc.def", false},
		{"presence", "_INBOX_edge.abc.def", false},
		{"presence", "$JS.API.STREAM.DELETE.KV_hubbub_roster", false},
		{"presence", "$JS.API.STREAM.PURGE.CHAT", false},
		// admin
		{"admin", "chat.live.general", true},
		{"admin", "$JS.API.STREAM.INFO.CHAT", true},
	}
	for _, tc := range cases {
		t.Run(tc.user+"/"+tc.subject, func(t *testing.T) {
			c := conns[tc.user]
			if tc.user == "admin" {
				c = admin
			}
			// A second admin connection watches the subject.
			watch, err := admin.nc.SubscribeSync(tc.subject)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = watch.Unsubscribe() }()
			if err := admin.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			c.drainErrs()
			if err := c.nc.Publish(tc.subject, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			if tc.allowed {
				if _, err := watch.NextMsg(5 * time.Second); err != nil {
					t.Fatalf("%s publishing %s: not delivered: %v", tc.user, tc.subject, err)
				}
				return
			}
			c.waitViolation(t, "Publish", tc.subject)
			if err := admin.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if n, _, _ := watch.Pending(); n != 0 {
				t.Fatalf("%s publishing %s: refused but delivered", tc.user, tc.subject)
			}
		})
	}
}

func TestSubscribePermissions(t *testing.T) {
	url, pw := startServer(t)
	admin := connect(t, url, pw, "admin")
	conns := map[string]*client{}
	for user := range passwordEnv {
		conns[user] = connect(t, url, pw, user)
	}
	cases := []struct {
		user, subject, queue string
		sample               string // a subject the admin publishes to reach the subscription
		allowed              bool
	}{
		{"edge", "chat.live.*", "", "chat.live.general", true},
		{"edge", "chat.typing.general", "", "chat.typing.general", true},
		{"edge", "chat.presence.*", "", "chat.presence.general", true},
		{"edge", "_INBOX_edge.x.*", "", "_INBOX_edge.x.y", true},
		{"edge", "$KV.hubbub_reads.>", "", "", false}, // marks reach edges by a watch, not core
		{"edge", "chat.mention.*", "", "chat.mention.YWxpY2U", true},
		{"edge", "$KV.hubbub_members.>", "", "", false},
		{"edge", "_INBOX.>", "", "", false},            // no reply of anyone else:
		{"edge", "_INBOX_history.>", "", "", false},    // not history's,
		{"edge", "_INBOX_presence.x.*", "", "", false}, // not presence's
		{"history", "_INBOX_history.x.*", "", "_INBOX_history.x.y", true},
		{"history", "_INBOX.>", "", "", false},
		{"history", "_INBOX_edge.>", "", "", false},
		{"presence", "_INBOX_presence.x.*", "", "_INBOX_presence.x.y", true},
		{"presence", "_INBOX.>", "", "", false},
		{"presence", "_INBOX_edge.>", "", "", false},
		{"edge", "chat.room.*", "", "", false},
		{"edge", "chat.>", "", "", false},
		{"edge", "hubbub.history.recent", "q", "", false}, // cannot impersonate a service
		{"edge", "hubbub.presence.join", "", "", false},
		{"edge", "$KV.hubbub_roster.>", "", "", false},
		{"edge", ">", "", "", false},
		{"history", "hubbub.history.recent", "q", "hubbub.history.recent", true},
		{"history", "$SRV.PING.history", "", "$SRV.PING.history", true},
		{"history", "hubbub.presence.join", "q", "", false},
		{"history", "chat.typing.*", "", "", false},
		{"history", "$SRV.PING.presence", "", "", false},
		{"presence", "hubbub.presence.join", "q", "hubbub.presence.join", true},
		{"presence", "chat.typing.*", "presence", "chat.typing.general", true},
		{"presence", "$SRV.INFO.presence.abc", "", "$SRV.INFO.presence.abc", true},
		{"presence", "hubbub.history.recent", "q", "", false},
		{"presence", "chat.live.*", "", "", false},
		{"presence", "chat.room.*", "", "", false},
		{"admin", ">", "", "anything.at.all", true},
	}
	for _, tc := range cases {
		t.Run(tc.user+"/"+tc.subject, func(t *testing.T) {
			c := conns[tc.user]
			if tc.user == "admin" {
				c = admin
			}
			c.drainErrs()
			var sub *nats.Subscription
			var err error
			if tc.queue != "" {
				sub, err = c.nc.QueueSubscribeSync(tc.subject, tc.queue)
			} else {
				sub, err = c.nc.SubscribeSync(tc.subject)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := c.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if !tc.allowed {
				c.waitViolation(t, "Subscription", tc.subject)
				return
			}
			if err := admin.nc.Publish(tc.sample, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			if _, err := sub.NextMsg(5 * time.Second); err != nil {
				t.Fatalf("%s subscribed to %s: %s not received: %v", tc.user, tc.subject, tc.sample, err)
			}
		})
	}
}

// TestServicesWorkWithTheirPermissions drives the JetStream, KV and micro
// operations each service performs, as that service's user, on a real
// server, and proves the neighbouring operations it must not perform fail.
func TestServicesWorkWithTheirPermissions(t *testing.T) {
	url, pw := startServer(t)
	admin := connect(t, url, pw, "admin")
	edge := connect(t, url, pw, "edge")
	history := connect(t, url, pw, "history")
	presence := connect(t, url, pw, "presence")

	t.Run("every service provisions the stream and buckets", func(t *testing.T) {
		for _, c := range []*client{edge, history, presence} {
			if err := provision.Ensure(within(t), c.js, provision.Config{}); err != nil {
				t.Fatalf("provision as %s: %v", c.user, err)
			}
		}
	})

	t.Run("edge publishes acked messages and receives live delivery", func(t *testing.T) {
		live, err := edge.nc.SubscribeSync(subjects.Live("general"))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = live.Unsubscribe() }()
		if err := edge.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		post, _ := json.Marshal(wire.Post{Room: "general", User: "alice", Body: "hi", Kind: wire.KindMessage, TS: 1, CID: "c1"})
		ack, err := edge.js.Publish(within(t), subjects.Room("general"), post, jetstream.WithMsgID("general/alice/c1"))
		if err != nil {
			t.Fatalf("edge JetStream publish: %v", err)
		}
		msg, err := live.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("live delivery: %v", err)
		}
		if got := msg.Header.Get(subjects.HeaderSequence); got == "" || got != jsonNumber(ack.Sequence) {
			t.Fatalf("live %s = %q, want %d", subjects.HeaderSequence, got, ack.Sequence)
		}
		st, err := edge.js.Stream(within(t), subjects.Stream)
		if err != nil {
			t.Fatalf("edge stream info: %v", err)
		}
		last, err := st.GetLastMsgForSubject(within(t), subjects.Room("general"))
		if err != nil || last.Sequence != ack.Sequence {
			t.Fatalf("edge newest id of the room: %v, %v; want %d", last, err, ack.Sequence)
		}
	})

	t.Run("edge holds its lease", func(t *testing.T) {
		kv, err := edge.js.KeyValue(within(t), subjects.BucketEdges)
		if err != nil {
			t.Fatal(err)
		}
		lease, _ := json.Marshal(wire.EdgeLease{Edge: "edge-1", Started: 1})
		if _, err := kv.Put(within(t), "edge-1", lease); err != nil {
			t.Fatalf("put lease: %v", err)
		}
		e, err := kv.Get(within(t), "edge-1")
		if err != nil {
			t.Fatalf("get lease: %v", err)
		}
		if _, err := kv.Update(within(t), "edge-1", lease, e.Revision()); err != nil {
			t.Fatalf("renew lease: %v", err)
		}
		if err := kv.Delete(within(t), "edge-1"); err != nil {
			t.Fatalf("delete lease: %v", err)
		}
		if _, err := kv.Put(within(t), "edge-2", lease); err != nil {
			t.Fatalf("put lease: %v", err)
		}
	})

	t.Run("edge keeps read marks and reads memberships", func(t *testing.T) {
		reads, err := edge.js.KeyValue(within(t), subjects.BucketReads)
		if err != nil {
			t.Fatal(err)
		}
		key := subjects.ReadKey("YWxpY2U", "general")
		rev, err := reads.Create(within(t), key, []byte(`{"read":1}`))
		if err != nil {
			t.Fatalf("create mark: %v", err)
		}
		if _, err := reads.Update(within(t), key, []byte(`{"read":2}`), rev); err != nil {
			t.Fatalf("move mark: %v", err)
		}
		if _, err := reads.Get(within(t), key); err != nil {
			t.Fatalf("get mark: %v", err)
		}
		members, err := edge.js.KeyValue(within(t), subjects.BucketMembers)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := members.Get(within(t), subjects.MemberKey("general", "YWxpY2U")); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("get membership: %v, want not found", err)
		}
		edge.deniedOp(t, "$KV."+subjects.BucketMembers+".", func(ctx context.Context) error {
			_, err := members.Put(ctx, "general.x", []byte(`{}`))
			return err
		})
	})

	t.Run("edge cannot read or write rosters and typing state", func(t *testing.T) {
		for _, bucket := range []string{subjects.BucketRoster, subjects.BucketTyping} {
			kv, err := edge.js.KeyValue(within(t), bucket) // stream info is part of provisioning
			if err != nil {
				t.Fatal(err)
			}
			edge.deniedOp(t, "$JS.API.DIRECT.GET.KV_"+bucket, func(ctx context.Context) error {
				_, err := kv.Get(ctx, "general.x")
				return err
			})
			edge.deniedOp(t, "$KV."+bucket+".", func(ctx context.Context) error {
				_, err := kv.Put(ctx, "general.x", []byte(`{}`))
				return err
			})
			edge.deniedOp(t, "$JS.API.CONSUMER.CREATE.KV_"+bucket, func(ctx context.Context) error {
				w, err := kv.WatchAll(ctx)
				if err != nil {
					return err
				}
				defer func() { _ = w.Stop() }()
				select {
				case <-w.Updates():
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}
	})

	t.Run("history consumes CHAT with its durable consumer and reads the stream", func(t *testing.T) {
		cons, err := history.js.CreateOrUpdateConsumer(within(t), subjects.Stream, jetstream.ConsumerConfig{
			Durable:       "history",
			AckPolicy:     jetstream.AckExplicitPolicy,
			FilterSubject: subjects.RoomAll,
		})
		if err != nil {
			t.Fatalf("create consumer history: %v", err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := m.DoubleAck(within(t)); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
		if batch.Error() != nil || n != 1 {
			t.Fatalf("fetched %d messages (err %v), want 1", n, batch.Error())
		}
		info, err := cons.Info(within(t))
		if err != nil {
			t.Fatal(err)
		}
		if info.AckFloor.Stream == 0 || info.NumAckPending != 0 {
			t.Fatalf("consumer ack floor %d, pending %d: ack not applied", info.AckFloor.Stream, info.NumAckPending)
		}
		stream, err := history.js.Stream(within(t), subjects.Stream)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.GetMsg(within(t), 1); err != nil {
			t.Fatalf("direct get by sequence: %v", err)
		}
		if _, err := stream.GetMsg(within(t), 1, jetstream.WithGetMsgSubject(subjects.Room("general"))); err != nil {
			t.Fatalf("direct get next by subject: %v", err)
		}
		if _, err := stream.GetLastMsgForSubject(within(t), subjects.Room("general")); err != nil {
			t.Fatalf("direct get last by subject: %v", err)
		}
	})

	t.Run("history restarts its own consumer", func(t *testing.T) {
		if err := history.js.DeleteConsumer(within(t), subjects.Stream, "history"); err != nil {
			t.Fatalf("delete own consumer: %v", err)
		}
		if _, err := history.js.CreateOrUpdateConsumer(within(t), subjects.Stream, jetstream.ConsumerConfig{
			Durable: "history", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: subjects.RoomAll,
		}); err != nil {
			t.Fatalf("recreate own consumer: %v", err)
		}
	})

	t.Run("history cannot publish rooms, other consumers or delete", func(t *testing.T) {
		history.deniedOp(t, subjects.Room("general"), func(ctx context.Context) error {
			_, err := history.js.Publish(ctx, subjects.Room("general"), []byte(`{}`))
			return err
		})
		history.deniedOp(t, "$JS.API.CONSUMER.CREATE.CHAT.other", func(ctx context.Context) error {
			_, err := history.js.CreateOrUpdateConsumer(ctx, subjects.Stream, jetstream.ConsumerConfig{Durable: "other"})
			return err
		})
		if _, err := admin.js.CreateOrUpdateConsumer(within(t), subjects.Stream, jetstream.ConsumerConfig{Durable: "other"}); err != nil {
			t.Fatal(err)
		}
		history.deniedOp(t, "$JS.API.CONSUMER.DELETE.CHAT.other", func(ctx context.Context) error {
			return history.js.DeleteConsumer(ctx, subjects.Stream, "other")
		})
		history.deniedOp(t, "$JS.API.STREAM.DELETE.CHAT", func(ctx context.Context) error {
			return history.js.DeleteStream(ctx, subjects.Stream)
		})
	})

	t.Run("presence owns rosters and typing, watches leases", func(t *testing.T) {
		roster, err := presence.js.KeyValue(within(t), subjects.BucketRoster)
		if err != nil {
			t.Fatal(err)
		}
		typing, err := presence.js.KeyValue(within(t), subjects.BucketTyping)
		if err != nil {
			t.Fatal(err)
		}
		leases, err := presence.js.KeyValue(within(t), subjects.BucketEdges)
		if err != nil {
			t.Fatal(err)
		}
		rw, err := roster.WatchAll(within(t))
		if err != nil {
			t.Fatalf("watch rosters: %v", err)
		}
		defer func() { _ = rw.Stop() }()
		lw, err := leases.WatchAll(within(t))
		if err != nil {
			t.Fatalf("watch leases: %v", err)
		}
		defer func() { _ = lw.Stop() }()

		rev, err := roster.Create(within(t), "general.alice", []byte(`{"conns":{"c1":"edge-2"}}`))
		if err != nil {
			t.Fatalf("create roster entry: %v", err)
		}
		if _, err := roster.Update(within(t), "general.alice", []byte(`{"conns":{}}`), rev); err != nil {
			t.Fatalf("update roster entry: %v", err)
		}
		if _, err := roster.Get(within(t), "general.alice"); err != nil {
			t.Fatalf("get roster entry: %v", err)
		}
		waitKey(t, rw, "general.alice")
		waitKey(t, lw, "edge-2") // put by the edge above
		if _, err := typing.Put(within(t), "general.alice", []byte(`{}`)); err != nil {
			t.Fatalf("put typing: %v", err)
		}
		if err := typing.Delete(within(t), "general.alice"); err != nil {
			t.Fatalf("delete typing: %v", err)
		}
		if _, err := leases.Get(within(t), "edge-2"); err != nil {
			t.Fatalf("get lease: %v", err)
		}
		post, _ := json.Marshal(wire.Post{Room: "general", User: "alice", Body: "alice joined", Kind: wire.KindSystem, TS: 2})
		if _, err := presence.js.Publish(within(t), subjects.Room("general"), post, jetstream.WithMsgID("join/general.alice/1")); err != nil {
			t.Fatalf("system message: %v", err)
		}
		// Typing expiry: the durable consumer on the typing bucket's stream.
		expiry, err := presence.js.CreateOrUpdateConsumer(within(t), "KV_"+subjects.BucketTyping, jetstream.ConsumerConfig{
			Durable:       "presence_typing_expiry",
			DeliverPolicy: jetstream.DeliverNewPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			FilterSubject: "$KV." + subjects.BucketTyping + ".>",
			HeadersOnly:   true,
		})
		if err != nil {
			t.Fatalf("typing expiry consumer: %v", err)
		}
		if _, err := typing.Put(within(t), "general.bob", []byte(`{}`)); err != nil {
			t.Fatalf("put typing: %v", err)
		}
		batch, err := expiry.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if err := m.DoubleAck(within(t)); err != nil {
				t.Fatalf("ack typing expiry: %v", err)
			}
		}
		if got != 1 || batch.Error() != nil {
			t.Fatalf("typing expiry fetched %d (err %v), want 1", got, batch.Error())
		}
		other, err := presence.js.CreateOrUpdateConsumer(within(t), "KV_"+subjects.BucketTyping, jetstream.ConsumerConfig{Durable: "other"})
		if err != nil {
			t.Fatal(err)
		}
		presence.deniedOp(t, "$JS.API.CONSUMER.MSG.NEXT.KV_hubbub_typing.other", func(ctx context.Context) error {
			b, err := other.Fetch(1, jetstream.FetchContext(ctx))
			if err != nil {
				return err
			}
			for range b.Messages() {
			}
			return b.Error()
		})
		presence.deniedOp(t, "$KV.hubbub_edges.", func(ctx context.Context) error {
			_, err := leases.Put(ctx, "edge-9", []byte(`{}`))
			return err
		})
		presence.deniedOp(t, "$JS.API.STREAM.PURGE.KV_hubbub_roster", func(ctx context.Context) error {
			st, err := presence.js.Stream(ctx, "KV_"+subjects.BucketRoster)
			if err != nil {
				return err
			}
			return st.Purge(ctx)
		})
	})

	t.Run("services answer requests and are discoverable", func(t *testing.T) {
		for _, svc := range []struct {
			c        *client
			name     string
			endpoint string
		}{
			{history, subjects.HistoryService, subjects.HistoryRecent},
			{presence, subjects.PresenceService, subjects.PresenceRoster},
		} {
			s, err := micro.AddService(svc.c.nc, micro.Config{Name: svc.name, Version: "1.0.0"})
			if err != nil {
				t.Fatalf("add service %s: %v", svc.name, err)
			}
			defer func() { _ = s.Stop() }()
			if err := s.AddEndpoint("ep", micro.HandlerFunc(func(r micro.Request) {
				_ = r.Respond([]byte(`{"ok":true}`))
			}), micro.WithEndpointSubject(svc.endpoint)); err != nil {
				t.Fatalf("add endpoint %s: %v", svc.endpoint, err)
			}
			if err := svc.c.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			msg, err := edge.nc.Request(svc.endpoint, []byte(`{"room":"general"}`), 5*time.Second)
			if err != nil {
				t.Fatalf("edge request %s: %v", svc.endpoint, err)
			}
			if string(msg.Data) != `{"ok":true}` {
				t.Fatalf("edge request %s: reply %q", svc.endpoint, msg.Data)
			}
			for _, verb := range []string{"PING", "INFO", "STATS"} {
				if _, err := admin.nc.Request("$SRV."+verb+"."+svc.name, nil, 5*time.Second); err != nil {
					t.Fatalf("admin %s %s: %v", verb, svc.name, err)
				}
			}
			select {
			case err := <-svc.c.errs:
				t.Fatalf("%s: %v", svc.c.user, err)
			default:
			}
		}
	})

	t.Run("only the admin deletes streams", func(t *testing.T) {
		for _, c := range []*client{edge, history, presence} {
			c.deniedOp(t, "$JS.API.STREAM.DELETE.CHAT", func(ctx context.Context) error {
				return c.js.DeleteStream(ctx, subjects.Stream)
			})
			c.deniedOp(t, "$JS.API.STREAM.CREATE.OTHER", func(ctx context.Context) error {
				_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
				return err
			})
		}
		if _, err := admin.js.CreateStream(within(t), jetstream.StreamConfig{Name: "SCRATCH", Subjects: []string{"scratch.>"}}); err != nil {
			t.Fatal(err)
		}
		if err := admin.js.DeleteStream(within(t), "SCRATCH"); err != nil {
			t.Fatalf("admin delete stream: %v", err)
		}
	})
}

// TestWrongPasswordRefused proves users need their own password.
func TestWrongPasswordRefused(t *testing.T) {
	url, pw := startServer(t)
	for _, user := range []string{"admin", "edge", "history", "presence", "nobody", ""} {
		t.Run(user, func(t *testing.T) {
			opts := []nats.Option{nats.MaxReconnects(0)}
			if user != "" {
				opts = append(opts, nats.UserInfo(user, pw["edge"]+"-wrong"))
			}
			nc, err := nats.Connect(url, opts...)
			if err == nil {
				nc.Close()
				t.Fatalf("connected as %q with a wrong password", user)
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Fatalf("connect as %q: %v, want an authorization error", user, err)
			}
		})
	}
}

func waitKey(t *testing.T, w jetstream.KeyWatcher, key string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-w.Updates():
			if e != nil && e.Key() == key {
				return
			}
		case <-deadline:
			t.Fatalf("watch: key %s never seen", key)
		}
	}
}

func jsonNumber(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
