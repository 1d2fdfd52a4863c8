package api

import (
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// The SSE sink sheds typing and presence past half its bound, never
// messages; past the bound the stream must end (and nothing more is
// queued); Close ends it after what is queued.
func TestSSESink(t *testing.T) {
	msg := func(n int) *frame.Frame {
		return frame.Must(wire.TypeMessage, wire.MessageFrame{Type: wire.TypeMessage, Message: wire.Message{Body: strings.Repeat("x", n)}}, frame.Essential)
	}
	typing := frame.Must(wire.TypeTyping, wire.Typing{Type: wire.TypeTyping, Room: "r", User: "bob", State: "on"}, frame.Sheddable)
	tests := []struct {
		name     string
		sends    []*frame.Frame
		want     []bool
		queued   int // frames taken
		overflow bool
	}{
		{"messages fit", []*frame.Frame{msg(100), msg(100)}, []bool{true, true}, 2, false},
		{"typing shed past half", []*frame.Frame{msg(600), typing, msg(100)}, []bool{true, false, true}, 2, false},
		{"typing fits below half", []*frame.Frame{typing, msg(100)}, []bool{true, true}, 2, false},
		{"over the bound", []*frame.Frame{msg(600), msg(600), msg(10)}, []bool{true, false, false}, 0, true},
		{"one big frame into an empty queue", []*frame.Frame{msg(2000)}, []bool{true}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSSESink(1000)
			for i, f := range tt.sends {
				if got := s.Send(f); got != tt.want[i] {
					t.Fatalf("send %d: %v, want %v", i, got, tt.want[i])
				}
			}
			if tt.queued > 0 && s.QueuedBytes() == 0 {
				t.Fatal("QueuedBytes 0 with frames queued")
			}
			frames, st := s.take()
			if len(frames) != tt.queued || st.overflow != tt.overflow {
				t.Fatalf("took %d frames, overflow %v; want %d, %v", len(frames), st.overflow, tt.queued, tt.overflow)
			}
			if s.QueuedBytes() != 0 {
				t.Fatalf("QueuedBytes %d after take", s.QueuedBytes())
			}
		})
	}
	t.Run("close", func(t *testing.T) {
		s := newSSESink(1000)
		s.Send(msg(10))
		s.Close(1012, "restart")
		s.Close(1001, "again")
		if s.Send(msg(10)) {
			t.Fatal("Send after Close queued a frame")
		}
		select {
		case <-s.notify:
		default:
			t.Fatal("Close did not wake the writer")
		}
		frames, st := s.take()
		if len(frames) != 1 || st.closeCode != 1012 {
			t.Fatalf("after Close: %d frames, code %d", len(frames), st.closeCode)
		}
	})
}
