package framescan

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestScan(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Frame
		bad  bool
	}{
		{
			name: "message",
			in:   `{"type":"message","room":"r1","message":{"id":12,"prev":7,"room":"r1","user":"u","body":"bench x 1","kind":"message","ts":1,"cid":"c"}}`,
			want: Frame{Type: []byte("message"), Room: []byte("r1"), MsgID: 12, MsgPrev: 7, Kind: []byte("message"), Body: []byte("bench x 1"), User: []byte("u")},
		},
		{
			name: "message keys reordered and spaced",
			in:   ` { "message" : { "body":"a\"b", "prev":0 , "id":1 } , "type" : "message" } `,
			want: Frame{Type: []byte("message"), MsgID: 1, Body: []byte(`a\"b`)},
		},
		{
			name: "ack",
			in:   `{"type":"ack","cid":"k3j2","id":1235}`,
			want: Frame{Type: []byte("ack"), CID: []byte("k3j2"), ID: 1235},
		},
		{
			name: "error",
			in:   `{"type":"error","code":"rate_limited","message":"slow down","cid":"x"}`,
			want: Frame{Type: []byte("error"), Code: []byte("rate_limited"), CID: []byte("x")},
		},
		{
			name: "history skipped",
			in:   `{"type":"history","room":"a","items":[{"id":1,"x":[1,2.5e3,-1,true,false,null,{}]}],"has_more":false}`,
			want: Frame{Type: []byte("history"), Room: []byte("a")},
		},
		{name: "not object", in: `[1]`, bad: true},
		{name: "truncated", in: `{"type":"mess`, bad: true},
		{name: "trailing", in: `{} {}`, bad: true},
		{name: "negative id", in: `{"id":-1}`, bad: true},
		{name: "float id", in: `{"id":1.5}`, bad: true},
		{name: "overflow", in: `{"id":99999999999999999999}`, bad: true},
		{name: "missing colon", in: `{"type" "x"}`, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Frame
			err := Scan([]byte(tt.in), &f)
			if tt.bad {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("err = %v, want ErrSyntax", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equal(f, tt.want) {
				t.Fatalf("got %+v\nwant %+v", f, tt.want)
			}
		})
	}
}

func equal(a, b Frame) bool {
	return string(a.Type) == string(b.Type) && string(a.Room) == string(b.Room) &&
		string(a.CID) == string(b.CID) && a.ID == b.ID && string(a.Code) == string(b.Code) &&
		a.MsgID == b.MsgID && a.MsgPrev == b.MsgPrev && string(a.Kind) == string(b.Kind) &&
		string(a.Body) == string(b.Body) && string(a.User) == string(b.User)
}

func TestScanAllocs(t *testing.T) {
	in := []byte(`{"type":"message","room":"r1","message":{"id":12,"prev":7,"room":"r1","user":"u","body":"b","kind":"message","ts":1}}`)
	var f Frame
	if n := testing.AllocsPerRun(100, func() { _ = Scan(in, &f) }); n > 0 {
		t.Fatalf("Scan allocates %v times per frame", n)
	}
}

// FuzzScan checks that Scan never panics and agrees with encoding/json on
// the fields it reads whenever both accept the input.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`{"type":"message","room":"r1","message":{"id":12,"prev":7,"room":"r1","user":"u","body":"b","kind":"message","ts":1,"cid":"c"}}`,
		`{"type":"ack","cid":"k3j2","id":1235}`,
		`{"type":"error","code":"rate_limited","message":"x","cid":"k"}`,
		`{"type":"history","room":"a","items":[],"has_more":true,"recovered":true}`,
		`{"type":"welcome","user":"alice","protocol":1}`,
		`{"message":null}`, `{}`, `[`, `{"a":[[[[[]]]]]}`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got Frame
		if err := Scan(data, &got); err != nil {
			return
		}
		var ref struct {
			Type    string        `json:"type"`
			ID      uint64        `json:"id"`
			Message *wire.Message `json:"message"`
		}
		// encoding/json matches keys case-insensitively (with Unicode
		// folding) and replaces invalid UTF-8; the protocol does neither, so
		// compare on lower-case ASCII input only.
		if bytes.ContainsFunc(data, func(r rune) bool { return r >= utf8.RuneSelf || unicode.IsUpper(r) }) || json.Unmarshal(data, &ref) != nil {
			return
		}
		if ref.Type != "" && string(got.Type) != ref.Type && !containsEscape(got.Type) {
			t.Fatalf("type %q, encoding/json says %q", got.Type, ref.Type)
		}
		if ref.ID != got.ID {
			t.Fatalf("id %d, encoding/json says %d", got.ID, ref.ID)
		}
		if ref.Message != nil && (ref.Message.ID != got.MsgID || ref.Message.Prev != got.MsgPrev) {
			t.Fatalf("message id/prev %d/%d, encoding/json says %d/%d", got.MsgID, got.MsgPrev, ref.Message.ID, ref.Message.Prev)
		}
	})
}

func containsEscape(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}
