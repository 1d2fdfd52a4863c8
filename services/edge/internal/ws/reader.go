package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	gws "github.com/gobwas/ws"
)

// Errors returned by Reader.Next. Each maps to a close code (CloseCode).
var (
	// ErrTooBig: a frame or reassembled message exceeds the limit (1009).
	ErrTooBig = errors.New("websocket: message too big")
	// ErrInvalidUTF8: a text message or close reason is not UTF-8 (1007).
	ErrInvalidUTF8 = errors.New("websocket: invalid UTF-8 in text")
	// ErrProtocol: the peer broke RFC 6455 framing rules (1002).
	ErrProtocol = errors.New("websocket: protocol error")
)

// Close codes used by the edge (RFC 6455 §7.4 and DESIGN §3).
const (
	CodeNormal        uint16 = 1000
	CodeGoingAway     uint16 = 1001
	CodeProtocolError uint16 = 1002
	CodeInvalidData   uint16 = 1007
	CodePolicy        uint16 = 1008
	CodeTooBig        uint16 = 1009
	CodeInternal      uint16 = 1011
	CodeRestart       uint16 = 1012
	CodeTryAgainLater uint16 = 1013
	CodeAuthRequired  uint16 = 4001
	CodeAuthInvalid   uint16 = 4002
	CodeForbidden     uint16 = 4003
)

// CloseCode is the close code to send for a Reader error (0: none, the
// transport failed).
func CloseCode(err error) uint16 {
	switch {
	case errors.Is(err, ErrTooBig):
		return CodeTooBig
	case errors.Is(err, ErrInvalidUTF8):
		return CodeInvalidData
	case errors.Is(err, ErrProtocol):
		return CodeProtocolError
	}
	return 0
}

// Message is one complete data message or one control frame.
type Message struct {
	// Op is OpText, OpBinary, OpClose, OpPing or OpPong.
	Op gws.OpCode
	// Payload is unmasked; it is only valid until the next call to Next.
	Payload []byte
}

// Reader reads client→server frames from r: it checks masking, reserved
// bits and opcodes, enforces the size limit before reading a payload,
// reassembles fragmented messages, validates the UTF-8 of text messages and
// close reasons, and hands out control frames as they come. Payloads live in
// pooled buffers that are released on the next call, so an idle connection
// holds no read buffer.
type Reader struct {
	r    io.Reader
	max  int
	pool *Pool

	data   []byte // message being reassembled / last returned (pooled)
	ctrl   []byte // last returned control payload (pooled)
	hdr    [gws.MaxHeaderSize - 2]byte
	fragOp gws.OpCode
	frag   bool
}

// NewReader returns a Reader allowing messages of up to max bytes. pool may
// be shared by many readers.
func NewReader(r io.Reader, max int, pool *Pool) *Reader {
	return &Reader{r: r, max: max, pool: pool}
}

// Release returns held buffers to the pool (call when done with the reader).
func (r *Reader) Release() {
	if r.ctrl != nil {
		r.pool.Put(r.ctrl)
		r.ctrl = nil
	}
	if r.data != nil {
		r.pool.Put(r.data)
		r.data = nil
	}
}

// Next returns the next complete message or control frame.
func (r *Reader) Next() (Message, error) {
	r.releaseReturned()
	for {
		h, err := r.header()
		if err != nil {
			return Message{}, err
		}
		if h.OpCode.IsControl() {
			return r.control(h)
		}
		done, err := r.dataFrame(h)
		if err != nil {
			return Message{}, err
		}
		if !done {
			continue
		}
		if r.fragOp == gws.OpText && !utf8.Valid(r.data) {
			return Message{}, ErrInvalidUTF8
		}
		return Message{Op: r.fragOp, Payload: r.data}, nil
	}
}

// releaseReturned gives back the buffers of the payload the previous Next
// returned: the control payload, and the data message unless one is still
// being reassembled.
func (r *Reader) releaseReturned() {
	if r.ctrl != nil {
		r.pool.Put(r.ctrl)
		r.ctrl = nil
	}
	if !r.frag && r.data != nil {
		r.pool.Put(r.data)
		r.data = nil
	}
}

