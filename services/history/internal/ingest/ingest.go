// Package ingest moves messages from the CHAT stream into the history
// store through a durable JetStream pull consumer. It inserts in batches
// and acknowledges each message only after the batch is committed, so an
// acknowledged message is always stored — or parked: a message that is
// not a valid room message, or whose row the database rejects, goes to the
// store's dead-letter table (with a metric and an error log naming its
// sequence) and is acknowledged, so that one bad message never stops the
// others. A failed insert of any other kind (the database down or slow) is
// retried, the messages held and kept in progress, until it succeeds.
// Several replicas may share the consumer: inserts are idempotent by id,
// parking by sequence.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/history/internal/metrics"
	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/backoff"
	"github.com/hubbub-chat/hubbub/shared/defaults"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Durable is the name of the history consumer on the CHAT stream.
const Durable = subjects.HistoryConsumer

// insertTimeout bounds one insert attempt.
const insertTimeout = 15 * time.Second

// ErrStalled is reported by Healthy while inserts keep failing.
var ErrStalled = errors.New("ingest stalled")

// Defaults of Config: each is used where the field is zero (or less).
const (
	// DefaultBatchSize is Config.BatchSize's default.
	DefaultBatchSize = 500
	// DefaultBatchWait is Config.BatchWait's default.
	DefaultBatchWait = 20 * time.Millisecond
	// DefaultAckWait is Config.AckWait's default.
	DefaultAckWait = 30 * time.Second
	// AckPendingBatches is how many batches Config.MaxAckPending allows by
	// default: MaxAckPending is AckPendingBatches × BatchSize.
	AckPendingBatches = 8
	// DefaultMaxBackoff is Config.MaxBackoff's default.
	DefaultMaxBackoff = 5 * time.Second
	// DefaultInserts is Config.Inserts's default.
	DefaultInserts = 2
	// DefaultMaxBody is Config.MaxBody's default, the edges' default
	// limit.
	DefaultMaxBody = wire.DefaultMaxBody
)

