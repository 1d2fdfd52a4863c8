package topology_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const root = "../.."

// build compiles the binaries into a temporary directory: the services from
// the workspace and nats-server from this module's dependencies.
func build(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"./services/edge/cmd/hubbub-edge",
		"./services/history/cmd/hubbub-history",
		"./services/presence/cmd/hubbub-presence",
		"github.com/nats-io/nats-server/v2",
		"./deploy/cmd/hubbub-healthcheck",
	)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// proc is one child process with its log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// start runs bin with args and exactly env (nothing inherited), logging to
// a file, and stops it at the end of the test.
func start(t *testing.T, name, bin string, args, env []string, logDir string) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() || os.Getenv("HUBBUB_TOPOLOGY_LOGS") != "" {
			tail(t, p)
		}
	})
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s survived SIGKILL", p.name)
	}
}

// stop asks the process to shut down (SIGTERM), then kills it.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func tail(t *testing.T, p *proc) {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("--- last lines of %s ---\n%s", p.name, strings.Join(lines, "\n"))
}

// portPicker returns a function handing out free loopback port numbers,
// each different from the others it handed out: the kernel may give a
// just-closed port to the next bind on :0 again, and two processes of one
// topology told the same port fail (a route port equal to another node's,
// "duplicate route entry", "address already in use").
func portPicker(t *testing.T) func() int {
	given := map[int]bool{}
	return func() int {
		t.Helper()
		for {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			_ = ln.Close()
			if !given[port] {
				given[port] = true
				return port
			}
		}
	}
}

// waitHTTP polls url until it answers 200, or fails the test at the deadline.
func waitHTTP(t *testing.T, url string, p *proc, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: 2 * time.Second}
	last := ""
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			if b := strings.TrimSpace(string(body)); b != last {
				last = b
				t.Logf("%s %s: %d %s", p.name, url, resp.StatusCode, b)
			}
		}
		if !p.running() {
			t.Fatalf("%s exited while waiting for %s", p.name, url)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not OK after %v (last error %v)", p.name, url, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor polls cond until it holds, or fails the test at the deadline.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", within, what)
		case <-tick.C:
		}
	}
}

// healthcheck runs hubbub-healthcheck the way the images' HEALTHCHECK and
// the compose healthchecks do: with only HUBBUB_HTTP_ADDR set.
func healthcheck(t *testing.T, bin string, port int, path string) error {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "hubbub-healthcheck"), "-path", path)
	cmd.Env = []string{fmt.Sprintf("HUBBUB_HTTP_ADDR=127.0.0.1:%d", port)}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func envList(kv map[string]string) []string {
	out := make([]string, 0, len(kv))
	for k, v := range kv {
		out = append(out, fmt.Sprintf("%s=%s", k, v))
	}
	return out
}
