// Package lease keeps an edge's lease alive in the edges KV bucket: the key
// is the edge id, renewed every TTL/3 while the edge runs and deleted on
// clean shutdown. If the edge dies, the bucket's TTL expires the key and
// presence removes the edge's connections from every roster.
//
// Renewal is a compare-and-set on the revision the edge last wrote, so the
// edge notices when its key went away while it was alive (a partition let
// it expire, or an operator deleted it): presence has then removed its
// connections. The lease is created again and the OnLost callback runs, so
// the edge can register its connections with presence again.
package lease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/loops"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Lease is one edge's lease. Acquire, Run and Release must not overlap.
type Lease struct {
	js     jetstream.JetStream
	value  wire.EdgeLease
	ttl    time.Duration
	log    *slog.Logger
	onLost func(context.Context)

	// Used by one goroutine at a time (see above).
	kv  jetstream.KeyValue
	rev uint64 // revision of our last write; 0 before the first
	// lost is set once a renewal found the lease gone, until a write
	// re-established it: a re-create whose answer was lost may have
	// stored the key, and the renewal that then finds it must still
	// report the loss.
	lost bool
}

// New prepares the lease of edge (addr is informational). ttl ≤ 0 means
// provision.DefaultLeaseTTL; it should match the bucket's TTL.
func New(js jetstream.JetStream, edge, addr string, ttl time.Duration, log *slog.Logger) *Lease {
	if ttl <= 0 {
		ttl = provision.DefaultLeaseTTL
	}
	return &Lease{js: js, value: wire.EdgeLease{Edge: edge, Addr: addr, Started: time.Now().UnixMilli()}, ttl: ttl, log: log}
}

// OnLost sets fn to run (on Run's goroutine, with Run's context) after
// the lease was found gone and created again. Call it before Run.
func (l *Lease) OnLost(fn func(context.Context)) { l.onLost = fn }

// Acquire puts the lease once (call before accepting connections). A key
// left by an earlier incarnation of this edge id is overwritten.
func (l *Lease) Acquire(ctx context.Context) error {
	_, err := l.renew(ctx)
	return err
}

func (l *Lease) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if l.kv != nil {
		return l.kv, nil
	}
	kv, err := l.js.KeyValue(ctx, subjects.BucketEdges)
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", subjects.BucketEdges, err)
	}
	l.kv = kv
	return kv, nil
}

// Run renews the lease every TTL/3 until ctx ends. Failures are logged and
// retried at the next tick (NATS may be reconnecting). When a renewal finds
// the lease lost, OnLost runs once the lease is back.
func (l *Lease) Run(ctx context.Context) error {
	return loops.Every(ctx, l.ttl/3, l.renewal)
}

// renewal is one tick of Run: renew, log a failure, run OnLost after a
// loss.
func (l *Lease) renewal(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	lost, err := l.renew(rctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		l.log.Warn("edge lease renewal failed", "edge", l.value.Edge, "err", err)
	}
	if lost && l.onLost != nil && ctx.Err() == nil {
		l.onLost(ctx)
	}
}

// renew writes the lease: a put the first time, then an update on the
// revision last written. A revision mismatch means the key was deleted or
// expired (or rewritten) since: the lease is created again and lost is
// true.
func (l *Lease) renew(ctx context.Context) (lost bool, err error) {
	kv, err := l.bucket(ctx)
	if err != nil {
		return false, err
	}
	b, err := json.Marshal(l.value)
	if err != nil {
		return false, fmt.Errorf("marshal lease: %w", err)
	}
	key := l.value.Edge
	if l.rev == 0 {
		rev, err := kv.Put(ctx, key, b)
		if err != nil {
			return false, fmt.Errorf("put lease %s: %w", key, err)
		}
		l.rev = rev
		return false, nil
	}
	rev, err := kv.Update(ctx, key, b, l.rev)
	if err == nil {
		l.rev = rev
		return false, nil
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, fmt.Errorf("renew lease %s: %w", key, err)
	}
	rev, err = kv.Create(ctx, key, b)
	if err == nil {
		l.rev, l.lost = rev, false
		l.log.Warn("edge lease was lost (expired or deleted) and is re-created; re-registering connections", "edge", key)
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		// The key was gone; this create may still have been stored.
		l.lost = true
		return false, fmt.Errorf("re-create lease %s: %w", key, err)
	}
	// The key is live but not at our revision: our previous update (or
	// re-create) may have been stored although its answer was lost.
	e, gerr := kv.Get(ctx, key)
	if gerr != nil {
		return false, fmt.Errorf("read lease %s: %w", key, gerr)
	}
	if !bytes.Equal(e.Value(), b) {
		l.log.Error("edge lease key held by another process: is the edge id unique?", "edge", key)
	}
	rev, err = kv.Update(ctx, key, b, e.Revision())
	if err != nil {
		return false, fmt.Errorf("take over lease %s: %w", key, err)
	}
	l.rev = rev
	if l.lost {
		l.lost = false
		l.log.Warn("edge lease was lost (expired or deleted) and is back; re-registering connections", "edge", key)
		return true, nil
	}
	return false, nil
}

// Release deletes the lease (clean shutdown); call it after Run returned.
func (l *Lease) Release(ctx context.Context) error {
	kv, err := l.bucket(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, l.value.Edge); err != nil {
		return fmt.Errorf("delete lease %s: %w", l.value.Edge, err)
	}
	return nil
}
