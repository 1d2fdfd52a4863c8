// Package lease keeps an edge's lease alive in the edges KV bucket: the key
// is the edge id, put again every TTL/3 while the edge runs and deleted on
// clean shutdown. If the edge dies, the bucket's TTL expires the key and
// presence removes the edge's connections from every roster.
package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Lease is one edge's lease.
type Lease struct {
	js    jetstream.JetStream
	value wire.EdgeLease
	ttl   time.Duration
	log   *slog.Logger
	kv    jetstream.KeyValue // set by bucket; used by one goroutine at a time
}

// New prepares the lease of edge (addr is informational). ttl ≤ 0 means
// provision.DefaultLeaseTTL; it should match the bucket's TTL.
func New(js jetstream.JetStream, edge, addr string, ttl time.Duration, log *slog.Logger) *Lease {
	if ttl <= 0 {
		ttl = provision.DefaultLeaseTTL
	}
	return &Lease{js: js, value: wire.EdgeLease{Edge: edge, Addr: addr, Started: time.Now().UnixMilli()}, ttl: ttl, log: log}
}

// Acquire puts the lease once (call before accepting connections).
func (l *Lease) Acquire(ctx context.Context) error {
	return l.renew(ctx)
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

// Run renews the lease (Acquire, Run and Release must not overlap) every TTL/3 until ctx ends. Failures are logged and
// retried at the next tick (NATS may be reconnecting).
func (l *Lease) Run(ctx context.Context) error {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, l.ttl/3)
		err := l.renew(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			l.log.Warn("edge lease renewal failed", "edge", l.value.Edge, "err", err)
		}
	}
}

func (l *Lease) renew(ctx context.Context) error {
	kv, err := l.bucket(ctx)
	if err != nil {
		return err
	}
	return l.put(ctx, kv)
}

func (l *Lease) put(ctx context.Context, kv jetstream.KeyValue) error {
	b, err := json.Marshal(l.value)
	if err != nil {
		return fmt.Errorf("marshal lease: %w", err)
	}
	if _, err := kv.Put(ctx, l.value.Edge, b); err != nil {
		return fmt.Errorf("put lease %s: %w", l.value.Edge, err)
	}
	return nil
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
