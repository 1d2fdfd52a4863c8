//go:build composetest

package composetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

const (
	edges     = 3
	receivers = 9
	perPhase  = 10
)

// TestComposeScaleKillResume is issue 12 item 6: docker-compose.yml for real,
// on a private Docker engine with images built on this machine.
func TestComposeScaleKillResume(t *testing.T) {
	ctx := t.Context()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second)) // room for the teardown
		defer cancel()
	}
	if os.Geteuid() != 0 {
		t.Fatal("the compose test starts its own Docker engine and needs root (dockerd)")
	}
	cache := cacheDir(t)
	dir := newRunDir(t)

	phase := phases(t)
	plugin := composePlugin(t, ctx, cache)
	deb := debianImages(t, ctx, cache)
	natsVersion := buildBinaries(t, ctx, dir)
	phase("one-off builds and static binaries")

	e := startEngine(t, ctx, dir)
	e.installPlugin(t, ctx, plugin)
	buildImages(t, ctx, e, deb, dir)
	phase("engine started, images built (nats-server " + natsVersion + ")")

	s := up(t, ctx, e)
	phase("docker compose up --scale edge=3 (healthy)")

	s.scenario(t, ctx)
	phase("messages, kill, resume")
}

// phases logs how long each step took (information, not an assertion).
func phases(t *testing.T) func(string) {
	start, last := time.Now(), time.Now()
	return func(name string) {
		t.Logf("%-55s %6s (total %s)", name, time.Since(last).Round(100*time.Millisecond), time.Since(start).Round(time.Second))
		last = time.Now()
	}
}

// stack is the running compose project.
type stack struct {
	e    *engine
	args []string // docker compose -f ... --project-directory ...
	lb   string   // host:port of the load balancer
}

func (s *stack) compose(ctx context.Context, args ...string) (string, error) {
	return s.e.dockerEnv(ctx, composeEnv(), append(slices.Clone(s.args), args...)...)
}

func composeEnv() []string {
	env := []string{"HUBBUB_COMPOSETEST_NOFILE=" + strconv.FormatUint(nofile(), 10)}
	// HUBBUB_COMPOSETEST_LOG_LEVEL=debug: the services' log level, for a failing run.
	if l := os.Getenv("HUBBUB_COMPOSETEST_LOG_LEVEL"); l != "" {
		env = append(env, "HUBBUB_LOG_LEVEL="+l)
	}
	for _, k := range slices.Sorted(maps.Keys(images)) {
		env = append(env, k+"="+images[k])
	}
	return env
}

// composeNofile is docker-compose.yml's open-file limit for the edges and
// the load balancer.
const composeNofile = 65536

// nofile is composeNofile, or this process's hard limit (dockerd's, and so
// the most a container can get) when that is lower.
func nofile() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err == nil && r.Max < composeNofile {
		return r.Max
	}
	return composeNofile
}

func up(t *testing.T, ctx context.Context, e *engine) *stack {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	if n := nofile(); n < composeNofile {
		t.Logf("open-file limit of the edges and the load balancer: %d, this machine's hard limit (the compose file asks %d)", n, composeNofile)
	}
	s := &stack{e: e, args: []string{"compose",
		"-f", filepath.Join(abs, "docker-compose.yml"),
		"-f", filepath.Join(abs, "deploy", "composetest", "testdata", "override.yml"),
		"--project-directory", abs,
		"--env-file", os.DevNull, // a developer's .env does not change the run
	}}
	t.Cleanup(func() {
		// The test's context may be over: the teardown has its own.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := s.compose(ctx, "ps", "-a")
			t.Logf("docker compose ps -a:\n%s", out)
			out, _ = s.compose(ctx, "logs", "--no-color", "--tail", "40")
			t.Logf("docker compose logs --tail 40:\n%s", out)
		}
		if out, err := s.compose(ctx, "down", "--volumes", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Errorf("docker compose down: %v\n%s", err, out)
		}
	})
	if out, err := s.compose(ctx, "up", "--detach", "--scale", fmt.Sprintf("edge=%d", edges),
		"--no-build", "--pull", "never", "--wait", "--wait-timeout", "180"); err != nil {
		t.Fatalf("docker compose up: %v\n%s", err, lastLines(out, 40))
	}
	out, err := s.compose(ctx, "port", "lb", "8080")
	if err != nil {
		t.Fatal(err)
	}
	s.lb = strings.TrimSpace(out)
	if !strings.HasPrefix(s.lb, "127.0.0.1:") {
		t.Fatalf("load balancer published on %q, want a loopback port", s.lb)
	}
	return s
}