// header reads the next frame header and checks what every client frame
// must satisfy: no reserved bits, masked, a defined opcode.
func (r *Reader) header() (gws.Header, error) {
	h, err := gws.ReadHeaderBuffer(r.r, r.hdr[:])
	if err != nil {
		if errors.Is(err, gws.ErrHeaderLengthMSB) || errors.Is(err, gws.ErrHeaderLengthUnexpected) {
			return h, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		return h, err
	}
	if h.Rsv != 0 {
		return h, fmt.Errorf("%w: reserved bits set", ErrProtocol)
	}
	if !h.Masked {
		return h, fmt.Errorf("%w: client frame not masked", ErrProtocol)
	}
	if h.OpCode.IsReserved() {
		return h, fmt.Errorf("%w: reserved opcode %#x", ErrProtocol, byte(h.OpCode))
	}
	return h, nil
}

// control reads the payload of the control frame h (unfragmented, at most
// 125 bytes; a close payload must be valid) into r.ctrl.
func (r *Reader) control(h gws.Header) (Message, error) {
	if !h.Fin || h.Length > 125 {
		return Message{}, fmt.Errorf("%w: bad control frame", ErrProtocol)
	}
	p := r.pool.Get(int(h.Length))
	if _, err := io.ReadFull(r.r, p); err != nil {
		r.pool.Put(p)
		return Message{}, unexpected(err)
	}
	gws.Cipher(p, h.Mask, 0)
	r.ctrl = p
	if h.OpCode == gws.OpClose {
		if err := checkClose(p); err != nil {
			return Message{}, err
		}
	}
	return Message{Op: h.OpCode, Payload: p}, nil
}

// dataFrame appends the payload of the text, binary or continuation frame h
// to the message in r.data, enforcing the fragmentation rules and the size
// limit before reading. done reports that the frame was the message's last.
func (r *Reader) dataFrame(h gws.Header) (done bool, err error) {
	switch {
	case h.OpCode == gws.OpContinuation && !r.frag:
		return false, fmt.Errorf("%w: continuation without a start", ErrProtocol)
	case h.OpCode != gws.OpContinuation && r.frag:
		return false, fmt.Errorf("%w: new message inside a fragmented one", ErrProtocol)
	}
	have := len(r.data)
	if h.Length > int64(r.max-have) {
		return false, fmt.Errorf("%w: %d bytes, limit %d", ErrTooBig, int64(have)+h.Length, r.max)
	}
	r.grow(have, int(h.Length))
	if _, err := io.ReadFull(r.r, r.data[have:]); err != nil {
		return false, unexpected(err)
	}
	gws.Cipher(r.data[have:], h.Mask, 0)
	if h.OpCode != gws.OpContinuation {
		r.fragOp = h.OpCode
	}
	r.frag = !h.Fin
	return h.Fin, nil
}

// grow makes r.data have+n bytes long, keeping its first have bytes, taking
// a larger pooled buffer when the current one is too small.
func (r *Reader) grow(have, n int) {
	if r.data == nil {
		r.data = r.pool.Get(n)
	} else if cap(r.data)-have < n {
		grown := r.pool.Get(have + n)
		copy(grown, r.data)
		r.pool.Put(r.data)
		r.data = grown[:have]
	}
	r.data = r.data[:have+n]
}

// checkClose validates a close frame payload: empty, or a 2-byte code the
// peer may send plus a UTF-8 reason.
func checkClose(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(p) == 1 {
		return fmt.Errorf("%w: 1-byte close payload", ErrProtocol)
	}
	code := binary.BigEndian.Uint16(p)
	if code < 1000 || code == 1004 || code == 1005 || code == 1006 || code == 1015 || (code > 1015 && code < 3000) || code > 4999 {
		return fmt.Errorf("%w: close code %d", ErrProtocol, code)
	}
	if !utf8.Valid(p[2:]) {
		return ErrInvalidUTF8
	}
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
