package main

import (
	"context"
	"encoding/json"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestParseEnv(t *testing.T) {
	t.Setenv("HUBBUB_DATABASE_URL", "postgres://x/y")
	t.Setenv("HUBBUB_HISTORY_RETENTION", "72h")
	t.Setenv("HUBBUB_DATA_DIR", "/data")
	parse := func() (history.Config, error) {
		var cfg history.Config
		f := config.New("t")
		cfg.RegisterFlags(f)
		return cfg, f.Parse(nil)
	}
	cfg, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://x/y" || cfg.Retention != 72*time.Hour || cfg.DataDir != "/data" || cfg.BatchSize != 500 {
		t.Fatalf("config %+v", cfg)
	}
	t.Setenv("HUBBUB_HISTORY_RETENTION", "forever")
	if _, err := parse(); err == nil {
		t.Fatal("bad retention accepted")
	}
}

// TestBinary builds hubbub-history and runs it as a separate process
// against an external NATS server: it provisions, becomes ready, stores
// and serves a message, and exits 0 on SIGTERM.
func TestBinary(t *testing.T) {
	bin := buildBinary(t)
	srv := natstest.Start(t)
	p := startProcess(t, bin, "HUBBUB_NATS_URL="+srv.URL(), "HUBBUB_DATA_DIR="+t.TempDir(), "HUBBUB_DATABASE_URL=")
	addr, cmd, exited := p.addr, p.cmd, p.exited

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	poll(t, func() error {
		if code, body := get("/readyz"); code != http.StatusOK {
			return fmt.Errorf("readyz %d %s", code, body)
		}
		return nil
	})

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(wire.Post{Room: "general", User: "alice", Body: "hi", Kind: wire.KindMessage, TS: 1})
	ack, err := js.Publish(context.Background(), subjects.Room("general"), data)
	if err != nil {
		t.Fatal(err)
	}
	poll(t, func() error {
		msg, err := nc.Request(subjects.HistoryRecent, []byte(`{"room":"general"}`), 2*time.Second)
		if err != nil {
			return err
		}
		var p wire.Page
		if err := json.Unmarshal(msg.Data, &p); err != nil {
			return err
		}
		if len(p.Items) != 1 || p.Items[0].ID != ack.Sequence || p.Items[0].Body != "hi" {
			return fmt.Errorf("recent: %s", msg.Data)
		}
		return nil
	})
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "hubbub_history_consumer_lag") {
		t.Fatalf("metrics %d", code)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// buildBinary compiles hubbub-history into a temporary directory and
// returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hubbub-history")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// process is a running hubbub-history.
type process struct {
	cmd    *exec.Cmd
	addr   string     // ops HTTP address
	exited chan error // receives Wait's result once (put back by readers)
	logs   *strings.Builder
}

// startProcess runs bin with the environment plus env (text logs, a free
// ops address) and kills it when the test ends, logging its output if the
// test failed.
func startProcess(t *testing.T, bin string, env ...string) *process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "HUBBUB_HTTP_ADDR="+addr, "HUBBUB_LOG_FORMAT=text")
	cmd.Env = append(cmd.Env, env...)
	p := &process{cmd: cmd, addr: addr, exited: make(chan error, 1), logs: &strings.Builder{}}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-p.exited
		p.exited <- err
		if t.Failed() {
			t.Logf("process %d output:\n%s", cmd.Process.Pid, p.logs.String())
		}
	})
	return p
}

func poll(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
