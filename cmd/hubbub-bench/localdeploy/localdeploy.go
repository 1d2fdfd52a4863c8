// Package localdeploy runs a local multi-process Hubbub deployment for the load
// tool: a nats-server process, presence, history and several edges, each a
// separate binary on loopback with its own log file, and the WebSocket
// baseline server. It can kill a process (SIGKILL) and report each one's
// memory and CPU.
package localdeploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/proc"
)

// ErrNotReady is returned when a process does not become ready in time.
var ErrNotReady = errors.New("localdeploy: process not ready")

// Binaries are the programs a deployment runs.
type Binaries struct {
	NATSServer string
	Edge       string
	History    string
	Presence   string
	// Self is the load tool itself (argv prefix) for the baseline server.
	Self []string
}

// Process is one running program.
type Process struct {
	Name string
	// Addr is its HTTP (ops) address, or the client address for NATS and
	// the WebSocket baseline.
	Addr string
	// PprofAddr is its net/http/pprof address (/debug/pprof/), or empty
	// when the deployment does not profile.
	PprofAddr string
	// Bin is the program's path, for symbolising its profiles.
	Bin  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// RSS is the process's resident memory in bytes.
func (p *Process) RSS() (int64, error) { return proc.RSS(p.Pid()) }

// CPU is the processor time the process has used.
func (p *Process) CPU() (proc.CPU, error) { return proc.PidCPU(p.Pid()) }

// Kill sends SIGKILL and waits for the process to end.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Pause stops the process (SIGSTOP) until Resume: it keeps its
// connections but does no work.
func (p *Process) Pause() error {
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pause %s: %w", p.Name, err)
	}
	return nil
}

// Resume continues a paused process (SIGCONT).
func (p *Process) Resume() error {
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("resume %s: %w", p.Name, err)
	}
	return nil
}

// Stop sends SIGTERM and waits up to grace before killing.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Deployment is a set of processes sharing a scratch directory.
type Deployment struct {
	Dir  string
	Bins Binaries
	// Profile gives every nats-server and Hubbub service a pprof listener
	// on loopback (Process.PprofAddr).
	Profile bool

	mu    sync.Mutex
	procs []*Process
}

// New prepares a deployment whose stores and logs live under dir.
func New(dir string, bins Binaries) (*Deployment, error) {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("deployment dir: %w", err)
	}
	return &Deployment{Dir: dir, Bins: bins}, nil
}

// FreeAddr returns a free loopback address.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start launches argv with env, logging to logs/<name>.log.
func (d *Deployment) start(name, addr string, argv []string, env []string) (*Process, error) {
	logf, err := os.Create(filepath.Join(d.Dir, "logs", name+".log"))
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Addr: addr, Bin: argv[0], cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	d.mu.Lock()
	d.procs = append(d.procs, p)
	d.mu.Unlock()
	return p, nil
}

// StartNATS runs nats-server with JetStream (store under the deployment
// dir) and, when the deployment profiles, its pprof endpoint. It returns
// the process; Addr is the client URL's host:port.
func (d *Deployment) StartNATS(ctx context.Context) (*Process, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	argv := []string{d.Bins.NATSServer, "-a", host, "-p", port, "-js", "-sd", filepath.Join(d.Dir, "nats"), "-n", "bench"}
	profileAddr := ""
	if d.Profile {
		if profileAddr, err = FreeAddr(); err != nil {
			return nil, err
		}
		_, pport, _ := net.SplitHostPort(profileAddr)
		argv = append(argv, "--profile", pport)
	}
	p, err := d.start("nats-server", addr, argv, nil)
	if err != nil {
		return nil, err
	}
	p.PprofAddr = profileAddr
	if err := waitTCP(ctx, p, addr); err != nil {
		return nil, err
	}
	return p, nil
}

// Service starts a Hubbub service binary with env (HUBBUB_HTTP_ADDR is
// set to a free port) and waits until its /readyz answers 200.
func (d *Deployment) Service(ctx context.Context, name, bin string, env []string) (*Process, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	env = append([]string{"HUBBUB_HTTP_ADDR=" + addr, "HUBBUB_LOG_FORMAT=json"}, env...)
	pprofAddr := ""
	if d.Profile {
		if pprofAddr, err = FreeAddr(); err != nil {
			return nil, err
		}
		env = append(env, "HUBBUB_PPROF_ADDR="+pprofAddr)
	}
	p, err := d.start(name, addr, []string{bin}, env)
	if err != nil {
		return nil, err
	}
	p.PprofAddr = pprofAddr
	if err := waitReady(ctx, p, "http://"+addr+"/readyz"); err != nil {
		return nil, err
	}
	return p, nil
}

// Baseline starts the WebSocket baseline server (the tool's baseline-ws
// subcommand) and waits until it accepts connections.
func (d *Deployment) Baseline(ctx context.Context) (*Process, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	argv := append(append([]string{}, d.Bins.Self...), "baseline-ws", "-addr", addr)
	p, err := d.start("baseline-ws", addr, argv, nil)
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, p, addr); err != nil {
		return nil, err
	}
	return p, nil
}

// Close stops every process (SIGTERM, then SIGKILL after a grace period).
func (d *Deployment) Close() {
	d.mu.Lock()
	procs := d.procs
	d.procs = nil
	d.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i].Stop(3 * time.Second)
		}()
	}
	wg.Wait()
}

func waitTCP(ctx context.Context, p *Process, addr string) error {
	return poll(ctx, p, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

func waitReady(ctx context.Context, p *Process, url string) error {
	cl := &http.Client{Timeout: time.Second}
	return poll(ctx, p, func() bool {
		resp, err := cl.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func poll(ctx context.Context, p *Process, ok func() bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if p.Exited() {
			return fmt.Errorf("%w: %s exited (%v); see its log", ErrNotReady, p.Name, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s after 60s", ErrNotReady, p.Name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w", ErrNotReady, p.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
