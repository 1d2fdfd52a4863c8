package backoff_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/shared/backoff"
)

func TestDelay(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		p    backoff.Policy
		n    int
		want time.Duration
	}{
		{"first", backoff.Policy{Initial: 250 * ms, Max: 5 * time.Second}, 1, 250 * ms},
		{"zero counts as first", backoff.Policy{Initial: 250 * ms, Max: 5 * time.Second}, 0, 250 * ms},
		{"second doubles", backoff.Policy{Initial: 250 * ms, Max: 5 * time.Second}, 2, 500 * ms},
		{"fifth", backoff.Policy{Initial: 250 * ms, Max: 5 * time.Second}, 5, 4 * time.Second},
		{"capped", backoff.Policy{Initial: 250 * ms, Max: 5 * time.Second}, 6, 5 * time.Second},
		{"capped far out", backoff.Policy{Initial: 250 * ms, Max: 10 * time.Second}, 1000, 10 * time.Second},
		{"cap not a doubling", backoff.Policy{Initial: 100 * ms, Max: 150 * ms}, 2, 150 * ms},
		{"no max means initial", backoff.Policy{Initial: 100 * ms}, 3, 100 * ms},
		{"max below initial", backoff.Policy{Initial: 100 * ms, Max: 50 * ms}, 3, 100 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Delay(tc.n); got != tc.want {
				t.Errorf("Delay(%d) = %v, want %v", tc.n, got, tc.want)
			}
		})
	}
}

func TestJitterBounds(t *testing.T) {
	for _, j := range []float64{0.1, 0.5, 1, 7} {
		p := backoff.Policy{Initial: time.Second, Max: 8 * time.Second, Jitter: j}
		frac := min(j, 1)
		for n := 1; n <= 5; n++ {
			exact := backoff.Policy{Initial: p.Initial, Max: p.Max}.Delay(n)
			lo := exact - time.Duration(frac*float64(exact))
			for range 200 {
				if d := p.Delay(n); d < lo || d > exact {
					t.Fatalf("jitter %v, retry %d: %v outside [%v, %v]", j, n, d, lo, exact)
				}
			}
		}
	}
	if d := (backoff.Policy{Initial: time.Second, Jitter: -1}).Delay(1); d != time.Second {
		t.Errorf("negative jitter: %v, want exact", d)
	}
}

func TestBackoffNextReset(t *testing.T) {
	b := backoff.Policy{Initial: time.Millisecond, Max: 4 * time.Millisecond}.Start()
	var got []time.Duration
	for range 4 {
		got = append(got, b.Next())
	}
	b.Reset()
	got = append(got, b.Next())
	want := []time.Duration{1, 2, 4, 4, 1}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", got, want)
		}
	}
}

func TestSleep(t *testing.T) {
	if !backoff.Sleep(context.Background(), time.Microsecond) {
		t.Error("Sleep with a live context did not wait fully")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if backoff.Sleep(ctx, time.Hour) {
		t.Error("Sleep with an ended context reported a full wait")
	}
}

var errDown = errors.New("down")

func TestRetry(t *testing.T) {
	p := backoff.Policy{Initial: time.Microsecond, Max: 4 * time.Microsecond}
	errFatal := errors.New("fatal")
	for _, tc := range []struct {
		name    string
		results []error // op's results in turn; nil ends
		want    error
		waits   []time.Duration
	}{
		{"at once", []error{nil}, nil, nil},
		{"after failures", []error{errDown, errDown, errDown, errDown, nil}, nil,
			[]time.Duration{1000, 2000, 4000, 4000}},
		{"permanent", []error{errDown, backoff.Permanent(errFatal)}, errFatal, []time.Duration{1000}},
		{"permanent wrapped", []error{fmt.Errorf("ensure: %w", backoff.Permanent(errFatal))}, errFatal, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			var waits []time.Duration
			err := backoff.Retry(context.Background(), p, func(context.Context) error {
				calls++
				return tc.results[calls-1]
			}, func(err error, wait time.Duration) {
				if !errors.Is(err, errDown) {
					t.Errorf("notified of %v", err)
				}
				waits = append(waits, wait)
			})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Retry = %v, want %v", err, tc.want)
			}
			if calls != len(tc.results) {
				t.Errorf("%d calls, want %d", calls, len(tc.results))
			}
			if fmt.Sprint(waits) != fmt.Sprint(tc.waits) {
				t.Errorf("waits %v, want %v", waits, tc.waits)
			}
		})
	}
	if backoff.Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
}

func TestRetryContext(t *testing.T) {
	t.Run("ended before: one attempt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		calls := 0
		err := backoff.Retry(ctx, backoff.Policy{Initial: time.Hour}, func(context.Context) error {
			calls++
			return errDown
		}, nil)
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Fatalf("Retry = %v after %d calls, want context.Canceled after 1", err, calls)
		}
	})
	t.Run("ended during a wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		err := backoff.Retry(ctx, backoff.Policy{Initial: time.Hour}, func(context.Context) error {
			return errDown
		}, func(error, time.Duration) { cancel() })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Retry = %v, want context.Canceled", err)
		}
	})
	t.Run("success wins over an ended context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := backoff.Retry(ctx, backoff.Policy{Initial: time.Hour}, func(context.Context) error { return nil }, nil); err != nil {
			t.Fatalf("Retry = %v, want nil", err)
		}
	})
}

func TestRetryResetAfter(t *testing.T) {
	p := backoff.Policy{Initial: time.Microsecond, Max: 8 * time.Microsecond, ResetAfter: time.Millisecond}
	calls := 0
	var waits []time.Duration
	err := backoff.Retry(context.Background(), p, func(context.Context) error {
		calls++
		switch calls {
		case 4:
			time.Sleep(2 * p.ResetAfter) // an attempt that held for a while
		case 6:
			return nil
		}
		return errDown
	}, func(_ error, wait time.Duration) { waits = append(waits, wait) })
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{1000, 2000, 4000, 1000, 2000}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
}
