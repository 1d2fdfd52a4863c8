package lease

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// lostAnswers is the real bucket, except that the answers of the next
// successful creates are lost (context deadline exceeded) after they were stored,
// as when a busy server answers after the caller gave up.
type lostAnswers struct {
	jetstream.KeyValue
	creates atomic.Int32 // creates whose answer is still to lose
}

func (k *lostAnswers) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	rev, err := k.KeyValue.Create(ctx, key, value, opts...)
	if err == nil && k.creates.Add(-1) >= 0 {
		return 0, context.DeadlineExceeded
	}
	return rev, err
}

func newLease(t *testing.T) (*Lease, *lostAnswers) {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, subjects.BucketEdges)
	if err != nil {
		t.Fatal(err)
	}
	l := New(js, "edge-1", "127.0.0.1:1", 3*time.Second, logging.Discard())
	fake := &lostAnswers{KeyValue: kv}
	l.kv = fake
	return l, fake
}

// A lease found gone is reported lost once it is back, even when the
// re-create that brought it back lost its answer and the next renewal
// finds the key already there: presence dropped the edge's connections
// either way, so they must be registered again.
func TestLossReportedWhenRecreateAnswerIsLost(t *testing.T) {
	for _, lose := range []int32{0, 1} {
		t.Run(map[int32]string{0: "answered", 1: "answer lost"}[lose], func(t *testing.T) {
			l, kv := newLease(t)
			ctx := context.Background()
			if err := l.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
			if err := kv.Delete(ctx, "edge-1"); err != nil {
				t.Fatal(err)
			}
			kv.creates.Store(lose)
			var lost int
			for i := range lose + 2 {
				got, err := l.renew(ctx)
				if got {
					lost++
				}
				if i < lose && err == nil {
					t.Fatalf("renewal %d: no error although its answer was lost", i)
				}
			}
			if lost != 1 {
				t.Fatalf("loss reported %d times, want 1", lost)
			}
			// And the lease is ours again: renewals succeed, no loss.
			if got, err := l.renew(ctx); got || err != nil {
				t.Fatalf("renewal after recovery: lost=%v err=%v", got, err)
			}
		})
	}
}

// A renewal whose update was stored but whose answer was lost finds the
// key a revision ahead: that is no loss, the key never went away.
func TestRenewAfterLostUpdateAnswerIsNoLoss(t *testing.T) {
	l, kv := newLease(t)
	ctx := context.Background()
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	// Our update was stored but its answer lost: l.rev is behind.
	b, err := json.Marshal(l.value)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "edge-1", b); err != nil {
		t.Fatal(err)
	}
	if got, err := l.renew(ctx); got || err != nil {
		t.Fatalf("lost=%v err=%v, want a quiet take-over", got, err)
	}
	if _, err := kv.Get(ctx, "edge-1"); errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal("lease key gone")
	}
}