// edge is one edge container as docker inspect shows it.
type edge struct {
	ID, Name string
	Running  bool
	IP       string // on the frontend network, where the load balancer reaches it
}

func (s *stack) edges(t *testing.T, ctx context.Context) []edge {
	t.Helper()
	out, err := s.compose(ctx, "ps", "--quiet", "edge")
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		t.Fatal("no edge container")
	}
	raw := s.e.must(t, ctx, append([]string{"inspect"}, ids...)...)
	var got []struct {
		ID, Name string
		State    struct{ Running bool }
		Network  struct {
			Networks map[string]struct{ IPAddress string }
		} `json:"NetworkSettings"`
	}
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatalf("docker inspect: %v", err)
	}
	var es []edge
	for _, g := range got {
		ed := edge{ID: g.ID, Name: strings.TrimPrefix(g.Name, "/"), Running: g.State.Running}
		for name, n := range g.Network.Networks {
			if strings.HasSuffix(name, "_frontend") {
				ed.IP = n.IPAddress
			}
		}
		es = append(es, ed)
	}
	slices.SortFunc(es, func(a, b edge) int { return strings.Compare(a.Name, b.Name) })
	return es
}

// connections reads hubbub_edge_connections from the edge's /metrics.
func connections(ctx context.Context, ip string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip+":8080/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "hubbub_edge_connections "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s/metrics has no hubbub_edge_connections", ip)
}

