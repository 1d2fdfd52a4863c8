package wire_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestCheckEmoji(t *testing.T) {
	for _, c := range []struct {
		emoji string
		ok    bool
	}{
		{"👍", true},
		{"❤️", true},
		{"👨‍👩‍👧‍👦", true},
		{"🇫🇷", true},
		{"1️⃣", true},
		{"©", true},
		{"", false},
		{"a", false},
		{"ok", false},
		{"1", false},
		{" 👍", false},
		{"👍\n", false},
		{"\u200d", false},
		{"\ufe0f", false},
		{strings.Repeat("👍", 9), false},
		{"<script>", false},
		{"\x00", false},
		{"\xff", false},
	} {
		if got := wire.CheckEmoji(c.emoji) == nil; got != c.ok {
			t.Errorf("CheckEmoji(%q) ok=%v, want %v", c.emoji, got, c.ok)
		}
	}
}

func TestMentions(t *testing.T) {
	for _, c := range []struct {
		body string
		want []string
	}{
		{"hi @bob", []string{"bob"}},
		{"@alice, @bob. and @alice again", []string{"alice", "bob"}},
		{"mail me at a@b.c", nil},
		{"@@x", []string{"x"}},
		{"(@zoë)", []string{"zoë"}},
		{"@ nobody", nil},
		{"@a-b_c.d-", []string{"a-b_c.d"}},
		{"`@x`", []string{"x"}},
	} {
		if got := wire.Mentions(c.body); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Mentions(%q) = %q, want %q", c.body, got, c.want)
		}
	}
	var b strings.Builder
	for i := range 30 {
		b.WriteString("@u")
		b.WriteByte(byte('a' + i%26))
		b.WriteByte(byte('a' + i/26))
		b.WriteByte(' ')
	}
	if got := wire.Mentions(b.String()); len(got) != wire.MaxMentions {
		t.Errorf("%d mentions kept, want %d", len(got), wire.MaxMentions)
	}
}

func TestCheckClientFrameChanges(t *testing.T) {
	on := true
	for _, c := range []struct {
		name string
		f    wire.ClientFrame
		code string
	}{
		{"edit", wire.ClientFrame{Type: wire.TypeEdit, Room: "r", ID: 3, Body: " fixed ", CID: "c"}, ""},
		{"edit without id", wire.ClientFrame{Type: wire.TypeEdit, Room: "r", Body: "x", CID: "c"}, wire.CodeInvalidID},
		{"edit without cid", wire.ClientFrame{Type: wire.TypeEdit, Room: "r", ID: 3, Body: "x"}, wire.CodeInvalidCID},
		{"edit empty", wire.ClientFrame{Type: wire.TypeEdit, Room: "r", ID: 3, Body: "  ", CID: "c"}, wire.CodeInvalidBody},
		{"delete", wire.ClientFrame{Type: wire.TypeDelete, Room: "r", ID: 3, CID: "c"}, ""},
		{"delete bad room", wire.ClientFrame{Type: wire.TypeDelete, Room: "R!", ID: 3, CID: "c"}, wire.CodeInvalidRoom},
		{"react", wire.ClientFrame{Type: wire.TypeReact, Room: "r", ID: 3, Emoji: "👍", On: &on, CID: "c"}, ""},
		{"react without on", wire.ClientFrame{Type: wire.TypeReact, Room: "r", ID: 3, Emoji: "👍", CID: "c"}, wire.CodeInvalidState},
		{"react with text", wire.ClientFrame{Type: wire.TypeReact, Room: "r", ID: 3, Emoji: "lol", On: &on, CID: "c"}, wire.CodeInvalidEmoji},
		{"read", wire.ClientFrame{Type: wire.TypeRead, Room: "r", ID: 9}, ""},
		{"read without id", wire.ClientFrame{Type: wire.TypeRead, Room: "r"}, wire.CodeInvalidID},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, e := wire.CheckClientFrame(c.f, wire.Limits{})
			switch {
			case c.code == "" && e != nil:
				t.Fatalf("refused: %v", e)
			case c.code != "" && (e == nil || e.Code != c.code):
				t.Fatalf("got %v, want code %s", e, c.code)
			}
			if c.code == "" && f.Type == wire.TypeEdit && f.Body != "fixed" {
				t.Errorf("body %q not trimmed", f.Body)
			}
		})
	}
}

func TestCheckPostKinds(t *testing.T) {
	on := false
	for _, c := range []struct {
		name string
		p    wire.Post
		ok   bool
	}{
		{"message", wire.Post{Kind: wire.KindMessage, Body: "hi", ReplyTo: 2, Mentions: []string{"bob"}}, true},
		{"system", wire.Post{Kind: wire.KindSystem, Body: "bob joined"}, true},
		{"system reply", wire.Post{Kind: wire.KindSystem, Body: "x", ReplyTo: 2}, false},
		{"message with target", wire.Post{Kind: wire.KindMessage, Body: "x", Target: 2}, false},
		{"edit", wire.Post{Kind: wire.KindEdit, Body: "new", Target: 2}, true},
		{"edit no target", wire.Post{Kind: wire.KindEdit, Body: "new"}, false},
		{"edit empty", wire.Post{Kind: wire.KindEdit, Target: 2}, false},
		{"edit mentions", wire.Post{Kind: wire.KindEdit, Body: "@a", Target: 2, Mentions: []string{"a"}}, true},
		{"delete mentions", wire.Post{Kind: wire.KindDelete, Target: 2, Mentions: []string{"a"}}, false},
		{"edit reply", wire.Post{Kind: wire.KindEdit, Body: "x", Target: 2, ReplyTo: 1}, false},
		{"delete", wire.Post{Kind: wire.KindDelete, Target: 2}, true},
		{"delete with body", wire.Post{Kind: wire.KindDelete, Target: 2, Body: "x"}, false},
		{"reaction", wire.Post{Kind: wire.KindReaction, Target: 2, Emoji: "👍", On: &on}, true},
		{"reaction no on", wire.Post{Kind: wire.KindReaction, Target: 2, Emoji: "👍"}, false},
		{"reaction text", wire.Post{Kind: wire.KindReaction, Target: 2, Emoji: "x", On: &on}, false},
		{"message with emoji", wire.Post{Kind: wire.KindMessage, Body: "x", Emoji: "👍"}, false},
		{"nul mention", wire.Post{Kind: wire.KindMessage, Body: "x", Mentions: []string{"a\x00"}}, false},
	} {
		if got := wire.CheckPost(c.p, 0) == nil; got != c.ok {
			t.Errorf("%s: ok=%v, want %v (%v)", c.name, got, c.ok, wire.CheckPost(c.p, 0))
		}
	}
}
