package roomlog_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func on(b bool) *bool { return &b }

func TestApply(t *testing.T) {
	base := wire.Message{ID: 1, Room: "r", User: "alice", Body: "hi", Kind: wire.KindMessage}
	sys := wire.Message{ID: 1, Room: "r", User: "alice", Body: "alice joined", Kind: wire.KindSystem}
	tomb := base
	tomb.Deleted, tomb.Body = true, ""
	for _, c := range []struct {
		name   string
		target wire.Message
		ev     wire.Message
		want   wire.Message
		ok     bool
	}{
		{"edit by author", base, wire.Message{Kind: wire.KindEdit, Target: 1, User: "alice", Body: "hello @bob", TS: 9, Mentions: []string{"bob"}},
			wire.Message{ID: 1, Room: "r", User: "alice", Body: "hello @bob", Kind: wire.KindMessage, Edited: 9, Mentions: []string{"bob"}}, true},
		{"edit by another", base, wire.Message{Kind: wire.KindEdit, Target: 1, User: "bob", Body: "pwned"}, base, false},
		{"edit of a system message", sys, wire.Message{Kind: wire.KindEdit, Target: 1, User: "alice", Body: "x"}, sys, false},
		{"edit of a tombstone", tomb, wire.Message{Kind: wire.KindEdit, Target: 1, User: "alice", Body: "x"}, tomb, false},
		{"edit of another id", base, wire.Message{Kind: wire.KindEdit, Target: 2, User: "alice", Body: "x"}, base, false},
		{"delete by author", base, wire.Message{Kind: wire.KindDelete, Target: 1, User: "alice"}, tomb, true},
		{"delete by another", base, wire.Message{Kind: wire.KindDelete, Target: 1, User: "bob"}, base, false},
		{"reaction", base, wire.Message{Kind: wire.KindReaction, Target: 1, User: "bob", Emoji: "👍", On: on(true)},
			wire.Message{ID: 1, Room: "r", User: "alice", Body: "hi", Kind: wire.KindMessage, Reactions: []wire.Reaction{{Emoji: "👍", Count: 1, Users: []string{"bob"}}}}, true},
		{"reaction taken back that was never given", base, wire.Message{Kind: wire.KindReaction, Target: 1, User: "bob", Emoji: "👍", On: on(false)}, base, false},
		{"reaction on a system message", sys, wire.Message{Kind: wire.KindReaction, Target: 1, User: "bob", Emoji: "👋", On: on(true)},
			wire.Message{ID: 1, Room: "r", User: "alice", Body: "alice joined", Kind: wire.KindSystem, Reactions: []wire.Reaction{{Emoji: "👋", Count: 1, Users: []string{"bob"}}}}, true},
		{"reaction on a tombstone", tomb, wire.Message{Kind: wire.KindReaction, Target: 1, User: "bob", Emoji: "👍", On: on(true)}, tomb, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.target
			if ok := roomlog.Apply(&got, c.ev); ok != c.ok || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Apply = %v %+v, want %v %+v", ok, got, c.ok, c.want)
			}
		})
	}
}

func TestApplyReactionBounds(t *testing.T) {
	m := wire.Message{ID: 1, User: "a", Body: "x", Kind: wire.KindMessage}
	emoji := []rune("😀😁😂🤣😃😄😅😆😉😊😋😎😍😘🥰😗😙😚🙂🤗🤩")
	for i, e := range emoji {
		ok := roomlog.Apply(&m, wire.Message{Kind: wire.KindReaction, Target: 1, User: "u", Emoji: string(e), On: on(true)})
		if want := i < wire.MaxReactionKinds; ok != want {
			t.Fatalf("emoji %d: applied %v, want %v", i, ok, want)
		}
	}
	// Toggling: two users, one takes it back, the second taking back
	// empties the entry, and a repeat changes nothing.
	m = wire.Message{ID: 1, User: "a", Body: "x", Kind: wire.KindMessage}
	steps := []struct {
		user string
		on   bool
		ok   bool
		want []wire.Reaction
	}{
		{"b", true, true, []wire.Reaction{{Emoji: "👍", Count: 1, Users: []string{"b"}}}},
		{"b", true, false, []wire.Reaction{{Emoji: "👍", Count: 1, Users: []string{"b"}}}},
		{"c", true, true, []wire.Reaction{{Emoji: "👍", Count: 2, Users: []string{"b", "c"}}}},
		{"b", false, true, []wire.Reaction{{Emoji: "👍", Count: 1, Users: []string{"c"}}}},
		{"c", false, true, nil},
	}
	for i, s := range steps {
		ok := roomlog.Apply(&m, wire.Message{Kind: wire.KindReaction, Target: 1, User: s.user, Emoji: "👍", On: on(s.on)})
		if ok != s.ok || (len(m.Reactions) != 0 || len(s.want) != 0) && !reflect.DeepEqual(m.Reactions, s.want) {
			t.Fatalf("step %d: %v %+v, want %v %+v", i, ok, m.Reactions, s.ok, s.want)
		}
	}
}

func TestFold(t *testing.T) {
	events := []wire.Message{
		{ID: 3, Prev: 1, User: "alice", Body: "first", Kind: wire.KindMessage},
		{ID: 5, Prev: 3, User: "bob", Body: "answer", Kind: wire.KindMessage, ReplyTo: 3},
		{ID: 6, Prev: 5, User: "alice", Body: "first, fixed", Kind: wire.KindEdit, Target: 3, TS: 60},
		{ID: 7, Prev: 6, User: "carol", Kind: wire.KindReaction, Target: 5, Emoji: "🎉", On: on(true)},
		{ID: 8, Prev: 7, User: "bob", Kind: wire.KindDelete, Target: 2}, // older than the run
		{ID: 9, Prev: 8, User: "bob", Body: "bye", Kind: wire.KindMessage, ReplyTo: 2},
	}
	orig := append([]wire.Message(nil), events...)
	msgs, last := roomlog.Fold(events)
	if last != 9 {
		t.Errorf("last = %d, want 9", last)
	}
	var ids []uint64
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	if !reflect.DeepEqual(ids, []uint64{3, 5, 9}) {
		t.Fatalf("ids %v", ids)
	}
	if msgs[0].Body != "first, fixed" || msgs[0].Edited != 60 {
		t.Errorf("edit not folded: %+v", msgs[0])
	}
	// The quote is taken after every change of the run is applied.
	if msgs[1].Reply == nil || msgs[1].Reply.Body != "first, fixed" || len(msgs[1].Reactions) != 1 {
		t.Errorf("reply/reaction not folded: %+v", msgs[1])
	}
	if msgs[2].Reply != nil {
		t.Errorf("quote of a message outside the run: %+v", msgs[2].Reply)
	}
	if !reflect.DeepEqual(events, orig) {
		t.Error("Fold modified its input")
	}
	if m, last := roomlog.Fold(nil); len(m) != 0 || last != 0 {
		t.Errorf("Fold(nil) = %v, %d", m, last)
	}
}

func TestQuoteOf(t *testing.T) {
	long := strings.Repeat("é", wire.QuoteLen+5)
	q := roomlog.QuoteOf(wire.Message{ID: 4, User: "a", Body: long})
	if want := strings.Repeat("é", wire.QuoteLen) + "…"; q.Body != want {
		t.Errorf("quote body %q", q.Body)
	}
	if q := roomlog.QuoteOf(wire.Message{ID: 4, User: "a", Deleted: true}); !q.Deleted || q.Body != "" {
		t.Errorf("tombstone quote %+v", q)
	}
}
