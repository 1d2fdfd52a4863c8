package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hubbub-chat/hubbub/services/history/internal/metrics"
	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// fakeMsg is a consumed stream message that records what flush did to it.
type fakeMsg struct {
	jetstream.Msg // methods flush never calls panic
	seq           uint64
	subject       string
	data          string
	noMeta        bool

	mu       sync.Mutex
	acked    int
	progress int
	term     string // "term" or the reason
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	if m.noMeta {
		return nil, errors.New("no metadata")
	}
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}, NumDelivered: 1, Timestamp: time.UnixMilli(1)}, nil
}
func (m *fakeMsg) Subject() string { return m.subject }
func (m *fakeMsg) Data() []byte    { return []byte(m.data) }
func (m *fakeMsg) Ack() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked++
	return nil
}
func (m *fakeMsg) InProgress() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.progress++
	return nil
}
func (m *fakeMsg) Term() error { return m.TermWithReason("term") }
func (m *fakeMsg) TermWithReason(r string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.term = r
	return nil
}

// fakeStore is the part of store.Store flush uses: Insert refuses rows
// with an id in reject (store.ErrRejected, the whole batch, as a database
// does) and fails insertFails times first (a transient error); Park fails
// parkFails times first, or refuses everything with parkRejects.
type fakeStore struct {
	store.Store // methods flush never calls panic

	mu          sync.Mutex
	reject      map[uint64]bool
	insertFails int
	parkFails   int
	parkRejects bool
	inserts     int // Insert calls
	stored      []uint64
	parked      map[uint64]string // seq → reason
}

var errTransient = errors.New("fake: database down")

func (s *fakeStore) Insert(_ context.Context, msgs []wire.Message) ([]wire.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inserts++
	if s.insertFails > 0 {
		s.insertFails--
		return nil, errTransient
	}
	for _, m := range msgs {
		if s.reject[m.ID] {
			return nil, fmt.Errorf("row %d: %w", m.ID, store.ErrRejected)
		}
	}
	var n []wire.Message
	for _, m := range msgs {
		if !slices.Contains(s.stored, m.ID) {
			s.stored = append(s.stored, m.ID)
			n = append(n, m)
		}
	}
	return n, nil
}

func (s *fakeStore) Park(_ context.Context, letters []store.DeadLetter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parkFails > 0 {
		s.parkFails--
		return errTransient
	}
	if s.parkRejects {
		return fmt.Errorf("fake: %w", store.ErrRejected)
	}
	if s.parked == nil {
		s.parked = map[uint64]string{}
	}
	for _, l := range letters {
		s.parked[l.Seq] = l.Reason
	}
	return nil
}

// good is a valid room message at seq.
func good(seq uint64) *fakeMsg {
	return &fakeMsg{seq: seq, subject: "chat.room.r", data: fmt.Sprintf(`{"user":"u","body":"m%d","ts":1}`, seq)}
}

