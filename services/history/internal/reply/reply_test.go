package reply_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/hubbub-chat/hubbub/services/history/internal/reply"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestAppendPage(t *testing.T) {
	cases := []struct {
		name string
		page wire.Page
	}{
		{"nil items", wire.Page{Room: "general"}},
		{"empty items", wire.Page{Room: "general", Items: []wire.Message{}, Recovered: true}},
		{"items", wire.Page{Room: "general", HasMore: true, Recovered: true, Items: []wire.Message{
			{ID: 7, Prev: 3, Room: "general", User: "alice", Body: "hi", Kind: wire.KindMessage, TS: 1764000000123, CID: "k3j2"},
			{ID: 1<<64 - 1, Prev: 7, Room: "general", User: "bob", Body: "no cid", Kind: wire.KindSystem, TS: -1},
		}}},
		{"conversation", wire.Page{Room: "r", Last: 42, Recovered: true, Items: []wire.Message{
			{ID: 7, Prev: 3, Room: "r", User: "alice", Body: "hi @bob <3", Kind: wire.KindMessage, TS: 5, ReplyTo: 2,
				Mentions: []string{"bob"}, Edited: 9, Reactions: []wire.Reaction{{Emoji: "👍", Count: 2, Users: []string{"bob", "carol"}}},
				Reply: &wire.Quote{ID: 2, User: "bob", Body: "q&a"}},
			{ID: 8, Prev: 7, Room: "r", User: "bob", Kind: wire.KindMessage, TS: 6, Deleted: true, Mentions: []string{}},
			{ID: 9, Prev: 8, Room: "r", User: "bob", Kind: wire.KindReaction, TS: 6, Target: 7, Emoji: "👍", On: new(bool)},
		}}},
		{"escapes", wire.Page{Room: "r", Items: []wire.Message{{ID: 1, User: "\"quoted\" \\ back", Body: "<b>&amp;</b>\n\t\r\b\f\x00\x1f\x7f",
			Kind: "é\u2028\u2029\U0001F600", CID: "\xff\xfe bad utf8 \xe2\x82"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := json.Marshal(c.page)
			if err != nil {
				t.Fatal(err)
			}
			if got := reply.AppendPage(nil, c.page); !bytes.Equal(got, want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// FuzzAppendPage holds AppendPage to encoding/json's output for arbitrary
// strings (stored messages carry whatever users typed).
func FuzzAppendPage(f *testing.F) {
	for _, s := range []string{"", "hi", "<script>&</script>", "\"\\\n\t\x00\x1f", "\xff\xfe", "\u2028\u2029", "é😀", "\xe2\x82"} {
		f.Add(s, s+"x", uint64(1), int64(-5))
	}
	f.Fuzz(func(t *testing.T, a, b string, id uint64, ts int64) {
		on := ts%3 == 0
		p := wire.Page{Room: a, HasMore: id%2 == 0, Recovered: ts%2 == 0, Last: id ^ uint64(ts), Items: []wire.Message{
			{ID: id, Prev: id / 2, Room: a, User: b, Body: a + b, Kind: b, TS: ts, CID: a},
			{ID: id + 1, Room: b, User: a, Body: b, Kind: a, TS: -ts, CID: b},
			{ID: id + 2, Room: a, User: b, Body: a, Kind: wire.KindMessage, TS: ts, ReplyTo: id, Mentions: []string{a, b},
				Edited: ts, Reactions: []wire.Reaction{{Emoji: b, Count: 1, Users: []string{a}}}, Reply: &wire.Quote{ID: id, User: b, Body: a}},
			{ID: id + 3, Room: a, User: b, Kind: wire.KindReaction, TS: ts, Target: id, Emoji: a, On: &on, Deleted: on},
		}}
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := reply.AppendPage(nil, p); !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}

func BenchmarkAppendPage(b *testing.B) {
	p := wire.Page{Room: "general", Recovered: true, HasMore: true}
	for i := range 50 {
		p.Items = append(p.Items, wire.Message{ID: uint64(1000 + i), Prev: uint64(999 + i), Room: "general", User: "user-42",
			Body: "a fairly ordinary chat message of some eighty bytes, give or take a few words", Kind: wire.KindMessage, TS: 1764000000123, CID: "c1234"})
	}
	b.Run("reply", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = reply.AppendPage(buf[:0], p)
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
