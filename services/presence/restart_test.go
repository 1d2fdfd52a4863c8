package presence_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// After the NATS server restarts (same store), presence keeps its roster,
// accepts joins again and re-creates the in-memory typing bucket.
func TestNATSRestart(t *testing.T) {
	e := newEnv(t, shortProvision())
	cfg := short()
	cfg.Grace = time.Minute
	r := e.start(cfg)
	e.join("ops", "kim", "c1", "edge-a")

	e.srv.Restart()
	poll(t, 15*time.Second, "presence ready after restart", r.svc.Ready)

	poll(t, 15*time.Second, "join after restart", func() error {
		var rep wire.ConnReply
		return e.request(subjects.PresenceJoin, wire.ConnEvent{Room: "ops", User: "lee", Conn: "c2", Edge: "edge-a"}, &rep)
	})
	poll(t, 10*time.Second, "roster after restart", func() error {
		rep, err := e.roster("ops", "", 0)
		if err != nil {
			return err
		}
		if !slices.Equal(rep.Users, []string{"kim", "lee"}) {
			return fmt.Errorf("users %v", rep.Users)
		}
		return nil
	})
	poll(t, 15*time.Second, "typing after restart", func() error {
		e.publishTyping(wire.TypingEvent{Room: "ops", User: "kim", State: wire.TypingOn, Conn: "c1"})
		var rep wire.TypingStateReply
		if err := e.request(subjects.PresenceTyping, wire.TypingStateRequest{Room: "ops"}, &rep); err != nil {
			return err
		}
		if !slices.Equal(rep.Users, []string{"kim"}) {
			return fmt.Errorf("typists %v", rep.Users)
		}
		return nil
	})
	// ... and its expiry still produces an "off".
	offs, err := e.nc.SubscribeSync(subjects.Typing("ops"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := offs.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("no typing off after restart: %v", err)
		}
		if ev, err := decodeTyping(m.Data); err == nil && ev.State == wire.TypingOff && ev.User == "kim" {
			break
		}
	}
}
