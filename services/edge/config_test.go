package edge

import (
	"testing"

	"github.com/hubbub-chat/hubbub/services/edge/internal/api"
	"github.com/hubbub-chat/hubbub/services/edge/internal/publish"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// The flags' defaults are the owners' defaults: a Config from the flags
// alone resolves to what the zero Config resolves to.
func TestFlagDefaultsAreTheOwnersDefaults(t *testing.T) {
	f := config.NewWithLookup("t", func(string) (string, bool) { return "", false })
	var flagged Config
	finish := flagged.RegisterFlags(f)
	if err := f.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	flagged.EdgeID = "e"
	got, want := flagged.withDefaults(), Config{EdgeID: "e"}.withDefaults()
	if got.Session != want.Session || got.UserLimits != want.UserLimits || got.API != want.API {
		t.Fatalf("flag defaults resolve to\n%+v\n%+v\nwant\n%+v\n%+v", got.Session, got.UserLimits, want.Session, want.UserLimits)
	}
	// The transport resolves its own zero settings (ws.Config.withDefaults).
	if w := got.WS; w.MaxMessage != ws.DefaultMaxMessage || w.Workers != ws.DefaultWorkers || w.PingInterval != want.WS.PingInterval || w.ReadMode != ws.ReadAuto {
		t.Fatalf("websocket flags %+v", w)
	}
	if got.HTTPAddr != want.HTTPAddr || got.DrainPeriod != want.DrainPeriod {
		t.Fatalf("addr %q drain %v, want %q %v", got.HTTPAddr, got.DrainPeriod, want.HTTPAddr, want.DrainPeriod)
	}
}

// One setting defaults to another by one rule each.
func TestDerivedDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	switch {
	case c.Session.MaxBody != wire.DefaultMaxBody || c.Fanout.MaxBody != c.Session.MaxBody:
		t.Fatalf("body limits: session %d, fanout %d", c.Session.MaxBody, c.Fanout.MaxBody)
	case c.WS.PingInterval != ws.DefaultPingInterval || c.API.KeepAlive != c.WS.PingInterval:
		t.Fatalf("ping %v, keep-alive %v", c.WS.PingInterval, c.API.KeepAlive)
	case c.API.WriteTimeout != api.DefaultWriteTimeout || c.MaxPendingPosts != publish.DefaultMaxPending:
		t.Fatalf("write timeout %v, pending %d", c.API.WriteTimeout, c.MaxPendingPosts)
	case c.Session.EdgeID != c.EdgeID || c.EdgeID == "":
		t.Fatalf("edge id %q, session's %q", c.EdgeID, c.Session.EdgeID)
	}
	c = Config{Session: SessionConfig{Limits: wire.Limits{MaxBody: 500}}, WS: WSConfig{PingInterval: 7, WriteTimeout: 9}}.withDefaults()
	if c.Fanout.MaxBody != 500 || c.API.KeepAlive != 7 || c.API.WriteTimeout != 9 {
		t.Fatalf("derived from set values: %+v %+v", c.Fanout, c.API)
	}
	if p := c.withTransport(ws.Config{SoftQueue: 1234}).Fanout.PaceBytes; p != 1234 {
		t.Fatalf("pace bytes %d, want the soft queue", p)
	}
}
