package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/names"
)

func TestParseClientFrame(t *testing.T) {
	long := strings.Repeat("é", 2001)
	tests := []struct {
		name string
		in   string
		code string // "" = accepted
		room string
	}{
		{"join", `{"type":"join","room":"#General"}`, "", "general"},
		{"join since", `{"type":"join","room":"general","since":1234}`, "", "general"},
		{"message", `{"type":"message","room":"general","body":" hi ","cid":"k3j2"}`, "", "general"},
		{"typing", `{"type":"typing","room":"general","state":"on"}`, "", "general"},
		{"history", `{"type":"history","room":"general","before":1200,"limit":50}`, "", "general"},
		{"leave", `{"type":"leave","room":"general"}`, "", "general"},
		{"not json", `hello`, CodeBadJSON, ""},
		{"array", `[1,2]`, CodeBadJSON, ""},
		{"null", `null`, CodeBadJSON, ""},
		{"null padded", " null \n", CodeBadJSON, ""},
		{"string", `"join"`, CodeBadJSON, ""},
		{"number", `5`, CodeBadJSON, ""},
		{"empty", ``, CodeBadJSON, ""},
		{"NUL body", `{"type":"message","room":"a","body":"a\u0000b","cid":"1"}`, CodeInvalidBody, "a"},
		{"escape body", `{"type":"message","room":"a","body":"\u001b[2J","cid":"1"}`, CodeInvalidBody, "a"},
		{"C1 body", `{"type":"message","room":"a","body":"a\u0085b","cid":"1"}`, CodeInvalidBody, "a"},
		{"multiline body", `{"type":"message","room":"a","body":"a\n\tb\r\nc","cid":"1"}`, "", "a"},
		{"trailing", `{"type":"leave","room":"a"} {}`, CodeBadJSON, ""},
		{"wrong field type", `{"type":"join","room":5}`, CodeBadJSON, ""},
		{"no type", `{"room":"general"}`, CodeUnknownType, ""},
		{"unknown type", `{"type":"dance","room":"general"}`, CodeUnknownType, ""},
		{"bad room", `{"type":"join","room":"a.b"}`, CodeInvalidRoom, ""},
		{"wildcard room", `{"type":"join","room":">"}`, CodeInvalidRoom, ""},
		{"empty body", `{"type":"message","room":"a","body":"   ","cid":"1"}`, CodeInvalidBody, "a"},
		{"long body", `{"type":"message","room":"a","body":"` + long + `","cid":"1"}`, CodeInvalidBody, "a"},
		{"max body", `{"type":"message","room":"a","body":"` + long[2:] + `","cid":"1"}`, "", "a"},
		{"no cid", `{"type":"message","room":"a","body":"x"}`, CodeInvalidCID, "a"},
		{"cid with space", `{"type":"message","room":"a","body":"x","cid":"a b"}`, CodeInvalidCID, "a"},
		{"bad state", `{"type":"typing","room":"a","state":"maybe"}`, CodeInvalidState, "a"},
		{"huge limit", `{"type":"history","room":"a","limit":100000}`, CodeInvalidLimit, "a"},
		{"negative limit", `{"type":"history","room":"a","limit":-1}`, CodeInvalidLimit, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseClientFrame([]byte(tt.in), Limits{})
			if tt.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if f.Room != tt.room {
					t.Fatalf("room = %q, want %q", f.Room, tt.room)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %s", tt.code)
			}
			if err.Code != tt.code {
				t.Fatalf("code = %s (%s), want %s", err.Code, err.Message, tt.code)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	f, err := ParseClientFrame([]byte(`{"type":"history","room":"a","before":9}`), Limits{})
	if err != nil || f.Limit != DefaultPage {
		t.Fatalf("limit = %d, err = %v", f.Limit, err)
	}
	f, err = ParseClientFrame([]byte(`{"type":"message","room":"a","body":"abc","cid":"1"}`), Limits{MaxBody: 2})
	if err == nil || err.Code != CodeInvalidBody {
		t.Fatalf("MaxBody not applied: %+v %v", f, err)
	}
}

func FuzzParseClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","room":"general"}`,
		`{"type":"join","room":"general","since":1234}`,
		`{"type":"message","room":"general","body":"hi","cid":"k3j2"}`,
		`{"type":"typing","room":"general","state":"on"}`,
		`{"type":"history","room":"general","before":1200,"limit":50}`,
		`{"type":"leave","room":"#General"}`,
		`{"type":"message","room":"a.b","body":"\u0000","cid":""}`,
		`{"type":"message","room":"general","body":"@bob hi","cid":"c1","reply_to":1200}`,
		`{"type":"edit","room":"general","id":1235,"body":"fixed","cid":"c2"}`,
		`{"type":"delete","room":"general","id":1235,"cid":"c3"}`,
		`{"type":"react","room":"general","id":1235,"emoji":"👍","on":true,"cid":"c4"}`,
		`{"type":"react","room":"general","id":1235,"emoji":"\u200d","on":false,"cid":"c5"}`,
		`{"type":"read","room":"general","id":1240}`,
		`{}`, `null`, `[]`, `"x"`, `{"type":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ParseClientFrame(data, Limits{})
		if err != nil {
			if err.Code == "" || err.Message == "" {
				t.Fatalf("error without code or message: %+v", err)
			}
			if _, jerr := json.Marshal(err.Frame(fr.CID, fr.Room)); jerr != nil {
				t.Fatalf("error frame does not marshal: %v", jerr)
			}
			return
		}
		if !names.ValidRoom(fr.Room) {
			t.Fatalf("accepted invalid room %q", fr.Room)
		}
		if fr.Type == TypeMessage {
			n := utf8.RuneCountInString(fr.Body)
			if n == 0 || n > DefaultMaxBody || !ValidCID(fr.CID) {
				t.Fatalf("accepted invalid message %+v", fr)
			}
		}
	})
}

// CheckClientFrame is the rule ParseClientFrame applies after decoding:
// a frame built from fields (an HTTP post) gets the same answer as the
// same frame sent as JSON.
func TestCheckClientFrameMatchesParse(t *testing.T) {
	frames := []ClientFrame{
		{Type: TypeMessage, Room: "#General", Body: "  hi  ", CID: "c1"},
		{Type: TypeMessage, Room: "general", Body: "   ", CID: "c1"},
		{Type: TypeMessage, Room: "general", Body: "a\x00b", CID: "c1"},
		{Type: TypeMessage, Room: "general", Body: "hi", CID: ""},
		{Type: TypeMessage, Room: "Bad.Room", Body: "hi", CID: "c1"},
		{Type: TypeJoin, Room: "ok"},
		{Type: TypeLeave, Room: "no way"},
		{Type: TypeTyping, Room: "ok", State: "maybe"},
		{Type: TypeHistory, Room: "ok"},
		{Type: TypeHistory, Room: "ok", Limit: 1000},
		{Type: "dance", Room: "ok"},
		{Room: "ok"},
	}
	for _, in := range frames {
		data, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		parsed, perr := ParseClientFrame(data, Limits{})
		checked, cerr := CheckClientFrame(in, Limits{})
		if (perr == nil) != (cerr == nil) || (perr != nil && perr.Code != cerr.Code) {
			t.Fatalf("%+v: parse %v, check %v", in, perr, cerr)
		}
		if perr == nil && parsed != checked {
			t.Fatalf("%+v: parse gives %+v, check %+v", in, parsed, checked)
		}
	}
	if f, e := CheckClientFrame(frames[0], Limits{}); e != nil || f.Room != "general" || f.Body != "hi" {
		t.Fatalf("normalised %+v %v", f, e)
	}
}
