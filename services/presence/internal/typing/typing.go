// Package typing tracks who is typing where. Edges publish wire.TypingEvent
// on chat.typing.<room>; the Tracker (one queue-group member per presence
// replica) records "on" as a key "<room>.<usertoken>" in the typing KV bucket,
// whose TTL removes it when the typist goes quiet, and removes it on "off".
// A shared durable consumer on the bucket's stream sees the TTL markers and
// publishes the "off" event the typist's edge never sent; being a single
// consumer, it hands each marker to exactly one replica.
package typing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/backoff"
	"github.com/hubbub-chat/hubbub/shared/defaults"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ConnPrefix starts the Conn field of events presence publishes itself;
// events carrying it are ignored so presence never reacts to its own.
const ConnPrefix = "presence"

// ExpiryConsumer is the durable consumer, shared by all replicas, that turns
// TTL markers of the typing bucket into "off" events.
const ExpiryConsumer = "presence_typing_expiry"

// ErrBadEvent is returned for a typing event that is malformed.
var ErrBadEvent = errors.New("bad typing event")

// ParseEvent decodes and checks a typing event received on subject. The
// room is taken from the subject; a Room field, when present, must agree.
func ParseEvent(subject string, data []byte) (wire.TypingEvent, error) {
	var ev wire.TypingEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return wire.TypingEvent{}, fmt.Errorf("%w: %w", ErrBadEvent, err)
	}
	if !strings.HasPrefix(subject, subjects.TypingPrefix) {
		return wire.TypingEvent{}, fmt.Errorf("%w: subject %q", ErrBadEvent, subject)
	}
	room := subject[len(subjects.TypingPrefix):]
	if !names.ValidRoom(room) {
		return wire.TypingEvent{}, fmt.Errorf("%w: room %q", ErrBadEvent, room)
	}
	if ev.Room != "" && ev.Room != room {
		return wire.TypingEvent{}, fmt.Errorf("%w: room %q on subject of %q", ErrBadEvent, ev.Room, room)
	}
	ev.Room = room
	if _, err := names.User(ev.User); err != nil {
		return wire.TypingEvent{}, fmt.Errorf("%w: %w", ErrBadEvent, err)
	}
	if ev.State != wire.TypingOn && ev.State != wire.TypingOff {
		return wire.TypingEvent{}, fmt.Errorf("%w: state %q", ErrBadEvent, ev.State)
	}
	return ev, nil
}

// Config tunes a Tracker.
type Config struct {
	// TTL is the typing bucket's TTL. A typist's key is re-put at most every
	// TTL/4 while "on" events keep coming.
	TTL time.Duration
	// Bucket opens the typing bucket, re-creating it if it vanished (it is
	// kept in memory, so a single NATS server loses it on restart).
	Bucket func(ctx context.Context) (jetstream.KeyValue, error)
	// OpTimeout bounds one KV operation made for an event.
	OpTimeout time.Duration
	// OnExpired, if set, is called once per "off" event published for an
	// expired typing key.
	OnExpired func()
}

type typist struct {
	room, user string
	at         time.Time // when the key was last put
}

// Tracker records typing state and answers who is typing. It is a
// watch.View of the typing bucket.
type Tracker struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger

	mu     sync.RWMutex
	keys   map[string]typist
	rooms  map[string]map[string]struct{}
	recent map[string]time.Time // keys this replica put, until the view shows them

	kvMu sync.Mutex
	kv   jetstream.KeyValue
}

// NewTracker returns a Tracker.
func NewTracker(cfg Config, nc *nats.Conn, js jetstream.JetStream, log *slog.Logger) *Tracker {
	defaults.Positive(&cfg.TTL, 5*time.Second)
	defaults.Positive(&cfg.OpTimeout, 5*time.Second)
	if cfg.OnExpired == nil {
		cfg.OnExpired = func() {}
	}
	return &Tracker{cfg: cfg, nc: nc, js: js, log: log,
		keys: map[string]typist{}, rooms: map[string]map[string]struct{}{}, recent: map[string]time.Time{}}
}

