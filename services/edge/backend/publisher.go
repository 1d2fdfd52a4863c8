package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrBusy is returned by Publisher.Post when the edge already has its
// maximum of publishes awaiting a PubAck.
var ErrBusy = errors.New("too many messages awaiting storage")

// ErrPublisherClosed is returned by Publisher.Post after Close.
var ErrPublisherClosed = errors.New("publisher closed")

// DefaultMaxPending bounds the publishes awaiting a PubAck on one edge.
const DefaultMaxPending = 4096

// PostDone receives the outcome of an asynchronous post. It runs on the
// publisher's goroutine and must not block.
type PostDone func(PostResult, error)

// Publisher stores user messages without waiting: Post hands the message
// to JetStream (an asynchronous publish) and returns; the outcome reaches
// the caller's PostDone once the PubAck arrives, or with ErrUnavailable
// when none arrived within the timeout.
//
// Outcomes are reported in publish order (one FIFO for the edge), so the
// acks of one connection keep the order of its messages. Messages are
// written to NATS in call order on one connection, so one connection's
// messages are also stored in the order it sent them. A goroutine runs
// only while publishes are pending.
type Publisher struct {
	js      jetstream.JetStream
	timeout time.Duration
	max     int

	mu      sync.Mutex
	queue   []pendingPost // FIFO of publishes awaiting an outcome
	head    int
	working bool
	closed  bool
	idle    chan struct{} // closed when the queue empties, if waited on
}

type pendingPost struct {
	fut  jetstream.PubAckFuture
	done PostDone
}

// NewPublisher returns a publisher on nc. timeout (DefaultTimeout when ≤ 0)
// bounds the wait for each PubAck; maxPending (DefaultMaxPending when ≤ 0)
// bounds the publishes awaiting one.
func NewPublisher(nc *nats.Conn, timeout time.Duration, maxPending int) (*Publisher, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPending), jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream publisher: %w", err)
	}
	return &Publisher{js: js, timeout: timeout, max: maxPending}, nil
}

// Pending is the number of publishes awaiting an outcome.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) - p.head
}

// Post publishes a user message (room normalised, body validated) to the
// CHAT stream with its de-duplication id and returns at once. done gets
// the outcome later, unless Post returns an error: ErrBusy when the edge
// has too many publishes pending, ErrPublisherClosed, or a publish
// failure (wrapping ErrUnavailable when NATS cannot take it).
func (p *Publisher) Post(room, user, body, cid string, done PostDone) error {
	data, err := json.Marshal(wire.Post{Room: room, User: user, Body: body, Kind: wire.KindMessage, TS: time.Now().UnixMilli(), CID: cid})
	if err != nil {
		return fmt.Errorf("marshal post: %w", err)
	}
	msg := &nats.Msg{Subject: subjects.Room(room), Data: data, Header: nats.Header{}}
	msg.Header.Set(subjects.HeaderMsgID, MsgID(room, user, cid))

	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return ErrPublisherClosed
	case len(p.queue)-p.head >= p.max:
		return ErrBusy
	}
	// Under p.mu: the publish order is the queue order. The NATS client
	// never stalls here since its own bound equals ours and a future
	// leaves its pending set before it leaves our queue.
	fut, err := p.js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Millisecond))
	if err != nil {
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return ErrBusy
		}
		return classify(subjects.Room(room), err)
	}
	p.queue = append(p.queue, pendingPost{fut: fut, done: done})
	if !p.working {
		p.working = true
		go p.work()
	}
	return nil
}

// work reports outcomes in order until the queue is empty.
func (p *Publisher) work() {
	// A safety net on top of the client's own ack timeout.
	t := time.NewTimer(p.timeout + time.Second)
	defer t.Stop()
	for {
		p.mu.Lock()
		if p.head == len(p.queue) {
			clear(p.queue)
			p.queue, p.head = p.queue[:0], 0
			p.working = false
			if p.idle != nil {
				close(p.idle)
				p.idle = nil
			}
			p.mu.Unlock()
			return
		}
		pp := p.queue[p.head]
		p.queue[p.head] = pendingPost{}
		p.mu.Unlock()

		t.Reset(p.timeout + time.Second)
		var res PostResult
		var err error
		select {
		case ack := <-pp.fut.Ok():
			res = PostResult{ID: ack.Sequence, Duplicate: ack.Duplicate}
		case err = <-pp.fut.Err():
		case <-t.C:
			err = jetstream.ErrAsyncPublishTimeout
		}
		if err != nil {
			err = classifyAsync(pp.fut.Msg().Subject, err)
		}
		// The slot is freed before the outcome is reported, so a caller
		// reacting to it may publish again.
		p.mu.Lock()
		p.head++
		p.mu.Unlock()
		pp.done(res, err)
	}
}

// Close refuses further posts and waits until every pending outcome was
// reported (each within the publish timeout).
func (p *Publisher) Close() {
	p.mu.Lock()
	p.closed = true
	if !p.working {
		p.mu.Unlock()
		return
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	idle := p.idle
	p.mu.Unlock()
	<-idle
}

// classifyAsync maps asynchronous publish failures: no PubAck in time, or
// the connection dropped while waiting, is ErrUnavailable.
func classifyAsync(subject string, err error) error {
	if errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%s: %w: %w", subject, ErrUnavailable, err)
	}
	return classify(subject, err)
}
