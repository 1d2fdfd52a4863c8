package streamread_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/history/streamread"
	"github.com/hubbub-chat/hubbub/shared/natstest"
)

func TestScan(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		name   string
		direct bool
	}{{"DIRECT", true}, {"PLAIN", false}} {
		t.Run(c.name, func(t *testing.T) {
			prefix := "s" + c.name + "."
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: c.name, Subjects: []string{prefix + "*"}, AllowDirect: c.direct}); err != nil {
				t.Fatal(err)
			}
			// 2.5 batches of room a, interleaved with room b.
			var want []uint64
			for i := range 2*streamread.Batch + streamread.Batch/2 {
				ack, err := js.Publish(ctx, prefix+"a", fmt.Appendf(nil, "a%d", i))
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, ack.Sequence)
				if _, err := js.Publish(ctx, prefix+"b", []byte("b")); err != nil {
					t.Fatal(err)
				}
			}
			r := streamread.New(nc, js, c.name)
			cases := []struct {
				name  string
				from  uint64
				stop  int // stop after this many (0: read all)
				start int // index into want of the first expected
			}{
				{"all from 0", 0, 0, 0},
				{"from middle", want[300] - 1, 0, 300},
				{"from exact id", want[10], 0, 10},
				{"stop early", 1, 5, 0},
				{"stop at batch edge", 1, streamread.Batch, 0},
				{"past the end", want[len(want)-1] + 1, 0, len(want)},
			}
			for _, tc := range cases {
				var got []uint64
				err := r.Scan(ctx, prefix+"a", tc.from, func(m streamread.Msg) bool {
					if m.Subject != prefix+"a" || string(m.Data) != fmt.Sprintf("a%d", tc.start+len(got)) || m.Time.IsZero() {
						t.Fatalf("%s: message %+v", tc.name, m)
					}
					got = append(got, m.Seq)
					return tc.stop == 0 || len(got) < tc.stop
				})
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				exp := want[tc.start:]
				if tc.stop > 0 {
					exp = exp[:tc.stop]
				}
				if fmt.Sprint(got) != fmt.Sprint(exp) {
					t.Fatalf("%s: got %d messages, want %d", tc.name, len(got), len(exp))
				}
			}
			if !c.direct {
				if err := streamread.New(nc, nil, c.name).Scan(ctx, prefix+"a", 1, func(streamread.Msg) bool { return true }); err == nil {
					t.Fatal("scan without direct get and without fallback succeeded")
				}
			}
		})
	}
}
