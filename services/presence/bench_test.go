package presence_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// BenchmarkJoinFanout10k joins 10,000 users to one room through the real
// service over NATS and reports what each join costs the room's members:
// one presence diff per join (its size in bytes) instead of a full roster
// (whose size at 10,000 members is reported for comparison), and the join
// rate the service sustains. Figures go in docs/benchmarks.md; nothing is
// asserted about time.
//
//	go test -run '^$' -bench JoinFanout10k -benchtime 1x ./services/presence
func BenchmarkJoinFanout10k(b *testing.B) {
	const members = 10000
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		e := newEnv(b, shortProvision())
		cfg := short()
		cfg.Grace = time.Minute
		e.start(cfg)
		rec := e.record("huge")
		next := make(chan int)
		var wg sync.WaitGroup
		b.StartTimer()
		start := time.Now()
		for range 32 {
			wg.Go(func() {
				for i := range next {
					u := fmt.Sprintf("member%05d", i)
					e.join("huge", u, "c"+u, "edge-a")
				}
			})
		}
		for i := range members {
			next <- i
		}
		close(next)
		wg.Wait()
		poll(b, 120*time.Second, "join diffs", func() error {
			if got := rec.count(wire.EventJoin, ""); got != members {
				return fmt.Errorf("%d join events", got)
			}
			return nil
		})
		elapsed := time.Since(start)
		b.StopTimer()
		diff, _ := json.Marshal(wire.Presence{Type: wire.TypePresence, Room: "huge", Event: wire.EventJoin, User: "member09999", Online: members})
		users := make([]string, members)
		for i := range users {
			users[i] = fmt.Sprintf("member%05d", i)
		}
		full, _ := json.Marshal(wire.Roster{Type: wire.TypeRoster, Room: "huge", Users: users, Online: members})
		b.ReportMetric(float64(members)/elapsed.Seconds(), "joins/s")
		b.ReportMetric(float64(len(diff)), "diff-bytes/member/join")
		b.ReportMetric(float64(len(full)), "full-roster-bytes")
		b.ReportMetric(float64(rec.total())/members, "frames/join")
	}
}
