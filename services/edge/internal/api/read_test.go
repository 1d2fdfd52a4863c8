package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/api"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/pages"
	"github.com/hubbub-chat/hubbub/services/edge/internal/readstate"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session/sessiontest"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// cookieAuth is fakeAuth, with X-Cookie marking the identity ambient (a
// cookie, which browsers attach to other sites' requests too).
type cookieAuth struct{ fakeAuth }

func (c cookieAuth) Authenticate(r *http.Request) (auth.Identity, error) {
	id, err := c.fakeAuth.Authenticate(r)
	id.Ambient = r.Header.Get("X-Cookie") != ""
	return id, err
}

// PUT /api/rooms/{room}/read stores the caller's mark with the identity,
// room and Origin rules of a post; the lobby still answers without
// history (unread 0).
func TestPutRead(t *testing.T) {
	ne := natstest.Provisioned(t, provision.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, _ := json.Marshal(wire.Post{Room: "r", User: "bob", Body: "hi", Kind: wire.KindMessage, TS: 1})
	ack, err := ne.JS.Publish(ctx, subjects.Room("r"), p)
	if err != nil {
		t.Fatal(err)
	}
	req := nreq.New(ne.NC, time.Second)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := pages.New(req, "", roomlog.Decoder{MaxBody: wire.DefaultMaxBody}, log)
	if err != nil {
		t.Fatal(err)
	}
	reads := readstate.New(readstate.Config{}, readstate.Deps{JS: l.JetStream(), Req: req, LastID: l.LastID, Log: log})
	fk := sessiontest.New()
	be := &fakeBackend{lobby: wire.LobbyReply{Rooms: []wire.RoomSummary{{Room: "r", LastID: ack.Sequence}}}}
	a := api.New(api.Config{}, api.Deps{Pages: be, Presence: be, Sessions: fk.Env(session.Config{}), Auth: cookieAuth{}, Log: log, Obs: fk.Obs, Done: make(chan struct{}), Reads: reads})
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	id := strconv.FormatUint(ack.Sequence, 10)
	cases := []struct {
		name, room, body string
		hdr              map[string]string
		status           int
		code             string
	}{
		{"anonymous", "r", `{"id":` + id + `}`, nil, http.StatusUnauthorized, wire.CodeAuthRequired},
		{"room not allowed", "r", `{"id":` + id + `}`, map[string]string{"X-User": "alice", "X-Rooms": "other"}, http.StatusForbidden, wire.CodeForbidden},
		{"bad room", "No!", `{"id":1}`, map[string]string{"X-User": "alice"}, http.StatusBadRequest, wire.CodeInvalidRoom},
		{"bad body", "r", `{"id":"x"}`, map[string]string{"X-User": "alice"}, http.StatusBadRequest, wire.CodeBadJSON},
		{"no id", "r", `{}`, map[string]string{"X-User": "alice"}, http.StatusBadRequest, wire.CodeInvalidID},
		{"cookie from another site", "r", `{"id":` + id + `}`, map[string]string{"X-User": "alice", "X-Cookie": "1", "Origin": "https://evil.example", "Content-Type": "application/json"}, http.StatusForbidden, wire.CodeOriginRefused},
		{"cookie without JSON", "r", `{"id":` + id + `}`, map[string]string{"X-User": "alice", "X-Cookie": "1"}, http.StatusUnsupportedMediaType, wire.CodeBadJSON},
		{"stored", "r", `{"id":` + id + `}`, map[string]string{"X-User": "alice", "X-Cookie": "1", "Content-Type": "application/json"}, http.StatusNoContent, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodPut, srv.URL+"/api/rooms/"+c.room+"/read", strings.NewReader(c.body))
			for k, v := range c.hdr {
				r.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = res.Body.Close() }()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != c.status {
				t.Fatalf("status %d (%s), want %d", res.StatusCode, body, c.status)
			}
			if c.code != "" {
				var e wire.ErrorFrame
				if err := json.Unmarshal(body, &e); err != nil || e.Code != c.code {
					t.Fatalf("body %s, want code %s", body, c.code)
				}
			}
		})
	}
	kv, err := ne.JS.KeyValue(ctx, subjects.BucketReads)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, subjects.ReadKey(names.UserToken("alice"), "r"))
	if err != nil {
		t.Fatalf("mark not stored: %v", err)
	}
	var st wire.ReadState
	if err := json.Unmarshal(e.Value(), &st); err != nil || st.Read != ack.Sequence {
		t.Fatalf("stored %s, want read %d", e.Value(), ack.Sequence)
	}

	r, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/lobby", nil)
	r.Header.Set("X-User", "alice")
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	var lobby wire.LobbyReply
	if err := json.NewDecoder(res.Body).Decode(&lobby); err != nil || res.StatusCode != http.StatusOK || len(lobby.Rooms) != 1 {
		t.Fatalf("lobby without history: %d %+v %v", res.StatusCode, lobby, err)
	}
}
