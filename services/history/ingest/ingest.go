// Package ingest moves messages from the CHAT stream into the history
// store through a durable JetStream pull consumer. It inserts in batches
// and acknowledges each message only after the batch is committed, so an
// acknowledged message is always stored; a failed insert is retried (the
// messages held and kept in progress) until it succeeds. Several replicas
// may share the consumer: inserts are idempotent by id.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/history/metrics"
	"github.com/hubbub-chat/hubbub/services/history/post"
	"github.com/hubbub-chat/hubbub/services/history/store"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Durable is the name of the history consumer on the CHAT stream.
const Durable = "history"

// insertTimeout bounds one insert attempt.
const insertTimeout = 15 * time.Second

// ErrStalled is reported by Healthy while inserts keep failing.
var ErrStalled = errors.New("ingest stalled")

// Config tunes ingest. Zero values take the defaults.
type Config struct {
	// BatchSize is the most messages inserted in one transaction (500).
	BatchSize int
	// BatchWait is how long a partial batch waits for more messages (20ms).
	BatchWait time.Duration
	// AckWait is the consumer's redelivery timeout (30s).
	AckWait time.Duration
	// MaxAckPending bounds unacknowledged messages across all replicas
	// (default 8 × BatchSize).
	MaxAckPending int
	// MaxBackoff caps the retry delay after a failed insert (5s).
	MaxBackoff time.Duration
	// Inserts is how many batches are inserted concurrently (2): while
	// one batch commits, the next is inserted instead of waiting.
	Inserts int
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 20 * time.Millisecond
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 8 * c.BatchSize
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Inserts <= 0 {
		c.Inserts = 2
	}
	return c
}

// ConsumerConfig is the durable pull consumer history reads through.
func ConsumerConfig(c Config) jetstream.ConsumerConfig {
	c = c.WithDefaults()
	return jetstream.ConsumerConfig{
		Durable:       Durable,
		Description:   "history: stores every room message, acked after commit",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
		FilterSubject: subjects.RoomAll,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

// EnsureConsumer creates or updates the durable consumer.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, subjects.Stream, ConsumerConfig(c))
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", Durable, subjects.Stream, err)
	}
	return cons, nil
}

// Ingester runs the consume-insert-ack loop.
type Ingester struct {
	js  jetstream.JetStream
	st  store.Store
	cfg Config
	log *slog.Logger
	m   *metrics.Metrics

	mu      sync.Mutex
	failing error // last insert error, nil once an insert succeeds
}

// New returns an ingester storing into st. m may be nil.
func New(js jetstream.JetStream, st store.Store, cfg Config, log *slog.Logger, m *metrics.Metrics) (*Ingester, error) {
	if m == nil {
		var err error
		if m, err = metrics.New(nil); err != nil {
			return nil, err
		}
	}
	return &Ingester{js: js, st: st, cfg: cfg.WithDefaults(), log: log, m: m}, nil
}

// Healthy returns nil unless the last insert attempt failed.
func (in *Ingester) Healthy() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.failing != nil {
		return fmt.Errorf("%w: %w", ErrStalled, in.failing)
	}
	return nil
}

func (in *Ingester) setFailing(err error) {
	in.mu.Lock()
	in.failing = err
	in.mu.Unlock()
}

// Run consumes until ctx ends, then finishes the batch in hand and
// returns nil. Consumer and connection trouble is retried with backoff.
func (in *Ingester) Run(ctx context.Context) error {
	delay := 100 * time.Millisecond
	for {
		err := in.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		in.log.Warn("history ingest interrupted; restarting", "err", err, "in", delay)
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(2*delay, in.cfg.MaxBackoff)
	}
}

