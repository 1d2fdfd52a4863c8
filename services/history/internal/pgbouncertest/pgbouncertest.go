// Package pgbouncertest runs a real PgBouncer in front of a test Postgres,
// in transaction pooling mode (as CloudNativePG's Pooler runs it), so that
// tests see what history sees behind a pooler: consecutive transactions of
// one client connection on different server connections, and startup
// parameters refused.
//
// The binary is $HUBBUB_TEST_PGBOUNCER, else pgbouncer on $PATH, else
// /usr/sbin/pgbouncer (Debian's package). Without it the test fails with
// one line saying what to install; it never skips.
package pgbouncertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EnvBinary names the variable that, when set, is the pgbouncer binary.
const EnvBinary = "HUBBUB_TEST_PGBOUNCER"

// ErrNoBinary reports that no pgbouncer binary was found. Its text is the
// one line a newcomer needs.
var ErrNoBinary = errors.New("pgbouncertest: pgbouncer not found in $" + EnvBinary +
	", $PATH or /usr/sbin: install it (apt-get install pgbouncer) or set " + EnvBinary + " to the binary")

// Config shapes the PgBouncer. Zero values take the defaults.
type Config struct {
	// PoolMode is PgBouncer's pool_mode ("transaction").
	PoolMode string
	// DefaultPoolSize is the most server connections per database and user
	// (2: fewer than the store's pools hold, so that its connections share
	// server connections and really get shuffled).
	DefaultPoolSize int
}

// Bouncer is a running PgBouncer.
type Bouncer struct {
	dir     string
	port    int
	user    string // of the upstream server, as clients log in with it
	pass    string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once pgbouncer has exited
	waitErr error         // its exit status, set before exited is closed
}

// Start runs PgBouncer in front of the server upstream (any database URL
// of it: its host, port, user and password are used; every database of the
// server is reachable through the bouncer by name) and stops it in Cleanup.
// The configuration, auth file, log, pid file and Unix socket live in a
// temporary directory of tb. Start fails tb when pgbouncer is missing or
// does not start.
func Start(tb testing.TB, upstream string, cfg Config) *Bouncer {
	tb.Helper()
	if cfg.PoolMode == "" {
		cfg.PoolMode = "transaction"
	}
	if cfg.DefaultPoolSize <= 0 {
		cfg.DefaultPoolSize = 2
	}
	bin, err := findBinary()
	if err != nil {
		tb.Fatal(err)
	}
	up, err := pgconn.ParseConfig(upstream)
	if err != nil {
		tb.Fatalf("pgbouncertest: upstream URL: %v", err)
	}
	if up.User == "" || up.Password == "" {
		tb.Fatalf("pgbouncertest: upstream URL needs a user and a password (the bouncer logs in with them)")
	}
	cred, err := unprivileged()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	if cred != nil {
		// pgbouncer refuses to run as root: it runs as cred, and must be
		// able to reach its directory (the test's temporary root is 0700).
		if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
			tb.Fatalf("pgbouncertest: %v", err)
		}
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatalf("pgbouncertest: %v", err)
		}
	}
	b := &Bouncer{dir: dir, user: up.User, pass: up.Password}
	auth := filepath.Join(dir, "userlist.txt")
	if err := writeOwned(auth, fmt.Sprintf("%s %s\n", quote(up.User), quote(up.Password)), cred); err != nil {
		tb.Fatal(err)
	}
	// The port is picked free and then handed over, so another process may
	// take it in between: try again on a new one.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		ini := fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir = %s
auth_type = scram-sha-256
auth_file = %s
pool_mode = %s
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
log_connections = 0
log_disconnections = 0
`, upHost(up), up.Port, port, dir, auth, cfg.PoolMode, cfg.DefaultPoolSize,
			filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
		iniPath := filepath.Join(dir, "pgbouncer.ini")
		if err := writeOwned(iniPath, ini, cred); err != nil {
			tb.Fatal(err)
		}
		b.port = port
		err = b.start(bin, iniPath, cred)
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(b.logTail(), "Address already in use") {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(b.stop)
	return b
}

// URL returns the URL of database through the bouncer, as the upstream's
// user.
func (b *Bouncer) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(b.user, b.pass),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Log returns PgBouncer's log so far.
func (b *Bouncer) Log() string {
	out, _ := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
	return string(out)
}

// start runs pgbouncer and waits until it answers a query through it.
func (b *Bouncer) start(bin, ini string, cred *syscall.Credential) error {
	cmd := exec.Command(bin, ini)
	cmd.Dir = b.dir
	// Output to a file, never to the test binary's stdout: go test waits
	// for every holder of that pipe to exit.
	f, err := os.OpenFile(filepath.Join(b.dir, "pgbouncer.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgbouncertest: %w", err)
	}
	defer func() { _ = f.Close() }()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// Dies with the test binary, however it ends.
		Pdeathsig: syscall.SIGKILL,
		// Its own process group: ^C in a terminal reaches the test binary
		// only, which then stops pgbouncer.
		Setpgid: true,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgbouncertest: start %s: %w", bin, err)
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	go func() {
		b.waitErr = cmd.Wait()
		close(b.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-b.exited:
			return fmt.Errorf("pgbouncertest: pgbouncer exited at start (%v)%s", b.waitErr, b.logTail())
		default:
		}
		err := b.ping()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			b.stop()
			return fmt.Errorf("pgbouncertest: pgbouncer not ready on port %d: %w%s", b.port, err, b.logTail())
		}
		select {
		case <-b.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ping runs a query on the upstream's own database through the bouncer.
func (b *Bouncer) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("query: %w", err)
	}
	return nil
}

// stop ends pgbouncer (SIGTERM: immediate shutdown), killing it if it
// lingers.
func (b *Bouncer) stop() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}

// logTail returns the last lines of pgbouncer's log and output, to end an
// error message.
func (b *Bouncer) logTail() string {
	var out strings.Builder
	for _, name := range []string{"pgbouncer.log", "pgbouncer.out"} {
		p := filepath.Join(b.dir, name)
		data, err := os.ReadFile(p)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		out.WriteString("\n" + p + ":\n" + strings.Join(lines, "\n"))
	}
	return out.String()
}

// upHost is the upstream host as pgbouncer's host= wants it: an address,
// a name, or a Unix socket directory.
func upHost(c *pgconn.Config) string {
	if c.Host == "" || c.Host == "localhost" {
		return "127.0.0.1"
	}
	return c.Host
}

// quote writes s as a double-quoted auth_file field.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// writeOwned writes a file readable by cred only (by us when cred is nil).
func writeOwned(path, content string, cred *syscall.Credential) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("pgbouncertest: %w", err)
	}
	if cred != nil {
		if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pgbouncertest: %w", err)
		}
	}
	return nil
}

// findBinary returns the pgbouncer to run.
func findBinary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%w (%s=%s is not an executable file)", ErrNoBinary, EnvBinary, p)
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", ErrNoBinary
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// unprivileged returns the credentials to run pgbouncer with when we are
// root (it refuses root): the "postgres" user the packages create, else
// "nobody".
func unprivileged() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
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
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
	}
	return nil, errors.New("pgbouncertest: running as root and neither user postgres nor nobody exists " +
		"to run pgbouncer as (it refuses root)")
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgbouncertest: free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
