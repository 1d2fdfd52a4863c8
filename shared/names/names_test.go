package names

import (
	"errors"
	"strings"
	"testing"
)

func TestRoom(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"general", "general", true},
		{"#General", "general", true},
		{"  #eng-team_2 ", "eng-team_2", true},
		{"0", "0", true},
		{strings.Repeat("a", 64), strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), "", false},
		{"", "", false},
		{"#", "", false},
		{"-x", "", false},
		{"_x", "", false},
		{"a.b", "", false},
		{"a*", "", false},
		{">", "", false},
		{"a b", "", false},
		{"##a", "", false},
		{"café", "", false},
		{"a\x00", "", false},
		{"\u212a", "", false},        // KELVIN SIGN folds to 'k'
		{"wor\u212ad", "", false},    // ...inside a name
		{"\u0130stanbul", "", false}, // dotted capital I folds to 'i' + U+0307
		{"ſecret", "", false},        // LATIN SMALL LONG S upper-cases to 'S'
		{"GENERAL", "general", true},
	}
	for _, tt := range tests {
		got, err := Room(tt.in)
		if tt.ok != (err == nil) {
			t.Errorf("Room(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalidRoom) {
			t.Errorf("Room(%q) err = %v, want ErrInvalidRoom", tt.in, err)
		}
		if got != tt.want {
			t.Errorf("Room(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUser(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"alice", true},
		{"Ünïcødé user.name*>", true},
		{"auth0|12345", true},
		{"", false},
		{" alice", false},
		{"a\nb", false},
		{"\xff", false},
		{strings.Repeat("x", 129), false},
		{"bob builder", true},
		{"❤️ fan", true},             // emoji with variation selector
		{"admin\u200b", false},       // zero-width space
		{"ad\u200dmin", false},       // zero-width joiner
		{"\u202eadmin", false},       // right-to-left override
		{"al\u2066ice\u2069", false}, // bidi isolates
		{"\ufeffalice", false},       // BOM
		{"ali\u00a0ce", false},       // no-break space looks like a space
		{"a\u3164b", false},          // Hangul filler renders as nothing
		{"a\u2028b", false},          // line separator
		{"a\ue000b", false},          // private use
	}
	for _, tt := range tests {
		_, err := User(tt.in)
		if tt.ok != (err == nil) {
			t.Errorf("User(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidUser) {
			t.Errorf("User(%q) err = %v, want ErrInvalidUser", tt.in, err)
		}
	}
}

func TestUserTokenRoundTrip(t *testing.T) {
	for _, u := range []string{"alice", "a.b.*.>", "x y", "日本語", "a/b=c"} {
		tok := UserToken(u)
		if strings.ContainsAny(tok, ".*> /=") {
			t.Errorf("UserToken(%q) = %q contains a subject-unsafe character", u, tok)
		}
		back, err := UserFromToken(tok)
		if err != nil || back != u {
			t.Errorf("round trip %q -> %q -> %q, %v", u, tok, back, err)
		}
	}
}

func FuzzRoom(f *testing.F) {
	for _, s := range []string{"general", "#General", "a.b", ">", "*", "a-b_c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Room(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(r, ".*> \t\r\n") || len(r) == 0 || len(r) > MaxRoomLen {
			t.Fatalf("Room(%q) = %q is not a safe subject token", s, r)
		}
		if again, err := Room(r); err != nil || again != r {
			t.Fatalf("Room not idempotent: %q -> %q -> %q (%v)", s, r, again, err)
		}
	})
}

func FuzzUserToken(f *testing.F) {
	for _, s := range []string{"alice", "a.b", "*", ">", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := UserToken(s)
		if strings.ContainsAny(tok, ".*> ") {
			t.Fatalf("token %q for %q is not subject-safe", tok, s)
		}
		back, err := UserFromToken(tok)
		if err != nil || back != s {
			t.Fatalf("round trip failed for %q", s)
		}
	})
}
