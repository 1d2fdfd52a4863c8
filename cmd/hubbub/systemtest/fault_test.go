package systemtest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/services/presence"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// buildEdge builds services/edge/cmd/hubbub-edge into the test's temporary
// directory, once per env, and returns the binary's path (go's build cache
// makes the second test's build a link).
func (e *env) buildEdge() string {
	e.t.Helper()
	if e.edgeBin != "" {
		return e.edgeBin
	}
	bin := filepath.Join(e.t.TempDir(), "hubbub-edge")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/hubbub-chat/hubbub/services/edge/cmd/hubbub-edge").CombinedOutput()
	if err != nil {
		e.t.Fatalf("go build hubbub-edge: %v\n%s", err, out)
	}
	e.edgeBin = bin
	return bin
}

// Fault-test settings: a short lease and grace so a killed edge's users
// leave quickly.
const (
	faultLeaseTTL = 2 * time.Second
	faultGrace    = 300 * time.Millisecond
	faultTyping   = 2 * time.Second
)

// newFaultEnv is an env provisioned with the fault-test lease TTL, with
// history and presence running in-process.
func newFaultEnv(t *testing.T) *env {
	t.Helper()
	e := newEnvWith(t, provision.Config{TypingTTL: faultTyping, LeaseTTL: faultLeaseTTL})
	e.startHistory()
	e.startPresenceWith(presence.Config{Grace: faultGrace, TypingTTL: faultTyping, LeaseTTL: faultLeaseTTL, SweepInterval: 100 * time.Millisecond})
	return e
}

// edgeProc is an edge running as a child process.
type edgeProc struct {
	cmd  *exec.Cmd
	addr string
}

func (p *edgeProc) wsURL(user string) string { return "ws://" + p.addr + "/ws?user=" + user }

// startEdgeProcess runs the edge binary as id and waits until it listens.
func (e *env) startEdgeProcess(id string) *edgeProc {
	e.t.Helper()
	cmd := exec.Command(e.buildEdge())
	cmd.Env = append(os.Environ(),
		"HUBBUB_NATS_URL="+e.URL(),
		"HUBBUB_HTTP_ADDR=127.0.0.1:0",
		"HUBBUB_EDGE_ID="+id,
		"HUBBUB_LEASE_TTL="+faultLeaseTTL.String(),
		"HUBBUB_TYPING_TTL="+faultTyping.String(),
		"HUBBUB_LOG_FORMAT=json",
		"HUBBUB_LOG_LEVEL=info",
		"HUBBUB_DRAIN_PERIOD=200ms",
		"HUBBUB_MESSAGE_RATE=1000", "HUBBUB_MESSAGE_BURST=1000",
		"HUBBUB_USER_MESSAGE_RATE=1000", "HUBBUB_USER_MESSAGE_BURST=1000",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &edgeProc{cmd: cmd}
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "edge listening" {
				select {
				case addrc <- line.Addr:
				default:
				}
			}
			if os.Getenv("HUBBUB_TEST_LOG") != "" {
				e.t.Logf("%s: %s", id, sc.Text())
			}
		}
	}()
	select {
	case p.addr = <-addrc:
	case <-time.After(30 * time.Second):
		e.t.Fatalf("edge process %s did not start listening", id)
	}
	natstest.Until(e.t, 10*time.Second, id+" ready", func() bool {
		code, _ := httpGet(e.t, "http://"+p.addr+"/readyz")
		return code == 200
	})
	return p
}

// kill SIGKILLs the edge process and reaps it.
func (p *edgeProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = p.cmd.Process.Wait()
}

// roomPosts returns every stored post of room with its id, in order.
func (e *env) roomPosts(room string) []wire.Message {
	e.t.Helper()
	ctx := tctx(e.t)
	cons, err := e.JS.OrderedConsumer(ctx, subjects.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjects.Room(room)}})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []wire.Message
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var p wire.Post
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				e.t.Fatal(err)
			}
			md, _ := m.Metadata()
			out = append(out, p.Stored(md.Sequence.Stream, 0))
		}
		if n == 0 {
			return out
		}
	}
}

// viewer is one chat client that keeps its view of a room: every message
// it received, from history and live frames, in order.
type viewer struct {
	t     *testing.T
	user  string
	room  string
	c     *client.Client
	view  []wire.Message
	acked []uint64
	// reconnects counts resumptions after the edge died.
	reconnects int
}

