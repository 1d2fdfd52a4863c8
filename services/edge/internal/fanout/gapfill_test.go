package fanout_test

import (
	"testing"

	"github.com/hubbub-chat/hubbub/services/edge/internal/fanout"
)

// TestLiveGapFillFailure: when neither history nor the stream answers the
// gap fill, the live message is delivered anyway, with its prev showing
// the gap (the client re-joins with since), and the failure is counted.
func TestLiveGapFillFailure(t *testing.T) {
	be := newFakeLog(t, "r")
	obs := newObserver()
	h := startHub(t, fanout.Config{}, be, obs)
	s := &sink{}
	join(t, h, "r", "amy", nil, s)
	m0 := be.publish(t, "m0")
	lastDelivered(t, h, "r", m0.ID)
	be.set(func(f *fakeLog) { f.historyDown, f.streamDown = true, true })
	be.add("missed0")
	be.add("missed1")
	next := be.publish(t, "next")
	lastDelivered(t, h, "r", next.ID)
	chained(t, s.view(t).live, append(linked(0, m0), next))
	if next.Prev == m0.ID {
		t.Fatal("the test's live message has no gap before it")
	}
	if n := obs.drops("gap_fill_failed"); n != 1 {
		t.Fatalf("gap_fill_failed drops %d, want 1", n)
	}
	if n := obs.gapFilled(); n != 0 {
		t.Fatalf("gap filled %d, want 0", n)
	}
}
