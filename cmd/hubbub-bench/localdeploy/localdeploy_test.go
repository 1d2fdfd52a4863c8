package localdeploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary play a deployment's program instead of
// running the tests: "nats" (listens on -a/-p like nats-server),
// "service" (serves /readyz on HUBBUB_HTTP_ADDR, 503 twice then 200),
// "baseline" (listens on -addr), "exit" (exits 3), "sleep" (waits for a
// signal), "stubborn" (ignores SIGTERM). Each first prints its arguments
// and the HUBBUB_* variables Deployment sets to stdout, the process's log;
// "sleep" and "stubborn" then print "ready".
const helperEnv = "HUBBUB_LOCALDEPLOY_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func helper(mode string, args []string) int {
	fmt.Printf("args: %s\n", strings.Join(args, " "))
	var env []string
	for _, k := range []string{"HUBBUB_HTTP_ADDR", "HUBBUB_LOG_FORMAT", "HUBBUB_NATS_URL", "HUBBUB_PPROF_ADDR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	fmt.Printf("env: %s\n", strings.Join(env, " "))
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	if mode == "sleep" || mode == "stubborn" {
		fmt.Println("ready")
	}
	arg := func(name string) string {
		if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return ""
	}
	listen := func(addr string) net.Listener {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		return ln
	}
	switch mode {
	case "nats":
		accept(listen(net.JoinHostPort(arg("-a"), arg("-p"))))
	case "baseline":
		accept(listen(arg("-addr")))
	case "service":
		var asked atomic.Int32
		mux := http.NewServeMux()
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
			if asked.Add(1) <= 2 {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		})
		_ = http.Serve(listen(os.Getenv("HUBBUB_HTTP_ADDR")), mux)
	case "exit":
		return 3
	}
	select {}
}

func accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(2)
		}
		c.Close()
	}
}

// deployment is a Deployment under a temporary directory whose programs
// are this test binary in the given helper mode; every process is stopped
// when the test ends.
func deployment(t *testing.T, mode string) *Deployment {
	t.Helper()
	t.Setenv(helperEnv, mode)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(t.TempDir(), Binaries{NATSServer: self, Edge: self, History: self, Presence: self, Self: []string{self, "-first"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// logOf returns the arguments and environment a helper logged.
func logOf(t *testing.T, d *Deployment, name string) (args, env string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Dir, "logs", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "args: "); ok {
			args = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "env: "); ok {
			env = strings.TrimSpace(v)
		}
	}
	return args, env
}

// waitLogged polls until a helper's log says "ready".
func waitLogged(t *testing.T, d *Deployment, name string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(d.Dir, "logs", name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "\nready\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready; log %q", name, b)
		}
	}
}

// signalOf is the signal that ended a process (0 if none did).
func signalOf(err error) syscall.Signal {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0
	}
	return ws.Signal()
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func port(t *testing.T, addr string) string {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" || p == "0" {
		t.Fatalf("address %q is not a loopback host:port", addr)
	}
	return p
}

func TestFreeAddr(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	port(t, addr)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("free address %s: %v", addr, err)
	}
	ln.Close()
}

func TestNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	d, err := New(dir, Binaries{Edge: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Dir != dir || d.Bins.Edge != "edge" || d.Profile {
		t.Errorf("New = %+v", d)
	}
	if fi, err := os.Stat(filepath.Join(dir, "logs")); err != nil || !fi.IsDir() {
		t.Errorf("no logs directory: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(filepath.Join(file, "dir"), Binaries{}); err == nil {
		t.Error("New under a file succeeded")
	}
}

func TestStartNATS(t *testing.T) {
	for _, profile := range []bool{false, true} {
		t.Run(fmt.Sprintf("profile=%v", profile), func(t *testing.T) {
			d := deployment(t, "nats")
			d.Profile = profile
			p, err := d.StartNATS(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != "nats-server" || p.Bin != d.Bins.NATSServer || p.Exited() {
				t.Errorf("process %+v", p)
			}
			want := "-a 127.0.0.1 -p " + port(t, p.Addr) + " -js -sd " + filepath.Join(d.Dir, "nats") + " -n bench"
			if profile {
				want += " --profile " + port(t, p.PprofAddr)
			} else if p.PprofAddr != "" {
				t.Errorf("PprofAddr %q without profiling", p.PprofAddr)
			}
			if args, _ := logOf(t, d, "nats-server"); args != want {
				t.Errorf("nats-server args\n%s\nwant\n%s", args, want)
			}
			c, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatalf("nats-server not listening on Addr: %v", err)
			}
			c.Close()
		})
	}
}

func TestService(t *testing.T) {
	for _, profile := range []bool{false, true} {
		t.Run(fmt.Sprintf("profile=%v", profile), func(t *testing.T) {
			d := deployment(t, "service")
			d.Profile = profile
			p, err := d.Service(ctx(t), "edge-0", d.Bins.Edge, []string{"HUBBUB_NATS_URL=nats://x:1", "HUBBUB_LOG_FORMAT=text"})
			if err != nil {
				t.Fatal(err)
			}
			port(t, p.Addr)
			// Service returned only once /readyz said 200 (the helper says
			// 503 twice first).
			resp, err := http.Get("http://" + p.Addr + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("readyz after Service: %d", resp.StatusCode)
			}
			args, env := logOf(t, d, "edge-0")
			if args != "" {
				t.Errorf("service args %q, want none", args)
			}
			// The caller's env comes after the defaults (the later wins).
			want := []string{"HUBBUB_HTTP_ADDR=" + p.Addr, "HUBBUB_LOG_FORMAT=text", "HUBBUB_NATS_URL=nats://x:1"}
			if profile {
				port(t, p.PprofAddr)
				want = append(want, "HUBBUB_PPROF_ADDR="+p.PprofAddr)
			} else if p.PprofAddr != "" {
				t.Errorf("PprofAddr %q without profiling", p.PprofAddr)
			}
			slices.Sort(want)
			if env != strings.Join(want, " ") {
				t.Errorf("service env\n%s\nwant\n%s", env, strings.Join(want, " "))
			}
		})
	}
}

func TestBaseline(t *testing.T) {
	d := deployment(t, "baseline")
	d.Profile = true // the baseline has no profile listener
	p, err := d.Baseline(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "baseline-ws" || p.PprofAddr != "" {
		t.Errorf("process %+v", p)
	}
	if args, _ := logOf(t, d, "baseline-ws"); args != "-first baseline-ws -addr "+p.Addr {
		t.Errorf("baseline args %q", args)
	}
}

func TestNotReady(t *testing.T) {
	t.Run("exited", func(t *testing.T) {
		d := deployment(t, "exit")
		_, err := d.Service(ctx(t), "history", d.Bins.History, nil)
		if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "history exited (exit status 3)") {
			t.Errorf("Service of a program that exits: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		d := deployment(t, "sleep")
		c, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := d.StartNATS(c)
		if !errors.Is(err, ErrNotReady) || !errors.Is(err, context.Canceled) {
			t.Errorf("StartNATS with a cancelled context: %v", err)
		}
	})
	t.Run("missing binary", func(t *testing.T) {
		d := deployment(t, "sleep")
		_, err := d.Service(ctx(t), "presence", filepath.Join(d.Dir, "no-such-binary"), nil)
		if err == nil || !strings.Contains(err.Error(), "start presence") {
			t.Errorf("Service of a missing binary: %v", err)
		}
	})
	t.Run("no log directory", func(t *testing.T) {
		d := deployment(t, "sleep")
		if err := os.RemoveAll(filepath.Join(d.Dir, "logs")); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Baseline(ctx(t)); err == nil || !strings.Contains(err.Error(), "log file") {
			t.Errorf("Baseline without a log directory: %v", err)
		}
	})
}

// state is the process state letter of /proc/<pid>/stat.
func state(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(string(b), ')')
	return b[i+2]
}

// waitState polls until the process's state is (or, with not, is no
// longer) s.
func waitState(t *testing.T, pid int, s byte, not bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); (state(t, pid) == s) == not; {
		if time.Now().After(deadline) {
			t.Fatalf("process %d state %c, waited for %v %c", pid, state(t, pid), !not, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProcessSignals(t *testing.T) {
	d := deployment(t, "sleep")
	p, err := d.start("sleeper", "", []string{d.Bins.Edge}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() <= 0 || p.Exited() {
		t.Fatalf("pid %d exited %v", p.Pid(), p.Exited())
	}
	waitLogged(t, d, "sleeper")
	if args, _ := logOf(t, d, "sleeper"); args != "" {
		t.Errorf("args %q, want none", args)
	}
	if rss, err := p.RSS(); err != nil || rss <= 0 {
		t.Errorf("RSS = %d, %v", rss, err)
	}
	if _, err := p.CPU(); err != nil {
		t.Errorf("CPU: %v", err)
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.Pid(), 'T', false)
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.Pid(), 'T', true)
	p.Stop(time.Minute)
	if !p.Exited() {
		t.Fatal("not exited after Stop")
	}
	if signalOf(p.err) != syscall.SIGTERM {
		t.Errorf("ended with %v, want SIGTERM", p.err)
	}
	p.Stop(time.Minute) // a no-op once exited
	if err := p.Pause(); err == nil {
		t.Error("Pause of an exited process succeeded")
	}
	if err := p.Resume(); err == nil {
		t.Error("Resume of an exited process succeeded")
	}
}

func TestStopKillsStubborn(t *testing.T) {
	d := deployment(t, "stubborn")
	p, err := d.start("stubborn", "", []string{d.Bins.Edge}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitLogged(t, d, "stubborn") // it ignores SIGTERM from here on
	p.Stop(200 * time.Millisecond)
	if !p.Exited() || signalOf(p.err) != syscall.SIGKILL {
		t.Errorf("exited %v with %v, want SIGKILL after the grace period", p.Exited(), p.err)
	}
}

func TestKillAndClose(t *testing.T) {
	d := deployment(t, "sleep")
	var procs []*Process
	for i := range 3 {
		p, err := d.start(fmt.Sprintf("p%d", i), "", []string{d.Bins.Edge}, nil)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	procs[2].Kill()
	if !procs[2].Exited() {
		t.Fatal("not exited after Kill")
	}
	d.Close()
	for _, p := range procs {
		if !p.Exited() {
			t.Errorf("%s still running after Close", p.Name)
		}
	}
	d.Close() // nothing left to stop
}