func newViewer(t *testing.T, url, user, room string) *viewer {
	v := &viewer{t: t, user: user, room: room}
	if err := v.connect(url, nil); err != nil {
		t.Fatal(err)
	}
	return v
}

// connect dials url and joins the room (since: resume).
func (v *viewer) connect(url string, since *uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		return err
	}
	v.t.Cleanup(func() { _ = c.Close() })
	v.c = c
	return c.Send(wire.ClientFrame{Type: wire.TypeJoin, Room: v.room, Since: since})
}

// record adds a frame's messages to the view.
func (v *viewer) record(f client.Frame) error {
	switch f.Type {
	case wire.TypeHistory:
		var h wire.History
		if err := f.Decode(&h); err != nil {
			return err
		}
		if !h.Recovered {
			return fmt.Errorf("%s: history not recovered", v.user)
		}
		v.view = append(v.view, h.Items...)
	case wire.TypeMessage:
		var mf wire.MessageFrame
		if err := f.Decode(&mf); err != nil {
			return err
		}
		v.view = append(v.view, mf.Message)
	}
	return nil
}

// say sends a message and waits for its ack, recording every frame on the
// way. It returns client.ErrClosed (wrapped) when the connection died.
func (v *viewer) say(ctx context.Context, body, cid string) error {
	if err := v.c.Send(wire.ClientFrame{Type: wire.TypeMessage, Room: v.room, Body: body, CID: cid}); err != nil {
		return client.ErrClosed
	}
	for {
		f, err := v.c.Next(ctx)
		if err != nil {
			return err
		}
		if err := v.record(f); err != nil {
			return err
		}
		switch f.Type {
		case wire.TypeAck:
			a := decodeFrame[wire.Ack](f)
			if a.CID == cid {
				v.acked = append(v.acked, a.ID)
				return nil
			}
		case wire.TypeError:
			return fmt.Errorf("%s: error frame %s", v.user, f.Raw)
		}
	}
}

// readUntil records frames until the view reaches id, resuming on url
// if the connection died.
func (v *viewer) readUntil(ctx context.Context, id uint64, url string) error {
	for len(v.view) == 0 || v.view[len(v.view)-1].ID < id {
		f, err := v.c.Next(ctx)
		if errors.Is(err, client.ErrClosed) {
			last := v.view[len(v.view)-1].ID
			if err := v.connect(url, &last); err != nil {
				return err
			}
			v.reconnects++
			continue
		}
		if err != nil {
			return fmt.Errorf("%s waiting for %d: %w", v.user, id, err)
		}
		if err := v.record(f); err != nil {
			return err
		}
	}
	return nil
}

func decodeFrame[T any](f client.Frame) T {
	var v T
	_ = f.Decode(&v)
	return v
}