// spread polls the running edges until their connections add up to want
// and returns them per edge name.
func (s *stack) spread(t *testing.T, ctx context.Context, want int) ([]edge, map[string]int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var running []edge
		counts, total := map[string]int{}, 0
		var lastErr error
		for _, ed := range s.edges(t, ctx) {
			if !ed.Running {
				continue
			}
			n, err := connections(ctx, ed.IP)
			if err != nil {
				lastErr = err
			}
			running = append(running, ed)
			counts[ed.Name] = n
			total += n
		}
		if lastErr == nil && total == want {
			return running, counts
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running edges hold %d connections (%v), want %d (last error: %v)", total, counts, want, lastErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// viewer is one WebSocket user of the room, reconnected by the test. Its
// view is every message of the room it has received, checked as it arrives:
// each one's prev must be the id before it (no gap, no duplicate, in order),
// across reconnections too.
type viewer struct {
	user, room, lb string

	mu        sync.Mutex
	c         *client.Client
	done      chan struct{} // closed when the current connection's reader ends
	view      []uint64
	bad       error // the first violation
	recovered bool  // of the last resume
	acks      map[string]chan ackOrError
}

// ackOrError answers a message sent by the viewer (matched by cid).
type ackOrError struct {
	id  uint64
	err error
}

func (v *viewer) connect(ctx context.Context) error {
	v.mu.Lock()
	var since *uint64
	if n := len(v.view); n > 0 {
		last := v.view[n-1]
		since = &last
	}
	v.mu.Unlock()
	c, err := client.Dial(ctx, "ws://"+v.lb+"/ws?user="+v.user, client.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := c.Welcome(wctx); err != nil {
		c.Abort()
		return err
	}
	h, err := c.Join(wctx, v.room, since)
	if err != nil {
		c.Abort()
		return err
	}
	done := make(chan struct{})
	v.mu.Lock()
	v.c, v.done, v.recovered = c, done, h.Recovered
	v.add(h.Items...)
	v.mu.Unlock()
	go func() {
		defer close(done)
		for {
			f, err := c.Next(context.Background())
			if err != nil {
				return // closed
			}
			var ms []wire.Message
			switch f.Type {
			case wire.TypeMessage:
				var m wire.MessageFrame
				if f.Decode(&m) == nil && m.Room == v.room {
					ms = append(ms, m.Message)
				}
			case wire.TypeHistory:
				var h wire.History
				if f.Decode(&h) == nil && h.Room == v.room {
					ms = h.Items
				}
			case wire.TypeAck:
				var a wire.Ack
				if f.Decode(&a) == nil {
					v.answer(a.CID, ackOrError{id: a.ID})
				}
			case wire.TypeError:
				var e wire.ErrorFrame
				if f.Decode(&e) == nil {
					v.answer(e.CID, ackOrError{err: &wire.Error{Code: e.Code, Message: e.Message}})
				}
			}
			v.mu.Lock()
			v.add(ms...)
			v.mu.Unlock()
		}
	}()
	return nil
}

func (v *viewer) answer(cid string, a ackOrError) {
	v.mu.Lock()
	ch := v.acks[cid]
	delete(v.acks, cid)
	v.mu.Unlock()
	if ch != nil {
		ch <- a
	}
}

// say sends one message and waits for its acknowledgement.
func (v *viewer) say(ctx context.Context, body, cid string) (uint64, error) {
	ch := make(chan ackOrError, 1)
	v.mu.Lock()
	if v.acks == nil {
		v.acks = map[string]chan ackOrError{}
	}
	v.acks[cid] = ch
	c, done := v.c, v.done
	v.mu.Unlock()
	if err := c.Send(wire.ClientFrame{Type: wire.TypeMessage, Room: v.room, Body: body, CID: cid}); err != nil {
		return 0, err
	}
	select {
	case a := <-ch:
		return a.id, a.err
	case <-done:
		return 0, fmt.Errorf("%s: connection ended before the ack of %s", v.user, cid)
	case <-ctx.Done():
		return 0, fmt.Errorf("%s: no ack of %s: %w", v.user, cid, ctx.Err())
	}
}

// add appends to the view; v.mu is held.
func (v *viewer) add(ms ...wire.Message) {
	for _, m := range ms {
		if n := len(v.view); n > 0 && v.bad == nil {
			last := v.view[n-1]
			switch {
			case m.ID <= last:
				v.bad = fmt.Errorf("%s: message %d after %d: duplicate or out of order", v.user, m.ID, last)
			case m.Prev != last:
				v.bad = fmt.Errorf("%s: message %d has prev %d but the last one received is %d: a gap", v.user, m.ID, m.Prev, last)
			}
		}
		v.view = append(v.view, m.ID)
	}
}

// reconnect dials through the load balancer until it succeeds, as a client
// would, with a short backoff.
func (v *viewer) reconnect(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	backoff := 100 * time.Millisecond
	for {
		err := v.connect(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not reconnect through the load balancer within %s: %w", v.user, within, err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (v *viewer) closed() bool {
	v.mu.Lock()
	done := v.done
	v.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (v *viewer) has(ids []uint64) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.bad != nil {
		return false, v.bad
	}
	for _, id := range ids {
		if _, found := slices.BinarySearch(v.view, id); !found {
			return false, nil
		}
	}
	return true, nil
}

func (v *viewer) close() {
	v.mu.Lock()
	c := v.c
	v.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// say sends n messages from the sender and returns their acknowledged ids.
func say(ctx context.Context, sender *viewer, phase string, n int) ([]uint64, error) {
	var ids []uint64
	for i := range n {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		id, err := sender.say(sctx, fmt.Sprintf("%s %d", phase, i), fmt.Sprintf("%s-%d", phase, i))
		cancel()
		if err != nil {
			return ids, fmt.Errorf("send %s %d: %w", phase, i, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// everyoneHas waits until every viewer's view holds ids (and has no violation).
func everyoneHas(t *testing.T, vs []*viewer, ids []uint64, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, v := range vs {
		for {
			ok, err := v.has(ids)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				v.mu.Lock()
				view := slices.Clone(v.view)
				v.mu.Unlock()
				t.Fatalf("%s: %s lacks some of %v after 60s; its view: %v", what, v.user, ids, view)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (s *stack) scenario(t *testing.T, ctx context.Context) {
	room := fmt.Sprintf("compose-%d", time.Now().UnixNano())
	sender := &viewer{user: "sender", room: room, lb: s.lb}
	var vs []*viewer
	for i := range receivers {
		vs = append(vs, &viewer{user: fmt.Sprintf("u%d", i), room: room, lb: s.lb})
	}
	all := append([]*viewer{sender}, vs...)
	defer func() {
		for _, v := range all {
			v.close()
		}
	}()
	for _, v := range all {
		if err := v.reconnect(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	// The load balancer spreads the clients over the three edges.
	running, counts := s.spread(t, ctx, len(all))
	t.Logf("connections per edge: %v", counts)
	if len(running) != edges {
		t.Fatalf("%d edges running, want %d", len(running), edges)
	}
	for _, ed := range running {
		if counts[ed.Name] == 0 {
			t.Fatalf("edge %s got no connection of %d: the load balancer does not spread them (%v)", ed.Name, len(all), counts)
		}
	}

	acked, err := say(ctx, sender, "before", perPhase)
	if err != nil {
		t.Fatal(err)
	}
	everyoneHas(t, vs, acked, "before the kill")

	// Kill the busiest edge: its clients' connections end, nobody else's.
	victim := running[0]
	for _, ed := range running {
		if counts[ed.Name] > counts[victim.Name] {
			victim = ed
		}
	}
	k := counts[victim.Name]
	s.e.must(t, ctx, "kill", victim.ID)
	t.Logf("docker kill %s (%d connections)", victim.Name, k)
	var lost []*viewer
	deadline := time.Now().Add(60 * time.Second)
	for {
		lost = lost[:0]
		for _, v := range all {
			if v.closed() {
				lost = append(lost, v)
			}
		}
		if len(lost) > k {
			t.Fatalf("%d connections ended after killing an edge that held %d", len(lost), k)
		}
		if len(lost) == k {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60s after docker kill, %d of the %d connections of %s ended: the load balancer kept the others open", len(lost), k, victim.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The sender, if it was there, comes back first to send while the others are away.
	var away []*viewer
	for _, v := range lost {
		if v == sender {
			if err := sender.reconnect(ctx, 60*time.Second); err != nil {
				t.Fatal(err)
			}
			continue
		}
		away = append(away, v)
	}
	names := func(vs []*viewer) []string {
		var n []string
		for _, v := range vs {
			n = append(n, v.user)
		}
		return n
	}
	t.Logf("disconnected by the kill: %v", names(lost))

	during, err := say(ctx, sender, "during", perPhase)
	if err != nil {
		t.Fatal(err)
	}
	acked = append(acked, during...)

	// They come back through the load balancer, on the surviving edges, and
	// resume from their last id.
	for _, v := range away {
		if err := v.reconnect(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		if !v.recovered {
			t.Errorf("%s: resume answered recovered=false", v.user)
		}
	}
	after, err := say(ctx, sender, "after", perPhase)
	if err != nil {
		t.Fatal(err)
	}
	acked = append(acked, after...)
	everyoneHas(t, vs, acked, "after the resume")

	for _, v := range vs {
		if v.closed() {
			t.Errorf("%s's connection ended again", v.user)
		}
	}
	_, counts = s.spread(t, ctx, len(all))
	t.Logf("connections per running edge after the resume: %v", counts)
	if n := counts[victim.Name]; n > 0 {
		t.Logf("%s was restarted by its restart policy and holds %d connections", victim.Name, n)
	}
	if len(away) == 0 {
		t.Error("the killed edge held only the sender: no receiver resumed")
	}
	for _, v := range vs {
		v.mu.Lock()
		if v.bad != nil {
			t.Error(v.bad)
		}
		v.mu.Unlock()
	}
}
