package natstest_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

func TestProvisionedHasStreamAndBuckets(t *testing.T) {
	e := natstest.Provisioned(t, provision.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.JS.Stream(ctx, subjects.Stream); err != nil {
		t.Fatalf("stream %s: %v", subjects.Stream, err)
	}
	for _, b := range []string{subjects.BucketRoster, subjects.BucketTyping, subjects.BucketEdges} {
		if _, err := e.JS.KeyValue(ctx, b); err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
}

func TestConnectionSurvivesRestart(t *testing.T) {
	e := natstest.Provisioned(t, provision.Config{})
	e.Restart()
	natstest.Eventually(t, 10*time.Second, "connection back", func() error {
		return e.NC.Flush()
	})
}

// fakeService becomes ready after a few checks and records that Run ended.
type fakeService struct {
	checks  atomic.Int32
	stopped atomic.Bool
}

func (f *fakeService) Run(ctx context.Context) error {
	<-ctx.Done()
	f.stopped.Store(true)
	return nil
}

func (f *fakeService) Ready() error {
	if f.checks.Add(1) < 3 {
		return errors.New("starting")
	}
	return nil
}

func TestServeWaitsForReadyAndStops(t *testing.T) {
	svc := &fakeService{}
	stop := natstest.Serve(t, "fake", svc)
	if n := svc.checks.Load(); n < 3 {
		t.Fatalf("Serve returned after %d readiness checks, want 3", n)
	}
	stop()
	if !svc.stopped.Load() {
		t.Fatal("stop returned before Run did")
	}
	stop() // idempotent
}

func TestEventuallyAndUntilRetry(t *testing.T) {
	var n atomic.Int32
	natstest.Eventually(t, 10*time.Second, "third try", func() error {
		if n.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	natstest.Until(t, 10*time.Second, "sixth try", func() bool { return n.Add(1) >= 6 })
}
