package frame

import (
	"bytes"
	"io"
	"strings"
	"testing"

	gws "github.com/gobwas/ws"
)

func TestWSEncoding(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		f := &Frame{Type: "message", JSON: bytes.Repeat([]byte("a"), n)}
		got, err := readFrame(bytes.NewReader(f.WS()))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !got.Header.Fin || got.Header.Masked || got.Header.OpCode != gws.OpText || !bytes.Equal(got.Payload, f.JSON) {
			t.Fatalf("%d bytes: header %+v", n, got.Header)
		}
		if a, b := f.WS(), f.WS(); &a[0] != &b[0] {
			t.Fatal("WS encoded twice")
		}
	}
}

func TestSSEAndClose(t *testing.T) {
	f := Must("message", map[string]string{"type": "message", "body": "line1\nline2"}, Essential)
	f.ID = 42
	sse := string(f.SSE())
	if !strings.HasPrefix(sse, "id: 42\nevent: message\ndata: {") || !strings.HasSuffix(sse, "}\n\n") || strings.Count(sse, "\n") != 4 {
		t.Fatalf("sse %q", sse)
	}
	c := Close(1012, strings.Repeat("r", 200))
	got, err := readFrame(bytes.NewReader(c.WS()))
	if err != nil || got.Header.OpCode != gws.OpClose || len(got.Payload) != 125 {
		t.Fatalf("close frame %+v, %v", got.Header, err)
	}
	if code, _ := gws.ParseCloseFrameData(got.Payload); code != 1012 {
		t.Fatalf("code %d", code)
	}
}

// readFrame reads one unmasked server frame (test input is our own).
func readFrame(r io.Reader) (gws.Frame, error) {
	h, err := gws.ReadHeader(r)
	if err != nil {
		return gws.Frame{}, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return gws.Frame{}, err
	}
	return gws.Frame{Header: h, Payload: p}, nil
}
