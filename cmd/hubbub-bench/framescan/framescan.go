// Package framescan reads the few fields the load tool needs out of a server
// frame of protocol v1 without allocating: the frame type, room, ack/error
// fields and, for a message frame, the message id, prev, kind and body.
// Strings are returned as raw (still JSON-escaped) sub-slices of the input.
// Frames the tool needs in full (history) are decoded with encoding/json.
package framescan

import (
	"errors"
	"fmt"
)

// ErrSyntax is returned for input that is not a well-formed JSON object.
var ErrSyntax = errors.New("framescan: malformed JSON")

// maxDepth bounds nesting of skipped values.
const maxDepth = 32

// Frame holds the fields read from one server frame. Byte slices alias the
// input.
type Frame struct {
	Type []byte
	Room []byte
	CID  []byte // ack and error frames
	ID   uint64 // ack frames
	Code []byte // error frames

	// Message fields (message frames).
	MsgID   uint64
	MsgPrev uint64
	Kind    []byte
	Body    []byte
	User    []byte
}

// Scan fills f from data, a server frame. Unknown fields are skipped.
func Scan(data []byte, f *Frame) error {
	*f = Frame{}
	s := scanner{b: data}
	if err := s.object(func(key []byte) error {
		switch string(key) {
		case "type":
			v, err := s.str()
			f.Type = v
			return err
		case "room":
			v, err := s.str()
			f.Room = v
			return err
		case "cid":
			v, err := s.str()
			f.CID = v
			return err
		case "code":
			v, err := s.str()
			f.Code = v
			return err
		case "id":
			v, err := s.uint()
			f.ID = v
			return err
		case "message":
			if s.peek() != '{' {
				return s.skip(0)
			}
			return s.object(func(key []byte) error {
				switch string(key) {
				case "id":
					v, err := s.uint()
					f.MsgID = v
					return err
				case "prev":
					v, err := s.uint()
					f.MsgPrev = v
					return err
				case "kind":
					v, err := s.str()
					f.Kind = v
					return err
				case "body":
					v, err := s.str()
					f.Body = v
					return err
				case "user":
					v, err := s.str()
					f.User = v
					return err
				}
				return s.skip(1)
			})
		}
		return s.skip(0)
	}); err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.b) {
		return fmt.Errorf("%w: trailing data at %d", ErrSyntax, s.i)
	}
	return nil
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrSyntax, what, s.i)
}

// object walks one object, calling field for each key with the scanner
// positioned at the value; field must consume the value.
func (s *scanner) object(field func(key []byte) error) error {
	if s.peek() != '{' {
		return s.fail("expected object")
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return err
		}
		if s.peek() != ':' {
			return s.fail("expected colon")
		}
		s.i++
		if err := field(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.fail("expected comma or end of object")
		}
	}
}

// str reads a string and returns its raw contents (escapes kept).
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.fail("expected string")
	}
	s.i++
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, nil
		case c == '\\':
			s.i += 2
		case c < 0x20:
			return nil, s.fail("control character in string")
		default:
			s.i++
		}
	}
	return nil, s.fail("unterminated string")
}

// uint reads a non-negative integer.
func (s *scanner) uint() (uint64, error) {
	s.ws()
	start := s.i
	var v uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		d := uint64(s.b[s.i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, s.fail("integer overflow")
		}
		v = v*10 + d
		s.i++
	}
	if s.i == start {
		return 0, s.fail("expected unsigned integer")
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			return 0, s.fail("expected integer")
		}
	}
	return v, nil
}

// skip consumes any value.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.fail("nesting too deep")
	}
	switch c := s.peek(); {
	case c == '"':
		_, err := s.str()
		return err
	case c == '{':
		return s.object(func([]byte) error { return s.skip(depth + 1) })
	case c == '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				return s.fail("expected comma or end of array")
			}
		}
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.i
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '-', '+', '.', 'e', 'E', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
				s.i++
				continue
			}
			break
		}
		if s.i == start {
			return s.fail("bad number")
		}
		return nil
	default:
		return s.fail("unexpected character")
	}
}

func (s *scanner) lit(word string) error {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.fail("bad literal")
	}
	s.i += len(word)
	return nil
}
