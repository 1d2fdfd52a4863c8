package ws

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"unicode/utf8"

	gws "github.com/gobwas/ws"
)

var testMask = [4]byte{0x12, 0x34, 0x56, 0x78}

// clientFrame encodes a masked client frame.
func clientFrame(t testing.TB, op gws.OpCode, fin bool, payload []byte) []byte {
	t.Helper()
	f := gws.NewFrame(op, fin, bytes.Clone(payload))
	b, err := gws.CompileFrame(gws.MaskFrameWith(f, testMask))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unmaskedFrame(t testing.TB, op gws.OpCode, payload []byte) []byte {
	t.Helper()
	b, err := gws.CompileFrame(gws.NewFrame(op, true, payload))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestReader(t *testing.T) {
	const max = 64
	big := bytes.Repeat([]byte("a"), max+1)
	type want struct {
		op      gws.OpCode
		payload string
	}
	tests := []struct {
		name    string
		input   func(t *testing.T) []byte
		want    []want
		wantErr error
	}{
		{
			name:  "text",
			input: func(t *testing.T) []byte { return clientFrame(t, gws.OpText, true, []byte(`{"type":"join"}`)) },
			want:  []want{{gws.OpText, `{"type":"join"}`}},
		},
		{
			name:  "binary",
			input: func(t *testing.T) []byte { return clientFrame(t, gws.OpBinary, true, []byte{0xff, 0x00}) },
			want:  []want{{gws.OpBinary, "\xff\x00"}},
		},
		{
			name: "fragmented text with a ping in between",
			input: func(t *testing.T) []byte {
				return join(
					clientFrame(t, gws.OpText, false, []byte("hel")),
					clientFrame(t, gws.OpPing, true, []byte("p")),
					clientFrame(t, gws.OpContinuation, false, []byte("lo ")),
					clientFrame(t, gws.OpContinuation, true, []byte("wörld")),
				)
			},
			want: []want{{gws.OpPing, "p"}, {gws.OpText, "hello wörld"}},
		},
		{
			name: "utf-8 split across fragments",
			input: func(t *testing.T) []byte {
				s := []byte("ö")
				return join(clientFrame(t, gws.OpText, false, s[:1]), clientFrame(t, gws.OpContinuation, true, s[1:]))
			},
			want: []want{{gws.OpText, "ö"}},
		},
		{
			name:  "exactly max",
			input: func(t *testing.T) []byte { return clientFrame(t, gws.OpText, true, big[:max]) },
			want:  []want{{gws.OpText, string(big[:max])}},
		},
		{
			name:    "too big",
			input:   func(t *testing.T) []byte { return clientFrame(t, gws.OpText, true, big) },
			wantErr: ErrTooBig,
		},
		{
			name: "too big across fragments",
			input: func(t *testing.T) []byte {
				return join(clientFrame(t, gws.OpText, false, big[:40]), clientFrame(t, gws.OpContinuation, true, big[:40]))
			},
			wantErr: ErrTooBig,
		},
		{
			name:    "invalid utf-8",
			input:   func(t *testing.T) []byte { return clientFrame(t, gws.OpText, true, []byte{'a', 0xff, 'b'}) },
			wantErr: ErrInvalidUTF8,
		},
		{
			name:    "unmasked",
			input:   func(t *testing.T) []byte { return unmaskedFrame(t, gws.OpText, []byte("x")) },
			wantErr: ErrProtocol,
		},
		{
			name:    "continuation without start",
			input:   func(t *testing.T) []byte { return clientFrame(t, gws.OpContinuation, true, []byte("x")) },
			wantErr: ErrProtocol,
		},
		{
			name: "new message inside fragmented one",
			input: func(t *testing.T) []byte {
				return join(clientFrame(t, gws.OpText, false, []byte("a")), clientFrame(t, gws.OpText, true, []byte("b")))
			},
			wantErr: ErrProtocol,
		},
		{
			name:    "fragmented ping",
			input:   func(t *testing.T) []byte { return clientFrame(t, gws.OpPing, false, nil) },
			wantErr: ErrProtocol,
		},
		{
			name:    "reserved opcode",
			input:   func(t *testing.T) []byte { return clientFrame(t, gws.OpCode(0x3), true, nil) },
			wantErr: ErrProtocol,
		},
		{
			name: "reserved bits",
			input: func(t *testing.T) []byte {
				b := clientFrame(t, gws.OpText, true, []byte("x"))
				b[0] |= 0x40
				return b
			},
			wantErr: ErrProtocol,
		},
		{
			name:  "close with code",
			input: func(t *testing.T) []byte { return clientFrame(t, gws.OpClose, true, []byte{0x03, 0xe8, 'b', 'y', 'e'}) },
			want:  []want{{gws.OpClose, "\x03\xe8bye"}},
		},
		{
			name:    "close with 1-byte payload",
			input:   func(t *testing.T) []byte { return clientFrame(t, gws.OpClose, true, []byte{0x03}) },
			wantErr: ErrProtocol,
		},
		{
			name:    "close with reserved code 1005",
			input:   func(t *testing.T) []byte { return clientFrame(t, gws.OpClose, true, []byte{0x03, 0xed}) },
			wantErr: ErrProtocol,
		},
		{
			name:    "truncated payload",
			input:   func(t *testing.T) []byte { b := clientFrame(t, gws.OpText, true, []byte("hello")); return b[:len(b)-2] },
			wantErr: io.ErrUnexpectedEOF,
		},
	}
	pool := NewPool()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.input(t)), max, pool)
			defer r.Release()
			for i, w := range tt.want {
				m, err := r.Next()
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if m.Op != w.op || string(m.Payload) != w.payload {
					t.Fatalf("message %d = %v %q, want %v %q", i, m.Op, m.Payload, w.op, w.payload)
				}
			}
			_, err := r.Next()
			want := tt.wantErr
			if want == nil {
				want = io.EOF
			}
			if !errors.Is(err, want) {
				t.Fatalf("final error = %v, want %v", err, want)
			}
		})
	}
}