// Clients on two edge processes chat in one room while edge A is killed
// with SIGKILL: A's clients reconnect to B with since = the last id they
// saw, resending what was not acked. Every client's view of the room is
// then complete (every acked message), duplicate-free and one chain.
func TestEdgeProcessKillResume(t *testing.T) {
	e := newFaultEnv(t)
	a := e.startEdgeProcess("edge-a")
	b := e.startEdgeProcess("edge-b")
	const room = "general"
	var viewers []*viewer
	for i := range 3 {
		viewers = append(viewers, newViewer(t, a.wsURL(fmt.Sprintf("a%d", i)), fmt.Sprintf("a%d", i), room))
		viewers = append(viewers, newViewer(t, b.wsURL(fmt.Sprintf("b%d", i)), fmt.Sprintf("b%d", i), room))
	}

	const perClient = 60
	killed := make(chan struct{})
	var sent sync.WaitGroup // each client reached a third of its messages
	sent.Add(len(viewers))
	errs := make(chan error, len(viewers))
	var wg sync.WaitGroup
	for _, v := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			reached := false
			defer func() {
				if !reached {
					sent.Done()
				}
			}()
			for i := 0; i < perClient; {
				if i == perClient/3 && !reached {
					reached = true
					sent.Done()
				}
				cid := fmt.Sprintf("%s-%d", v.user, i)
				err := v.say(ctx, "hello from "+v.user, cid)
				if err == nil {
					i++
					continue
				}
				if ctx.Err() != nil || !isClosed(err) {
					errs <- fmt.Errorf("%s: %w", v.user, err)
					return
				}
				// The edge died: resume on B after the last id seen, and
				// resend the unacked message with the same cid.
				<-killed
				var since *uint64
				if n := len(v.view); n > 0 {
					last := v.view[n-1].ID
					since = &last
				}
				if err := v.connect(b.wsURL(v.user), since); err != nil {
					errs <- fmt.Errorf("%s reconnect: %w", v.user, err)
					return
				}
				v.reconnects++
			}
		}()
	}
	sent.Wait()
	a.kill(t)
	close(killed)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var acked []uint64
	var last uint64
	for _, v := range viewers {
		acked = append(acked, v.acked...)
		last = max(last, slices.Max(v.acked))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range viewers {
		if err := v.readUntil(ctx, last, b.wsURL(v.user)); err != nil {
			t.Fatal(err)
		}
		want := 0
		if v.user[0] == 'a' {
			want = 1 // a* clients resumed once on B, b* clients never
		}
		if v.reconnects != want {
			t.Fatalf("%s resumed %d times, want %d", v.user, v.reconnects, want)
		}
		seen := map[uint64]bool{}
		for i, m := range v.view {
			if seen[m.ID] {
				t.Fatalf("%s: message %d twice", v.user, m.ID)
			}
			seen[m.ID] = true
			if i > 0 && m.Prev != v.view[i-1].ID {
				t.Fatalf("%s: chain broken at %d: prev %d, previous id %d", v.user, m.ID, m.Prev, v.view[i-1].ID)
			}
		}
		start := v.view[0].ID
		for _, id := range acked {
			if id >= start && !seen[id] {
				t.Fatalf("%s: acked message %d missing from its view", v.user, id)
			}
		}
	}
	// Every message was stored once: no cid stored twice.
	cids := map[string]bool{}
	for _, m := range e.roomPosts(room) {
		if m.Kind != wire.KindMessage {
			continue
		}
		if cids[m.CID] {
			t.Fatalf("cid %s stored twice", m.CID)
		}
		cids[m.CID] = true
	}
	if len(cids) != perClient*len(viewers) {
		t.Fatalf("%d messages stored, want %d", len(cids), perClient*len(viewers))
	}
}

func isClosed(err error) bool {
	return errors.Is(err, client.ErrClosed)
}

// Issue 5: when an edge process is killed, its users leave the rosters
// within the lease TTL plus the grace period, while the other edge's users
// stay. Going offline is presence, not conversation (issue 13): no "left"
// system message is stored for them.
func TestEdgeProcessKillLeavesRoster(t *testing.T) {
	e := newFaultEnv(t)
	a := e.startEdgeProcess("edge-a")
	b := e.startEdgeProcess("edge-b")
	const room = "general"
	for _, u := range []string{"a0", "a1"} {
		v := newViewer(t, a.wsURL(u), u, room)
		if _, err := v.c.Await(tctx(t), wire.TypeRoster); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"b0", "b1"} {
		v := newViewer(t, b.wsURL(u), u, room)
		if _, err := v.c.Await(tctx(t), wire.TypeRoster); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Until(t, 10*time.Second, "all four online", func() bool {
		return slices.Equal(e.roster(room), []string{"a0", "a1", "b0", "b1"})
	})
	a.kill(t)
	// Lease TTL + grace, plus the sweeper and renewal periods and slack: a
	// deadline for the poll, not a timing assertion.
	natstest.Until(t, faultLeaseTTL+faultGrace+10*time.Second, "a's users gone", func() bool {
		return slices.Equal(e.roster(room), []string{"b0", "b1"})
	})
	// The dead edge's users went offline, they did not leave the room:
	// presence only, no stored "left" (DESIGN §3a); each first join
	// stored its one "joined".
	joins, leaves := map[string]int{}, map[string]int{}
	for _, m := range e.roomPosts(room) {
		switch {
		case m.Kind == wire.KindSystem && m.Body == m.User+" left":
			leaves[m.User]++
		case m.Kind == wire.KindSystem && m.Body == m.User+" joined":
			joins[m.User]++
		}
	}
	if len(leaves) != 0 {
		t.Fatalf("leave system messages %v after an edge died, want none", leaves)
	}
	if joins["a0"] != 1 || joins["a1"] != 1 || joins["b0"] != 1 || joins["b1"] != 1 || len(joins) != 4 {
		t.Fatalf("join system messages %v, want exactly one per user", joins)
	}
	if got := e.roster(room); !slices.Equal(got, []string{"b0", "b1"}) {
		t.Fatalf("roster %v", got)
	}
}