func TestFlush(t *testing.T) {
	cases := []struct {
		name  string
		batch []*fakeMsg
		st    *fakeStore
		// outcome per seq: "stored", a park reason, "term" / "unparkable"
		// (terminated, not acked)
		want        map[uint64]string
		inserts     int  // Insert calls (0: not checked)
		inProgress  bool // messages were held in progress while retrying
		stalledOnce bool // an insert error was counted
	}{
		{name: "all stored", batch: []*fakeMsg{good(1), good(2), good(3)}, st: &fakeStore{},
			want: map[uint64]string{1: "stored", 2: "stored", 3: "stored"}, inserts: 1},
		{name: "undecodable and invalid parked, the rest stored",
			batch: []*fakeMsg{good(1), {seq: 2, subject: "chat.room.r", data: "not json"},
				{seq: 3, subject: "chat.room.r", data: `{"user":"u","body":"a\u0000b"}`}, {seq: 4, subject: "chat.room.BAD!", data: `{}`}, good(5)},
			st:   &fakeStore{},
			want: map[uint64]string{1: "stored", 2: ReasonUndecodable, 3: ReasonInvalid, 4: ReasonUndecodable, 5: "stored"}},
		{name: "nothing to insert", batch: []*fakeMsg{{seq: 7, subject: "chat.room.r", data: "x"}}, st: &fakeStore{},
			want: map[uint64]string{7: ReasonUndecodable}, inserts: -1},
		{name: "a message without metadata is terminated", batch: []*fakeMsg{good(1), {seq: 2, subject: "chat.room.r", noMeta: true}},
			st: &fakeStore{}, want: map[uint64]string{1: "stored", 2: "term"}},
		{name: "rejected rows isolated and parked", batch: []*fakeMsg{good(1), good(2), good(3), good(4), good(5)},
			st:   &fakeStore{reject: map[uint64]bool{2: true, 5: true}},
			want: map[uint64]string{1: "stored", 2: ReasonRejected, 3: "stored", 4: "stored", 5: ReasonRejected}},
		{name: "transient insert failures retried", batch: []*fakeMsg{good(1), good(2)}, st: &fakeStore{insertFails: 2},
			want: map[uint64]string{1: "stored", 2: "stored"}, inserts: 3, inProgress: true, stalledOnce: true},
		{name: "transient park failure retried without inserting again",
			batch: []*fakeMsg{good(1), {seq: 2, subject: "chat.room.r", data: "x"}}, st: &fakeStore{parkFails: 1},
			want: map[uint64]string{1: "stored", 2: ReasonUndecodable}, inserts: 1, inProgress: true, stalledOnce: true},
		{name: "unparkable messages terminated", batch: []*fakeMsg{good(1), {seq: 2, subject: "chat.room.r", data: "x"}},
			st: &fakeStore{parkRejects: true}, want: map[uint64]string{1: "stored", 2: "unparkable"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := metrics.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			in, err := New(nil, c.st, Config{MaxBackoff: time.Millisecond}, slog.New(slog.DiscardHandler), m)
			if err != nil {
				t.Fatal(err)
			}
			batch := make([]jetstream.Msg, len(c.batch))
			for i, msg := range c.batch {
				batch[i] = msg
			}
			in.flush(context.Background(), batch)

			for _, msg := range c.batch {
				want := c.want[msg.seq]
				var got string
				switch {
				case msg.term != "":
					got = msg.term
				case slices.Contains(c.st.stored, msg.seq):
					got = "stored"
				default:
					got = c.st.parked[msg.seq]
				}
				if got != want {
					t.Errorf("seq %d: %q, want %q", msg.seq, got, want)
				}
				wantAcks := 1
				if want == "term" {
					wantAcks = 0
				}
				if msg.acked != wantAcks {
					t.Errorf("seq %d: acked %d times, want %d", msg.seq, msg.acked, wantAcks)
				}
				if (msg.progress > 0) != (c.inProgress && want != "term") {
					t.Errorf("seq %d: held in progress %d times", msg.seq, msg.progress)
				}
			}
			switch {
			case c.inserts > 0 && c.st.inserts != c.inserts:
				t.Errorf("%d inserts, want %d", c.st.inserts, c.inserts)
			case c.inserts < 0 && c.st.inserts != 0:
				t.Errorf("%d inserts of an empty batch", c.st.inserts)
			}
			if errs := testutil.ToFloat64(m.InsertErrors); (errs > 0) != c.stalledOnce {
				t.Errorf("insert errors %v", errs)
			}
			if err := in.Healthy(); err != nil {
				t.Errorf("unhealthy after a flush that succeeded: %v", err)
			}
			stored := 0
			for _, w := range c.want {
				if w == "stored" {
					stored++
				}
			}
			if n := testutil.ToFloat64(m.Stored); int(n) != stored {
				t.Errorf("stored counter %v, want %d", n, stored)
			}
		})
	}
}

// TestFlushAtShutdown: while the database is down, a flush during
// shutdown makes one attempt, acknowledges nothing (the stream redelivers)
// and leaves the ingester unhealthy.
func TestFlushAtShutdown(t *testing.T) {
	st := &fakeStore{insertFails: 1}
	in, err := New(nil, st, Config{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs := []*fakeMsg{good(1), {seq: 2, subject: "chat.room.r", data: "x"}}
	in.flush(ctx, []jetstream.Msg{msgs[0], msgs[1]})
	if st.inserts != 1 {
		t.Fatalf("%d insert attempts, want 1", st.inserts)
	}
	for _, m := range msgs {
		if m.acked != 0 || m.progress != 0 || m.term != "" {
			t.Fatalf("seq %d: acked %d, in progress %d, term %q; want untouched", m.seq, m.acked, m.progress, m.term)
		}
	}
	if err := in.Healthy(); !errors.Is(err, ErrStalled) || !errors.Is(err, errTransient) {
		t.Fatalf("Healthy %v, want ErrStalled wrapping the insert error", err)
	}
}
