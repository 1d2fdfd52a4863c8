package natsembed_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/natsembed"
)

// The server accepts clients on a free port, has JetStream, and keeps
// streams in StoreDir across a restart.
func TestStartJetStreamPersists(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "hubbub" {
		t.Errorf("server name %q, want the default hubbub", s.Name())
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.x", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()

	s, err = natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: dir, ServerName: "again"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if s.Name() != "again" {
		t.Errorf("server name %q, want again", s.Name())
	}
	nc, err = nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	m, err := st.GetLastMsgForSubject(ctx, "t.x")
	if err != nil || string(m.Data) != "kept" {
		t.Fatalf("last message after restart = %v, %v; want kept", m, err)
	}
	// A payload of 1 MiB is allowed; Hubbub's messages are far smaller.
	if got := nc.MaxPayload(); got != 1<<20 {
		t.Errorf("max payload %d, want 1 MiB", got)
	}
}

func TestStartRejectsAddress(t *testing.T) {
	tests := []struct{ listen, want string }{
		{"localhost", `nats listen address "localhost"`},
		{"127.0.0.1:nats", `nats listen port "nats"`},
	}
	for _, tt := range tests {
		s, err := natsembed.Start(natsembed.Options{Listen: tt.listen, StoreDir: t.TempDir()})
		if err == nil {
			s.Shutdown()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, natsembed.ErrNotReady) {
			t.Errorf("Start(%q) = %v; want an error containing %q", tt.listen, err, tt.want)
		}
	}
}
