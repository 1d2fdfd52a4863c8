package wire

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/names"
)

// Limits bounds what ParseClientFrame accepts.
type Limits struct {
	// MaxBody is the longest message body in characters (runes) after
	// trimming. Zero means DefaultMaxBody.
	MaxBody int
	// MaxPage is the largest history page a client may ask for. Zero means
	// DefaultMaxPage.
	MaxPage int
}

// Defaults for Limits.
const (
	DefaultMaxBody = 2000
	DefaultMaxPage = 200
	DefaultPage    = 50
	MaxCIDLen      = 64
)

// ParseClientFrame decodes and validates one client frame. On success the
// room is normalised, the body trimmed and Limit defaulted; on failure the
// returned *Error carries the code to send back. The frame's CID and Room are
// filled in as far as they could be read, so an error frame can echo them.
func ParseClientFrame(data []byte, lim Limits) (ClientFrame, *Error) {
	var f ClientFrame
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		// JSON null, arrays, strings and numbers decode into a struct
		// without error (null leaves it zero): only an object is a frame.
		return ClientFrame{}, Errorf(CodeBadJSON, "frame is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return ClientFrame{}, Errorf(CodeBadJSON, "frame is not a JSON object: %v", err)
	}
	if dec.More() {
		return ClientFrame{}, Errorf(CodeBadJSON, "trailing data after JSON object")
	}
	return CheckClientFrame(f, lim)
}

// CheckClientFrame validates a decoded client frame by the rule of its
// type and normalises it (room, trimmed body, default limit), exactly as
// ParseClientFrame does after decoding: a transport that receives a frame's
// fields another way (an HTTP post) applies the same rule with it. On
// failure the frame is returned as far as it was read, for the error frame
// to echo.
//
// The switch below is the list of client frame types: adding one is a
// case here (with its fields on ClientFrame), a method in the edge's
// session and the docs.
func CheckClientFrame(f ClientFrame, lim Limits) (ClientFrame, *Error) {
	if lim.MaxBody <= 0 {
		lim.MaxBody = DefaultMaxBody
	}
	if lim.MaxPage <= 0 {
		lim.MaxPage = DefaultMaxPage
	}
	var e *Error
	switch f.Type {
	case TypeJoin, TypeLeave:
		e = f.checkRoom()
	case TypeMessage:
		e = f.checkMessage(lim.MaxBody)
	case TypeEdit:
		if e = f.checkChange(); e == nil {
			f.Body = strings.TrimSpace(f.Body)
			e = CheckBody(f.Body, lim.MaxBody)
		}
	case TypeDelete:
		e = f.checkChange()
	case TypeReact:
		e = f.checkReact()
	case TypeRead:
		e = f.checkRead()
	case TypeTyping:
		e = f.checkTyping()
	case TypeHistory:
		e = f.checkHistory(lim.MaxPage)
	case "":
		e = Errorf(CodeUnknownType, "frame has no type")
	default:
		e = Errorf(CodeUnknownType, "unknown frame type %q", truncate(f.Type, 32))
	}
	return f, e
}

// checkMessage validates a message frame: a room, a cid and a body (trimmed).
func (f *ClientFrame) checkMessage(maxBody int) *Error {
	if e := f.checkRoom(); e != nil {
		return e
	}
	if e := validCID(f.CID); e != nil {
		return e
	}
	f.Body = strings.TrimSpace(f.Body)
	return CheckBody(f.Body, maxBody)
}

// checkReact validates a react frame: a change with "on" and one emoji.
func (f *ClientFrame) checkReact() *Error {
	if e := f.checkChange(); e != nil {
		return e
	}
	if f.On == nil {
		return Errorf(CodeInvalidState, `react needs "on": true or false`)
	}
	return CheckEmoji(f.Emoji)
}

// checkRead validates a read frame: a room and the id read up to.
func (f *ClientFrame) checkRead() *Error {
	if e := f.checkRoom(); e != nil {
		return e
	}
	if f.ID == 0 {
		return Errorf(CodeInvalidID, "read needs the id of a message")
	}
	return nil
}

// checkTyping validates a typing frame: a room and a state.
func (f *ClientFrame) checkTyping() *Error {
	if e := f.checkRoom(); e != nil {
		return e
	}
	if f.State != TypingOn && f.State != TypingOff {
		return Errorf(CodeInvalidState, `typing state must be "on" or "off"`)
	}
	return nil
}

