package post_test

import (
	"errors"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/services/history/post"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestDecode(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	cases := []struct {
		name    string
		subject string
		data    string
		want    wire.Message
		bad     bool
	}{
		{"chat", "chat.room.general", `{"room":"general","user":"alice","body":"hi","kind":"message","ts":5,"cid":"c1"}`,
			wire.Message{ID: 9, Room: "general", User: "alice", Body: "hi", Kind: "message", TS: 5, CID: "c1"}, false},
		{"system, defaults", "chat.room.x", `{"user":"bob","kind":"system"}`,
			wire.Message{ID: 9, Room: "x", User: "bob", Kind: "system", TS: at.UnixMilli()}, false},
		{"no kind", "chat.room.x", `{"user":"bob","body":"b","ts":1}`,
			wire.Message{ID: 9, Room: "x", User: "bob", Body: "b", Kind: "message", TS: 1}, false},
		{"room from subject wins", "chat.room.real", `{"room":"fake","user":"u","body":"b","ts":1}`,
			wire.Message{ID: 9, Room: "real", User: "u", Body: "b", Kind: "message", TS: 1}, false},
		{"not json", "chat.room.x", `hello`, wire.Message{}, true},
		{"json array", "chat.room.x", `[1,2]`, wire.Message{}, true},
		{"empty", "chat.room.x", ``, wire.Message{}, true},
		{"bad kind", "chat.room.x", `{"kind":"weird"}`, wire.Message{}, true},
		{"bad subject", "chat.live.x", `{}`, wire.Message{}, true},
		{"bad room", "chat.room.X!", `{}`, wire.Message{}, true},
		{"no room", "chat.room.", `{}`, wire.Message{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := post.Decode(9, c.subject, []byte(c.data), at)
			if c.bad {
				if !errors.Is(err, post.ErrUndecodable) {
					t.Fatalf("err %v, want ErrUndecodable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("chat.room.general", []byte(`{"room":"general","user":"alice","body":"hi","kind":"message","ts":5,"cid":"c1"}`))
	f.Add("chat.room.x", []byte(`{"kind":"system"}`))
	f.Add("chat.room.x", []byte(`{"ts":-1,"body":"\u0000"}`))
	f.Add("chat.room.", []byte(`{}`))
	f.Add("chat.room.a.b", []byte(`null`))
	f.Add("x", []byte(`{"kind":1}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		m, err := post.Decode(1, subject, data, time.UnixMilli(1))
		if err != nil {
			if !errors.Is(err, post.ErrUndecodable) {
				t.Fatalf("error not ErrUndecodable: %v", err)
			}
			return
		}
		if m.ID != 1 || m.Room == "" || (m.Kind != wire.KindMessage && m.Kind != wire.KindSystem) {
			t.Fatalf("decoded invalid message %+v", m)
		}
		if "chat.room."+m.Room != subject {
			t.Fatalf("room %q from subject %q", m.Room, subject)
		}
		_ = utf8.ValidString(m.Body)
	})
}
