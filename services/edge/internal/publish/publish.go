// Package publish is how the edge stores what clients send: user messages
// go to the CHAT stream (Publisher, one Lane per connection, bounded by the
// edge's pending PubAcks), typing events to core NATS (Typist).
package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
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

// PostResult is the outcome of Lane.Post.
type PostResult struct {
	// ID is the message id (stream sequence); for a duplicate, the
	// original message's id.
	ID uint64
	// Duplicate is true when the cid was already stored.
	Duplicate bool
}

// MsgID is the de-duplication id of a user message: scoped per room and
// user so one user's cid never suppresses another's message.
func MsgID(room, user, cid string) string {
	return room + "/" + names.UserToken(user) + "/" + cid
}

// PostDone receives the outcome of an asynchronous post. It runs on a
// publisher goroutine and must not block.
type PostDone func(PostResult, error)

// Publisher stores user messages without waiting: Lane.Post hands the
// message to JetStream (an asynchronous publish) and returns; the outcome
// reaches the caller's PostDone once the PubAck arrives, or with
// nreq.ErrUnavailable when none arrived within the timeout.
//
// Outcomes are reported in publish order per Lane (one per connection),
// so the acks of one connection keep the order of its messages, while a
// PubAck that never comes (a stream leader lost mid-publish) delays only
// the lane that waits for it, not every connection of the edge. Messages
// are written to NATS in call order on one connection, so one connection's
// messages are also stored in the order it sent them. A lane has a
// goroutine only while it has publishes pending.
type Publisher struct {
	js      jetstream.JetStream
	timeout time.Duration
	max     int

	mu      sync.Mutex
	pending int // publishes awaiting an outcome, all lanes
	workers int // lanes with a goroutine reporting outcomes
	closed  bool
	idle    chan struct{} // closed when workers drops to 0, if waited on
}

type pendingPost struct {
	fut  jetstream.PubAckFuture
	done PostDone
}

// NewPublisher returns a publisher on nc, to the JetStream of domain
// (natsconn.NewJetStream). timeout (nreq.DefaultTimeout when ≤ 0)
// bounds the wait for each PubAck; maxPending (DefaultMaxPending when ≤ 0)
// bounds the publishes awaiting one.
func NewPublisher(nc *nats.Conn, domain string, timeout time.Duration, maxPending int) (*Publisher, error) {
	if timeout <= 0 {
		timeout = nreq.DefaultTimeout
	}
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	js, err := natsconn.NewJetStream(nc, domain, jetstream.WithPublishAsyncMaxPending(maxPending), jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream publisher: %w", err)
	}
	return newPublisher(js, timeout, maxPending), nil
}

func newPublisher(js jetstream.JetStream, timeout time.Duration, maxPending int) *Publisher {
	return &Publisher{js: js, timeout: timeout, max: maxPending}
}

// Pending is the number of publishes awaiting an outcome.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending
}

// Lane orders the outcomes of one connection's posts. A Lane holds no
// goroutine and no buffer while nothing is pending.
type Lane struct {
	p *Publisher
	// Guarded by p.mu.
	queue   []pendingPost // FIFO of publishes awaiting an outcome
	head    int
	working bool
}

// NewLane returns a lane for one connection's posts.
func (p *Publisher) NewLane() *Lane { return &Lane{p: p} }

// Post publishes p, a user's event (a message, an edit, a delete or a
// reaction: room normalised, fields validated by the caller, p.TS set
// now when zero), to the CHAT stream with its de-duplication id
// (MsgID(p.Room, p.User, p.CID): a resent cid stores nothing new and is
// acked with the original id) and returns at once. done gets the outcome
// later, after the outcomes of the lane's earlier posts, unless Post
// returns an error: ErrBusy when the edge has too many publishes pending,
// ErrPublisherClosed, or a publish failure (wrapping nreq.ErrUnavailable
// when NATS cannot take it).
func (l *Lane) Post(post wire.Post, done PostDone) error {
	if post.TS == 0 {
		post.TS = time.Now().UnixMilli()
	}
	if post.Kind == "" {
		post.Kind = wire.KindMessage
	}
	room := post.Room
	data, err := json.Marshal(post)
	if err != nil {
		return fmt.Errorf("marshal post: %w", err)
	}
	msg := &nats.Msg{Subject: subjects.Room(room), Data: data, Header: nats.Header{}}
	msg.Header.Set(subjects.HeaderMsgID, MsgID(room, post.User, post.CID))

	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return ErrPublisherClosed
	case p.pending >= p.max:
		return ErrBusy
	}
	// Under p.mu: the publish order is the call order. The NATS client
	// never stalls here since its own bound equals ours and a future
	// leaves its pending set before it leaves our count.
	fut, err := p.js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Millisecond))
	if err != nil {
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return ErrBusy
		}
		return nreq.Classify(subjects.Room(room), err)
	}
	p.pending++
	l.queue = append(l.queue, pendingPost{fut: fut, done: done})
	if !l.working {
		l.working = true
		p.workers++
		go l.work()
	}
	return nil
}

// work reports the lane's outcomes in order until its queue is empty.
func (l *Lane) work() {
	p := l.p
	// A safety net on top of the client's own ack timeout.
	t := time.NewTimer(p.timeout + time.Second)
	defer t.Stop()
	for {
		p.mu.Lock()
		if l.head == len(l.queue) {
			l.queue, l.head = nil, 0 // an idle lane keeps no array
			l.working = false
			p.workers--
			if p.workers == 0 && p.idle != nil {
				close(p.idle)
				p.idle = nil
			}
			p.mu.Unlock()
			return
		}
		pp := l.queue[l.head]
		l.queue[l.head] = pendingPost{}
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
		l.head++
		p.pending--
		p.mu.Unlock()
		pp.done(res, err)
	}
}

// Close refuses further posts and waits until every pending outcome of
// every lane was reported (each within the publish timeout).
func (p *Publisher) Close() {
	p.mu.Lock()
	p.closed = true
	if p.workers == 0 {
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
// the connection dropped while waiting, is nreq.ErrUnavailable.
func classifyAsync(subject string, err error) error {
	if errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%s: %w: %w", subject, nreq.ErrUnavailable, err)
	}
	return nreq.Classify(subject, err)
}
