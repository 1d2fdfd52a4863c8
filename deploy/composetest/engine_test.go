//go:build composetest

package composetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// engine is a private Docker engine: dockerd with its data root, exec root
// and socket in one temporary directory, stopped and removed by the test.
type engine struct {
	dir    string // the run directory
	sock   string
	config string // DOCKER_CONFIG: cli-plugins/docker-compose
	cmd    *exec.Cmd
	log    string
	done   chan struct{}
	err    error // dockerd's exit, once done is closed
}

const runPrefix = "hubbub-compose-"

// newRunDir makes the run's temporary directory, holding a lock for the
// life of the test so that a later run can tell a crashed run's leftovers
// from a run going on at the same time.
func newRunDir(t *testing.T) string {
	t.Helper()
	cleanStaleRuns(t)
	dir, err := os.MkdirTemp("", runPrefix)
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.Create(filepath.Join(dir, "owner.lock"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("lock %s: %v", lock.Name(), err)
	}
	t.Cleanup(func() {
		if err := removeRunDir(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
		_ = lock.Close()
	})
	return dir
}

// cleanStaleRuns stops the dockerd of an earlier run that died without its
// cleanup (a go test timeout, a kill) and removes its directory. A run whose
// owner still holds its lock is left alone.
func cleanStaleRuns(t *testing.T) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), runPrefix+"*"))
	for _, dir := range dirs {
		f, err := os.Open(filepath.Join(dir, "owner.lock"))
		if err != nil {
			continue
		}
		busy := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
		_ = f.Close()
		if busy {
			continue
		}
		if pid := daemonPID(dir); pid > 0 {
			t.Logf("stopping dockerd %d left by an earlier run in %s", pid, dir)
			prune(filepath.Join(dir, "docker.sock"))
			_ = syscall.Kill(pid, syscall.SIGTERM)
			deadline := time.Now().Add(45 * time.Second)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
			}
			if alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err := removeRunDir(dir); err != nil {
			t.Logf("could not remove the earlier run's %s: %v", dir, err)
		}
	}
}

// prune removes every container and network of the engine on sock: dockerd
// keeps a network's bridge and iptables rules when it stops, and `compose
// down` (which removes them) may not have run.
func prune(sock string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := &engine{sock: sock, config: filepath.Join(filepath.Dir(sock), "docker-config")}
	if out, err := e.docker(ctx, "ps", "--all", "--quiet"); err == nil && strings.TrimSpace(out) != "" {
		_, _ = e.docker(ctx, append([]string{"rm", "--force", "--volumes"}, strings.Fields(out)...)...)
	}
	_, _ = e.docker(ctx, "network", "prune", "--force")
}

// daemonPID is the pid in dir's dockerd.pid if that process is the dockerd
// started for dir (its command line names dir).
func daemonPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "dockerd.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(dir)) || !bytes.Contains(cmdline, []byte("dockerd")) {
		return 0
	}
	return pid
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// removeRunDir unmounts whatever dockerd left mounted under dir (overlay
// layers, network namespaces of a daemon that was killed) and removes it.
func removeRunDir(dir string) error {
	var mounts []string
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
				mounts = append(mounts, fields[4])
			}
		}
		_ = f.Close()
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) }) // deepest first
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	return os.RemoveAll(dir)
}

// startEngine starts dockerd in dir and waits until it answers. It is
// stopped when the test ends (after the compose stack is down).
func startEngine(t *testing.T, ctx context.Context, dir string) *engine {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the compose test starts its own Docker engine and needs root (dockerd)")
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Fatal("dockerd not found: install Debian's Docker engine (apt-get install docker.io); .ci/run does")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("the docker CLI is not found: apt-get install docker.io")
	}
	e := &engine{
		dir:    dir,
		sock:   filepath.Join(dir, "docker.sock"),
		config: filepath.Join(dir, "docker-config"),
		log:    filepath.Join(dir, "dockerd.log"),
		done:   make(chan struct{}),
	}
	if err := os.MkdirAll(filepath.Join(e.config, "cli-plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(e.log)
	if err != nil {
		t.Fatal(err)
	}
	driver := os.Getenv("HUBBUB_COMPOSE_STORAGE_DRIVER")
	if driver == "" {
		driver = "overlay2"
	}
	e.cmd = exec.Command(dockerd,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"--host", "unix://"+e.sock,
		"--storage-driver", driver,
		// No default bridge (compose makes its own networks) and no change to the
		// host's forwarding: containers reach each other on their bridges and the
		// host reaches published ports through docker-proxy on the loopback.
		"--bridge=none",
		"--ip-forward=false",
	)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	// Its own process group: a ^C to go test does not kill it before the cleanup.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	go func() {
		e.err = e.cmd.Wait()
		_ = logf.Close()
		close(e.done)
	}()
	t.Cleanup(func() { e.stop(t) })

	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := e.docker(ctx, "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}")
		if err == nil {
			t.Logf("dockerd %s (storage driver %s) in %s", strings.TrimSpace(out), driver, dir)
			return e
		}
		select {
		case <-e.done:
			t.Fatalf("dockerd exited before answering (%v); its log:\n%s", e.err, tail(e.log, 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 60s: %v; its log:\n%s", err, tail(e.log, 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// stop sends dockerd SIGTERM (it stops its containers and containerd) and
// waits; SIGKILL to its process group after a minute.
func (e *engine) stop(t *testing.T) {
	select {
	case <-e.done:
		return
	default:
	}
	prune(e.sock)
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(60 * time.Second):
		t.Errorf("dockerd did not stop within 60s of SIGTERM: killing its process group; its log:\n%s", tail(e.log, 20))
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.done
	}
}

// env is the environment of docker and docker compose: this engine, this
// run's CLI configuration (and so its compose plugin), the legacy builder
// (BuildKit would need images from a registry), nothing inherited that could
// point elsewhere.
func (e *engine) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DOCKER_") || strings.HasPrefix(k, "COMPOSE_") || strings.HasPrefix(k, "HUBBUB_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"DOCKER_HOST=unix://"+e.sock,
		"DOCKER_CONFIG="+e.config,
		"DOCKER_BUILDKIT=0",
		"DOCKER_CLI_HINTS=false",
	)
	return append(env, extra...)
}

// docker runs the docker CLI against this engine and returns its output.
func (e *engine) docker(ctx context.Context, args ...string) (string, error) {
	return e.dockerEnv(ctx, nil, args...)
}

func (e *engine) dockerEnv(ctx context.Context, extra []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = e.env(extra...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, lastLines(out.String(), 30))
	}
	return out.String(), nil
}

// must runs docker and fails the test on an error.
func (e *engine) must(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := e.docker(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run executes a host command (go, apt-get, tar) and returns an error
// carrying its output.
func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, lastLines(string(out), 30))
	}
	return nil
}
