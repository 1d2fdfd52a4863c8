package hist

import (
	"math"
	"testing"
	"time"
)

func TestIndexMonotonic(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 31, 32, 33, 63, 64, 65, 1000, 1 << 20, 1<<40 + 12345, math.MaxUint64} {
		i := index(v)
		if i < prev || i >= Buckets {
			t.Fatalf("index(%d) = %d after %d", v, i, prev)
		}
		if lo := lower(i); lo > v {
			t.Fatalf("lower(index(%d)) = %d > value", v, lo)
		}
		if i+1 < Buckets {
			if hi := lower(i + 1); hi <= v {
				t.Fatalf("lower(index(%d)+1) = %d <= value", v, hi)
			}
		}
		prev = i
	}
}

func TestQuantiles(t *testing.T) {
	tests := []struct {
		name string
		vals []time.Duration
		q    float64
		want time.Duration
	}{
		{"single", []time.Duration{time.Millisecond}, 0.5, time.Millisecond},
		{"median of 1..100ms", seq(100, time.Millisecond), 0.5, 50 * time.Millisecond},
		{"p99 of 1..100ms", seq(100, time.Millisecond), 0.99, 99 * time.Millisecond},
		{"max", seq(100, time.Millisecond), 1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Hist
			for _, v := range tt.vals {
				h.Record(v)
			}
			got := h.Snapshot().Quantile(tt.q)
			if math.Abs(float64(got-tt.want)) > 0.04*float64(tt.want) {
				t.Fatalf("q%.2f = %v, want ~%v", tt.q, got, tt.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	var a, b Hist
	for _, v := range seq(50, time.Millisecond) {
		a.Record(v)
	}
	for _, v := range seq(50, time.Millisecond) {
		b.Record(v + 50*time.Millisecond)
	}
	m := a.Snapshot().Merge(b.Snapshot())
	if m.Count() != 100 || m.Max != int64(100*time.Millisecond) {
		t.Fatalf("merged count %d max %d", m.Count(), m.Max)
	}
	if got := m.Quantile(0.5); got < 48*time.Millisecond || got > 52*time.Millisecond {
		t.Fatalf("merged median %v", got)
	}
	var empty Snapshot
	if empty.Quantile(0.5) != 0 {
		t.Fatal("empty quantile not 0")
	}
}

func seq(n int, step time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * step
	}
	return out
}
