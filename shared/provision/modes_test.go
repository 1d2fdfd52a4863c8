package provision_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// recorder is a slog.Handler keeping every record with its attributes.
type recorder struct {
	mu   *sync.Mutex
	recs *[]logged
}

type logged struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newRecorder() (*slog.Logger, func() []logged) {
	r := recorder{mu: &sync.Mutex{}, recs: &[]logged{}}
	return slog.New(r), func() []logged {
		r.mu.Lock()
		defer r.mu.Unlock()
		return slices.Clone(*r.recs)
	}
}

func (recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r recorder) WithAttrs([]slog.Attr) slog.Handler     { return r }
func (r recorder) WithGroup(string) slog.Handler          { return r }
func (r recorder) Handle(_ context.Context, rec slog.Record) error {
	l := logged{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	rec.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.recs = append(*r.recs, l)
	return nil
}

// differences renders the logged differences as "<kind> <name> <setting>: have -> want".
func differences(recs []logged) []string {
	var out []string
	for _, r := range recs {
		setting, ok := r.attrs["setting"]
		if !ok {
			continue
		}
		name := "stream " + r.attrs["stream"]
		if b, ok := r.attrs["bucket"]; ok {
			name = "bucket " + b
		}
		out = append(out, fmt.Sprintf("%s %s %s: %s -> %s", r.level, name, setting, r.attrs["have"], r.attrs["want"]))
	}
	slices.Sort(out)
	return out
}

func connect(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func within(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	st, err := js.Stream(within(t), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return st.CachedInfo().Config
}

func streamNames(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var names []string
	l := js.StreamNames(within(t))
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// TestEnsureKeepsOperatorChanges: an operator edits the stream and the
// buckets (nats stream edit, nats kv edit); the next start-up provisions
// again with the shipped defaults and keeps every edit, logging each
// difference as a warning with setting, have and want.
func TestEnsureKeepsOperatorChanges(t *testing.T) {
	js := connect(t)
	if err := provision.Ensure(within(t), js, provision.Config{}); err != nil {
		t.Fatal(err)
	}
	// The operator's edits.
	chat := streamConfig(t, js, subjects.Stream)
	chat.MaxAge, chat.Duplicates = 30*24*time.Hour, 5*time.Minute
	if _, err := js.UpdateStream(within(t), chat); err != nil {
		t.Fatal(err)
	}
	buckets := provision.Buckets(provision.Config{})
	roster, typing := buckets[0], buckets[1]
	roster.History = 5
	typing.TTL = 10 * time.Second
	for _, b := range []jetstream.KeyValueConfig{roster, typing} {
		if _, err := js.UpdateKeyValue(within(t), b); err != nil {
			t.Fatalf("edit bucket %s: %v", b.Bucket, err)
		}
	}

	log, records := newRecorder()
	if err := provision.Ensure(within(t), js, provision.Config{Log: log}); err != nil {
		t.Fatalf("ensure over edited settings: %v", err)
	}

	if got := streamConfig(t, js, subjects.Stream); got.MaxAge != 30*24*time.Hour || got.Duplicates != 5*time.Minute {
		t.Errorf("CHAT max age %v, duplicates %v: the operator's 720h, 5m were reverted", got.MaxAge, got.Duplicates)
	}
	if got := streamConfig(t, js, "KV_"+subjects.BucketRoster); got.MaxMsgsPerSubject != 5 {
		t.Errorf("roster history %d: the operator's 5 was reverted", got.MaxMsgsPerSubject)
	}
	if got := streamConfig(t, js, "KV_"+subjects.BucketTyping); got.MaxAge != 10*time.Second {
		t.Errorf("typing TTL %v: the operator's 10s was reverted", got.MaxAge)
	}
	want := []string{
		"WARN bucket hubbub_roster history: 5 -> 1",
		"WARN bucket hubbub_typing ttl: 10s -> 5s",
		"WARN stream CHAT duplicate_window: 5m0s -> 2m0s",
		"WARN stream CHAT max_age: 720h0m0s -> 168h0m0s",
	}
	if got := differences(records()); !slices.Equal(got, want) {
		t.Errorf("logged differences\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestEnsureNeverChangesReplicas: a process configured for other replicas
// than the stream and buckets have (here R3 against R1; the reverse, a
// process without HUBBUB_STREAM_REPLICAS=3 against a production R3
// stream, is the same comparison) changes nothing and warns.
func TestEnsureNeverChangesReplicas(t *testing.T) {
	js := connect(t)
	if err := provision.Ensure(within(t), js, provision.Config{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	log, records := newRecorder()
	if err := provision.Ensure(within(t), js, provision.Config{Replicas: 3, Log: log}); err != nil {
		t.Fatalf("ensure with other replicas: %v", err)
	}
	for _, name := range []string{subjects.Stream, "KV_" + subjects.BucketRoster, "KV_" + subjects.BucketTyping, "KV_" + subjects.BucketEdges} {
		if got := streamConfig(t, js, name).Replicas; got != 1 {
			t.Errorf("%s has %d replicas, want 1 (kept)", name, got)
		}
	}
	want := []string{
		"WARN bucket hubbub_edges replicas: 1 -> 3",
		"WARN bucket hubbub_members replicas: 1 -> 3",
		"WARN bucket hubbub_reads replicas: 1 -> 3",
		"WARN bucket hubbub_rooms replicas: 1 -> 3",
		"WARN bucket hubbub_roster replicas: 1 -> 3",
		"WARN bucket hubbub_typing replicas: 1 -> 3",
		"WARN stream CHAT replicas: 1 -> 3",
	}
	if got := differences(records()); !slices.Equal(got, want) {
		t.Errorf("logged differences\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestVerifyCreatesNothing: in verify mode a missing stream or bucket fails
// Ensure (and EnsureRetry, at once) with ErrMissing naming each, and
// nothing is created; with everything present it passes and warns about
// differences.
func TestVerifyCreatesNothing(t *testing.T) {
	js := connect(t)
	err := provision.Ensure(within(t), js, provision.Config{Mode: provision.ModeVerify})
	if !errors.Is(err, provision.ErrMissing) {
		t.Fatalf("verify on an empty server: %v, want ErrMissing", err)
	}
	for _, name := range []string{"stream CHAT", "bucket hubbub_roster", "bucket hubbub_typing", "bucket hubbub_members", "bucket hubbub_reads", "bucket hubbub_rooms", "bucket hubbub_edges"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if names := streamNames(t, js); len(names) != 0 {
		t.Fatalf("verify created %v", names)
	}
	log, _ := newRecorder()
	if err := provision.EnsureRetry(within(t), js, provision.Config{Mode: provision.ModeVerify}, log); !errors.Is(err, provision.ErrMissing) {
		t.Fatalf("EnsureRetry in verify mode: %v, want ErrMissing (not retried)", err)
	}

	if err := provision.Ensure(within(t), js, provision.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(within(t), subjects.BucketEdges); err != nil {
		t.Fatal(err)
	}
	err = provision.Ensure(within(t), js, provision.Config{Mode: provision.ModeVerify})
	if !errors.Is(err, provision.ErrMissing) || !strings.Contains(err.Error(), "bucket hubbub_edges") || strings.Contains(err.Error(), "CHAT") {
		t.Fatalf("verify without the edges bucket: %v", err)
	}
	if _, err := js.KeyValue(within(t), subjects.BucketEdges); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("verify recreated the edges bucket: %v", err)
	}

	if err := provision.Ensure(within(t), js, provision.Config{}); err != nil {
		t.Fatal(err)
	}
	log, records := newRecorder()
	if err := provision.Ensure(within(t), js, provision.Config{Mode: provision.ModeVerify, MaxAge: time.Hour, Log: log}); err != nil {
		t.Fatalf("verify with everything present: %v", err)
	}
	if got, want := differences(records()), []string{"WARN stream CHAT max_age: 168h0m0s -> 1h0m0s"}; !slices.Equal(got, want) {
		t.Errorf("logged %v, want %v", got, want)
	}
	if got := streamConfig(t, js, subjects.Stream).MaxAge; got != provision.DefaultMaxAge {
		t.Errorf("verify changed max age to %v", got)
	}
}

// TestOffTouchesNothing: off creates nothing, looks at nothing, logs nothing.
func TestOffTouchesNothing(t *testing.T) {
	js := connect(t)
	log, records := newRecorder()
	if err := provision.Ensure(within(t), js, provision.Config{Mode: provision.ModeOff, Log: log}); err != nil {
		t.Fatal(err)
	}
	if err := provision.EnsureRetry(within(t), js, provision.Config{Mode: provision.ModeOff}, log); err != nil {
		t.Fatal(err)
	}
	if names := streamNames(t, js); len(names) != 0 {
		t.Fatalf("off created %v", names)
	}
	// Not even a request: a closed connection does not matter.
	js.Conn().Close()
	if err := provision.Ensure(within(t), js, provision.Config{Mode: provision.ModeOff, Log: log}); err != nil {
		t.Fatalf("off on a closed connection: %v", err)
	}
	if recs := records(); len(recs) != 0 {
		t.Fatalf("off logged %v", recs)
	}
}

// TestIncompatibleStreamFails: a CHAT stream that does not republish to
// chat.live.* (live delivery would never happen) is not changed and fails
// start-up with ErrIncompatible; extra subjects alone only warn.
func TestIncompatibleStreamFails(t *testing.T) {
	js := connect(t)
	if _, err := js.CreateStream(within(t), jetstream.StreamConfig{Name: subjects.Stream, Subjects: []string{subjects.RoomAll}, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	log, records := newRecorder()
	err := provision.Ensure(within(t), js, provision.Config{Log: log})
	if !errors.Is(err, provision.ErrIncompatible) || !strings.Contains(err.Error(), "republish") {
		t.Fatalf("CHAT without RePublish: %v, want ErrIncompatible naming republish", err)
	}
	if got := streamConfig(t, js, subjects.Stream); got.RePublish != nil {
		t.Fatalf("provisioning changed the stream: RePublish %+v", got.RePublish)
	}
	found := false
	for _, r := range records() {
		found = found || (r.level == slog.LevelError && r.attrs["setting"] == "republish")
	}
	if !found {
		t.Errorf("no error logged for republish: %v", records())
	}
	log2, _ := newRecorder()
	if err := provision.EnsureRetry(within(t), js, provision.Config{}, log2); !errors.Is(err, provision.ErrIncompatible) {
		t.Fatalf("EnsureRetry: %v, want ErrIncompatible (not retried)", err)
	}

	// The shipped stream plus an operator's extra subject: a warning.
	want := provision.StreamConfig(provision.Config{})
	want.Subjects = append(want.Subjects, "audit.>")
	if _, err := js.UpdateStream(within(t), want); err != nil {
		t.Fatal(err)
	}
	log, records = newRecorder()
	if err := provision.Ensure(within(t), js, provision.Config{Log: log}); err != nil {
		t.Fatalf("CHAT with an extra subject: %v", err)
	}
	if got, w := differences(records()), []string{"WARN stream CHAT subjects: audit.>,chat.room.* -> chat.room.*"}; !slices.Equal(got, w) {
		t.Errorf("logged %v, want %v", got, w)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]provision.Mode{"": provision.ModeManage, "manage": provision.ModeManage, "verify": provision.ModeVerify, "off": provision.ModeOff} {
		if got, err := provision.ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"Manage", "create", "none"} {
		if _, err := provision.ParseMode(in); !errors.Is(err, provision.ErrBadMode) {
			t.Errorf("ParseMode(%q): %v, want ErrBadMode", in, err)
		}
	}
	js := connect(t)
	if err := provision.EnsureRetry(within(t), js, provision.Config{Mode: "sometimes"}, slog.Default()); !errors.Is(err, provision.ErrBadMode) {
		t.Errorf("EnsureRetry with a bad mode: %v", err)
	}
}
