package pages_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/pages"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// setup starts NATS with the CHAT stream holding three messages of room
// "a" and returns a Log over it (no history running) and the ids.
func setup(t *testing.T) (*pages.Log, *nats.Conn, []uint64) {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for i := range 3 {
		post, _ := json.Marshal(wire.Post{Room: "a", User: "ann", Body: fmt.Sprint("m", i), Kind: wire.KindMessage, TS: 1, CID: fmt.Sprint(i)})
		ack, err := js.Publish(ctx, subjects.Room("a"), post)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ack.Sequence)
	}
	l, err := pages.New(nreq.New(nc, 500*time.Millisecond), "", roomlog.Decoder{MaxBody: 2000}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return l, nc, ids
}

// serve answers subject with reply (a JSON body, or an error envelope
// when code is set).
func serve(t *testing.T, nc *nats.Conn, subject, reply, code string) {
	t.Helper()
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		out := &nats.Msg{Data: []byte(reply)}
		if code != "" {
			out.Header = nats.Header{micro.ErrorCodeHeader: []string{code}, micro.ErrorHeader: []string{reply}}
		}
		_ = m.RespondMsg(out)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// While history does not answer, the newest page and the pages after an
// id come from the stream; an older page (before) cannot, and the lobby
// has no fallback. HistoryRecent and HistorySince ask history alone.
func TestHistoryDownServesTheStream(t *testing.T) {
	l, _, ids := setup(t)
	ctx := context.Background()
	p, err := l.Recent(ctx, wire.RecentRequest{Room: "a", Limit: 10})
	if err != nil || len(p.Items) != 3 || p.Items[2].ID != ids[2] {
		t.Fatalf("recent from the stream: %+v, %v", p, err)
	}
	p, err = l.Since(ctx, wire.SinceRequest{Room: "a", After: ids[0], Limit: 10})
	if err != nil || len(p.Items) != 2 || p.Items[0].Prev != ids[0] || !p.Recovered {
		t.Fatalf("since from the stream: %+v, %v", p, err)
	}
	if _, err := l.Recent(ctx, wire.RecentRequest{Room: "a", Before: ids[2], Limit: 10}); !errors.Is(err, nreq.ErrUnavailable) {
		t.Fatalf("an older page with history down: %v", err)
	}
	if _, err := l.Lobby(ctx, wire.LobbyRequest{Limit: 5}); !errors.Is(err, nreq.ErrUnavailable) {
		t.Fatalf("lobby with history down: %v", err)
	}
	if _, err := l.HistoryRecent(ctx, wire.RecentRequest{Room: "a", Limit: 10}); !errors.Is(err, nreq.ErrUnavailable) {
		t.Fatalf("HistoryRecent is history alone: %v", err)
	}
	if _, err := l.HistorySince(ctx, wire.SinceRequest{Room: "a", Limit: 10}); !errors.Is(err, nreq.ErrUnavailable) {
		t.Fatalf("HistorySince is history alone: %v", err)
	}
	if last, err := l.LastID(ctx, "a"); err != nil || last != ids[2] {
		t.Fatalf("last id %d, %v; want %d", last, err, ids[2])
	}
	if last, err := l.LastID(ctx, "empty"); err != nil || last != 0 {
		t.Fatalf("last id of an empty room %d, %v", last, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Recent(cctx, wire.RecentRequest{Room: "a", Limit: 10}); err == nil {
		t.Fatal("a cancelled read succeeded")
	}
}

// History's answer is the page; its refusal is final (no fallback).
func TestHistoryAnswers(t *testing.T) {
	l, nc, _ := setup(t)
	ctx := context.Background()
	serve(t, nc, subjects.HistoryRecent, `{"room":"a","items":[{"id":99,"room":"a"}]}`, "")
	serve(t, nc, subjects.HistorySince, `bad since`, "400")
	serve(t, nc, subjects.HistoryLobby, `{"rooms":[{"room":"a"}]}`, "")
	p, err := l.Recent(ctx, wire.RecentRequest{Room: "a", Limit: 10})
	if err != nil || len(p.Items) != 1 || p.Items[0].ID != 99 {
		t.Fatalf("recent from history: %+v, %v", p, err)
	}
	_, err = l.Since(ctx, wire.SinceRequest{Room: "a", After: 1, Limit: 10})
	var se *nreq.ServiceError
	if !errors.As(err, &se) || se.Code != 400 {
		t.Fatalf("a refused since: %v", err)
	}
	lobby, err := l.Lobby(ctx, wire.LobbyRequest{Limit: 5})
	if err != nil || len(lobby.Rooms) != 1 {
		t.Fatalf("lobby %+v, %v", lobby, err)
	}
}

// Message asks history for one folded message; history's not_found is
// ErrNotFound. While history does not answer, the stream serves it: an
// event of another room, a change event and an id past the stream are
// not found.
func TestMessage(t *testing.T) {
	l, nc, ids := setup(t)
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(room string, p wire.Post) uint64 {
		t.Helper()
		b, _ := json.Marshal(p)
		ack, err := js.Publish(ctx, subjects.Room(room), b)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	other := publish("b", wire.Post{Room: "b", User: "bob", Body: "in b", Kind: wire.KindMessage, CID: "x"})
	edit := publish("a", wire.Post{Room: "a", User: "ann", Body: "m0 fixed", Kind: wire.KindEdit, CID: "e", Target: ids[0]})

	t.Run("history down", func(t *testing.T) {
		m, err := l.Message(ctx, "a", ids[1])
		if err != nil || m.ID != ids[1] || m.Body != "m1" || m.Room != "a" || m.User != "ann" || m.Kind != wire.KindMessage {
			t.Fatalf("message from the stream: %+v, %v", m, err)
		}
		for name, id := range map[string]uint64{"another room's": other, "a change event": edit, "past the stream": edit + 100} {
			if _, err := l.Message(ctx, "a", id); !errors.Is(err, pages.ErrNotFound) {
				t.Errorf("%s id %d: %v, want ErrNotFound", name, id, err)
			}
		}
	})
	t.Run("history down: the changes folded", func(t *testing.T) {
		m, err := l.Message(ctx, "a", ids[0])
		if err != nil || m.Body != "m0 fixed" || m.Edited == 0 {
			t.Fatalf("edited message from the stream: %+v, %v", m, err)
		}
		publish("a", wire.Post{Room: "a", User: "ann", Kind: wire.KindDelete, CID: "d", Target: ids[0]})
		if m, err = l.Message(ctx, "a", ids[0]); err != nil || !m.Deleted || m.Body != "" {
			t.Fatalf("deleted message from the stream: %+v, %v", m, err)
		}
	})
	t.Run("history answers", func(t *testing.T) {
		serve(t, nc, subjects.HistoryMessage, fmt.Sprintf(`{"id":%d,"room":"a","user":"ann","body":"m0 fixed","kind":"message","edited":5}`, ids[0]), "")
		m, err := l.Message(ctx, "a", ids[0])
		if err != nil || m.Body != "m0 fixed" || m.Edited != 5 {
			t.Fatalf("message from history: %+v, %v", m, err)
		}
	})
	t.Run("history says not found", func(t *testing.T) {
		l2, nc2, ids2 := setup(t)
		serve(t, nc2, subjects.HistoryMessage, "not_found: no message 1 in a", "404")
		if _, err := l2.Message(ctx, "a", ids2[0]); !errors.Is(err, pages.ErrNotFound) {
			t.Fatalf("history's 404: %v, want ErrNotFound (not the stream's message)", err)
		}
	})
}

// Pages read from the stream carry the chain cursor: a recent page is
// folded (the edit applied, the change not an item) and its last is the
// change's id; a since page is raw and ends at its last event.
func TestStreamPagesLast(t *testing.T) {
	l, nc, ids := setup(t)
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(wire.Post{Room: "a", User: "ann", Body: "m1 fixed", Kind: wire.KindEdit, CID: "e", Target: ids[1]})
	ack, err := js.Publish(ctx, subjects.Room("a"), b)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Recent(ctx, wire.RecentRequest{Room: "a", Limit: 10})
	if err != nil || len(p.Items) != 3 || p.Items[1].Body != "m1 fixed" || p.Items[1].Edited == 0 || p.Last != ack.Sequence {
		t.Fatalf("recent: %+v, %v; want 3 messages, the second edited, last %d", p, err, ack.Sequence)
	}
	p, err = l.Since(ctx, wire.SinceRequest{Room: "a", After: ids[2], Limit: 10})
	if err != nil || len(p.Items) != 1 || p.Items[0].Kind != wire.KindEdit || p.Last != ack.Sequence {
		t.Fatalf("since: %+v, %v; want the raw edit, last %d", p, err, ack.Sequence)
	}
	p, err = l.Since(ctx, wire.SinceRequest{Room: "a", After: ack.Sequence, Limit: 10})
	if err != nil || len(p.Items) != 0 || p.Last != ack.Sequence {
		t.Fatalf("since the newest: %+v, %v; want empty, last %d", p, err, ack.Sequence)
	}
}