func TestCloseCode(t *testing.T) {
	tests := []struct {
		err  error
		want uint16
	}{
		{ErrTooBig, CodeTooBig},
		{ErrInvalidUTF8, CodeInvalidData},
		{ErrProtocol, CodeProtocolError},
		{io.EOF, 0},
	}
	for _, tt := range tests {
		if got := CloseCode(tt.err); got != tt.want {
			t.Errorf("CloseCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// FuzzReader feeds arbitrary bytes to the frame reader: it must never
// panic, never return a message over the limit, and never return a text
// message that is not valid UTF-8.
func FuzzReader(f *testing.F) {
	f.Add(clientFrame(f, gws.OpText, true, []byte(`{"type":"message","room":"general","body":"hi","cid":"1"}`)))
	f.Add(join(clientFrame(f, gws.OpText, false, []byte("he")), clientFrame(f, gws.OpPing, true, nil), clientFrame(f, gws.OpContinuation, true, []byte("llo"))))
	f.Add(clientFrame(f, gws.OpBinary, true, []byte{0, 1, 2}))
	f.Add(clientFrame(f, gws.OpClose, true, []byte{0x03, 0xe8}))
	f.Add(clientFrame(f, gws.OpText, true, []byte{0xff}))
	f.Add(clientFrame(f, gws.OpText, true, bytes.Repeat([]byte("x"), 300)))
	f.Add(unmaskedFrame(f, gws.OpText, []byte("x")))
	f.Add([]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0x81, 0xfe, 0xff, 0xff, 1, 2, 3, 4})
	const max = 256
	pool := NewPool()
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), max, pool)
		defer r.Release()
		for range 64 {
			m, err := r.Next()
			if err != nil {
				return
			}
			if len(m.Payload) > max {
				t.Fatalf("payload of %d bytes exceeds the limit %d", len(m.Payload), max)
			}
			if m.Op == gws.OpText && !utf8.Valid(m.Payload) {
				t.Fatalf("invalid UTF-8 text returned: %q", m.Payload)
			}
			if m.Op.IsControl() && len(m.Payload) > 125 {
				t.Fatalf("control payload of %d bytes", len(m.Payload))
			}
		}
	})
}

// cycleReader reads b over and over, without allocating.
type cycleReader struct {
	b   []byte
	off int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	if c.off == len(c.b) {
		c.off = 0
	}
	n := copy(p, c.b[c.off:])
	c.off += n
	return n, nil
}

// BenchmarkReaderNext measures one Next over a mix of a whole text message,
// a fragmented one with a ping inside and a close frame (watch allocs/op:
// Next is on every connection's read path).
func BenchmarkReaderNext(b *testing.B) {
	in := join(
		clientFrame(b, gws.OpText, true, []byte(`{"type":"message","room":"general","body":"hi","cid":"1"}`)),
		clientFrame(b, gws.OpText, false, []byte(`{"type":"mess`)),
		clientFrame(b, gws.OpPing, true, []byte("p")),
		clientFrame(b, gws.OpContinuation, true, []byte(`age","room":"general","body":"hö","cid":"2"}`)),
		clientFrame(b, gws.OpClose, true, []byte{0x03, 0xe8}),
	)
	r := NewReader(&cycleReader{b: in}, 4096, NewPool())
	defer r.Release()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
