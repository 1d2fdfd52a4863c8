package ws

import "sync"

// poolClasses is the number of size classes: 128 B × 4^i for i < poolClasses
// (128 B … 128 KiB).
const poolClasses = 6

func classSize(i int) int { return 128 << (2 * i) }

// Pool hands out read buffers in a few size classes so that connections
// hold a buffer only while a frame is being processed.
type Pool struct {
	classes [poolClasses]sync.Pool
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{} }

// Get returns a slice of length n (capacity possibly larger).
func (p *Pool) Get(n int) []byte {
	for i := range poolClasses {
		if c := classSize(i); n <= c {
			if b, ok := p.classes[i].Get().(*[]byte); ok {
				return (*b)[:n]
			}
			return make([]byte, n, c)
		}
	}
	return make([]byte, n)
}

// Put gives b back; buffers not from Get's classes are dropped.
func (p *Pool) Put(b []byte) {
	c := cap(b)
	for i := range poolClasses {
		if c == classSize(i) {
			b = b[:0]
			p.classes[i].Put(&b)
			return
		}
	}
}
