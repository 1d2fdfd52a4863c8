package presence

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/presence/internal/watch"
	"github.com/hubbub-chat/hubbub/shared/loops"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// followBuckets starts g's loops that keep the roster view, the lease
// watcher and the typing tracker following their buckets, and waits until
// each has loaded its bucket. It reports false if g began stopping first
// (its context ended).
func (s *Service) followBuckets(g *loops.Group, rosterKV jetstream.KeyValue) bool {
	loaded := make(chan string, 3)
	follow := func(name string, open watch.Bucket, v watch.View) {
		once := sync.Once{}
		g.Go("watch "+name, func(ctx context.Context) error {
			return watch.Follow(ctx, open, v, watch.Options{
				Loaded:     func() { once.Do(func() { loaded <- name }) },
				Reconnects: func() uint64 { return s.nc.Stats().Reconnects },
				Log:        s.log.With("bucket", name),
			})
		})
	}
	follow(subjects.BucketRoster, func(context.Context) (jetstream.KeyValue, error) { return rosterKV, nil }, s.view)
	follow(subjects.BucketEdges, func(context.Context) (jetstream.KeyValue, error) { return s.edges, nil }, s.leases)
	follow(subjects.BucketTyping, s.typingBucket, s.typing)
	for range 3 {
		select {
		case <-g.Context().Done():
			return false
		case <-loaded:
		}
	}
	return true
}
