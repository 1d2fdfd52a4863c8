// Package frame holds server→client frames encoded once and shared by every
// recipient: the JSON of a protocol v1 frame, its WebSocket encoding and its
// Server-Sent Events encoding, each computed at most once per frame.
package frame

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
)

// Class says how a frame may be treated under back-pressure.
type Class uint8

const (
	// Essential frames (messages, acks, history, errors, control frames) are
	// never shed; a connection that cannot take them is closed instead.
	Essential Class = iota
	// Sheddable frames (typing, presence) are dropped first when a
	// connection's outbound queue is over its soft bound.
	Sheddable
)

// WebSocket opcodes of the frames this package encodes.
const (
	OpText  byte = 0x1
	OpClose byte = 0x8
	OpPing  byte = 0x9
	OpPong  byte = 0xa
)

// Frame is an immutable, shareable outbound frame.
type Frame struct {
	// Type is the protocol frame type ("message", "typing", …) or the
	// control frame name ("ping", "pong", "close").
	Type string
	// JSON is the protocol frame; nil for control frames.
	JSON []byte
	// ID is the message id of a "message" frame (the SSE event id).
	ID uint64
	// Class decides whether the frame may be shed.
	Class Class

	wsOnce  sync.Once
	ws      []byte
	sseOnce sync.Once
	sse     []byte
}

// New marshals v (a wire frame) into a frame of type typ.
func New(typ string, v any, class Class) (*Frame, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal %s frame: %w", typ, err)
	}
	return &Frame{Type: typ, JSON: b, Class: class}, nil
}

// Must is New for values that cannot fail to marshal (wire structs).
func Must(typ string, v any, class Class) *Frame {
	f, err := New(typ, v, class)
	if err != nil {
		panic(err)
	}
	return f
}

// Control returns a WebSocket control frame (ping, pong, close) with
// payload (at most 125 bytes).
func Control(op byte, payload []byte) *Frame {
	name := "control"
	switch op {
	case OpPing:
		name = "ping"
	case OpPong:
		name = "pong"
	case OpClose:
		name = "close"
	}
	f := &Frame{Type: name, Class: Essential}
	f.wsOnce.Do(func() { f.ws = encodeWS(op, payload) })
	return f
}

// Close returns a close frame carrying code and reason (reason is cut to
// fit the 125-byte control frame limit).
func Close(code uint16, reason string) *Frame {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(p, code)
	copy(p[2:], reason)
	return Control(OpClose, p)
}

// WS is the frame as an unmasked, final WebSocket text frame (header and
// payload in one slice).
func (f *Frame) WS() []byte {
	f.wsOnce.Do(func() { f.ws = encodeWS(OpText, f.JSON) })
	return f.ws
}

// SSE is the frame as a Server-Sent Event: "event: <type>", an "id:" line
// for messages, and the JSON as data.
func (f *Frame) SSE() []byte {
	f.sseOnce.Do(func() {
		b := make([]byte, 0, len(f.JSON)+48)
		if f.ID != 0 {
			b = append(b, "id: "...)
			b = strconv.AppendUint(b, f.ID, 10)
			b = append(b, '\n')
		}
		b = append(b, "event: "...)
		b = append(b, f.Type...)
		b = append(b, "\ndata: "...)
		b = append(b, f.JSON...) // JSON from encoding/json never contains a raw newline
		b = append(b, "\n\n"...)
		f.sse = b
	})
	return f.sse
}

// encodeWS builds header+payload of an unfragmented server frame.
func encodeWS(op byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n <= 125:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xffff:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | op
	return append(b, payload...)
}
