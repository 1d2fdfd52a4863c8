// Package reply encodes history's page replies. A page is encoded for every
// recent and since request, so it is appended field by field instead of
// through reflection; the output is byte for byte what encoding/json
// produces for the same wire.Page (a fuzz test holds it to that).
package reply

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// AppendPage appends the JSON encoding of p to dst.
func AppendPage(dst []byte, p wire.Page) []byte {
	dst = append(dst, `{"room":`...)
	dst = appendString(dst, p.Room)
	dst = append(dst, `,"items":`...)
	if p.Items == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range p.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendMessage(dst, &p.Items[i])
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"has_more":`...)
	dst = strconv.AppendBool(dst, p.HasMore)
	dst = append(dst, `,"recovered":`...)
	dst = strconv.AppendBool(dst, p.Recovered)
	dst = append(dst, `,"last":`...)
	dst = strconv.AppendUint(dst, p.Last, 10)
	return append(dst, '}')
}

// plain reports whether m has none of the fields after CID (a chat or
// system message with no reply, mentions or changes folded in): the
// common case, appended field by field.
func plain(m *wire.Message) bool {
	return m.ReplyTo == 0 && len(m.Mentions) == 0 && m.Target == 0 && m.Emoji == "" && m.On == nil &&
		m.Edited == 0 && !m.Deleted && len(m.Reactions) == 0 && m.Reply == nil
}

// AppendMessage appends the JSON encoding of m to dst. A message with
// conversation fields (reply, mentions, a change event's target, folded
// edits and reactions) is rarer and goes through encoding/json.
func AppendMessage(dst []byte, m *wire.Message) []byte {
	if !plain(m) {
		b, err := json.Marshal(m)
		if err == nil {
			return append(dst, b...)
		}
		// A wire.Message always marshals; were it not to, the plain
		// fields still make a valid message.
	}
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, m.ID, 10)
	dst = append(dst, `,"prev":`...)
	dst = strconv.AppendUint(dst, m.Prev, 10)
	dst = append(dst, `,"room":`...)
	dst = appendString(dst, m.Room)
	dst = append(dst, `,"user":`...)
	dst = appendString(dst, m.User)
	dst = append(dst, `,"body":`...)
	dst = appendString(dst, m.Body)
	dst = append(dst, `,"kind":`...)
	dst = appendString(dst, m.Kind)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, m.TS, 10)
	if m.CID != "" {
		dst = append(dst, `,"cid":`...)
		dst = appendString(dst, m.CID)
	}
	return append(dst, '}')
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does:
// HTML-sensitive characters, control characters, U+2028 and U+2029
// escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
