package roomlog_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestScan(t *testing.T) {
	nc, js := connectJS(t)
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
			for i := range 2*roomlog.Batch + roomlog.Batch/2 {
				ack, err := js.Publish(ctx, prefix+"a", fmt.Appendf(nil, "a%d", i))
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, ack.Sequence)
				if _, err := js.Publish(ctx, prefix+"b", []byte("b")); err != nil {
					t.Fatal(err)
				}
			}
			r := roomlog.NewReader(nc, js, c.name)
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
				{"stop at batch edge", 1, roomlog.Batch, 0},
				{"past the end", want[len(want)-1] + 1, 0, len(want)},
			}
			for _, tc := range cases {
				var got []uint64
				err := r.Scan(ctx, prefix+"a", tc.from, func(m roomlog.Msg) bool {
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
				if err := roomlog.NewReader(nc, nil, c.name).Scan(ctx, prefix+"a", 1, func(roomlog.Msg) bool { return true }); err == nil {
					t.Fatal("scan without direct get and without fallback succeeded")
				}
			}
		})
	}
}

// TestScanRoom reads a room as every tier does: decoded, in order, what
// the decoder refuses skipped, other rooms ignored, and a scan limit that
// counts the skipped messages too.
func TestScanRoom(t *testing.T) {
	nc, js := connectJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ROOMS", Subjects: []string{subjects.Room("*")}, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	publish := func(room, data string) uint64 {
		ack, err := js.Publish(ctx, subjects.Room(room), []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	var want []uint64
	want = append(want, publish("a", `{"user":"u","body":"one","ts":1}`))
	publish("b", `{"user":"u","body":"other room","ts":1}`)
	publish("a", `not json`)
	publish("a", `{"user":"u","body":"a\u0000b","ts":1}`)
	publish("a", `{"user":"u","body":"","ts":1}`)
	want = append(want, publish("a", `{"user":"u","body":"two","kind":"system"}`))
	r := roomlog.NewReader(nc, js, "ROOMS")

	cases := []struct {
		name    string
		from    uint64
		maxScan int
		want    []uint64
		limited bool
	}{
		{"whole room", 0, 0, want, false},
		{"from the second", want[0] + 1, 0, want[1:], false},
		{"limit reached before the end", 0, 4, nil, true},
		{"limit exactly the room", 0, 5, want, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []uint64
			err := r.ScanRoom(ctx, roomlog.Decoder{}, "a", c.from, c.maxScan, func(m wire.Message) bool {
				if m.Room != "a" || m.Kind == "" || m.TS == 0 {
					t.Fatalf("message %+v not decoded by the rule", m)
				}
				got = append(got, m.ID)
				return true
			})
			if c.limited {
				if !errors.Is(err, roomlog.ErrScanLimit) {
					t.Fatalf("err %v, want ErrScanLimit", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("ids %v, want %v", got, c.want)
			}
		})
	}
}

// connectJS starts an embedded server and returns a connection to it and
// its JetStream.
func connectJS(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := natstest.Start(t).Connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
