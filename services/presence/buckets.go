package presence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/backoff"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// The waits between attempts to open a bucket that is unavailable: from
// bucketRetryFirst, doubling, up to bucketRetryMax.
const (
	bucketRetryFirst = 100 * time.Millisecond
	bucketRetryMax   = 5 * time.Second
)

// bucket opens a KV bucket, waiting (with backoff) while NATS or the
// bucket is unavailable, until ctx ends.
func (s *Service) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := backoff.Retry(ctx, backoff.Policy{Initial: bucketRetryFirst, Max: bucketRetryMax}, func(ctx context.Context) error {
		var err error
		kv, err = s.js.KeyValue(ctx, name)
		return err
	}, func(err error, wait time.Duration) {
		s.log.Warn("kv bucket unavailable; retrying", "bucket", name, "err", err, "retry_in", wait)
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	}
	return kv, nil
}

// typingBucket opens the typing bucket, re-creating it when it is missing.
func (s *Service) typingBucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := s.js.KeyValue(ctx, subjects.BucketTyping)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	for _, b := range provision.Buckets(s.cfg.provision()) {
		if b.Bucket == subjects.BucketTyping {
			s.log.Warn("typing bucket missing; re-creating it")
			kv, err = s.js.CreateOrUpdateKeyValue(ctx, b)
			if err != nil {
				return nil, fmt.Errorf("re-create bucket %s: %w", b.Bucket, err)
			}
			return kv, nil
		}
	}
	return nil, err
}

// ctxNil turns an error caused by ctx ending into a clean nil.
func ctxNil(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
