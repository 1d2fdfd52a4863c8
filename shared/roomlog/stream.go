package roomlog

// Reading: one room's messages straight from the CHAT stream, in sequence
// order, with JetStream batched direct gets ("next by subject"). History
// reads this way the part of a room its database has not stored yet (so
// answers stay gapless while ingest lags), the edge a whole page while
// history does not answer. A direct get creates no server state and needs
// no permission to create consumers.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Batch is how many messages one direct-get request asks for.
const Batch = 256

// ErrDirectUnavailable is returned when the stream does not answer direct
// gets (AllowDirect off) and no JetStream context is available to fall
// back on.
var ErrDirectUnavailable = errors.New("stream does not answer direct gets")

// Msg is one stored stream message.
type Msg struct {
	// Seq is the stream sequence (the message id).
	Seq uint64
	// Subject is the subject the message was published to.
	Subject string
	// Data is the payload.
	Data []byte
	// Time is when the stream stored the message.
	Time time.Time
}

// Reader reads messages of a stream. It is safe for concurrent use.
type Reader struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
	prefix string
}

// NewReader returns a reader of stream over nc. The direct gets go to the
// JetStream API of js (its domain or API prefix; "$JS.API" when js is
// nil); js, if not nil, also serves as a fallback (one message per
// request) when the stream does not allow direct gets.
func NewReader(nc *nats.Conn, js jetstream.JetStream, stream string) *Reader {
	return &Reader{nc: nc, js: js, stream: stream, prefix: apiPrefix(js)}
}

type directRequest struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
}

// Scan calls fn with every message on subject with sequence >= from, in
// order, until fn returns false, ctx ends or no message is left.
//
// The first message is fetched with a single direct get over the
// connection's shared reply subscription; only when there is one does the
// scan go on in batches over a subscription of its own. Most scans (a
// database that keeps up with the stream) find nothing and so cost one
// round trip and no subscription.
func (r *Reader) Scan(ctx context.Context, subject string, from uint64, fn func(Msg) bool) error {
	if from == 0 {
		from = 1
	}
	subj := r.prefix + ".DIRECT.GET." + r.stream
	req, err := json.Marshal(directRequest{Seq: from, NextFor: subject})
	if err != nil {
		return fmt.Errorf("direct get request: %w", err)
	}
	m, err := r.nc.RequestWithContext(ctx, subj, req)
	if errors.Is(err, nats.ErrNoResponders) {
		return r.scanFallback(ctx, subject, from, fn)
	}
	if err != nil {
		return fmt.Errorf("direct get %s from %d: %w", subject, from, err)
	}
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		switch m.Header.Get("Status") {
		case "404": // nothing at or after from
			return nil
		case "503":
			return r.scanFallback(ctx, subject, from, fn)
		default:
			return fmt.Errorf("direct get %s: status %s %s", subject, m.Header.Get("Status"), m.Header.Get("Description"))
		}
	}
	first, err := parse(m)
	if err != nil {
		return err
	}
	if !fn(first) {
		return nil
	}
	return r.scanBatches(ctx, subj, subject, first.Seq+1, fn)
}

// scanBatches goes on with Scan from from in batches of Batch.
func (r *Reader) scanBatches(ctx context.Context, subj, subject string, from uint64, fn func(Msg) bool) error {
	inbox := r.nc.NewInbox()
	// A channel sized for one batch (and its end-of-batch status): a
	// synchronous subscription would allocate a 64k-slot channel per scan.
	ch := make(chan *nats.Msg, Batch+2)
	sub, err := r.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return fmt.Errorf("direct get subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for {
		req, err := json.Marshal(directRequest{Seq: from, NextFor: subject, Batch: Batch})
		if err != nil {
			return fmt.Errorf("direct get request: %w", err)
		}
		if err := r.nc.PublishRequest(subj, inbox, req); err != nil {
			return fmt.Errorf("direct get %s: %w", subject, err)
		}
		var (
			got     int
			pending uint64
			done    bool
		)
		for !done {
			var m *nats.Msg
			select {
			case m = <-ch:
			case <-ctx.Done():
				return fmt.Errorf("direct get %s from %d: %w", subject, from, ctx.Err())
			}
			if len(m.Data) == 0 && m.Header.Get("Status") != "" {
				switch m.Header.Get("Status") {
				case "404": // nothing at or after from
					return nil
				case "204": // end of batch
					pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
					done = true
					continue
				case "503":
					return r.scanFallback(ctx, subject, from, fn)
				default:
					return fmt.Errorf("direct get %s: status %s %s", subject, m.Header.Get("Status"), m.Header.Get("Description"))
				}
			}
			msg, err := parse(m)
			if err != nil {
				return err
			}
			got++
			from = msg.Seq + 1
			if !fn(msg) {
				// Let the rest of the batch arrive and be dropped with the
				// subscription.
				return nil
			}
		}
		if got == 0 || pending == 0 {
			return nil
		}
	}
}

func parse(m *nats.Msg) (Msg, error) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return Msg{}, fmt.Errorf("direct get: bad %s header %q: %w", jetstream.SequenceHeader, m.Header.Get(jetstream.SequenceHeader), err)
	}
	ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	return Msg{Seq: seq, Subject: m.Header.Get(jetstream.SubjectHeader), Data: m.Data, Time: ts}, nil
}

// scanFallback reads one message per request through the JetStream API.
func (r *Reader) scanFallback(ctx context.Context, subject string, from uint64, fn func(Msg) bool) error {
	if r.js == nil {
		return ErrDirectUnavailable
	}
	st, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", r.stream, err)
	}
	for {
		m, err := st.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("get %s from %d: %w", subject, from, err)
		}
		from = m.Sequence + 1
		if !fn(Msg{Seq: m.Sequence, Subject: m.Subject, Data: m.Data, Time: m.Time}) {
			return nil
		}
	}
}

// apiPrefix is the JetStream API prefix js sends to, without the trailing
// dot: "$JS.API", "$JS.<domain>.API" or a custom prefix.
func apiPrefix(js jetstream.JetStream) string {
	if js == nil {
		return "$JS.API"
	}
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API"
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".")
	}
	return "$JS.API"
}

// ErrScanLimit is returned by ScanRoom when the room has more messages
// from the starting point on than the scan may read.
var ErrScanLimit = errors.New("room scan limit reached")

// ScanRoom calls fn with every message of room stored at or after from
// that dec accepts, decoded, in order, until fn returns false, ctx ends
// or no message is left. A stored message dec refuses is skipped: it is
// not part of the room (ingest parks it). With maxScan > 0, reading more
// than maxScan stream messages (skipped ones included) fails with
// ErrScanLimit.
func (r *Reader) ScanRoom(ctx context.Context, dec Decoder, room string, from uint64, maxScan int, fn func(wire.Message) bool) error {
	scanned := 0
	tooMany := false
	err := r.Scan(ctx, subjects.Room(room), from, func(m Msg) bool {
		scanned++
		if maxScan > 0 && scanned > maxScan {
			tooMany = true
			return false
		}
		msg, err := dec.Decode(m.Seq, m.Subject, m.Data, m.Time)
		if err != nil {
			return true
		}
		return fn(msg)
	})
	if err != nil {
		return err
	}
	if tooMany {
		return fmt.Errorf("%w: room %s has more than %d messages from %d on", ErrScanLimit, room, maxScan, from)
	}
	return nil
}
