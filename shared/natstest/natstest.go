// Package natstest runs an embedded JetStream nats-server on a random
// loopback port with a temporary store, for tests.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hubbub-chat/hubbub/shared/natsembed"
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := natsembed.Start(natsembed.Options{Listen: s.listen, StoreDir: s.storeDir, ServerName: "test"})
		if err == nil {
			s.Server = n
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("restart nats-server: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
