package storetest

// Conformance of the conversation (DESIGN §3a): change events folded on
// insert, folded pages, the Last cursor, unread counts.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// conversationTests are the conformance tests of this file.
func conversationTests() []struct {
	name string
	fn   func(t *testing.T, s store.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"FoldOnInsert", testFoldOnInsert},
		{"FoldInOneBatch", testFoldInOneBatch},
		{"RedeliveryNotReapplied", testRedeliveryNotReapplied},
		{"DeleteRemovesText", testDeleteRemovesText},
		{"ReactionBounds", testReactionBounds},
		{"ReplyQuote", testReplyQuote},
		{"LastCursor", testLastCursor},
		{"LobbyChatMessagesOnly", testLobbyChatMessagesOnly},
		{"MessageLookup", testMessageLookup},
		{"Unread", testUnread},
		{"UnreadCaps", testUnreadCaps},
		{"TrimConversation", testTrimConversation},
		{"OutOfOrderBatches", testOutOfOrderBatches},
		{"ConcurrentFolds", testConcurrentFolds},
	}
}

// Event builders: ts is base + id seconds, like msg.
func say(id uint64, room, user, body string) wire.Message {
	return wire.Message{ID: id, Room: room, User: user, Body: body, Kind: wire.KindMessage, TS: base + int64(id)*1000}
}

func sys(id uint64, room, body string) wire.Message {
	return wire.Message{ID: id, Room: room, User: "hubbub", Body: body, Kind: wire.KindSystem, TS: base + int64(id)*1000}
}

func edit(id uint64, room, user string, target uint64, body string) wire.Message {
	return wire.Message{ID: id, Room: room, User: user, Body: body, Kind: wire.KindEdit, TS: base + int64(id)*1000, Target: target}
}

func del(id uint64, room, user string, target uint64) wire.Message {
	return wire.Message{ID: id, Room: room, User: user, Kind: wire.KindDelete, TS: base + int64(id)*1000, Target: target}
}

func react(id uint64, room, user string, target uint64, emoji string, on bool) wire.Message {
	return wire.Message{ID: id, Room: room, User: user, Kind: wire.KindReaction, TS: base + int64(id)*1000,
		Target: target, Emoji: emoji, On: &on}
}

func mention(m wire.Message, users ...string) wire.Message {
	m.Mentions = users
	return m
}

func recent(t *testing.T, s store.Store, room string, before uint64, limit int) wire.Page {
	t.Helper()
	p, err := s.Recent(ctxT(t), room, before, limit)
	if err != nil {
		t.Fatalf("recent %s before %d: %v", room, before, err)
	}
	return p
}

func one(t *testing.T, s store.Store, room string, id uint64) wire.Message {
	t.Helper()
	m, err := s.Message(ctxT(t), room, id)
	if err != nil {
		t.Fatalf("message %s/%d: %v", room, id, err)
	}
	return m
}

func reactions(m wire.Message) string {
	out := ""
	for _, r := range m.Reactions {
		if r.Count != len(r.Users) {
			return fmt.Sprintf("bad count %d for %v", r.Count, r.Users)
		}
		out += fmt.Sprintf("%s%v", r.Emoji, r.Users)
	}
	return out
}

