// Package hist records latencies in a fixed-size log-linear histogram that
// many goroutines update without locks and that merges across processes.
// Values are nanoseconds; each power of two is split into 32 sub-buckets,
// so a reported quantile is within ~3% of the true value.
package hist

import (
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits  = 5
	subCount = 1 << subBits
	// Buckets covers every uint64 value.
	Buckets = (64 - subBits + 1) * subCount
)

// Hist is a concurrent latency histogram. The zero value is ready to use.
type Hist struct {
	counts [Buckets]atomic.Uint64
	max    atomic.Int64
}

// index maps a value to its bucket.
func index(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - subBits // >= 1
	return e*subCount + int(v>>(e-1)) - subCount
}

// lower is the smallest value of bucket i.
func lower(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	e := i / subCount
	m := uint64(i%subCount + subCount)
	return m << (e - 1)
}

// Record adds one observation of d (negative values count as zero).
func (h *Hist) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[index(uint64(d))].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Snapshot is a serialisable copy of a histogram: Counts holds
// (bucket, count) pairs of the non-empty buckets.
type Snapshot struct {
	Counts [][2]uint64 `json:"counts,omitempty"`
	Max    int64       `json:"max_ns"`
}

// Snapshot copies the current counts.
func (h *Hist) Snapshot() Snapshot {
	var s Snapshot
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Counts = append(s.Counts, [2]uint64{uint64(i), c})
		}
	}
	s.Max = h.max.Load()
	return s
}

// Merge adds the observations of o to s and returns the result.
func (s Snapshot) Merge(o Snapshot) Snapshot {
	m := map[uint64]uint64{}
	for _, c := range s.Counts {
		m[c[0]] += c[1]
	}
	for _, c := range o.Counts {
		m[c[0]] += c[1]
	}
	out := Snapshot{Max: max(s.Max, o.Max)}
	for i := 0; i < Buckets; i++ {
		if c := m[uint64(i)]; c > 0 {
			out.Counts = append(out.Counts, [2]uint64{uint64(i), c})
		}
	}
	return out
}

// Count is the number of observations.
func (s Snapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c[1]
	}
	return n
}

// Quantile returns the value below which a fraction q of the observations
// fall (the midpoint of its bucket, capped at Max); 0 when empty.
func (s Snapshot) Quantile(q float64) time.Duration {
	n := s.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for _, c := range s.Counts {
		seen += c[1]
		if seen >= rank {
			i := int(c[0])
			lo, hi := lower(i), lower(i+1)
			v := time.Duration(lo + (hi-lo)/2)
			if v > time.Duration(s.Max) {
				v = time.Duration(s.Max)
			}
			return v
		}
	}
	return time.Duration(s.Max)
}
