package presence

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// FuzzRoomRequests: whatever arrives, every room request parser either
// refuses it or returns a request whose room is a valid room name, whose
// users are valid user ids and whose texts respect their limits.
func FuzzRoomRequests(f *testing.F) {
	for _, s := range []string{
		`{"by":"alice","room":"r","private":true,"title":"R","topic":"t"}`,
		`{"by":"alice","user":"bob"}`,
		`{"by":"alice","room":"r","user":"bob","role":"moderator"}`,
		`{"by":"alice","room":"r","user":"bob","action":"ban"}`,
		`{"by":"alice","room":"r","topic":"x","title":"y"}`,
		`{"user":"bob","room":"dm-0123"}`,
		`{"by":"","room":"r"}`, `{"room":"R"}`, `{"by":"a","room":"r","topic":"\u202e"}`,
		`{"by":"a","room":"r","user":"b","action":"nuke"}`, `null`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		room := func(r string) {
			if !names.ValidRoom(r) {
				t.Fatalf("accepted room %q", r)
			}
		}
		user := func(u string) {
			if _, err := names.User(u); err != nil {
				t.Fatalf("accepted user %q", u)
			}
		}
		text := func(s string, limit int) {
			if !utf8.ValidString(s) || utf8.RuneCountInString(s) > limit || strings.ContainsAny(s, "\n\r\u202e") {
				t.Fatalf("accepted text %q", s)
			}
		}
		if r, werr := parseCreate(data); werr == nil {
			room(r.Room)
			user(r.By)
			text(r.Title, wire.MaxTitleLen)
			text(r.Topic, wire.MaxTopicLen)
		}
		if r, werr := parseDM(data); werr == nil {
			user(r.By)
			user(r.User)
			if dm := wire.DMRoom(r.By, r.User); !names.ValidRoom(dm) || dm != wire.DMRoom(r.User, r.By) {
				t.Fatalf("DMRoom(%q, %q) = %q", r.By, r.User, dm)
			}
		}
		if r, werr := parseRoomUser(data); werr == nil {
			room(r.Room)
			user(r.By)
			user(r.User)
		}
		if r, werr := parseRole(data); werr == nil {
			room(r.Room)
			if r.Role != wire.RoleModerator && r.Role != wire.RoleMember {
				t.Fatalf("accepted role %q", r.Role)
			}
		}
		if r, werr := parseModerate(data); werr == nil {
			room(r.Room)
			user(r.User)
			switch r.Action {
			case wire.ActionKick, wire.ActionBan, wire.ActionUnban, wire.ActionMute, wire.ActionUnmute:
			default:
				t.Fatalf("accepted action %q", r.Action)
			}
		}
		if r, werr := parseTopic(data); werr == nil {
			room(r.Room)
			if r.Topic != nil {
				text(*r.Topic, wire.MaxTopicLen)
			}
			if r.Title != nil {
				text(*r.Title, wire.MaxTitleLen)
			}
		}
		if r, werr := parseAccess(data); werr == nil {
			room(r.Room)
			user(r.User)
		}
		if r, werr := parseRooms(data); werr == nil {
			user(r.User)
		}
	})
}

// TestDecide: the access rule, case by case.
func TestDecide(t *testing.T) {
	private := &wire.RoomRecord{Room: "p", Private: true, Owner: "o"}
	public := &wire.RoomRecord{Room: "p", Owner: "o"}
	dm := &wire.RoomRecord{Room: "dm-x", Private: true, DM: true, Members: []string{"a", "b"}}
	g := func(mod func(*wire.RoomGrant)) wire.RoomGrant {
		gr := wire.RoomGrant{Room: "p", User: "u"}
		if mod != nil {
			mod(&gr)
		}
		return gr
	}
	tests := []struct {
		name               string
		room, user         string
		rec                *wire.RoomRecord
		grant              wire.RoomGrant
		member             bool
		read, write, moder bool
		role               string
	}{
		{"record-less public, stranger", "lounge", "u", nil, g(nil), false, true, true, false, ""},
		{"record-less public, member", "lounge", "u", nil, g(nil), true, true, true, false, wire.RoleMember},
		{"record-less public, banned", "lounge", "u", nil, g(func(g *wire.RoomGrant) { g.Banned = true }), true, false, false, false, ""},
		{"record-less public, muted", "lounge", "u", nil, g(func(g *wire.RoomGrant) { g.Muted = true }), true, true, false, false, wire.RoleMember},
		{"unborn DM", "dm-x", "a", nil, g(nil), false, false, false, false, ""},
		{"DM member", "dm-x", "a", dm, g(nil), false, true, true, false, wire.RoleMember},
		{"DM outsider with a stray grant", "dm-x", "c", dm, g(func(g *wire.RoomGrant) { g.Role = wire.RoleModerator }), true, false, false, false, ""},
		{"private owner", "p", "o", private, g(nil), false, true, true, true, wire.RoleOwner},
		{"private owner with a ban grant", "p", "o", private, g(func(g *wire.RoomGrant) { g.Banned, g.Muted = true, true }), false, true, true, true, wire.RoleOwner},
		{"private stranger", "p", "u", private, g(nil), false, false, false, false, ""},
		{"private member key without grant", "p", "u", private, g(nil), true, false, false, false, ""},
		{"private invited", "p", "u", private, g(func(g *wire.RoomGrant) { g.Invited = true }), false, true, true, false, wire.RoleMember},
		{"private moderator", "p", "u", private, g(func(g *wire.RoomGrant) { g.Role = wire.RoleModerator }), true, true, true, true, wire.RoleModerator},
		{"private muted moderator", "p", "u", private, g(func(g *wire.RoomGrant) { g.Role, g.Muted = wire.RoleModerator, true }), true, true, false, true, wire.RoleModerator},
		{"private banned", "p", "u", private, g(func(g *wire.RoomGrant) { g.Invited, g.Banned = true, true }), false, false, false, false, ""},
		{"public stranger", "p", "u", public, g(nil), false, true, true, false, ""},
		{"public member", "p", "u", public, g(nil), true, true, true, false, wire.RoleMember},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := decide(tc.room, tc.user, tc.rec, 5, tc.grant, 7, tc.member)
			if a.MayRead != tc.read || a.MayWrite != tc.write || a.MayModerate != tc.moder || a.Role != tc.role {
				t.Errorf("got read=%v write=%v moderate=%v role=%q, want %v %v %v %q", a.MayRead, a.MayWrite, a.MayModerate, a.Role, tc.read, tc.write, tc.moder, tc.role)
			}
			if a.Rev != 7 || a.Member != tc.member || a.Exists != (tc.rec != nil) {
				t.Errorf("rev %d member %v exists %v", a.Rev, a.Member, a.Exists)
			}
		})
	}
}
