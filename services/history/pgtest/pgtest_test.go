package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	if os.Getenv(envLeakHelper) == "1" {
		leakHelper()
	}
	Main(m)
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// TestDatabase uses whichever server the environment gives (the throwaway
// one when HUBBUB_TEST_DATABASE_URL is unset): a database per test,
// dropped at its end.
func TestDatabase(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		var url string
		url, name = Database(t)
		conn := connect(t, url)
		if _, err := conn.Exec(t.Context(), "CREATE TABLE t (id bigint PRIMARY KEY); INSERT INTO t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		var db string
		if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil || db != name {
			t.Fatalf("current_database() = %q, %v; want %q", db, err, name)
		}
	})
	admin := connect(t, AdminURL(t))
	var n int
	if err := admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test", name)
	}
}

// TestThrowawayServer starts a server of its own (whatever the
// environment says) and checks what the harness promises: loopback TCP
// with a password, Unix sockets in its directory, an unprivileged owner,
// and nothing left after stop.
func TestThrowawayServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := startServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			s.stop()
		}
	})
	pid, err := s.postmasterPID()
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, s.url)
	for setting, want := range map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": s.dir,
	} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || !super {
		t.Fatalf("the URL's role is not a superuser (%v): CREATE DATABASE and pg_terminate_backend need it", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, ".s.PGSQL."+strconv.Itoa(s.port))); err != nil {
		t.Errorf("no Unix socket in %s: %v", s.dir, err)
	}

	bad := strings.Replace(s.url, "hubbub:", "hubbub:x", 1)
	if c, err := pgx.Connect(ctx, bad); err == nil {
		_ = c.Close(ctx)
		t.Fatal("connected over TCP with a wrong password")
	}

	uid := processUID(t, pid)
	if os.Geteuid() == 0 && uid == 0 {
		t.Fatal("the throwaway postgres runs as root")
	}
	if os.Geteuid() != 0 && uid != os.Geteuid() {
		t.Fatalf("postgres runs as uid %d, want ours (%d)", uid, os.Geteuid())
	}

	s.stop()
	stopped = true
	if alive(pid) {
		t.Errorf("postmaster %d still alive after stop", pid)
	}
	waitGone(t, s.cmd.Process.Pid, pid)
	if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind after stop: %v", s.dir, err)
	}
}

// TestMissingBinaries: no server binaries is a failure with one line
// saying what to install, never a skip.
func TestMissingBinaries(t *testing.T) {
	t.Setenv(EnvBinDir, t.TempDir())
	_, err := startServer(t.Context())
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("startServer without binaries: %v, want ErrNoBinaries", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "apt-get install postgresql") || !strings.Contains(msg, EnvURL) {
		t.Fatalf("message %q: want one line naming apt-get install postgresql and %s", msg, EnvURL)
	}
}

const envLeakHelper = "PGTEST_LEAK_HELPER"

// leakHelper is what the test binary does when TestLeakedServerDies runs
// it again: start a server, report it and exit without stopping it, as a
// test binary without pgtest.Main (or one that crashes) does.
func leakHelper() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := startServer(ctx)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	pid, err := s.postmasterPID()
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	fmt.Printf("SERVER %d %d %s\n", s.cmd.Process.Pid, pid, s.dir)
	_ = os.Stdout.Sync()
	os.Exit(0)
}

// TestLeakedServerDies proves a test binary that exits without stopping
// its server leaves neither a postgres process nor its directory behind.
func TestLeakedServerDies(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envLeakHelper+"=1")
	out, err := cmd.Output()
	var supervisor, postmaster int
	var dir string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "SERVER" {
			supervisor, _ = strconv.Atoi(f[1])
			postmaster, _ = strconv.Atoi(f[2])
			dir = f[3]
		}
	}
	if postmaster == 0 {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	waitGone(t, supervisor, postmaster)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s left behind: %v", dir, err)
	}
}

// TestSweep: a start removes what a dead test binary's server left (a
// crashed postgres keeps its directory), and nothing of a live one.
func TestSweep(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	for owner, keep := range map[int]bool{dead.Process.Pid: false, os.Getpid(): true} {
		d := filepath.Join(tmp, dirPrefix+strconv.Itoa(owner))
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(strconv.Itoa(owner)), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, err := os.Stat(d)
			if kept := err == nil; kept != keep {
				t.Errorf("owner %d: directory kept = %v, want %v", owner, kept, keep)
			}
		})
	}
	sweep()
}

// waitGone waits until none of a server's processes is left: the
// supervisor's process group (the shell, its watcher, the postmaster) and
// the postmaster's children (which run in sessions of their own).
func waitGone(t *testing.T, supervisor, postmaster int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := serverProcesses(supervisor, postmaster)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the server still alive: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serverProcesses lists the live processes whose process group is the
// supervisor's or whose parent is the postmaster.
func serverProcesses(supervisor, postmaster int) []string {
	var left []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		// after "pid (comm) ": state ppid pgrp ...
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || !alive(pid) {
			continue
		}
		if f[2] == strconv.Itoa(supervisor) || f[1] == strconv.Itoa(postmaster) || pid == postmaster {
			left = append(left, string(stat[:i+1]))
		}
	}
	return left
}

func processUID(t *testing.T, pid int) int {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(pid), &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid)
}
