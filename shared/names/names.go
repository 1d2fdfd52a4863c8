// Package names validates and normalises the user-supplied identifiers that
// end up in NATS subjects and KV keys: room names and user ids. Every service
// uses this one implementation so that a name accepted by one tier is
// accepted, and encoded, identically by all others.
package names

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxRoomLen is the longest room name accepted, in bytes.
const MaxRoomLen = 64

// MaxUserLen is the longest user id accepted, in bytes.
const MaxUserLen = 128

// ErrInvalidRoom is returned for a room name that does not match
// ^[a-z0-9][a-z0-9_-]{0,63}$ after normalisation.
var ErrInvalidRoom = errors.New("invalid room name")

// ErrInvalidUser is returned for a user id that is empty, too long, not valid
// UTF-8, or contains control, invisible (zero-width, format) or
// bidirectional-override characters.
var ErrInvalidUser = errors.New("invalid user id")

// Room normalises a room name as typed by a user: surrounding space is
// trimmed, one leading '#' is dropped and letters are lower-cased. The result
// matches ^[a-z0-9][a-z0-9_-]{0,63}$, so it is always exactly one subject
// token and can never contain a wildcard.
func Room(s string) (string, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "#")
	// Refuse anything outside ASCII before folding: Unicode case folding
	// maps some non-ASCII letters onto ASCII ones (U+212A KELVIN SIGN
	// lower-cases to 'k'), which would let two different names reach the
	// same room.
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "", fmt.Errorf("%w: non-ASCII character", ErrInvalidRoom)
		}
	}
	s = asciiLower(s)
	if s == "" || len(s) > MaxRoomLen {
		return "", fmt.Errorf("%w: length must be 1-%d", ErrInvalidRoom, MaxRoomLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return "", fmt.Errorf("%w: %q not allowed", ErrInvalidRoom, s)
		}
	}
	return s, nil
}

// asciiLower lower-cases the ASCII letters of s (s is known to be ASCII).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ValidRoom reports whether s is already a normalised, valid room name.
func ValidRoom(s string) bool {
	n, err := Room(s)
	return err == nil && n == s
}

// User checks a user id (a JWT subject or a name picked in development
// mode). Ids are shown to other users, so only visible characters and
// plain spaces are allowed: control characters, format characters
// (Unicode category Cf: zero-width space/joiners, bidi embeddings and
// overrides such as U+202E, the BOM), other invisible separators and
// unassigned or private-use code points are refused. The id is never
// placed in a subject or key without UserToken.
func User(s string) (string, error) {
	if s == "" || len(s) > MaxUserLen {
		return "", fmt.Errorf("%w: length must be 1-%d bytes", ErrInvalidUser, MaxUserLen)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: not valid UTF-8", ErrInvalidUser)
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return "", fmt.Errorf("%w: control character %U", ErrInvalidUser, r)
		case r == ' ':
		case unicode.Is(unicode.Cf, r), unicode.Is(unicode.Co, r), unicode.IsSpace(r),
			unicode.Is(unicode.Zl, r), unicode.Is(unicode.Zp, r), invisible(r):
			return "", fmt.Errorf("%w: invisible or formatting character %U", ErrInvalidUser, r)
		case !unicode.IsGraphic(r):
			return "", fmt.Errorf("%w: unassigned or non-graphic character %U", ErrInvalidUser, r)
		}
	}
	if strings.TrimSpace(s) != s {
		return "", fmt.Errorf("%w: leading or trailing space", ErrInvalidUser)
	}
	return s, nil
}

// invisible reports code points that render as nothing but are not in
// category Cf: the Hangul fillers, the braille blank and the combining
// grapheme joiner.
func invisible(r rune) bool {
	switch r {
	case 0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x034F:
		return true
	}
	return false
}

// UserToken encodes a user id as one subject token / KV key token
// (unpadded base64url: [A-Za-z0-9_-]+), whatever characters it contains.
func UserToken(user string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(user))
}

// UserFromToken reverses UserToken.
func UserFromToken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", fmt.Errorf("%w: bad token: %w", ErrInvalidUser, err)
	}
	return string(b), nil
}