// session runs one consumer iterator until it fails or ctx ends. The
// loop below gathers batches; cfg.Inserts flushers insert and acknowledge
// them concurrently (ids are disjoint, inserts idempotent and room rows
// locked in one order, so concurrent batches commit independently).
func (in *Ingester) session(ctx context.Context) error {
	cons, err := EnsureConsumer(ctx, in.js, in.cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * in.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("consume %s: %w", Durable, err)
	}
	defer it.Stop()
	in.log.Info("history ingest consuming", "consumer", Durable, "batch", in.cfg.BatchSize, "inserts", in.cfg.Inserts)

	batches := make(chan []jetstream.Msg)
	var wg sync.WaitGroup
	for range in.cfg.Inserts {
		wg.Go(func() {
			for b := range batches {
				in.flush(ctx, b)
			}
		})
	}
	// hand passes a full or timed-out batch to a flusher. During shutdown
	// the flushers are still draining the channel, so it never blocks for
	// long: flush itself is bounded.
	hand := func(b []jetstream.Msg) {
		if len(b) > 0 {
			batches <- b
		}
	}
	defer func() {
		close(batches)
		wg.Wait()
	}()

	batch := make([]jetstream.Msg, 0, in.cfg.BatchSize)
	var deadline time.Time
	for {
		var (
			msg jetstream.Msg
			err error
		)
		if len(batch) == 0 {
			msg, err = it.Next(jetstream.NextContext(ctx))
		} else if wait := time.Until(deadline); wait > 0 {
			msg, err = it.Next(jetstream.NextMaxWait(wait))
		} else {
			err = nats.ErrTimeout
		}
		switch {
		case err == nil:
			if len(batch) == 0 {
				deadline = time.Now().Add(in.cfg.BatchWait)
			}
			batch = append(batch, msg)
			if len(batch) < in.cfg.BatchSize {
				continue
			}
		case errors.Is(err, nats.ErrTimeout):
		case ctx.Err() != nil:
			// Shutting down: store what is in hand and hand back what
			// was prefetched, so another replica gets it at once rather
			// than after AckWait.
			hand(batch)
			release(it)
			return ctx.Err()
		default:
			hand(batch)
			return fmt.Errorf("consume %s: %w", Durable, err)
		}
		hand(batch)
		batch = make([]jetstream.Msg, 0, in.cfg.BatchSize)
	}
}

// flush decodes batch, terminates undecodable messages, inserts the rest
// (retrying until it succeeds or the service stops for good) and then
// acknowledges them. During shutdown it makes one last attempt.
func (in *Ingester) flush(ctx context.Context, batch []jetstream.Msg) {
	if len(batch) == 0 {
		return
	}
	rows := make([]wire.Message, 0, len(batch))
	keep := batch[:0:0]
	for _, msg := range batch {
		meta, err := msg.Metadata()
		if err != nil {
			in.log.Error("history ingest: message without metadata; terminating", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			continue
		}
		if meta.NumDelivered > 1 {
			in.m.Redeliveries.Inc()
		}
		row, err := post.Decode(meta.Sequence.Stream, msg.Subject(), msg.Data(), meta.Timestamp)
		if err != nil {
			in.m.Undecodable.Inc()
			in.log.Warn("history ingest: undecodable message; terminating", "seq", meta.Sequence.Stream, "subject", msg.Subject(), "err", err)
			_ = msg.TermWithReason("undecodable")
			continue
		}
		rows = append(rows, row)
		keep = append(keep, msg)
	}
	if len(rows) == 0 {
		return
	}
	delay := 50 * time.Millisecond
	for {
		// An insert under way completes even if shutdown begins: it is
		// bounded by its own timeout, not by ctx.
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), insertTimeout)
		start := time.Now()
		n, err := in.st.Insert(ictx, rows)
		cancel()
		if err == nil {
			in.m.InsertSeconds.Observe(time.Since(start).Seconds())
			in.m.BatchSize.Observe(float64(len(rows)))
			in.m.Stored.Add(float64(n))
			in.setFailing(nil)
			for _, msg := range keep {
				if err := msg.Ack(); err != nil {
					// Not stored twice: a redelivery is skipped by id.
					in.log.Debug("history ingest: ack failed; message will be redelivered", "err", err)
				}
			}
			return
		}
		in.m.InsertErrors.Inc()
		in.setFailing(err)
		if ctx.Err() != nil {
			// Not stored and not acknowledged: the stream redelivers.
			in.log.Warn("history ingest: batch left unacknowledged at shutdown", "messages", len(rows), "err", err)
			return
		}
		in.log.Error("history ingest: insert failed; retrying", "messages", len(rows), "err", err, "in", delay)
		for _, msg := range keep {
			_ = msg.InProgress()
		}
		if !sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, in.cfg.MaxBackoff)
	}
}

// release stops pulling and negatively acknowledges the messages already
// buffered by the iterator (they are redelivered immediately).
func release(it jetstream.MessagesContext) {
	it.Drain()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		_ = msg.Nak()
	}
}

// sleep waits d or until ctx ends, reporting whether it waited fully.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
