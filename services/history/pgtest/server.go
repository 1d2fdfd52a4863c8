package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvBinDir names the variable that, when set, is the only directory
// searched for the PostgreSQL server binaries (initdb, postgres).
const EnvBinDir = "HUBBUB_TEST_PG_BINDIR"

// ErrNoBinaries reports that no PostgreSQL server binaries were found. Its
// text is the one line a newcomer needs.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL server binaries (initdb, postgres) not found " +
	"in $" + EnvBinDir + ", pg_config --bindir, /usr/lib/postgresql/*/bin or $PATH: " +
	"install them (apt-get install postgresql) or set " + EnvURL + " to a server")

// dirPrefix starts the name of every throwaway server's directory under
// os.TempDir(), so leftovers of killed test binaries can be found.
const dirPrefix = "hubbub-pgtest-"

// ownerFile, in a server's directory, holds the pid of the test binary
// that started it.
const ownerFile = "owner.pid"

// server is a throwaway PostgreSQL cluster: data directory, Unix sockets
// and log in one temporary directory, TCP on a free 127.0.0.1 port.
type server struct {
	dir      string        // temporary directory, removed by stop
	url      string        // superuser URL of database "hubbub"
	port     int           // its TCP port on 127.0.0.1
	version  string        // "PostgreSQL 15.14 (Debian …)"
	runAs    string        // the unprivileged user it runs as when we are root ("" otherwise)
	cmd      *exec.Cmd     // the supervising shell (see supervise)
	lifeline *os.File      // the write end of its standard input
	exited   chan struct{} // closed once the supervisor has exited
	waitErr  error         // its exit status, set before exited is closed
}

// startServer initdb's a cluster in a fresh temporary directory, starts
// postgres on it and returns once it accepts connections.
func startServer(ctx context.Context) (*server, error) {
	sweep()
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	cred, runAs, err := unprivileged()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: temporary directory: %w", err)
	}
	s := &server{dir: dir, runAs: runAs}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	password := hex.EncodeToString(rnd[:])
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if cred != nil {
		// initdb and postgres refuse to run as root: the directory (and the
		// password file in it) belongs to the user they run as.
		for _, p := range []string{dir, pwfile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("pgtest: hand %s to %s: %w", p, runAs, err)
			}
		}
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "postgres"), "--version").Output(); err == nil {
		s.version = "PostgreSQL " + strings.TrimPrefix(strings.TrimSpace(string(out)), "postgres (PostgreSQL) ")
	}

	data := filepath.Join(dir, "data")
	initLog := filepath.Join(dir, "initdb.log")
	initdb, err := s.command(ctx, cred, initLog, filepath.Join(bin, "initdb"),
		"-D", data, "-U", "hubbub", "--pwfile", pwfile,
		"-A", "scram-sha-256", "--auth-local", "trust",
		"-E", "UTF8", "--locale", "C", "--no-sync")
	if err != nil {
		return nil, err
	}
	err = initdb.Run()
	_ = initdb.Stdout.(*os.File).Close()
	if err != nil {
		return nil, fmt.Errorf("pgtest: initdb as %s: %w%s", s.who(), err, logTail(initLog))
	}

	// The port is picked free and then handed over, so another process may
	// take it in between: try again on a new one.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		err = s.start(ctx, bin, cred, data, port, password)
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(logTail(s.logPath()), "could not bind") {
			return nil, err
		}
	}
	if err := s.createDatabase(ctx); err != nil {
		s.stop()
		return nil, err
	}
	ok = true
	return s, nil
}

