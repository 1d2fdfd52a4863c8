package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Benchmarks measure, never assert: run them with
//
//	HUBBUB_TEST_DATABASE_URL=postgres://… go test -run '^$' -bench . -benchtime 5s ./store
//
// Insert reports msgs/s (rows committed per second, summaries included);
// Recent and Since report one page of 50 per op.

const (
	benchRooms = 100
	benchBody  = 80
)

var benchBackends = []struct {
	name string
	open func(tb testing.TB) store.Store
}{
	{"sqlite", openSQLiteTB},
	{"postgres", openPostgresTB},
}

// benchStore opens a fresh store for b, closed when b ends.
func benchStore(b *testing.B, open func(tb testing.TB) store.Store) store.Store {
	b.Helper()
	s := open(b)
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func benchMessages(first uint64, n int) []wire.Message {
	body := strings.Repeat("x", benchBody)
	out := make([]wire.Message, n)
	for i := range out {
		id := first + uint64(i)
		out[i] = wire.Message{ID: id, Room: fmt.Sprintf("room-%03d", id%benchRooms), User: "user-" + fmt.Sprint(id%997),
			Body: body, Kind: wire.KindMessage, TS: time.Now().UnixMilli(), CID: fmt.Sprintf("c%d", id)}
	}
	return out
}

func BenchmarkInsert(b *testing.B) {
	for _, be := range benchBackends {
		for _, batch := range []int{100, 500, 2000} {
			b.Run(fmt.Sprintf("%s/batch=%d", be.name, batch), func(b *testing.B) {
				s := benchStore(b, be.open)
				ctx := context.Background()
				next := uint64(1)
				b.ResetTimer()
				for b.Loop() {
					msgs := benchMessages(next, batch)
					next += uint64(batch)
					if _, err := s.Insert(ctx, msgs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// filled returns a store holding perRoom messages in each bench room.
func filled(b *testing.B, open func(tb testing.TB) store.Store, perRoom int) store.Store {
	b.Helper()
	s := benchStore(b, open)
	ctx := context.Background()
	total := perRoom * benchRooms
	for next := 1; next <= total; next += 2000 {
		if _, err := s.Insert(ctx, benchMessages(uint64(next), min(2000, total-next+1))); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func BenchmarkRecent(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			s := filled(b, be.open, 500)
			ctx := context.Background()
			b.SetParallelism(8) // requests wait on the database: keep it busy
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					p, err := s.Recent(ctx, fmt.Sprintf("room-%03d", i%benchRooms), 0, 50)
					if err != nil || len(p.Items) != 50 {
						b.Errorf("recent: %d items, %v", len(p.Items), err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
		})
	}
}

func BenchmarkSince(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			s := filled(b, be.open, 500)
			ctx := context.Background()
			b.SetParallelism(8) // requests wait on the database: keep it busy
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					// After the 100th message of the room: a full page follows.
					p, err := s.Since(ctx, fmt.Sprintf("room-%03d", i%benchRooms), uint64(100*benchRooms), 50)
					if err != nil || len(p.Items) != 50 {
						b.Errorf("since: %d items, %v", len(p.Items), err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
		})
	}
}

// BenchmarkInsertChanges is BenchmarkInsert with a share of the rows
// change events (half reactions, half edits by the author) targeting
// messages of the previous batch: the cost of folding on insert.
func BenchmarkInsertChanges(b *testing.B) {
	const batch = 500
	for _, be := range benchBackends {
		for _, pct := range []int{0, 20} {
			b.Run(fmt.Sprintf("%s/batch=%d/changes=%d%%", be.name, batch, pct), func(b *testing.B) {
				s := benchStore(b, be.open)
				ctx := context.Background()
				next := uint64(1)
				on := true
				first := benchMessages(next, batch)
				if _, err := s.Insert(ctx, first); err != nil {
					b.Fatal(err)
				}
				next += batch
				b.ResetTimer()
				for b.Loop() {
					msgs := benchMessages(next, batch)
					for i := range msgs {
						if i%100 >= pct {
							continue
						}
						target := msgs[i].ID - batch
						author := "user-" + fmt.Sprint(target%997)
						if i%2 == 0 {
							msgs[i].Kind, msgs[i].Target, msgs[i].User, msgs[i].Body = wire.KindEdit, target, author, "edited"
						} else {
							msgs[i].Kind, msgs[i].Target, msgs[i].Body, msgs[i].Emoji, msgs[i].On = wire.KindReaction, target, "", "👍", &on
						}
					}
					next += batch
					if _, err := s.Insert(ctx, msgs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}
