package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/services/presence"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestFlagsAndEnv(t *testing.T) {
	env := map[string]string{"HUBBUB_PRESENCE_GRACE": "7s", "HUBBUB_TYPING_TTL": "3s", "HUBBUB_STREAM_REPLICAS": "3"}
	f := config.NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	var common config.Common
	common.Register(f)
	var cfg presence.Config
	cfg.RegisterFlags(f)
	if err := f.Parse([]string{"-lease-ttl", "30s"}); err != nil {
		t.Fatal(err)
	}
	cfg.FromCommon(common)
	if cfg.Grace != 7*time.Second || cfg.TypingTTL != 3*time.Second || cfg.LeaseTTL != 30*time.Second || cfg.Replicas != 3 {
		t.Errorf("config %+v", cfg)
	}
	env["HUBBUB_PRESENCE_GRACE"] = "soon"
	f = config.NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	cfg.RegisterFlags(f)
	if err := f.Parse(nil); err == nil {
		t.Error("bad duration in the environment accepted")
	}
}

// The binary's run: provisions, serves ops endpoints, answers requests and
// stops cleanly on SIGINT.
func TestRunServesAndStops(t *testing.T) {
	srv := natstest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	done := make(chan error, 1)
	go func() {
		done <- binary.Run(context.Background(), []string{"-nats-url", srv.URL(), "-http-addr", addr, "-log-format", "text", "-log-level", "warn"}, io.Discard)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req, _ := json.Marshal(wire.ConnEvent{Room: "general", User: "amy", Conn: "c1", Edge: "e1"})
	msg, err := nc.Request(subjects.PresenceJoin, req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rep wire.ConnReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil || rep.Online != 1 {
		t.Errorf("join reply %q: %v", msg.Data, err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), "hubbub_presence_joins_total 1") {
		t.Errorf("metrics lack the join:\n%.2000s", body)
	}

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop on SIGINT")
	}
}