// bucket returns the typing bucket, opening (and re-creating) it on demand.
func (t *Tracker) bucket(ctx context.Context, reopen bool) (jetstream.KeyValue, error) {
	t.kvMu.Lock()
	defer t.kvMu.Unlock()
	if t.kv != nil && !reopen {
		return t.kv, nil
	}
	kv, err := t.cfg.Bucket(ctx)
	if err != nil {
		return nil, err
	}
	t.kv = kv
	return kv, nil
}

// Handle is the subscription callback for subjects.TypingAll.
func (t *Tracker) Handle(msg *nats.Msg) {
	ev, err := ParseEvent(msg.Subject, msg.Data)
	if err != nil {
		t.log.Debug("ignoring typing event", "subject", msg.Subject, "err", err)
		return
	}
	if strings.HasPrefix(ev.Conn, ConnPrefix) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.OpTimeout)
	defer cancel()
	if err := t.Record(ctx, ev); err != nil {
		t.log.Warn("record typing", "room", ev.Room, "err", err)
	}
}

// Record applies a checked typing event to the bucket.
func (t *Tracker) Record(ctx context.Context, ev wire.TypingEvent) error {
	key := subjects.RosterKey(ev.Room, userToken(ev.User))
	now := time.Now()
	t.mu.Lock()
	last := t.keys[key].at
	if r, ok := t.recent[key]; ok && r.After(last) {
		last = r
	}
	if ev.State == wire.TypingOn {
		if now.Sub(last) < t.cfg.TTL/4 {
			t.mu.Unlock()
			return nil // fresh enough: the TTL has most of its time left
		}
		t.recent[key] = now
	} else {
		delete(t.recent, key)
	}
	t.mu.Unlock()
	if ev.State == wire.TypingOff && now.Sub(last) > t.cfg.TTL {
		return nil // not typing as far as anyone knows
	}
	return t.retry(ctx, func(kv jetstream.KeyValue) error {
		if ev.State == wire.TypingOn {
			b, err := json.Marshal(wire.TypingEvent{Room: ev.Room, User: ev.User, State: wire.TypingOn, Conn: ev.Conn})
			if err != nil {
				return fmt.Errorf("encode typing entry: %w", err)
			}
			_, err = kv.Put(ctx, key, b)
			return err
		}
		return kv.Purge(ctx, key)
	})
}

// retry runs op on the bucket, re-opening the bucket once if it seems gone.
func (t *Tracker) retry(ctx context.Context, op func(jetstream.KeyValue) error) error {
	kv, err := t.bucket(ctx, false)
	if err != nil {
		return err
	}
	err = op(kv)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrNoResponders) {
		if kv, err = t.bucket(ctx, true); err != nil {
			return err
		}
		err = op(kv)
	}
	if err != nil {
		return fmt.Errorf("typing bucket: %w", err)
	}
	return nil
}

// Clear removes user's typing entry in room, if any, and tells the room
// they stopped (used when the user leaves the room).
func (t *Tracker) Clear(ctx context.Context, room, user string) error {
	key := subjects.RosterKey(room, userToken(user))
	t.mu.RLock()
	_, typing := t.keys[key]
	_, recent := t.recent[key]
	t.mu.RUnlock()
	if !typing && !recent {
		return nil
	}
	if err := t.Record(ctx, wire.TypingEvent{Room: room, User: user, State: wire.TypingOff}); err != nil {
		return err
	}
	return t.publishOff(room, user)
}

func (t *Tracker) publishOff(room, user string) error {
	b, err := json.Marshal(wire.TypingEvent{Room: room, User: user, State: wire.TypingOff, Conn: ConnPrefix})
	if err != nil {
		return fmt.Errorf("encode typing off: %w", err)
	}
	if err := t.nc.Publish(subjects.Typing(room), b); err != nil {
		return fmt.Errorf("publish typing off: %w", err)
	}
	return nil
}

