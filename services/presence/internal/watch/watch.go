// Package watch follows every key of a JetStream KV bucket and feeds the
// entries to an in-memory view: first the whole current content in one batch,
// then each change as it happens. A watch that breaks or stalls is
// re-established and the view replaced with a fresh snapshot, so a view
// always converges on the bucket's content.
//
// Stalls are real: a KV watch is an ordered push consumer, and after the
// server restarts it can stay silent for a long time. Follow therefore
// restarts the watch when the client reconnects, and when the bucket's
// stream holds a sequence the watch has not delivered one check interval
// after it was first seen.
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/backoff"
)

// View receives a bucket's content.
type View interface {
	// Replace swaps the whole content for entries: the latest revision of
	// every key, deleted and purged keys included (Operation() tells). It
	// is called once per (re)established watch, before any Apply.
	Replace(entries []jetstream.KeyValueEntry)
	// Apply applies one change: a put, or a delete/purge (Operation() !=
	// KeyValuePut), including the markers JetStream places when a key expires
	// by TTL (reported as KeyValuePurge).
	Apply(entry jetstream.KeyValueEntry)
}

// Errors ending one watch (Follow re-establishes it).
var (
	// ErrWatchClosed: the server side of the watch ended.
	ErrWatchClosed = errors.New("kv watch closed")
	// ErrStalled: the watch missed a revision the bucket holds.
	ErrStalled = errors.New("kv watch stalled")
	// ErrReconnected: the client reconnected; the watch may have missed
	// changes.
	ErrReconnected = errors.New("nats reconnected")
)

// Bucket opens the KV bucket for each (re)established watch, so a bucket that
// had to be re-created is picked up.
type Bucket func(ctx context.Context) (jetstream.KeyValue, error)

// Options tune Follow.
type Options struct {
	// Loaded is called after each snapshot has been handed to Replace.
	Loaded func()
	// CheckEvery is the interval of the stall and reconnect checks
	// (default 2 s).
	CheckEvery time.Duration
	// Reconnects returns the connection's reconnect count (e.g.
	// nc.Stats().Reconnects); a change restarts the watch. Optional.
	Reconnects func() uint64
	// Log receives retry warnings (required).
	Log *slog.Logger
}

// Follow keeps v in step with the bucket until ctx ends, re-establishing the
// watch with backoff whenever it fails. It returns nil when ctx ends.
func Follow(ctx context.Context, bucket Bucket, v View, o Options) error {
	// A watch that held for a while is re-established quickly again.
	p := backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, ResetAfter: 10 * time.Second}
	// Once returns nil only when ctx ended.
	_ = backoff.Retry(ctx, p, func(ctx context.Context) error { return Once(ctx, bucket, v, o) }, func(err error, wait time.Duration) {
		o.Log.Warn("kv watch interrupted; re-establishing", "err", err, "retry_in", wait)
	})
	return nil
}

// Once runs one watch: snapshot, then changes, until ctx ends (nil) or the
// watch fails or stalls (an error).
func Once(ctx context.Context, bucket Bucket, v View, o Options) error {
	o = o.withDefaults()
	kv, err := bucket(ctx)
	if err != nil {
		return fmt.Errorf("open bucket: %w", err)
	}
	f := &follower{kv: kv, v: v, o: o, startReconnects: o.Reconnects(), initial: true}
	// Everything up to the stream's last sequence now is either delivered
	// by the watch or gone.
	if f.seen, err = lastSeq(ctx, kv); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.WatchAll(wctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	check := time.NewTicker(o.CheckEvery)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-check.C:
			if err := f.check(ctx); err != nil {
				return err
			}
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%w: %s", ErrWatchClosed, kv.Bucket())
			}
			f.entry(e)
		}
	}
}

// withDefaults fills in CheckEvery and Reconnects (a count that never
// changes) when they are unset.
func (o Options) withDefaults() Options {
	if o.CheckEvery <= 0 {
		o.CheckEvery = 2 * time.Second
	}
	if o.Reconnects == nil {
		o.Reconnects = func() uint64 { return 0 }
	}
	return o
}

// follower is the state of one watch (one call of Once).
type follower struct {
	kv              jetstream.KeyValue
	v               View
	o               Options
	startReconnects uint64
	seen            uint64 // the highest revision delivered, or the stream's last sequence at the start
	pending         uint64 // a sequence the stream held at the last check
	snapshot        []jetstream.KeyValueEntry
	initial         bool // the snapshot is still being received
}

// check is the periodic test: the connection has not reconnected since the
// watch began, and the sequence the stream held at the previous check has
// been delivered; it then records the stream's current last sequence.
func (f *follower) check(ctx context.Context) error {
	if f.o.Reconnects() != f.startReconnects {
		return ErrReconnected
	}
	if f.pending > f.seen {
		return fmt.Errorf("%w: %s at revision %d, bucket has %d", ErrStalled, f.kv.Bucket(), f.seen, f.pending)
	}
	last, err := lastSeq(ctx, f.kv)
	if err != nil {
		return err
	}
	f.pending = last
	return nil
}

// entry handles one value from the watch: an entry of the snapshot (kept
// until the snapshot is complete), the nil marking the snapshot's end (the
// view is replaced), or a change (applied).
func (f *follower) entry(e jetstream.KeyValueEntry) {
	if e != nil && e.Revision() > f.seen {
		f.seen = e.Revision()
	}
	switch {
	case e == nil && f.initial:
		f.v.Replace(f.snapshot)
		f.snapshot = nil
		f.initial = false
		if f.o.Loaded != nil {
			f.o.Loaded()
		}
	case e == nil:
	case f.initial:
		f.snapshot = append(f.snapshot, e)
	default:
		f.v.Apply(e)
	}
}

// lastSeq is the last sequence of the bucket's stream.
func lastSeq(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("status of %s: %w", kv.Bucket(), err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, nil
	}
	return bs.StreamInfo().State.LastSeq, nil
}