// Config tunes ingest. Zero values take the defaults.
type Config struct {
	// BatchSize is the most messages inserted in one transaction
	// (DefaultBatchSize).
	BatchSize int
	// BatchWait is how long a partial batch waits for more messages
	// (DefaultBatchWait).
	BatchWait time.Duration
	// AckWait is the consumer's redelivery timeout (DefaultAckWait).
	AckWait time.Duration
	// MaxAckPending bounds unacknowledged messages across all replicas
	// (AckPendingBatches × BatchSize).
	MaxAckPending int
	// MaxBackoff caps the retry delay after a failed insert
	// (DefaultMaxBackoff).
	MaxBackoff time.Duration
	// Inserts is how many batches are inserted concurrently
	// (DefaultInserts): while one batch commits, the next is inserted
	// instead of waiting.
	Inserts int
	// MaxBody is the longest message body in characters (after trimming)
	// stored (DefaultMaxBody); a longer one, like any body wire.CheckBody
	// refuses, is parked. Keep it at least the edges' limit.
	MaxBody int
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	defaults.Positive(&c.BatchSize, DefaultBatchSize)
	defaults.Positive(&c.BatchWait, DefaultBatchWait)
	defaults.Positive(&c.AckWait, DefaultAckWait)
	defaults.Positive(&c.MaxAckPending, AckPendingBatches*c.BatchSize)
	defaults.Positive(&c.MaxBackoff, DefaultMaxBackoff)
	defaults.Positive(&c.Inserts, DefaultInserts)
	defaults.Positive(&c.MaxBody, DefaultMaxBody)
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
	dec roomlog.Decoder
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
	for _, r := range []string{ReasonUndecodable, ReasonInvalid, ReasonRejected} {
		m.Parked.WithLabelValues(r) // export every reason from the start, at 0
	}
	cfg = cfg.WithDefaults()
	return &Ingester{js: js, st: st, cfg: cfg, dec: roomlog.Decoder{MaxBody: cfg.MaxBody}, log: log, m: m}, nil
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
	_ = backoff.Retry(ctx, backoff.Policy{Initial: 100 * time.Millisecond, Max: in.cfg.MaxBackoff}, in.session,
		func(err error, wait time.Duration) {
			in.log.Warn("history ingest interrupted; restarting", "err", err, "in", wait)
		})
	return nil
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

// Park reasons: the dead-letter table's reason column and the label of
// hubbub_history_ingest_parked_total.
const (
	// ReasonUndecodable parks a stream message that is not a room message
	// (a payload that is not a JSON post, a subject naming no valid room).
	ReasonUndecodable = "undecodable"
	// ReasonInvalid parks a room message that breaks the message rule
	// (roomlog.ErrInvalid: the body fails wire.CheckBody, say U+0000).
	ReasonInvalid = "invalid"
	// ReasonRejected parks a message whose row the database rejected
	// (store.ErrRejected), isolated from the rest of its batch.
	ReasonRejected = "rejected"
)

// parcel is a message on its way to the dead-letter table.
type parcel struct {
	msg    jetstream.Msg
	letter store.DeadLetter
}

func newParcel(msg jetstream.Msg, seq uint64, reason string, err error) parcel {
	room, _ := strings.CutPrefix(msg.Subject(), subjects.RoomPrefix)
	return parcel{msg: msg, letter: store.DeadLetter{
		Seq: seq, Room: room, Subject: msg.Subject(), Payload: msg.Data(), Reason: reason, Detail: err.Error(),
	}}
}

// flush decodes batch, inserts the room messages, parks what cannot be
// stored and then acknowledges everything, so one bad message never holds
// up the others:
//
//   - a message that is not a room message (roomlog.ErrUndecodable) or breaks
//     the message rule (roomlog.ErrInvalid) is parked at once;
//   - a batch the database rejects for its data (store.ErrRejected) is
//     split until each rejected row stands alone: those are parked, the
//     rest stored;
//   - any other failure (the database down or timing out) parks nothing:
//     the batch is retried with backoff, held in progress, until it
//     succeeds or the service stops. Inserts skip stored ids and parking
//     skips parked sequences, so a retry redoes nothing twice.
//
// During shutdown it makes one last attempt.
func (in *Ingester) flush(ctx context.Context, batch []jetstream.Msg) {
	if len(batch) == 0 {
		return
	}
	b := in.sortBatch(batch)
	retries := backoff.Policy{Initial: 50 * time.Millisecond, Max: in.cfg.MaxBackoff}.Start()
	for {
		err := in.attempt(ctx, b)
		if err == nil {
			in.setFailing(nil)
			b.ack(in.log)
			return
		}
		in.m.InsertErrors.Inc()
		in.setFailing(err)
		if ctx.Err() != nil {
			// Not stored and not acknowledged: the stream redelivers.
			in.log.Warn("history ingest: batch left unacknowledged at shutdown", "messages", b.len(), "err", err)
			return
		}
		delay := retries.Next()
		in.log.Error("history ingest: insert failed; retrying", "messages", b.len(), "err", err, "in", delay)
		b.inProgress()
		if !backoff.Sleep(ctx, delay) {
			return
		}
	}
}

// held is a message whose row is to be stored, with its stream sequence.
type held struct {
	msg jetstream.Msg
	seq uint64
}

// sorted is a batch on its way through flush: the rows to insert and
// their messages, the parcels to park, and whether the rows are inserted
// (a retry after a failed park does not insert again; parking is the last
// step, so once it succeeds the batch is done).
type sorted struct {
	rows     []wire.Message
	fresh    []wire.Message // the rows this insert stored (not duplicates)
	keep     []held
	park     []parcel
	inserted bool
}

// sortBatch decodes batch into rows and parcels. A message without
// metadata is terminated and dropped from the batch.
func (in *Ingester) sortBatch(batch []jetstream.Msg) *sorted {
	b := &sorted{rows: make([]wire.Message, 0, len(batch))}
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
		seq := meta.Sequence.Stream
		row, err := in.dec.Decode(seq, msg.Subject(), msg.Data(), meta.Timestamp)
		if err != nil {
			reason := ReasonInvalid
			if errors.Is(err, roomlog.ErrUndecodable) {
				reason = ReasonUndecodable
				in.m.Undecodable.Inc()
			}
			b.park = append(b.park, newParcel(msg, seq, reason, err))
			continue
		}
		b.rows = append(b.rows, row)
		b.keep = append(b.keep, held{msg: msg, seq: seq})
	}
	b.inserted = len(b.rows) == 0
	return b
}

// attempt makes one attempt at what b still needs: inserting its rows (the
// ones the database refuses join the parcels), then parking its parcels.
func (in *Ingester) attempt(ctx context.Context, b *sorted) error {
	if !b.inserted {
		start := time.Now()
		n, refused, err := in.insert(ctx, b.rows)
		if err != nil {
			return err
		}
		b.inserted = true
		in.m.InsertSeconds.Observe(time.Since(start).Seconds())
		in.m.BatchSize.Observe(float64(len(b.rows)))
		in.m.Stored.Add(float64(len(n)))
		b.fresh = n
		in.announceMentions(n)
		b.reject(refused)
	}
	if len(b.park) > 0 {
		return in.park(ctx, b.park)
	}
	return nil
}

// reject moves the messages whose rows the database refused (by id, with
// its error) from the stored ones to the parcels.
func (b *sorted) reject(refused map[uint64]error) {
	if len(refused) == 0 {
		return
	}
	stay := b.keep[:0:0]
	for _, h := range b.keep {
		if err, ok := refused[h.seq]; ok {
			b.park = append(b.park, newParcel(h.msg, h.seq, ReasonRejected, err))
		} else {
			stay = append(stay, h)
		}
	}
	b.keep = stay
}

// len is how many messages b holds.
func (b *sorted) len() int { return len(b.keep) + len(b.park) }

