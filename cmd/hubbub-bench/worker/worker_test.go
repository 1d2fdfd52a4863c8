package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/wsbase"
	"github.com/hubbub-chat/hubbub/shared/logging"
)

// session drives a worker served in-process over pipes.
type session struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Scanner
}

func (s *session) do(cmd worker.Command) worker.Reply {
	s.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		s.t.Fatal(err)
	}
	if !s.out.Scan() {
		s.t.Fatalf("no reply to %s: %v", cmd.Op, s.out.Err())
	}
	var rep worker.Reply
	if err := json.Unmarshal(s.out.Bytes(), &rep); err != nil {
		s.t.Fatal(err)
	}
	return rep
}

func start(t *testing.T) *session {
	ctx, cancel := context.WithCancel(context.Background())
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- worker.Serve(ctx, inR, outW); outW.Close() }()
	t.Cleanup(func() {
		inW.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	return &session{t: t, in: inW, out: bufio.NewScanner(outR)}
}

// TestFanoutAgainstBaseline runs a small fan-out through the worker
// against the in-process WebSocket baseline and checks full reach.
func TestFanoutAgainstBaseline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := wsbase.New(logging.Discard())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("baseline: %v", err)
		}
	}()
	url := "ws://" + ln.Addr().String() + "/ws"
	tests := []struct {
		name                  string
		rooms, members, sends int
	}{
		{"one room", 1, 10, 1},
		{"three rooms", 3, 7, 2},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t)
			prefix := string(rune('a'+i)) + "-"
			for _, g := range []worker.ConnectSpec{
				{First: 0, Count: tt.sends * tt.rooms, Sender: true},
				{First: tt.sends * tt.rooms, Count: (tt.members - tt.sends) * tt.rooms},
			} {
				g.Kind, g.URLs, g.Rooms, g.RoomPrefix, g.UserPrefix, g.Edge = worker.KindWS, []string{url}, tt.rooms, prefix, "u", -1
				if rep := s.do(worker.Command{Op: worker.OpConnect, Connect: &g}); rep.Error != "" {
					t.Fatal(rep.Error)
				}
			}
			run := &worker.RunSpec{Tag: "t" + prefix[:1], Rate: 20, Duration: 500 * time.Millisecond, BodySize: 64, Quiet: 300 * time.Millisecond}
			if rep := s.do(worker.Command{Op: worker.OpPrepare, Run: run}); rep.Error != "" {
				t.Fatal(rep.Error)
			}
			rep := s.do(worker.Command{Op: worker.OpRun, Run: run})
			if rep.Error != "" {
				t.Fatal(rep.Error)
			}
			st := rep.Stats
			var want int64
			for room, acked := range st.AckedByRoom {
				want += acked * int64(st.Members[room])
			}
			if st.Acked == 0 || st.Received != want {
				t.Fatalf("acked %d, received %d of %d", st.Acked, st.Received, want)
			}
			if st.Gaps != 0 || st.Dups != 0 || st.Latency.Count() != uint64(st.Received) {
				t.Fatalf("gaps %d dups %d latency samples %d", st.Gaps, st.Dups, st.Latency.Count())
			}
			if rep := s.do(worker.Command{Op: worker.OpClose}); rep.Error != "" {
				t.Fatal(rep.Error)
			}
		})
	}
}

func TestBadCommands(t *testing.T) {
	tests := []struct {
		name string
		cmd  worker.Command
	}{
		{"unknown op", worker.Command{Op: "dance"}},
		{"connect without spec", worker.Command{Op: worker.OpConnect}},
		{"connect without urls", worker.Command{Op: worker.OpConnect, Connect: &worker.ConnectSpec{Count: 1, Rooms: 1}}},
		{"run with bad tag", worker.Command{Op: worker.OpRun, Run: &worker.RunSpec{Tag: "no spaces"}}},
		{"history without rooms", worker.Command{Op: worker.OpHistory, History: &worker.HistorySpec{}}},
	}
	s := start(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if rep := s.do(tt.cmd); rep.Error == "" {
				t.Fatalf("accepted %+v", tt.cmd)
			}
		})
	}
}
