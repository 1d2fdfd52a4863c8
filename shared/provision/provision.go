// Package provision creates or updates, idempotently, the JetStream stream
// and KV buckets Hubbub runs on. Every service calls Ensure at start-up, so
// any of them may come up first.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// Config sizes the stream and buckets. Zero values take the defaults below.
type Config struct {
	// Replicas for the stream and buckets: 1 in development, 3 in production.
	Replicas int
	// MaxAge is how long the stream keeps messages (history keeps its own copy).
	MaxAge time.Duration
	// Duplicates is the Nats-Msg-Id de-duplication window.
	Duplicates time.Duration
	// TypingTTL is how long a typing entry lives without renewal.
	TypingTTL time.Duration
	// LeaseTTL is how long an edge lease lives without renewal.
	LeaseTTL time.Duration
}

// Defaults.
const (
	DefaultMaxAge     = 7 * 24 * time.Hour
	DefaultDuplicates = 2 * time.Minute
	DefaultTypingTTL  = 5 * time.Second
	DefaultLeaseTTL   = 15 * time.Second
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Duplicates <= 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.TypingTTL <= 0 {
		c.TypingTTL = DefaultTypingTTL
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	return c
}

// StreamConfig is the CHAT stream: it captures chat.room.*, keeps messages
// on disk for MaxAge, de-duplicates by Nats-Msg-Id and republishes every
// stored message to chat.live.<room> with Nats-Sequence (the message id) and
// Nats-Last-Sequence (the previous id on the same subject, i.e. the room).
func StreamConfig(c Config) jetstream.StreamConfig {
	c = c.WithDefaults()
	return jetstream.StreamConfig{
		Name:        subjects.Stream,
		Description: "Hubbub room messages; id = stream sequence",
		Subjects:    []string{subjects.RoomAll},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      c.MaxAge,
		Duplicates:  c.Duplicates,
		Replicas:    c.Replicas,
		Discard:     jetstream.DiscardOld,
		AllowDirect: true,
		RePublish: &jetstream.RePublish{
			Source:      subjects.RoomAll,
			Destination: subjects.LivePrefix + "{{wildcard(1)}}",
		},
	}
}

// Buckets returns the KV bucket configurations.
func Buckets(c Config) []jetstream.KeyValueConfig {
	c = c.WithDefaults()
	return []jetstream.KeyValueConfig{
		{
			Bucket:      subjects.BucketRoster,
			Description: "room rosters: <room>.<usertoken> -> connections",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
		},
		{
			Bucket:         subjects.BucketTyping,
			Description:    "typing state: <room>.<usertoken>, expires after TTL",
			History:        1,
			TTL:            c.TypingTTL,
			LimitMarkerTTL: time.Minute,
			Storage:        jetstream.FileStorage,
			Replicas:       c.Replicas,
		},
		{
			Bucket:         subjects.BucketEdges,
			Description:    "edge leases: <edgeid>, renewed while the edge lives",
			History:        1,
			TTL:            c.LeaseTTL,
			LimitMarkerTTL: time.Minute,
			Storage:        jetstream.FileStorage,
			Replicas:       c.Replicas,
		},
	}
}

// Ensure creates or updates the stream and buckets.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	if _, err := js.CreateOrUpdateStream(ctx, StreamConfig(c)); err != nil {
		return fmt.Errorf("provision stream %s: %w", subjects.Stream, err)
	}
	for _, b := range Buckets(c) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, b); err != nil {
			return fmt.Errorf("provision bucket %s: %w", b.Bucket, err)
		}
	}
	return nil
}

// EnsureRetry is Ensure retried with backoff while NATS is unreachable or
// JetStream is not answering yet (services may start before NATS). It
// returns nil when provisioning succeeded, ctx.Err() when ctx ended first,
// and at once when JetStream is disabled on the server.
func EnsureRetry(ctx context.Context, js jetstream.JetStream, c Config, log *slog.Logger) error {
	backoff := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := Ensure(actx, js, c)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
			return err
		}
		log.Warn("provisioning failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