// checkHistory validates a history frame: a room and a limit (defaulted).
func (f *ClientFrame) checkHistory(maxPage int) *Error {
	if e := f.checkRoom(); e != nil {
		return e
	}
	if f.Limit == 0 {
		f.Limit = DefaultPage
	}
	if f.Limit < 0 || f.Limit > maxPage {
		return Errorf(CodeInvalidLimit, "limit must be 1-%d", maxPage)
	}
	return nil
}

// checkChange validates what edit, delete and react share: a room, the id
// of the message changed and a cid.
func (f *ClientFrame) checkChange() *Error {
	if e := f.checkRoom(); e != nil {
		return e
	}
	if e := validCID(f.CID); e != nil {
		return e
	}
	if f.ID == 0 {
		return Errorf(CodeInvalidID, "%s needs the id of a message", f.Type)
	}
	return nil
}

// checkRoom normalises f.Room (invalid_room when it breaks the rule).
func (f *ClientFrame) checkRoom() *Error {
	room, err := names.Room(f.Room)
	if err != nil {
		return Errorf(CodeInvalidRoom, "room must match ^[a-z0-9][a-z0-9_-]{0,63}$")
	}
	f.Room = room
	return nil
}

// CheckBody applies the body rule every tier shares (guarantee 9): a body
// is 1 to maxBody characters (runes) of valid UTF-8 with no control
// characters other than tab, line feed and carriage return. U+0000 in
// particular is refused here, at the edge, because PostgreSQL text
// cannot hold it; history applies the same rule to whatever reaches the
// stream by other means and parks what fails it. maxBody <= 0 means
// DefaultMaxBody. The body is expected to be trimmed already.
func CheckBody(body string, maxBody int) *Error {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if body == "" {
		return Errorf(CodeInvalidBody, "message body is empty")
	}
	if !utf8.ValidString(body) {
		return Errorf(CodeInvalidBody, "message body is not valid UTF-8")
	}
	n := 0
	for _, r := range body {
		n++
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x7f && r < 0xa0) {
			return Errorf(CodeInvalidBody, "message body contains control character %U", r)
		}
	}
	if n > maxBody {
		return Errorf(CodeInvalidBody, "message body is %d characters, the limit is %d", n, maxBody)
	}
	return nil
}

// CheckPost applies the event rule to a post read back from the stream
// (whoever published it), by its kind (p.Kind must be set): a message or
// system message has a trimmed body passing CheckBody; an edit has a
// Target and such a body; a delete has a Target and no body; a reaction
// has a Target, an emoji passing CheckEmoji and On set; only a message has
// ReplyTo, only a message or an edit (the mentions of its new body)
// Mentions, and the user and cid hold no U+0000. History parks,
// and the edge does not deliver, a post that fails it, so every read path
// presents the same room. Whether a change is allowed (its author, its
// target) is not decided here: history ignores a change that is not.
func CheckPost(p Post, maxBody int) *Error {
	if strings.IndexByte(p.User, 0) >= 0 || strings.IndexByte(p.CID, 0) >= 0 {
		return Errorf(CodeInvalidBody, "user or cid contains U+0000")
	}
	if p.Kind != KindMessage && p.ReplyTo != 0 {
		return Errorf(CodeInvalidBody, "only a message has reply_to")
	}
	if p.Kind != KindMessage && p.Kind != KindEdit && len(p.Mentions) > 0 {
		return Errorf(CodeInvalidBody, "only a message or an edit has mentions")
	}
	if IsChange(p.Kind) == (p.Target == 0) {
		return Errorf(CodeInvalidID, "a change event has a target, a message none")
	}
	if len(p.Mentions) > MaxMentions {
		return Errorf(CodeInvalidBody, "more than %d mentions", MaxMentions)
	}
	for _, u := range p.Mentions {
		if u == "" || strings.IndexByte(u, 0) >= 0 {
			return Errorf(CodeInvalidBody, "a mention is empty or contains U+0000")
		}
	}
	return checkPostContent(p, maxBody)
}