// Typists returns the users typing in room, sorted.
func (t *Tracker) Typists(room string) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	users := make([]string, 0, len(t.rooms[room]))
	for u := range t.rooms[room] {
		users = append(users, u)
	}
	slices.Sort(users)
	return users
}

// Replace implements watch.View.
func (t *Tracker) Replace(entries []jetstream.KeyValueEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keys = map[string]typist{}
	t.rooms = map[string]map[string]struct{}{}
	for _, e := range entries {
		t.apply(e)
	}
}

// Apply implements watch.View.
func (t *Tracker) Apply(e jetstream.KeyValueEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.apply(e)
}

func (t *Tracker) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	if old, ok := t.keys[key]; ok {
		delete(t.keys, key)
		if m := t.rooms[old.room]; m != nil {
			delete(m, old.user)
			if len(m) == 0 {
				delete(t.rooms, old.room)
			}
		}
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(t.recent, key)
		return
	}
	room, user, err := splitKey(key)
	if err != nil {
		return
	}
	delete(t.recent, key)
	t.keys[key] = typist{room: room, user: user, at: e.Created()}
	m := t.rooms[room]
	if m == nil {
		m = map[string]struct{}{}
		t.rooms[room] = m
	}
	m[user] = struct{}{}
}

func splitKey(key string) (room, user string, err error) {
	room, tok, ok := strings.Cut(key, ".")
	if !ok || !names.ValidRoom(room) {
		return "", "", fmt.Errorf("%w: key %q", ErrBadEvent, key)
	}
	user, err = names.UserFromToken(tok)
	if err != nil {
		return "", "", fmt.Errorf("%w: key %q: %w", ErrBadEvent, key, err)
	}
	return room, user, nil
}

// RunExpiry consumes the typing bucket's stream through the shared durable
// consumer and publishes an "off" event for every key that expired by TTL,
// until ctx ends. Failures are logged and the consumer re-established.
func (t *Tracker) RunExpiry(ctx context.Context) error {
	_ = backoff.Retry(ctx, backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}, t.expiryOnce,
		func(err error, wait time.Duration) {
			t.log.Warn("typing expiry consumer interrupted; re-establishing", "err", err, "retry_in", wait)
		})
	return nil
}

// expiryPull is how long one pull of the expiry consumer waits.
const expiryPull = 4 * time.Second

func (t *Tracker) expiryOnce(ctx context.Context) error {
	kv, err := t.bucket(ctx, true)
	if err != nil {
		return err
	}
	stream := "KV_" + kv.Bucket()
	cons, err := t.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:           ExpiryConsumer,
		Description:       "presence: publish typing off when a typing key expires",
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           10 * time.Second,
		MaxDeliver:        5,
		FilterSubject:     "$KV." + kv.Bucket() + ".>",
		HeadersOnly:       true,
		InactiveThreshold: time.Hour,
	})
	if err != nil {
		return fmt.Errorf("typing expiry consumer: %w", err)
	}
	// Short pulls: after a reconnect the iterator re-pulls at once, but a
	// pull the restarted server could not yet answer is only noticed by
	// its missing heartbeats (half the expiry, twice over). With the
	// default 30 s expiry that silenced typing "off" for 10 s after a
	// NATS restart; with 4 s it is 4 s at most.
	it, err := cons.Messages(jetstream.PullExpiry(expiryPull))
	if err != nil {
		return fmt.Errorf("typing expiry messages: %w", err)
	}
	defer it.Stop()
	prefix := "$KV." + kv.Bucket() + "."
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("typing expiry next: %w", err)
		}
		if msg.Headers().Get(jetstream.MarkerReasonHeader) == "MaxAge" {
			key := strings.TrimPrefix(msg.Subject(), prefix)
			if room, user, err := splitKey(key); err == nil {
				if err := t.publishOff(room, user); err != nil {
					t.log.Warn("typing expiry", "key", key, "err", err)
					_ = msg.Nak()
					continue
				}
				t.cfg.OnExpired()
			}
		}
		_ = msg.Ack()
	}
}

func userToken(user string) string { return names.UserToken(user) }
