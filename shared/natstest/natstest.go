// Package natstest is the test kit shared by every module: an embedded
// JetStream nats-server on a random loopback port with a temporary store
// (Start), the same server with Hubbub's stream and buckets provisioned
// and a connection to it (Provisioned), a service run for the length of a
// test (Serve), and polling with a deadline instead of sleeps (Eventually,
// Until).
package natstest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natsembed"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

// Server is a running test server.
type Server struct {
	*server.Server
	tb       testing.TB
	storeDir string
	listen   string
}

// Start runs a JetStream server for the duration of the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, tb.TempDir(), "127.0.0.1:0")
}

func start(tb testing.TB, dir, listen string) *Server {
	tb.Helper()
	s, err := natsembed.Start(natsembed.Options{Listen: listen, StoreDir: dir, ServerName: "test"})
	if err != nil {
		tb.Fatalf("start nats-server: %v", err)
	}
	ts := &Server{Server: s, tb: tb, storeDir: dir, listen: s.Addr().String()}
	tb.Cleanup(ts.Stop)
	return ts
}

// URL is the client URL.
func (s *Server) URL() string { return "nats://" + s.listen }

// Stop shuts the server down (idempotent).
func (s *Server) Stop() {
	if s.Server.Running() {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
	}
}

// Restart stops the server and starts a new one on the same address and
// store, as after a crash or deploy. Clients reconnect by themselves.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	Eventually(s.tb, 10*time.Second, "restart nats-server", func() error {
		n, err := natsembed.Start(natsembed.Options{Listen: s.listen, StoreDir: s.storeDir, ServerName: "test"})
		if err == nil {
			s.Server = n
		}
		return err
	})
}

// Connect opens a connection to the server that reconnects forever (every
// 50 ms, so it survives Restart) and is closed when the test ends; opts
// come after those defaults.
func (s *Server) Connect(opts ...nats.Option) *nats.Conn {
	s.tb.Helper()
	nc, err := nats.Connect(s.URL(), append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		s.tb.Fatalf("connect nats: %v", err)
	}
	s.tb.Cleanup(nc.Close)
	return nc
}

// Env is a test server with Hubbub's stream and buckets provisioned, and
// one connection to it with its JetStream handle.
type Env struct {
	*Server
	NC *nats.Conn
	JS jetstream.JetStream
}

// Provisioned starts a server for the duration of the test, connects to it
// and provisions the stream and buckets with pc (whose log, when nil,
// discards).
func Provisioned(tb testing.TB, pc provision.Config) *Env {
	tb.Helper()
	if pc.Log == nil {
		pc.Log = logging.Discard()
	}
	e := &Env{Server: Start(tb)}
	e.NC = e.Connect()
	js, err := jetstream.New(e.NC)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	e.JS = js
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := provision.Ensure(ctx, js, pc); err != nil {
		tb.Fatalf("provision: %v", err)
	}
	return e
}

// Service is what Serve runs: a service with a Run loop that returns when
// its context is cancelled, and a readiness check.
type Service interface {
	Run(ctx context.Context) error
	Ready() error
}

// Serve runs svc.Run on its own goroutine until the test ends and waits up
// to 10 s until svc is ready. The returned stop cancels Run and waits up to
// 30 s for it to return (idempotent; also called when the test ends); an
// error from Run fails the test.
func Serve(tb testing.TB, name string, svc Service) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("%s Run: %v", name, err)
				}
			case <-time.After(30 * time.Second):
				tb.Errorf("%s did not stop", name)
			}
		})
	}
	tb.Cleanup(stop)
	Eventually(tb, 10*time.Second, name+" ready", svc.Ready)
	return stop
}

// pollEvery is how often Eventually and Until check.
const pollEvery = 10 * time.Millisecond

// Eventually calls check every 10 ms until it returns nil; once timeout has
// passed it fails the test with what and check's last error.
func Eventually(tb testing.TB, timeout time.Duration, what string, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pollEvery)
	}
}

// Until is Eventually for a condition without an error to report.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// errNotYet is Until's error while its condition is false.
var errNotYet = errors.New("condition still false")
