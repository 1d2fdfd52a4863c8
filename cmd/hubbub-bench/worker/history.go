package worker

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/hist"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// history runs request loops against the history service over NATS and
// reports pages answered. Every reply is checked for a service error;
// every 64th is decoded in full and its item count checked.
func (f *fleet) history(spec *HistorySpec) (*Stats, error) {
	if len(spec.Rooms) == 0 || spec.Concurrency <= 0 {
		return nil, fmt.Errorf("%w: history needs rooms and concurrency", ErrBadSpec)
	}
	nc, err := nats.Connect(spec.NATSURL, nats.Name("hubbub-bench-history"))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", spec.NATSURL, err)
	}
	defer nc.Close()
	reqs := make([][]byte, len(spec.Rooms))
	for i, r := range spec.Rooms {
		reqs[i], _ = json.Marshal(wire.RecentRequest{Room: r, Limit: spec.Limit})
	}
	var pages, items, errs atomic.Int64
	var lat hist.Hist
	var firstErr atomic.Value
	start := time.Now()
	end := start.Add(spec.Duration)
	var wg sync.WaitGroup
	for w := 0; w < spec.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(end) && f.ctx.Err() == nil; i++ {
				t0 := time.Now()
				m, err := nc.Request(spec.Subject, reqs[i%len(reqs)], 5*time.Second)
				if err == nil && m.Header.Get("Nats-Service-Error-Code") != "" {
					err = fmt.Errorf("service error %s: %s", m.Header.Get("Nats-Service-Error-Code"), m.Header.Get("Nats-Service-Error"))
				}
				if err == nil && i%64 == 0 {
					var p wire.Page
					if err = json.Unmarshal(m.Data, &p); err == nil {
						items.Add(int64(len(p.Items)))
						if len(p.Items) != spec.Limit {
							err = fmt.Errorf("page of %s has %d items, want %s", p.Room, len(p.Items), strconv.Itoa(spec.Limit))
						}
					}
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat.Record(time.Since(t0))
				pages.Add(1)
			}
		}()
	}
	wg.Wait()
	s := f.stats(0, 0)
	s.Pages, s.PageItems, s.PageErrors = pages.Load(), items.Load(), errs.Load()
	s.PageTime = lat.Snapshot()
	s.Elapsed = time.Since(start)
	if e, ok := firstErr.Load().(string); ok && s.Pages == 0 {
		return s, fmt.Errorf("history requests failed: %s", e)
	}
	if e, ok := firstErr.Load().(string); ok {
		s.ErrorCodes["history: "+e] = s.PageErrors
	}
	return s, nil
}
