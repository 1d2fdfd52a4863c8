package session_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/pages"
	"github.com/hubbub-chat/hubbub/services/edge/internal/readstate"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// A read frame follows the rules of a history frame (the token's room, a
// joined room) and then stores the mark in the reads bucket.
func TestReadFrame(t *testing.T) {
	ne := natstest.Provisioned(t, provision.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, _ := json.Marshal(wire.Post{Room: "r", User: "bob", Body: "hi", Kind: wire.KindMessage, TS: 1})
	ack, err := ne.JS.Publish(ctx, subjects.Room("r"), p)
	if err != nil {
		t.Fatal(err)
	}
	req := nreq.New(ne.NC, 2*time.Second)
	log := slog.New(slog.DiscardHandler)
	l, err := pages.New(req, "", roomlog.Decoder{MaxBody: wire.DefaultMaxBody}, log)
	if err != nil {
		t.Fatal(err)
	}
	f := open(t, []string{"r"}, nil)
	f.env.Reads = readstate.New(readstate.Config{}, readstate.Deps{JS: l.JetStream(), Req: req, LastID: l.LastID, Log: log})

	f.do(`{"type":"read","room":"x","id":1}`)
	if e := f.lastError(t); e.Code != wire.CodeForbidden {
		t.Fatalf("read of a room the token does not allow: %+v, want forbidden", e)
	}
	f.do(`{"type":"read","room":"r","id":1}`)
	if e := f.lastError(t); e.Code != wire.CodeNotJoined {
		t.Fatalf("read before joining: %+v, want not_joined", e)
	}
	f.do(`{"type":"read","room":"r"}`)
	if e := f.lastError(t); e.Code != wire.CodeInvalidID {
		t.Fatalf("read without id: %+v, want invalid_id", e)
	}
	kv, err := ne.JS.KeyValue(ctx, subjects.BucketReads)
	if err != nil {
		t.Fatal(err)
	}
	key := subjects.ReadKey(names.UserToken("alice"), "r")
	if _, err := kv.Get(ctx, key); err == nil {
		t.Fatal("a refused read stored a mark")
	}
	errorsBefore := f.sink.Count(wire.TypeError)
	f.do(`{"type":"join","room":"r"}`, `{"type":"read","room":"r","id":`+jsonUint(ack.Sequence)+`}`)
	if n := f.sink.Count(wire.TypeError); n != errorsBefore {
		t.Fatalf("read after join: %+v", f.lastError(t))
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatalf("mark not stored: %v", err)
	}
	var st wire.ReadState
	if err := json.Unmarshal(e.Value(), &st); err != nil || st.Read != ack.Sequence || st.User != "alice" || st.Room != "r" {
		t.Fatalf("stored %s (%v), want alice read %d in r", e.Value(), err, ack.Sequence)
	}
}

func jsonUint(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