func testFoldOnInsert(t *testing.T, s store.Store) {
	mustInsert(t, s, []wire.Message{say(1, "r", "alice", "helo @bob"), say(2, "r", "bob", "hey")})
	mustInsert(t, s, []wire.Message{mention(edit(3, "r", "alice", 1, "hello @carol"), "carol")})
	mustInsert(t, s, []wire.Message{edit(4, "r", "bob", 1, "bob was here")}) // not bob's: ignored
	mustInsert(t, s, []wire.Message{
		react(5, "r", "bob", 1, "👍", true), react(6, "r", "carol", 1, "👍", true),
		react(7, "r", "bob", 1, "❤️", true), react(8, "r", "bob", 1, "👍", false),
		react(9, "r", "dave", 1, "👍", false), // never given: nothing
		edit(10, "r", "alice", 2, "not alice's"),
		edit(11, "other", "alice", 1, "wrong room"), // target is not a message of room other
	})
	p := recent(t, s, "r", 0, 10)
	checkChain(t, "folded page", p.Items, []uint64{1, 2}, 0)
	m := p.Items[0]
	if m.Body != "hello @carol" || m.Edited != base+3000 || !reflect.DeepEqual(m.Mentions, []string{"carol"}) {
		t.Fatalf("edited message %+v: want alice's edit 3", m)
	}
	if got := reactions(m); got != "👍[carol]❤️[bob]" {
		t.Fatalf("reactions %s, want 👍[carol]❤️[bob] (emoji in the order first given)", got)
	}
	if p.Items[1].Body != "hey" || p.Items[1].Edited != 0 {
		t.Fatalf("bob's message changed by alice's edit: %+v", p.Items[1])
	}
	if p.Last != 10 || p.HasMore {
		t.Fatalf("last %d has_more %v, want last 10 (the room's newest event) and no more", p.Last, p.HasMore)
	}
	// Since returns the raw events, changes included, chained.
	sp, err := s.Since(ctxT(t), "r", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkChain(t, "since", sp.Items, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0)
	if e := sp.Items[2]; e.Kind != wire.KindEdit || e.Target != 1 || e.Body != "hello @carol" || !reflect.DeepEqual(e.Mentions, []string{"carol"}) {
		t.Fatalf("raw edit %+v", e)
	}
	if r := sp.Items[7]; r.Kind != wire.KindReaction || r.Target != 1 || r.Emoji != "👍" || r.On == nil || *r.On {
		t.Fatalf("raw reaction %+v", r)
	}
	if sp.Last != 10 {
		t.Fatalf("since last %d, want 10", sp.Last)
	}
	if got := one(t, s, "r", 1); got.Body != m.Body || reactions(got) != reactions(m) || got.Edited != m.Edited {
		t.Fatalf("Message %+v differs from the page's %+v", got, m)
	}
}

func testFoldInOneBatch(t *testing.T, s store.Store) {
	// A message, its edits and reactions in one batch, shuffled: applied
	// in id order.
	batch := []wire.Message{
		say(1, "r", "alice", "v1"), edit(2, "r", "alice", 1, "v2"), edit(3, "r", "alice", 1, "v3"),
		react(4, "r", "bob", 1, "🎉", true), react(5, "r", "bob", 1, "🎉", false), react(6, "r", "bob", 1, "🎉", true),
		react(7, "r", "carol", 1, "👀", true),
	}
	rand.New(rand.NewPCG(7, 7)).Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	if n := mustInsert(t, s, batch); n != 7 {
		t.Fatalf("inserted %d, want 7", n)
	}
	m := one(t, s, "r", 1)
	if m.Body != "v3" || m.Edited != base+3000 {
		t.Fatalf("message %+v, want v3 edited at edit 3", m)
	}
	// 🎉 was taken back (5) and given again (6): it now comes after 👀?
	// No: 👀 (7) was first given after 6, so 🎉 stays first.
	if got := reactions(m); got != "🎉[bob]👀[carol]" {
		t.Fatalf("reactions %s", got)
	}
}

func testRedeliveryNotReapplied(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustInsert(t, s, []wire.Message{say(1, "r", "alice", "v1"), react(2, "r", "bob", 1, "👍", true)})
	mustInsert(t, s, []wire.Message{react(3, "r", "bob", 1, "👍", false), edit(4, "r", "alice", 1, "v2")})
	// A later edit, then redeliveries of everything: nothing is applied
	// again (the reaction stays off, the body stays at the newest edit).
	mustInsert(t, s, []wire.Message{edit(5, "r", "alice", 1, "v3")})
	got, err := s.Insert(ctx, []wire.Message{
		react(2, "r", "bob", 1, "👍", true), edit(4, "r", "alice", 1, "v2"), react(6, "r", "carol", 1, "👍", true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != 6 {
		t.Fatalf("redelivered batch inserted %v, want only 6", ids(got))
	}
	m := one(t, s, "r", 1)
	if m.Body != "v3" || m.Edited != base+5000 || reactions(m) != "👍[carol]" {
		t.Fatalf("message after redelivery %+v (%s), want v3 and 👍[carol]", m, reactions(m))
	}
}

func testDeleteRemovesText(t *testing.T, s store.Store) {
	mustInsert(t, s, []wire.Message{
		mention(say(1, "r", "alice", "secret @bob"), "bob"), say(2, "r", "bob", "other"),
		mention(edit(3, "r", "alice", 1, "secret2 @bob"), "bob"),
		react(4, "r", "bob", 1, "😮", true),
		del(5, "r", "bob", 1), // not bob's: ignored
	})
	if m := one(t, s, "r", 1); m.Deleted || m.Body != "secret2 @bob" {
		t.Fatalf("another user's delete applied: %+v", m)
	}
	mustInsert(t, s, []wire.Message{del(6, "r", "alice", 1)})
	mustInsert(t, s, []wire.Message{
		edit(7, "r", "alice", 1, "secret3"), // an edit of a tombstone: refused, and its text not kept
		react(8, "r", "carol", 1, "👍", true),
	})
	m := one(t, s, "r", 1)
	if !m.Deleted || m.Body != "" || m.Reactions != nil || m.Mentions != nil || m.Edited != base+3000 {
		t.Fatalf("deleted message %+v, want a tombstone", m)
	}
	sp, err := s.Since(ctxT(t), "r", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range sp.Items {
		if e.ID != 2 && e.Body != "" {
			t.Fatalf("event %d (%s) still holds text %q after the delete", e.ID, e.Kind, e.Body)
		}
		if e.ID == 1 && (!e.Deleted || e.Mentions != nil) {
			t.Fatalf("stored row of the deleted message %+v", e)
		}
	}
	u, err := s.Unread(ctxT(t), "bob", []wire.ReadMark{{Room: "r"}})
	if err != nil {
		t.Fatal(err)
	}
	if u[0].Count != 0 || u[0].Mentions != 0 {
		t.Fatalf("unread for bob %+v: the deleted message must not count", u)
	}
}

func testReactionBounds(t *testing.T, s store.Store) {
	mustInsert(t, s, []wire.Message{say(1, "r", "alice", "react to me"), sys(2, "r", "bob joined")})
	var batch []wire.Message
	id := uint64(3)
	for i := range wire.MaxReactionKinds + 1 {
		batch = append(batch, react(id, "r", "bob", 1, fmt.Sprintf("e%d", i), true))
		id++
	}
	mustInsert(t, s, batch)
	m := one(t, s, "r", 1)
	if len(m.Reactions) != wire.MaxReactionKinds || m.Reactions[0].Emoji != "e0" ||
		m.Reactions[wire.MaxReactionKinds-1].Emoji != fmt.Sprintf("e%d", wire.MaxReactionKinds-1) {
		t.Fatalf("%d reactions (%s), want the first %d", len(m.Reactions), reactions(m), wire.MaxReactionKinds)
	}
	// Another user on an existing emoji is fine; taking one back makes
	// room for a new emoji, which goes last.
	mustInsert(t, s, []wire.Message{
		react(id, "r", "carol", 1, "e5", true), react(id+1, "r", "bob", 1, "e0", false), react(id+2, "r", "carol", 1, "new", true),
	})
	m = one(t, s, "r", 1)
	if len(m.Reactions) != wire.MaxReactionKinds || m.Reactions[0].Emoji != "e1" || m.Reactions[4].Emoji != "e5" ||
		!reflect.DeepEqual(m.Reactions[4].Users, []string{"bob", "carol"}) || m.Reactions[wire.MaxReactionKinds-1].Emoji != "new" {
		t.Fatalf("reactions after changes: %s", reactions(m))
	}
	// A system message takes reactions, not edits.
	mustInsert(t, s, []wire.Message{react(id+3, "r", "alice", 2, "👋", true), edit(id+4, "r", "hubbub", 2, "rewritten")})
	if m := one(t, s, "r", 2); reactions(m) != "👋[alice]" || m.Body != "bob joined" {
		t.Fatalf("system message %+v", m)
	}
}

func testReplyQuote(t *testing.T, s store.Store) {
	long := ""
	for range wire.QuoteLen + 10 {
		long += "é"
	}
	reply := say(3, "r", "bob", "yes")
	reply.ReplyTo = 1
	dangling := say(4, "r", "bob", "to nothing")
	dangling.ReplyTo = 99
	cross := say(5, "r", "bob", "to another room")
	cross.ReplyTo = 2
	mustInsert(t, s, []wire.Message{say(1, "r", "alice", long), say(2, "other", "carol", "elsewhere"), reply, dangling, cross})
	check := func(what string, m wire.Message, want *wire.Quote) {
		t.Helper()
		if !reflect.DeepEqual(m.Reply, want) {
			t.Fatalf("%s: reply %+v, want %+v", what, m.Reply, want)
		}
	}
	q := &wire.Quote{ID: 1, User: "alice", Body: long[:2*wire.QuoteLen] + "…"}
	p := recent(t, s, "r", 0, 10)
	check("quoted inside the page", p.Items[1], q)
	check("dangling", p.Items[2], nil)
	check("another room's id", p.Items[3], nil)
	p = recent(t, s, "r", 4, 1) // only the reply: its quote is read
	check("quoted outside the page", p.Items[0], q)
	check("Message", one(t, s, "r", 3), q)
	if p.Items[0].ReplyTo != 1 {
		t.Fatalf("reply_to %d", p.Items[0].ReplyTo)
	}
	mustInsert(t, s, []wire.Message{edit(6, "r", "alice", 1, "short")})
	check("after an edit", recent(t, s, "r", 4, 1).Items[0], &wire.Quote{ID: 1, User: "alice", Body: "short"})
	mustInsert(t, s, []wire.Message{del(7, "r", "alice", 1)})
	check("after a delete", one(t, s, "r", 3), &wire.Quote{ID: 1, User: "alice", Deleted: true})
	// A deleted reply shows no quote.
	mustInsert(t, s, []wire.Message{del(8, "r", "bob", 3)})
	check("deleted reply", one(t, s, "r", 3), nil)
}

func testLastCursor(t *testing.T, s store.Store) {
	if p := recent(t, s, "r", 0, 10); p.Last != 0 || len(p.Items) != 0 {
		t.Fatalf("empty room: %+v", p)
	}
	mustInsert(t, s, []wire.Message{
		say(1, "r", "alice", "a"), say(2, "r", "alice", "b"), react(3, "r", "bob", 1, "👍", true),
		say(4, "other", "x", "y"), edit(5, "r", "alice", 2, "b2"),
	})
	cases := []struct {
		before uint64
		limit  int
		want   []uint64
		last   uint64
		more   bool
	}{
		{0, 10, []uint64{1, 2}, 5, false},
		{0, 1, []uint64{2}, 5, true},
		{5, 10, []uint64{1, 2}, 3, false},
		{3, 10, []uint64{1, 2}, 2, false},
		{2, 10, []uint64{1}, 1, false},
		{1, 10, nil, 0, false},
	}
	for _, c := range cases {
		p := recent(t, s, "r", c.before, c.limit)
		if !reflect.DeepEqual(ids(p.Items), append([]uint64{}, c.want...)) || p.Last != c.last || p.HasMore != c.more {
			t.Fatalf("recent before %d limit %d: ids %v last %d more %v, want %v last %d more %v",
				c.before, c.limit, ids(p.Items), p.Last, p.HasMore, c.want, c.last, c.more)
		}
	}
	if p := recent(t, s, "r", 0, 1); p.Items[0].Prev != 1 {
		t.Fatalf("folded page's first prev %d, want 1 (the message before it)", p.Items[0].Prev)
	}
	sp, err := s.Since(ctxT(t), "r", 5, 10)
	if err != nil || sp.Last != 5 || len(sp.Items) != 0 {
		t.Fatalf("empty since page %+v %v, want last = after", sp, err)
	}
}

func testLobbyChatMessagesOnly(t *testing.T, s store.Store) {
	mustInsert(t, s, []wire.Message{
		say(1, "a", "alice", "first"), sys(2, "a", "bob joined"), say(3, "a", "bob", "second"),
		edit(4, "a", "bob", 3, "second!"), react(5, "a", "alice", 3, "👍", true), sys(6, "a", "carol joined"),
		sys(7, "quiet", "dave joined"),
	})
	lobby, err := s.Lobby(ctxT(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(lobby) != 1 {
		t.Fatalf("lobby %+v, want room a only (quiet has no chat message)", lobby)
	}
	r := lobby[0]
	if r.Room != "a" || r.Messages != 2 || r.LastID != 3 || r.LastActivity != base+3000 ||
		r.LastMessage == nil || r.LastMessage.Body != "second!" || r.LastMessage.User != "bob" {
		t.Fatalf("summary %+v (last %+v), want 2 messages, last 3 edited", r, r.LastMessage)
	}
	mustInsert(t, s, []wire.Message{del(8, "a", "bob", 3)})
	lobby, err = s.Lobby(ctxT(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	if lobby[0].LastMessage.Body != "" || !lobby[0].LastMessage.Deleted || lobby[0].LastID != 3 {
		t.Fatalf("summary after deleting the last message: %+v", lobby[0].LastMessage)
	}
}

func testMessageLookup(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustInsert(t, s, []wire.Message{say(1, "r", "alice", "a"), sys(2, "r", "b joined"), react(3, "r", "bob", 1, "👍", true)})
	if m := one(t, s, "r", 2); m.Kind != wire.KindSystem || m.Body != "b joined" {
		t.Fatalf("system message %+v", m)
	}
	for _, c := range []struct {
		room string
		id   uint64
	}{{"r", 3}, {"other", 1}, {"r", 99}, {"r", 0}} {
		if _, err := s.Message(ctx, c.room, c.id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Message(%s, %d): %v, want ErrNotFound", c.room, c.id, err)
		}
	}
	if _, err := s.Message(ctx, "", 1); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("Message with no room: %v", err)
	}
}

func testUnread(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustInsert(t, s, []wire.Message{
		say(1, "a", "alice", "one"), mention(say(2, "a", "alice", "@bob two"), "bob"), say(3, "a", "bob", "mine"),
		mention(say(4, "a", "bob", "@bob me"), "bob"), sys(5, "a", "carol joined"),
		mention(say(6, "a", "carol", "@bob @dave"), "bob", "dave"), react(7, "a", "carol", 1, "👍", true),
		mention(edit(8, "a", "alice", 1, "now @bob"), "bob"),
		say(9, "b", "alice", "elsewhere"),
	})
	got, err := s.Unread(ctx, "bob", []wire.ReadMark{{Room: "a", Read: 0}, {Room: "a", Read: 2}, {Room: "b", Read: 9}, {Room: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.UnreadCount{
		{Room: "a", Read: 0, Count: 3, Mentions: 3}, // 1 (edited to mention bob), 2, 6; not bob's own, not system
		{Room: "a", Read: 2, Count: 1, Mentions: 1},
		{Room: "b", Read: 9},
		{Room: "none"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("unread %+v, want %+v", got, want)
	}
	mustInsert(t, s, []wire.Message{mention(edit(10, "a", "alice", 2, "no mention")), del(11, "a", "carol", 6)})
	got, err = s.Unread(ctx, "bob", []wire.ReadMark{{Room: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Count != 2 || got[0].Mentions != 1 {
		t.Fatalf("after an edit dropping the mention and a delete: %+v, want 2 messages, 1 mention", got)
	}
	if got, err := s.Unread(ctx, "bob", nil); err != nil || len(got) != 0 {
		t.Fatalf("no marks: %v %v", got, err)
	}
	if _, err := s.Unread(ctx, "", []wire.ReadMark{{Room: "a"}}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("no user: %v", err)
	}
	if _, err := s.Unread(ctx, "bob", make([]wire.ReadMark, store.MaxUnreadRooms+1)); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("too many rooms: %v", err)
	}
}

func testUnreadCaps(t *testing.T, s store.Store) {
	var batch []wire.Message
	for i := range wire.MaxUnread + 5 {
		batch = append(batch, mention(say(uint64(i+1), "r", "alice", "@bob"), "bob"))
	}
	mustInsert(t, s, batch)
	got, err := s.Unread(ctxT(t), "bob", []wire.ReadMark{{Room: "r"}, {Room: "r", Read: 5}, {Room: "r", Read: 6}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{wire.MaxUnread, wire.MaxUnread, wire.MaxUnread - 1} {
		if got[i].Count != want || got[i].Mentions != want {
			t.Fatalf("unread after %d: %+v, want %d (capped at %d)", got[i].Read, got[i], want, wire.MaxUnread)
		}
	}
}

func testTrimConversation(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustInsert(t, s, []wire.Message{
		mention(say(1, "r", "alice", "@bob old"), "bob"), react(2, "r", "bob", 1, "👍", true), sys(3, "r", "x joined"),
		mention(say(4, "r", "alice", "@bob new"), "bob"), react(5, "r", "bob", 4, "👍", true),
	})
	// Trim ids 1-3 (ts < base+4s).
	if n, err := s.Trim(ctx, time.UnixMilli(base+4000), 100); err != nil || n != 3 {
		t.Fatalf("trim: %d %v", n, err)
	}
	u, err := s.Unread(ctx, "bob", []wire.ReadMark{{Room: "r"}})
	if err != nil {
		t.Fatal(err)
	}
	if u[0].Count != 1 || u[0].Mentions != 1 {
		t.Fatalf("unread after trim %+v, want the newer message only", u)
	}
	lobby, err := s.Lobby(ctx, 10)
	if err != nil || len(lobby) != 1 || lobby[0].Messages != 1 {
		t.Fatalf("lobby after trim %+v %v, want 1 message (system and changes not counted)", lobby, err)
	}
	p := recent(t, s, "r", 0, 10)
	if len(p.Items) != 1 || reactions(p.Items[0]) != "👍[bob]" || p.Last != 5 || p.Items[0].Prev != 3 {
		t.Fatalf("page after trim %+v", p)
	}
	// A change of a trimmed message is stored and changes nothing.
	if n := mustInsert(t, s, []wire.Message{edit(6, "r", "alice", 1, "revived?")}); n != 1 {
		t.Fatalf("inserted %d", n)
	}
	if _, err := s.Message(ctx, "r", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("trimmed message: %v", err)
	}
}

func testOutOfOrderBatches(t *testing.T, s store.Store) {
	// Batches committed out of id order (concurrent inserts): the state is
	// the one the events give in id order.
	mustInsert(t, s, []wire.Message{say(1, "r", "alice", "v1")})
	mustInsert(t, s, []wire.Message{edit(5, "r", "alice", 1, "v5"), react(6, "r", "bob", 1, "👍", false)})
	mustInsert(t, s, []wire.Message{edit(3, "r", "alice", 1, "v3"), react(4, "r", "bob", 1, "👍", true)})
	if m := one(t, s, "r", 1); m.Body != "v5" || m.Edited != base+5000 || m.Reactions != nil {
		t.Fatalf("message %+v (%s), want v5 and no reaction", m, reactions(m))
	}
	// An edit after a delete, committed first: the tombstone keeps the
	// edit time of the last edit before the delete.
	mustInsert(t, s, []wire.Message{say(10, "r", "alice", "x")})
	mustInsert(t, s, []wire.Message{edit(13, "r", "alice", 10, "x3")})
	mustInsert(t, s, []wire.Message{edit(11, "r", "alice", 10, "x1"), del(12, "r", "alice", 10)})
	if m := one(t, s, "r", 10); !m.Deleted || m.Edited != base+11000 || m.Body != "" {
		t.Fatalf("tombstone %+v, want edited at 11", m)
	}
}

func testConcurrentFolds(t *testing.T, s store.Store) {
	// Writers folding into one message at once (concurrent batches, as
	// several ingest flushers or replicas do): no reaction is lost and
	// each emoji has one entry.
	mustInsert(t, s, []wire.Message{say(1, "r", "alice", "popular")})
	const writers, each = 4, 10
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			var err error
			for i := range each {
				id := uint64(2 + w*each + i)
				ev := react(id, "r", fmt.Sprintf("u%d-%d", w, i), 1, []string{"👍", "🎉"}[i%2], true)
				for range 10 { // deadlocks and busy databases are retried, as ingest does
					if _, err = s.Insert(ctxT(t), []wire.Message{ev}); err == nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	m := one(t, s, "r", 1)
	if len(m.Reactions) != 2 || m.Reactions[0].Count+m.Reactions[1].Count != writers*each {
		t.Fatalf("reactions %s, want 2 emoji with %d users in all", reactions(m), writers*each)
	}
}
