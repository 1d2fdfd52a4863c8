package fanout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// TestCatchUpWaitsForTheSinkToRead: a long catch-up sends its next page
// only once the sink's backlog is below PaceBytes, and completes, with
// nothing lost, once the reader drains it.
func TestCatchUpWaitsForTheSinkToRead(t *testing.T) {
	be := newFakeLog(t, "r")
	var existing []wire.Message
	for i := range 6 {
		existing = append(existing, be.add(fmt.Sprint(i)))
	}
	h := startHub(t, fanout.Config{PageSize: 2, PaceBytes: 100, StallTimeout: wait}, be, nil)
	s := &sink{}
	s.backlog.Store(1000)
	joined := make(chan error, 1)
	go func() {
		_, err := h.Join(context.Background(), fanout.JoinRequest{Room: "r", User: "amy", Since: ptr(0), Sink: s})
		joined <- err
	}()
	natstest.Until(t, wait, "the first history frame", func() bool { return len(s.got()) > 0 })
	time.Sleep(200 * time.Millisecond) // several of pace's polls (at most 50 ms apart)
	if n := len(s.got()); n != 1 {
		t.Fatalf("%d frames sent while the backlog is above PaceBytes, want the first only", n)
	}
	select {
	case err := <-joined:
		t.Fatalf("join returned (%v) while the sink was not reading", err)
	default:
	}
	s.backlog.Store(0)
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	v := s.view(t)
	if len(v.histories) != 3 {
		t.Fatalf("%d history frames, want 3 pages of 2", len(v.histories))
	}
	chained(t, v.msgs, linked(0, existing...))
}
