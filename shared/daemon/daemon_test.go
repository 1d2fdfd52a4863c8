package daemon_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/daemon"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// echo is a minimal service: it answers requests on a subject until ctx ends.
type echo struct {
	nc      *nats.Conn
	subject string
	ready   chan struct{}
}

func (e *echo) Run(ctx context.Context) error {
	sub, err := e.nc.Subscribe(e.subject, func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		return err
	}
	close(e.ready)
	<-ctx.Done()
	return sub.Unsubscribe()
}

func (e *echo) Ready() error {
	select {
	case <-e.ready:
		return nil
	default:
		return errors.New("starting")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestBinaryRun provisions, serves /readyz, runs the service with the
// parsed settings and stops cleanly when its context ends.
func TestBinaryRun(t *testing.T) {
	srv := natstest.Start(t)
	addr := freeAddr(t)
	pprofAddr := freeAddr(t)
	var subject string
	b := daemon.Binary{
		Name:    "hubbub-test",
		OpsAddr: ":0",
		Flags: func(f *config.Flags) daemon.Build {
			f.String(&subject, "subject", "HUBBUB_TEST_SUBJECT", "test.echo", "")
			return func(d daemon.Deps) (daemon.Service, error) {
				if d.Common.Replicas != 1 {
					t.Errorf("replicas %d", d.Common.Replicas)
				}
				return &echo{nc: d.NC, subject: subject, ready: make(chan struct{})}, nil
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Run(ctx, []string{"-nats-url", srv.URL(), "-http-addr", addr, "-pprof-addr", pprofAddr, "-subject", "test.x"}, io.Discard)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The profiler answers on its own listener, and only there.
	for _, c := range []struct {
		addr string
		want int
	}{{pprofAddr, http.StatusOK}, {addr, http.StatusNotFound}} {
		resp, err := http.Get("http://" + c.addr + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatalf("pprof on %s: %v", c.addr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("GET %s/debug/pprof/goroutine: %d, want %d", c.addr, resp.StatusCode, c.want)
		}
		if c.want == http.StatusOK && !strings.Contains(string(body), "goroutine profile") {
			t.Fatalf("not a goroutine profile: %.200s", body)
		}
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if m, err := nc.Request("test.x", []byte("hi"), 5*time.Second); err != nil || string(m.Data) != "hi" {
		t.Fatalf("request: %v", err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.Stream(context.Background(), subjects.Stream); err != nil {
		t.Fatalf("stream not provisioned: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop")
	}
}

func TestBinaryRejectsBadEnvironment(t *testing.T) {
	t.Setenv("HUBBUB_STREAM_REPLICAS", "three")
	b := daemon.Binary{Name: "hubbub-test", Flags: func(*config.Flags) daemon.Build {
		return func(daemon.Deps) (daemon.Service, error) { t.Error("built despite a bad setting"); return nil, nil }
	}}
	if err := b.Run(context.Background(), nil, io.Discard); err == nil {
		t.Fatal("bad HUBBUB_STREAM_REPLICAS accepted")
	}
}
