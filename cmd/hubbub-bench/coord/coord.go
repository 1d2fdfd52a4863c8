// Package coord starts load-generator worker processes (the tool
// re-executing itself) and drives them over their stdin/stdout with the
// JSON commands of package worker, merging their answers.
package coord

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
)

// ErrWorker is returned when a worker fails a command or dies.
var ErrWorker = errors.New("worker failed")

// Pool is a set of running workers.
type Pool struct {
	workers []*proc
}

type proc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	pid int
}

// Start launches n workers with argv (e.g. {"/path/hubbub-bench",
// "worker"}) and extra environment variables env.
func Start(ctx context.Context, n int, argv []string, env []string) (*Pool, error) {
	p := &Pool{}
	for i := 0; i < n; i++ {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("worker stdin: %w", err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("worker stdout: %w", err)
		}
		if err := cmd.Start(); err != nil {
			p.Close()
			return nil, fmt.Errorf("start worker: %w", err)
		}
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		p.workers = append(p.workers, &proc{cmd: cmd, in: in, out: sc, pid: cmd.Process.Pid})
	}
	return p, nil
}

// Len is the number of workers.
func (p *Pool) Len() int { return len(p.workers) }

func (w *proc) do(cmd worker.Command) (*worker.Stats, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("marshal command: %w", err)
	}
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("%w: pid %d: send %s: %w", ErrWorker, w.pid, cmd.Op, err)
	}
	if !w.out.Scan() {
		err := w.out.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: pid %d: reply to %s: %w", ErrWorker, w.pid, cmd.Op, err)
	}
	var rep worker.Reply
	if err := json.Unmarshal(w.out.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("%w: pid %d: bad reply: %w", ErrWorker, w.pid, err)
	}
	if rep.Error != "" {
		return rep.Stats, fmt.Errorf("%w: pid %d: %s: %s", ErrWorker, w.pid, cmd.Op, rep.Error)
	}
	return rep.Stats, nil
}

// All sends cmds[i] to worker i (nil entries are skipped) concurrently and
// returns every reply's stats. The first error is returned after all have
// answered.
func (p *Pool) All(cmds []*worker.Command) ([]*worker.Stats, error) {
	out := make([]*worker.Stats, len(p.workers))
	errs := make([]error, len(p.workers))
	var wg sync.WaitGroup
	for i, w := range p.workers {
		if i >= len(cmds) || cmds[i] == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = w.do(*cmds[i])
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Each sends the same command to every worker.
func (p *Pool) Each(cmd worker.Command) ([]*worker.Stats, error) {
	cmds := make([]*worker.Command, len(p.workers))
	for i := range cmds {
		c := cmd
		cmds[i] = &c
	}
	return p.All(cmds)
}

// Close tells every worker to close its clients and waits for them to exit
// (killing those that do not within a few seconds).
func (p *Pool) Close() {
	var wg sync.WaitGroup
	for _, w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := json.Marshal(worker.Command{Op: worker.OpClose})
			_, _ = w.in.Write(append(b, '\n'))
			_ = w.in.Close()
			done := make(chan struct{})
			go func() { _ = w.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = w.cmd.Process.Kill()
				<-done
			}
		}()
	}
	wg.Wait()
	p.workers = nil
}

// Split divides count clients starting at first over n workers in
// contiguous ranges, returning (first, count) per worker.
func Split(first, count, n int) [][2]int {
	out := make([][2]int, n)
	base, extra := count/n, count%n
	at := first
	for i := range out {
		c := base
		if i < extra {
			c++
		}
		out[i] = [2]int{at, c}
		at += c
	}
	return out
}
