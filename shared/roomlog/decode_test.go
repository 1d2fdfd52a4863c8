package roomlog_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/roomlog"
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
		{"system, defaults", "chat.room.x", `{"user":"bob","body":"bob joined","kind":"system"}`,
			wire.Message{ID: 9, Room: "x", User: "bob", Body: "bob joined", Kind: "system", TS: at.UnixMilli()}, false},
		{"body kept untrimmed", "chat.room.x", `{"user":"u","body":" b\n","ts":1}`,
			wire.Message{ID: 9, Room: "x", User: "u", Body: " b\n", Kind: "message", TS: 1}, false},
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
			got, err := roomlog.Decode(9, c.subject, []byte(c.data), at)
			if errors.Is(err, roomlog.ErrInvalid) {
				t.Fatalf("ErrInvalid for a decodable, valid message: %v", err)
			}
			if c.bad {
				if !errors.Is(err, roomlog.ErrUndecodable) {
					t.Fatalf("err %v, want ErrUndecodable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestDecodeIn decodes a payload of a known room (a live message) by
// Decode's rule: the room is the one given, whatever the payload says.
func TestDecodeIn(t *testing.T) {
	at := time.UnixMilli(77)
	got, err := roomlog.Decoder{}.DecodeIn("real", 4, []byte(`{"room":"fake","user":"u","body":"b"}`), at)
	if err != nil {
		t.Fatal(err)
	}
	if want := (wire.Message{ID: 4, Room: "real", User: "u", Body: "b", Kind: wire.KindMessage, TS: 77}); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, c := range []struct {
		name string
		seq  uint64
		data string
		want error
	}{
		{"sequence 0", 0, `{"user":"u","body":"b"}`, roomlog.ErrUndecodable},
		{"not json", 4, `x`, roomlog.ErrUndecodable},
		{"bad kind", 4, `{"user":"u","body":"b","kind":"poll"}`, roomlog.ErrUndecodable},
		{"edit without target", 4, `{"user":"u","body":"b","kind":"edit"}`, roomlog.ErrInvalid},
		{"reaction without emoji", 4, `{"user":"u","kind":"reaction","target":2,"on":true}`, roomlog.ErrInvalid},
		{"edit", 4, `{"user":"u","body":"b","kind":"edit","target":2}`, nil},
		{"delete", 4, `{"user":"u","kind":"delete","target":2}`, nil},
		{"reaction", 4, `{"user":"u","kind":"reaction","target":2,"emoji":"👍","on":false}`, nil},
		{"blank body", 4, `{"user":"u","body":" "}`, roomlog.ErrInvalid},
	} {
		if _, err := (roomlog.Decoder{}).DecodeIn("real", c.seq, []byte(c.data), at); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

// TestDecodeInvalid refuses, with ErrInvalid (never ErrUndecodable: ingest
// parks these with their own reason), the room messages that break the
// body rule the edge applies (wire.CheckBody) or that no store can hold.
func TestDecodeInvalid(t *testing.T) {
	long := strings.Repeat("é", 11)
	cases := []struct{ name, data string }{
		{"NUL body", `{"user":"u","body":"a\u0000b"}`},
		{"only NUL", `{"user":"u","body":"\u0000"}`},
		{"bell", `{"user":"u","body":"ding\u0007"}`},
		{"C1 control", `{"user":"u","body":"x\u0085y"}`},
		{"empty body", `{"user":"u","body":""}`},
		{"blank body", `{"user":"u","body":" \t\n "}`},
		{"no body", `{"user":"u","kind":"system"}`},
		{"too long", `{"user":"u","body":"` + long + `"}`},
		{"NUL user", `{"user":"u\u0000","body":"b"}`},
		{"NUL cid", `{"user":"u","body":"b","cid":"\u0000"}`},
	}
	d := roomlog.Decoder{MaxBody: 10}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := d.Decode(9, "chat.room.x", []byte(c.data), time.UnixMilli(1))
			if !errors.Is(err, roomlog.ErrInvalid) || errors.Is(err, roomlog.ErrUndecodable) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := d.Decode(9, "chat.room.x", []byte(`{"user":"u","body":"`+long[:20]+`\t\r\n"}`), time.UnixMilli(1)); err != nil {
		t.Fatalf("10 characters with tab, CR, LF: %v", err)
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
		m, err := roomlog.Decode(1, subject, data, time.UnixMilli(1))
		if err != nil {
			if !errors.Is(err, roomlog.ErrUndecodable) && !errors.Is(err, roomlog.ErrInvalid) {
				t.Fatalf("error neither ErrUndecodable nor ErrInvalid: %v", err)
			}
			return
		}
		if e := wire.CheckBody(strings.TrimSpace(m.Body), 0); e != nil {
			t.Fatalf("decoded a body the edge refuses: %v", e)
		}
		for _, s := range []string{m.Room, m.User, m.Body, m.Kind, m.CID} {
			if !holdable(s) {
				t.Fatalf("decoded text no store holds: %q", s)
			}
		}
		if m.ID != 1 || m.Room == "" || (m.Kind != wire.KindMessage && m.Kind != wire.KindSystem) {
			t.Fatalf("decoded invalid message %+v", m)
		}
		if "chat.room."+m.Room != subject {
			t.Fatalf("room %q from subject %q", m.Room, subject)
		}
	})
}

// holdable is the rule for text every history store can hold (history's
// store.Holdable): valid UTF-8 without U+0000. The shared module cannot
// import the store: keep the two in step.
func holdable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