// who names the user the server runs as.
func (s *server) who() string {
	if s.runAs != "" {
		return s.runAs
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}

func (s *server) logPath() string { return filepath.Join(s.dir, "postgres.log") }

// command prepares a program run as cred (nil: as we are) in the server's
// directory, with output to logFile.
func (s *server) command(ctx context.Context, cred *syscall.Credential, logFile, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.dir // its own working directory: the caller's may be closed to cred
	cmd.Env = append(cleanEnv(), "LC_ALL=C", "TZ=UTC")
	// The output goes to a file, never to the test binary's stdout: go test
	// waits for every holder of that pipe to exit.
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if cred != nil {
		_ = f.Chown(int(cred.Uid), int(cred.Gid))
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// Its own process group: ^C in a terminal reaches the test binary
		// only, which then stops the server in order.
		Setpgid: true,
	}
	return cmd, nil
}

// supervise is the shell that runs postgres and ends it when its standard
// input, a pipe from the test binary, reaches EOF: when pgtest.Stop closes
// it or when the test binary exits, however it exits (even SIGKILL, or a
// package without pgtest.Main). It asks for a fast shutdown (SIGINT) and
// kills postgres if it is still there after 20s (a shell's background job
// starts with SIGINT ignored, so a postgres too young to have set its
// handlers would not hear it; backends exit when their postmaster dies).
// After a clean shutdown it removes the server's directory. $1 is that
// directory, the rest the postgres command.
const supervise = `exec 3<&0 </dev/null
dir=$1; shift
"$@" 3<&- &
pg=$!
(
	cat <&3 >/dev/null
	kill -INT "$pg" 2>/dev/null
	i=0
	while kill -0 "$pg" 2>/dev/null && [ "$i" -lt 200 ]; do sleep 0.1; i=$((i+1)); done
	kill -KILL "$pg" 2>/dev/null
) &
wait "$pg"; st=$?
[ "$st" -eq 0 ] && rm -rf "$dir"
exit "$st"`

// start runs postgres on port under the supervising shell and waits until
// it accepts connections.
func (s *server) start(ctx context.Context, bin string, cred *syscall.Credential, data string, port int, password string) error {
	cmd, err := s.command(context.Background(), cred, s.logPath(), "/bin/sh", "-c", supervise, "pgtest-supervise", s.dir,
		filepath.Join(bin, "postgres"),
		"-D", data,
		"-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-k", s.dir, // Unix sockets in the temporary directory, not /var/run/postgresql
		// A throwaway cluster: no durability, less I/O.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	if err != nil {
		return err
	}
	r, w, err := os.Pipe() // close-on-exec: no other child of the test binary holds w
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	cmd.Stdin = r
	err = cmd.Start()
	_ = r.Close()
	_ = cmd.Stdout.(*os.File).Close() // the children hold their own copies
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd, s.lifeline, s.exited = cmd, w, make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()

	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("hubbub", password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			s.halt()
			return fmt.Errorf("pgtest: postgres exited at start (%v)%s", s.waitErr, logTail(s.logPath()))
		default:
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(actx, u.String())
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.halt()
			return fmt.Errorf("pgtest: postgres not ready on port %d: %w%s", port, err, logTail(s.logPath()))
		}
		select {
		case <-s.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
	u.Path = "/hubbub"
	s.url, s.port = u.String(), port
	return nil
}

// postmasterPID reads the postmaster's pid from its lock file.
func (s *server) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("pgtest: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("pgtest: postmaster.pid: %w", err)
	}
	return pid, nil
}

// createDatabase creates database "hubbub", the one the URL names.
func (s *server) createDatabase(ctx context.Context) error {
	u, err := url.Parse(s.url)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE hubbub"); err != nil {
		return fmt.Errorf("pgtest: create database hubbub: %w", err)
	}
	return nil
}

// halt ends the supervisor: closing its lifeline makes it shut postgres
// down. If it has not ended in time, the postmaster and the supervisor are
// killed.
func (s *server) halt() {
	if s.cmd == nil {
		return
	}
	_ = s.lifeline.Close()
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		if pid, err := s.postmasterPID(); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// stop shuts postgres down and removes its directory.
func (s *server) stop() {
	s.halt()
	_ = os.RemoveAll(s.dir)
}

// findBinDir returns the first directory holding both initdb and postgres.
func findBinDir() (string, error) {
	var dirs []string
	if d := os.Getenv(EnvBinDir); d != "" {
		dirs = []string{d}
	} else {
		if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
		// Debian/Ubuntu, newest major first; then RPM-based and source installs.
		debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		slices.SortFunc(debian, func(a, b string) int { return versionOf(b) - versionOf(a) })
		dirs = append(dirs, debian...)
		rpm, _ := filepath.Glob("/usr/pgsql-*/bin")
		dirs = append(dirs, rpm...)
		dirs = append(dirs, "/usr/local/pgsql/bin")
		if p, err := exec.LookPath("initdb"); err == nil {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				p = r
			}
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

// versionOf reads the major version from /usr/lib/postgresql/<major>/bin.
func versionOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// unprivileged returns the credentials to run the server with when we are
// root: the "postgres" user the packages create, else "nobody".
func unprivileged() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		return nil, "", nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, name, nil
	}
	return nil, "", errors.New("pgtest: running as root and neither user postgres nor nobody exists " +
		"to run the throwaway PostgreSQL as (initdb refuses root)")
}

// cleanEnv is the environment without libpq's PG* variables, which would
// point the server tools elsewhere.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") })
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// logTail returns the last lines of a log file, to end an error message.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\n" + path + ":\n" + strings.Join(lines, "\n")
}

// sweep removes the directories of throwaway servers whose test binary
// and postmaster are both gone but which are still there: a postgres that
// crashed, or a supervisor killed before it could clean up.
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			// Being created right now, or not ours: leave young ones alone.
			if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > time.Hour {
				_ = os.RemoveAll(d)
			}
			continue
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || alive(owner) {
			continue
		}
		if pm, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(pm), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && alive(pid) {
				continue
			}
		}
		_ = os.RemoveAll(d)
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: comm may contain spaces and parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}
