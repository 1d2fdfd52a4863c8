package publish

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestTypingPublishesOnTheRoomsSubject(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(subjects.Typing("general"))
	if err != nil {
		t.Fatal(err)
	}
	if err := NewTypist(nc).Typing(wire.TypingEvent{Room: "general", User: "ann", State: "on"}); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ev wire.TypingEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.User != "ann" || ev.Room != "general" {
		t.Fatalf("event %s: %v", m.Data, err)
	}
}

func TestMsgIDScopesByRoomAndUser(t *testing.T) {
	if MsgID("r", "ann", "c1") == MsgID("r", "bob", "c1") || MsgID("r", "ann", "c1") == MsgID("s", "ann", "c1") {
		t.Fatal("message ids collide across users or rooms")
	}
}
