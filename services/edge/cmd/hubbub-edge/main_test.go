package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/natstest"
)

func TestFlagsAndEnv(t *testing.T) {
	env := map[string]string{"HUBBUB_ALLOWED_ORIGINS": "https://a.example,https://b.example", "HUBBUB_USER_MESSAGE_RATE": "2.5", "HUBBUB_WS_READ": "goroutine"}
	f := config.NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	var cfg edge.Config
	finish := cfg.RegisterFlags(f)
	if err := f.Parse([]string{"-max-rooms", "7"}); err != nil {
		t.Fatal(err)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.AllowedOrigins) != 2 || cfg.UserLimits.MessageRate != 2.5 || cfg.Session.MaxRooms != 7 || cfg.HTTPAddr != edge.DefaultHTTPAddr {
		t.Fatalf("config %+v", cfg)
	}
	env["HUBBUB_WS_READ"] = "telepathy"
	f = config.NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	finish = cfg.RegisterFlags(f)
	if err := f.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := finish(); err == nil {
		t.Fatal("unknown read mode accepted")
	}
}

// TestRunServesAndStops runs the binary's body against an external NATS:
// it becomes ready on its own listener and stops cleanly.
func TestRunServesAndStops(t *testing.T) {
	srv := natstest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- binary.Run(ctx, []string{"-nats-url", srv.URL(), "-http-addr", addr, "-drain-period", "100ms"}, io.Discard)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
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