// checkPostContent is CheckPost's rule for what a post of p's kind carries:
// a delete nothing, a reaction an emoji and on, anything else a body.
func checkPostContent(p Post, maxBody int) *Error {
	switch p.Kind {
	case KindDelete:
		if p.Body != "" || p.Emoji != "" {
			return Errorf(CodeInvalidBody, "a delete has no body")
		}
		return nil
	case KindReaction:
		if p.On == nil {
			return Errorf(CodeInvalidState, "a reaction has on set")
		}
		if p.Body != "" {
			return Errorf(CodeInvalidBody, "a reaction has no body")
		}
		return CheckEmoji(p.Emoji)
	}
	if p.Emoji != "" || p.On != nil {
		return Errorf(CodeInvalidBody, "only a reaction has an emoji")
	}
	return CheckBody(strings.TrimSpace(p.Body), maxBody)
}

// MaxEmojiBytes bounds a reaction's emoji.
const MaxEmojiBytes = 32

// CheckEmoji accepts one emoji as a reaction: 1-32 bytes of valid UTF-8
// without spaces or control characters, made of pictographic code points
// (U+00A9, U+00AE and everything from U+2000 up, which includes the
// joiner U+200D, variation selectors and tags) plus the keycap bases 0-9,
// # and * when the keycap mark U+20E3 follows. Letters and digits alone
// are not an emoji; a client picks from a palette, the rule only keeps
// text out of the reaction slots.
func CheckEmoji(emoji string) *Error {
	if emoji == "" || len(emoji) > MaxEmojiBytes || !utf8.ValidString(emoji) {
		return Errorf(CodeInvalidEmoji, "emoji must be 1-%d bytes of UTF-8", MaxEmojiBytes)
	}
	keycap := strings.ContainsRune(emoji, 0x20E3)
	pictographic := false
	for _, r := range emoji {
		ok, pict := emojiRune(r, keycap)
		if !ok {
			return Errorf(CodeInvalidEmoji, "%q is not an emoji", truncate(emoji, MaxEmojiBytes))
		}
		pictographic = pictographic || pict
	}
	if !pictographic {
		return Errorf(CodeInvalidEmoji, "%q is not an emoji", truncate(emoji, MaxEmojiBytes))
	}
	return nil
}

// emojiRune classifies r as CheckEmoji's rule does: whether it may be part
// of an emoji, and whether it is pictographic (not only a joiner, a
// variation selector or a keycap base).
func emojiRune(r rune, keycap bool) (ok, pictographic bool) {
	switch {
	case r == 0xA9 || r == 0xAE:
		return true, true
	case r == 0x200D || (r >= 0xFE00 && r <= 0xFE0F):
		return true, false
	case r >= 0x2000 && r != 0x2028 && r != 0x2029 && r != 0xFFFD && (r < 0x3000 || r > 0x303F || r == 0x3030 || r == 0x303D):
		return true, true
	case keycap && (r >= '0' && r <= '9' || r == '#' || r == '*'):
		return true, false
	}
	return false, false
}

// Mentions returns the users an @user token in body names, in order of
// first appearance, each once, at most MaxMentions. A token is "@"
// at the start of the body or after a character that is not a letter,
// digit or "_", followed by letters, digits, "_", "-" and "."; a
// trailing "." or "-" is not part of it (so "@bob." names bob). User ids
// with other characters (a space) cannot be mentioned. Mentions are
// resolved once, when a message is sent, and stored with it.
func Mentions(body string) []string {
	var out []string
	prevWord := false
	for i, r := range body {
		if r != '@' || prevWord {
			prevWord = mentionRune(r) && r != '-' && r != '.'
			continue
		}
		end := i + 1
		for j, c := range body[i+1:] {
			if !mentionRune(c) {
				break
			}
			end = i + 1 + j + utf8.RuneLen(c)
		}
		name := strings.TrimRight(body[i+1:end], ".-")
		if name != "" && len(name) <= 128 && !slices.Contains(out, name) {
			out = append(out, name)
			if len(out) == MaxMentions {
				return out
			}
		}
		prevWord = false
	}
	return out
}

func mentionRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '.'
}

// validCID accepts 1-64 printable ASCII characters.
func validCID(cid string) *Error {
	if cid == "" || len(cid) > MaxCIDLen {
		return Errorf(CodeInvalidCID, "cid must be 1-%d printable ASCII characters", MaxCIDLen)
	}
	for i := 0; i < len(cid); i++ {
		if cid[i] < 0x21 || cid[i] > 0x7e {
			return Errorf(CodeInvalidCID, "cid must be 1-%d printable ASCII characters", MaxCIDLen)
		}
	}
	return nil
}

// ValidCID reports whether cid is acceptable as a client message id.
func ValidCID(cid string) bool { return validCID(cid) == nil }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
