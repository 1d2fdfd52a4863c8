package history_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// syncBuf is a log sink safe for concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A request's Hubbub-Request-Id appears in history's log lines about it.
func TestRequestIDLogged(t *testing.T) {
	e := newEnv(t)
	var logs syncBuf
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := history.New(history.Config{StoreConfig: history.StoreConfig{DataDir: t.TempDir()}}, history.Deps{NC: e.nc, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, 10*time.Second, func() error { return svc.Ready() })

	msg := &nats.Msg{Subject: subjects.HistoryRecent, Data: []byte(`{"room":"general","limit":5}`), Header: nats.Header{}}
	msg.Header.Set(subjects.HeaderRequestID, "edge-7.42")
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if _, err := e.nc.RequestMsgWithContext(rctx, msg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"request_id":"edge-7.42"`) {
		if time.Now().After(deadline) {
			t.Fatalf("request id not in the log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
