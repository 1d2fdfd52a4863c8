package presence

import (
	"encoding/json"
	"testing"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestValidEdge(t *testing.T) {
	tests := []struct {
		edge string
		ok   bool
	}{
		{"edge-1", true}, {"pod/edge_2=x", true}, {"a.b", true},
		{"", false}, {".a", false}, {"a.", false}, {"a..b", false}, {"a*", false}, {"a>", false}, {"a b", false},
	}
	for _, tc := range tests {
		if got := validEdge(tc.edge); got != tc.ok {
			t.Errorf("validEdge(%q) = %v, want %v", tc.edge, got, tc.ok)
		}
	}
}

func FuzzParseConnEvent(f *testing.F) {
	for _, ev := range []wire.ConnEvent{
		{Room: "general", User: "alice", Conn: "c1", Edge: "edge-1"},
		{Room: "a", User: "名前 with spaces", Conn: "x", Edge: "e.1"},
		{Room: "Bad", User: "", Conn: "", Edge: "*"},
	} {
		b, _ := json.Marshal(ev)
		f.Add(b)
	}
	f.Add([]byte(`{"room":"general","user":"a","conn":"\u0000","edge":"e"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, werr := parseConnEvent(data)
		if werr != nil {
			if werr.Code == "" {
				t.Fatal("error without code")
			}
			return
		}
		if !names.ValidRoom(ev.Room) || !validID(ev.Conn) || !validEdge(ev.Edge) {
			t.Fatalf("accepted %+v", ev)
		}
		if _, err := names.User(ev.User); err != nil {
			t.Fatalf("accepted user %q", ev.User)
		}
	})
}

func FuzzParseRequests(f *testing.F) {
	f.Add([]byte(`{"room":"general","after":"bob","limit":5}`))
	f.Add([]byte(`{"rooms":["a","b"]}`))
	f.Add([]byte(`{"room":"general","limit":-3}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, werr := parseRosterRequest(data); werr == nil && (r.Limit < 1 || r.Limit > MaxRosterLimit || !names.ValidRoom(r.Room)) {
			t.Fatalf("roster request accepted: %+v", r)
		}
		if r, werr := parseCountsRequest(data); werr == nil {
			for _, room := range r.Rooms {
				if !names.ValidRoom(room) {
					t.Fatalf("counts request accepted room %q", room)
				}
			}
		}
		if r, werr := parseTypingRequest(data); werr == nil && !names.ValidRoom(r.Room) {
			t.Fatalf("typing request accepted room %q", r.Room)
		}
	})
}