// ack acknowledges every message of b, stored or parked.
func (b *sorted) ack(log *slog.Logger) {
	for _, h := range b.keep {
		if err := h.msg.Ack(); err != nil {
			// Not stored twice: a redelivery is skipped by id.
			log.Debug("history ingest: ack failed; message will be redelivered", "err", err)
		}
	}
	for _, p := range b.park {
		if err := p.msg.Ack(); err != nil {
			// Not parked twice: a redelivery is skipped by sequence.
			log.Debug("history ingest: ack failed; message will be redelivered", "err", err)
		}
	}
}

// inProgress tells the stream that every message of b is still being
// worked on, so none is redelivered while a retry waits.
func (b *sorted) inProgress() {
	for _, h := range b.keep {
		_ = h.msg.InProgress()
	}
	for _, p := range b.park {
		_ = p.msg.InProgress()
	}
}

// insert stores rows, isolating the ones the database rejects: a batch
// refused for its data (store.ErrRejected) is split in halves until each
// refused row stands alone. It returns the rows actually inserted and
// the refused ids with their errors. Any other error is returned as is:
// it is transient and the caller retries (rows already inserted are then
// skipped by id).
func (in *Ingester) insert(ctx context.Context, rows []wire.Message) ([]wire.Message, map[uint64]error, error) {
	n, err := in.insertOnce(ctx, rows)
	if err == nil || !errors.Is(err, store.ErrRejected) {
		return n, nil, err
	}
	if len(rows) == 1 {
		return nil, map[uint64]error{rows[0].ID: err}, nil
	}
	in.log.Warn("history ingest: database rejected a batch; isolating the rows it refuses", "messages", len(rows), "err", err)
	refused := map[uint64]error{}
	var total []wire.Message
	mid := len(rows) / 2
	for _, half := range [][]wire.Message{rows[:mid], rows[mid:]} {
		n, r, err := in.insert(ctx, half)
		total = append(total, n...)
		if err != nil {
			return total, nil, err
		}
		maps.Copy(refused, r)
	}
	return total, refused, nil
}

// insertOnce makes one insert attempt. An insert under way completes even
// if shutdown begins: it is bounded by its own timeout, not by ctx.
func (in *Ingester) insertOnce(ctx context.Context, rows []wire.Message) ([]wire.Message, error) {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), insertTimeout)
	defer cancel()
	n, err := in.st.Insert(ictx, rows)
	if err != nil {
		return nil, fmt.Errorf("insert %d messages: %w", len(rows), err)
	}
	return n, nil
}

// announceMentions publishes, for each chat message of inserted (the rows
// this insert stored, committed: never a duplicate another replica or an
// earlier delivery stored), a wire.MentionEvent on core NATS
// subjects.Mention(token) per user it mentions, its author excepted, so
// that edges push those users a fresh unread state. A failed publish is
// logged and dropped: the unread state is also read on demand.
func (in *Ingester) announceMentions(inserted []wire.Message) {
	for _, m := range inserted {
		if m.Kind != wire.KindMessage {
			continue
		}
		for _, u := range slices.Compact(slices.Sorted(slices.Values(m.Mentions))) {
			if u == m.User || u == "" {
				continue
			}
			data, err := json.Marshal(wire.MentionEvent{Room: m.Room, ID: m.ID, User: u, By: m.User})
			if err == nil {
				err = in.js.Conn().Publish(subjects.Mention(names.UserToken(u)), data)
			}
			if err != nil {
				in.log.Debug("history ingest: mention event not published", "room", m.Room, "id", m.ID, "err", err)
				continue
			}
			in.m.Mentions.Inc()
		}
	}
}

// park records the parcels in the dead-letter table, logging each one
// and counting it by reason. If the database rejects even that (text is
// stored in a form every database holds, so it should not), the messages
// are terminated instead: they stay in the stream until it expires them,
// and ingest goes on.
func (in *Ingester) park(ctx context.Context, park []parcel) error {
	letters := make([]store.DeadLetter, len(park))
	now := time.Now()
	for i, p := range park {
		letters[i] = p.letter
		letters[i].ParkedAt = now
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), insertTimeout)
	err := in.st.Park(ictx, letters)
	cancel()
	if errors.Is(err, store.ErrRejected) {
		for _, p := range park {
			in.log.Error("history ingest: message cannot be stored or parked; terminated (it stays in the stream)",
				"seq", p.letter.Seq, "room", p.letter.Room, "reason", p.letter.Reason, "err", p.letter.Detail, "park_err", err)
			_ = p.msg.TermWithReason("unparkable")
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("park %d messages: %w", len(park), err)
	}
	for _, p := range park {
		in.m.Parked.WithLabelValues(p.letter.Reason).Inc()
		in.log.Error("history ingest: message parked, not stored; its id stays unused",
			"seq", p.letter.Seq, "room", p.letter.Room, "subject", p.letter.Subject, "reason", p.letter.Reason, "err", p.letter.Detail)
	}
	return nil
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
