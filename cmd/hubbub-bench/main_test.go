package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/coord"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/localdeploy"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
	"github.com/hubbub-chat/hubbub/services/edge/client"
)

// TestMain lets the test binary act as the tool's worker and baseline
// server when the suite re-executes it.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "worker" || os.Args[1] == "baseline-ws") {
		if err := dispatch(context.Background(), os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// buildBinaries compiles the services and nats-server into a temporary
// directory (once per test binary run).
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	builds := [][]string{
		{"build", "-o", dir + "/", "./services/edge/cmd/hubbub-edge", "./services/history/cmd/hubbub-history", "./services/presence/cmd/hubbub-presence"},
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	return dir
}

// TestQuickSuite runs the tool's quick mode end to end against a local
// multi-process deployment and checks correctness only: every delivery
// reached (100%), no gap or duplicate in any client's view, every client of
// the killed edge resumed gap-free. Timing figures are never asserted.
func TestQuickSuite(t *testing.T) {
	if testing.Short() {
		t.Log("running anyway: -short only trims sizes further")
	}
	bin := buildBinaries(t)
	c, err := parseSuite([]string{"-quick", "-bin", bin, "-out", t.TempDir(), "-postgres=false"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var md bytes.Buffer
	run, err := suite(ctx, c, []string{os.Args[0]}, &md)
	if err != nil {
		t.Fatalf("suite: %v\n%s", err, md.String())
	}
	t.Logf("\n%s", md.String())
	seen := map[string]bool{}
	for _, r := range run.Results {
		name := r.Scenario + "/" + r.Target + fmt.Sprint(r.Params)
		seen[r.Scenario] = true
		if r.Failed != "" {
			t.Errorf("%s failed: %s", name, r.Failed)
			continue
		}
		if r.Gaps != 0 || r.Dups != 0 {
			t.Errorf("%s: %d gaps, %d duplicates in the clients' views", name, r.Gaps, r.Dups)
		}
		switch r.Scenario {
		case "fanout", "latency":
			if r.Expected == 0 || r.Received != r.Expected {
				t.Errorf("%s: received %d of %d expected deliveries (reach %.4f)", name, r.Received, r.Expected, r.Reach)
			}
		case "storm":
			if r.Affected == 0 || r.ResumedClean != r.Affected || r.Unrecovered != 0 {
				t.Errorf("%s: %d affected, %d resumed gap-free, %d unrecovered", name, r.Affected, r.ResumedClean, r.Unrecovered)
			}
		case "idle":
			want, _ := r.Params["connections"].(int)
			if r.Clients != want || r.ConnectErrors != 0 {
				t.Errorf("%s: %d of %d joined, %d connect errors", name, r.Clients, want, r.ConnectErrors)
			}
		case "history":
			if r.PagesPerSec <= 0 || r.PageErrors != 0 {
				t.Errorf("%s: %v pages/s, %d errors", name, r.PagesPerSec, r.PageErrors)
			}
		case "ingest":
			if r.IngestSec <= 0 {
				t.Errorf("%s: nothing ingested", name)
			}
		}
	}
	for _, s := range []string{"idle", "fanout", "latency", "storm", "history", "ingest"} {
		if !seen[s] {
			t.Errorf("scenario %s produced no result", s)
		}
	}
	// Every profiled process (through its -pprof-addr / nats-server
	// --profile) left a non-empty CPU profile of both profiled points.
	profiles := map[string]bool{}
	for _, p := range run.Profiles {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s missing or empty: %v", p, err)
		}
		profiles[filepath.Base(p)] = true
	}
	for _, proc := range []string{"nats-server", "history", "edge-0"} {
		for _, label := range []string{"fanout", "latency"} {
			if name := proc + "-" + label + ".pprof"; !profiles[name] {
				t.Errorf("no profile %s (profiles %v, notes %v)", name, run.Profiles, run.Notes)
			}
		}
	}
}

// TestLeanClientMatchesReferenceClient checks the load tool's own client
// against the project's protocol client: messages sent with
// services/edge/client reach every lean client of the room exactly once.
func TestLeanClientMatchesReferenceClient(t *testing.T) {
	bin := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := localdeploy.New(t.TempDir(), localdeploy.Binaries{
		NATSServer: filepath.Join(bin, "nats-server"), Edge: filepath.Join(bin, "hubbub-edge"),
		History: filepath.Join(bin, "hubbub-history"), Presence: filepath.Join(bin, "hubbub-presence"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	_, edges, err := hubbubDeployment(ctx, d, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	url := "ws://" + edges[0].Addr + "/ws"
	pool, err := coord.Start(ctx, 2, []string{os.Args[0], "worker"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	const members, sends = 20, 5
	if _, err := pool.All([]*worker.Command{
		{Op: worker.OpConnect, Connect: &worker.ConnectSpec{Kind: worker.KindWS, URLs: []string{url}, First: 0, Count: members / 2, Rooms: 1, RoomPrefix: "ref-", UserPrefix: "lean", Edge: -1}},
		{Op: worker.OpConnect, Connect: &worker.ConnectSpec{Kind: worker.KindWS, URLs: []string{url}, First: members / 2, Count: members / 2, Rooms: 1, RoomPrefix: "ref-", UserPrefix: "lean", Edge: -1}},
	}); err != nil {
		t.Fatal(err)
	}
	spec := &worker.RunSpec{Tag: "ref1", Duration: time.Millisecond, Quiet: 500 * time.Millisecond, Drain: 10 * time.Second}
	if _, err := pool.Each(worker.Command{Op: worker.OpPrepare, Run: spec}); err != nil {
		t.Fatal(err)
	}
	ref, err := client.Dial(ctx, url+"?user=reference", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	if _, err := ref.Join(ctx, "ref-0", nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < sends; i++ {
		body := "bench ref1 " + strconv.FormatInt(time.Now().UnixNano(), 10) + " reference client"
		if _, err := ref.Say(ctx, "ref-0", body, "ref-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := pool.Each(worker.Command{Op: worker.OpStats})
		if err != nil {
			t.Fatal(err)
		}
		var got, gaps, dups int64
		for _, s := range st {
			got += s.Received
			gaps += s.Gaps
			dups += s.Dups
		}
		if gaps != 0 || dups != 0 {
			t.Fatalf("lean clients saw %d gaps and %d duplicates", gaps, dups)
		}
		if got == members*sends {
			break
		}
		if got > members*sends || time.Now().After(deadline) {
			t.Fatalf("lean clients received %d messages, want %d", got, members*sends)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memprobe and history are subcommands: their own flag checks answer, not
// the usage error.
func TestSubcommandsDispatch(t *testing.T) {
	for _, args := range [][]string{{"memprobe", "-n", "0"}, {"history", "-n", "0"}} {
		err := dispatch(t.Context(), args)
		if err == nil || errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want the subcommand's own error", args, err)
		}
	}
	if err := dispatch(t.Context(), []string{"nonsense"}); !errors.Is(err, errUsage) {
		t.Errorf("unknown subcommand: %v", err)
	}
}
