package request_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/services/history/internal/request"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestRecent(t *testing.T) {
	cases := []struct {
		in   string
		want wire.RecentRequest
		bad  bool
	}{
		{`{"room":"general"}`, wire.RecentRequest{Room: "general", Limit: 50}, false},
		{`{"room":"#General","before":10,"limit":3}`, wire.RecentRequest{Room: "general", Before: 10, Limit: 3}, false},
		{`{"room":"a","limit":1000}`, wire.RecentRequest{Room: "a", Limit: 200}, false},
		{`{"room":"a","limit":-1}`, wire.RecentRequest{}, true},
		{`{"room":"a.b"}`, wire.RecentRequest{}, true},
		{`{"room":"*"}`, wire.RecentRequest{}, true},
		{`{}`, wire.RecentRequest{}, true},
		{``, wire.RecentRequest{}, true},
		{`{"room":"a"} {}`, wire.RecentRequest{}, true},
		{`{"room":"a","before":-1}`, wire.RecentRequest{}, true},
		{`[]`, wire.RecentRequest{}, true},
	}
	for _, c := range cases {
		got, err := request.Recent([]byte(c.in))
		if c.bad {
			if !errors.Is(err, request.ErrBadRequest) {
				t.Errorf("%s: err %v, want ErrBadRequest", c.in, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %+v %v, want %+v", c.in, got, err, c.want)
		}
	}
}

func TestSince(t *testing.T) {
	cases := []struct {
		in   string
		want wire.SinceRequest
		bad  bool
	}{
		{`{"room":"general","after":0}`, wire.SinceRequest{Room: "general", Limit: 50}, false},
		{`{"room":"g","after":18446744073709551615,"limit":7}`, wire.SinceRequest{Room: "g", After: 18446744073709551615, Limit: 7}, false},
		{`{"room":"g","after":"1"}`, wire.SinceRequest{}, true},
		{`{"room":"","after":1}`, wire.SinceRequest{}, true},
	}
	for _, c := range cases {
		got, err := request.Since([]byte(c.in))
		if c.bad {
			if !errors.Is(err, request.ErrBadRequest) {
				t.Errorf("%s: err %v, want ErrBadRequest", c.in, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %+v %v, want %+v", c.in, got, err, c.want)
		}
	}
}

func TestLobby(t *testing.T) {
	cases := []struct {
		in   string
		want int
		bad  bool
	}{
		{``, 50, false}, {` `, 50, false}, {`{}`, 50, false}, {`{"limit":5}`, 5, false}, {`{"limit":100000}`, 200, false},
		{`{"limit":-5}`, 0, true}, {`nope`, 0, true},
	}
	for _, c := range cases {
		got, err := request.Lobby([]byte(c.in))
		if c.bad {
			if !errors.Is(err, request.ErrBadRequest) {
				t.Errorf("%q: err %v, want ErrBadRequest", c.in, err)
			}
			continue
		}
		if err != nil || got.Limit != c.want {
			t.Errorf("%q: %+v %v, want limit %d", c.in, got, err, c.want)
		}
	}
}

// FuzzRequests feeds arbitrary bodies to every decoder: each either
// refuses with ErrBadRequest or returns a request that is safe to serve.
func FuzzRequests(f *testing.F) {
	for _, s := range []string{
		`{"room":"general"}`, `{"room":"#General","before":10,"limit":3}`, `{"room":"g","after":5,"limit":200}`,
		`{"limit":5}`, ``, `{}`, `[]`, `null`, `{"room":"a.b.>"}`, `{"room":"a","limit":-1}`, "{\"room\":\"\xff\"}",
		`{"room":"general","id":42}`, `{"room":"general","id":0}`, `{"user":"bob","rooms":[{"room":"General","read":3}]}`,
		`{"user":"","rooms":[]}`, `{"user":"bob","rooms":[{"room":"a.b"}]}`, `{"user":"bob\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := request.Recent(data); err == nil {
			if !names.ValidRoom(r.Room) || r.Limit < 1 || r.Limit > request.MaxLimit {
				t.Fatalf("recent accepted %+v", r)
			}
		} else if !errors.Is(err, request.ErrBadRequest) {
			t.Fatalf("recent: %v", err)
		}
		if r, err := request.Since(data); err == nil {
			if !names.ValidRoom(r.Room) || r.Limit < 1 || r.Limit > request.MaxLimit {
				t.Fatalf("since accepted %+v", r)
			}
		} else if !errors.Is(err, request.ErrBadRequest) {
			t.Fatalf("since: %v", err)
		}
		if r, err := request.Lobby(data); err == nil {
			if r.Limit < 1 || r.Limit > request.MaxLobby {
				t.Fatalf("lobby accepted %+v", r)
			}
		} else if !errors.Is(err, request.ErrBadRequest) {
			t.Fatalf("lobby: %v", err)
		}
		if r, err := request.Message(data); err == nil {
			if !names.ValidRoom(r.Room) || r.ID == 0 {
				t.Fatalf("message accepted %+v", r)
			}
		} else if !errors.Is(err, request.ErrBadRequest) {
			t.Fatalf("message: %v", err)
		}
		if r, err := request.Unread(data); err == nil {
			if _, err := names.User(r.User); err != nil || len(r.Rooms) > request.MaxUnreadRooms {
				t.Fatalf("unread accepted %+v", r)
			}
			for _, m := range r.Rooms {
				if !names.ValidRoom(m.Room) {
					t.Fatalf("unread accepted room %q", m.Room)
				}
			}
		} else if !errors.Is(err, request.ErrBadRequest) {
			t.Fatalf("unread: %v", err)
		}
	})
}

func TestMessageAndUnread(t *testing.T) {
	m, err := request.Message([]byte(`{"room":"#General","id":42}`))
	if err != nil || m.Room != "general" || m.ID != 42 {
		t.Fatalf("message: %+v %v", m, err)
	}
	for _, bad := range []string{`{"room":"general"}`, `{"room":"a.b","id":1}`, `{"id":1}`, `nope`} {
		if _, err := request.Message([]byte(bad)); !errors.Is(err, request.ErrBadRequest) {
			t.Errorf("message %s: %v, want ErrBadRequest", bad, err)
		}
	}
	u, err := request.Unread([]byte(`{"user":"bob","rooms":[{"room":"General","read":3},{"room":"dev"}]}`))
	if err != nil || u.User != "bob" || len(u.Rooms) != 2 || u.Rooms[0] != (wire.ReadMark{Room: "general", Read: 3}) {
		t.Fatalf("unread: %+v %v", u, err)
	}
	many := `{"user":"bob","rooms":[` + strings.Repeat(`{"room":"r"},`, request.MaxUnreadRooms) + `{"room":"r"}]}`
	for _, bad := range []string{`{"rooms":[]}`, `{"user":"bob","rooms":[{"room":"a b"}]}`, many} {
		if _, err := request.Unread([]byte(bad)); !errors.Is(err, request.ErrBadRequest) {
			t.Errorf("unread %.60s: %v, want ErrBadRequest", bad, err)
		}
	}
}
