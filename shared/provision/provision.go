// Package provision creates the JetStream stream and KV buckets Hubbub runs
// on when they are missing, and checks those that exist. Every service
// calls Ensure at start-up, so any of them may come up first.
//
// Provisioning never updates what exists: a stream or bucket that is there
// is compared with the configuration and each difference is logged as a
// warning (setting, have, want), never applied. An operator's
// `nats stream edit CHAT --max-age=30d` therefore survives restarts, and a
// process started with other settings (say, without
// HUBBUB_STREAM_REPLICAS=3) cannot downgrade a production stream. Only the
// few settings without which Hubbub cannot work (the CHAT subjects and its
// RePublish to chat.live.*) fail start-up when they differ (ErrIncompatible).
//
// Mode selects what Ensure may do: ModeManage (the default) creates what is
// missing; ModeVerify creates nothing and fails when something is missing;
// ModeOff does nothing at all, for operators who manage the stream and
// buckets themselves (NACK, Terraform, the nats CLI).
//
// Config.StreamMaxBytes and Config.BucketMaxBytes cap the size of the
// stream and of each bucket; an account whose JetStream limits set
// max_bytes_required refuses streams and buckets without them
// (ErrMaxBytesRequired names the setting).
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/backoff"
	"github.com/hubbub-chat/hubbub/shared/defaults"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// Mode says what Ensure may do with the stream and buckets.
type Mode string

// Provisioning modes ($HUBBUB_PROVISION).
const (
	// ModeManage creates what is missing and warns about differences in
	// what exists. The zero Mode means ModeManage.
	ModeManage Mode = "manage"
	// ModeVerify creates nothing: something missing fails Ensure with
	// ErrMissing; differences are warned about.
	ModeVerify Mode = "verify"
	// ModeOff makes Ensure do nothing, not even look.
	ModeOff Mode = "off"
)

// Modes lists the valid modes, the default first.
var Modes = []Mode{ModeManage, ModeVerify, ModeOff}

// Errors of Ensure that callers branch on; retrying does not help with any
// of them.
var (
	// ErrBadMode is an unknown Mode.
	ErrBadMode = errors.New("unknown provisioning mode")
	// ErrMissing means the stream or a bucket does not exist and the mode
	// (verify) does not create it.
	ErrMissing = errors.New("stream or bucket missing")
	// ErrIncompatible means an existing stream lacks a setting Hubbub
	// cannot work without; provisioning does not change it.
	ErrIncompatible = errors.New("existing stream incompatible")
	// ErrMaxBytesRequired means the account's JetStream limits
	// (max_bytes_required) refuse a stream or bucket without a size limit:
	// set StreamMaxBytes / BucketMaxBytes.
	ErrMaxBytesRequired = errors.New("the JetStream account requires a max bytes limit")
	// ErrAccountLimits means a stream or bucket does not fit the account's
	// JetStream limits (its max bytes above the account's per-stream limit
	// or its free storage).
	ErrAccountLimits = errors.New("beyond the JetStream account's limits")
)

// The flags and environment variables of the size limits, as
// shared/config registers them; errors name both.
const (
	FlagStreamMaxBytes, EnvStreamMaxBytes = "stream-max-bytes", "HUBBUB_STREAM_MAX_BYTES"
	FlagBucketMaxBytes, EnvBucketMaxBytes = "bucket-max-bytes", "HUBBUB_BUCKET_MAX_BYTES"
)

// JetStream API error codes Ensure explains.
const (
	errCodeMaxBytesRequired jetstream.ErrorCode = 10113 // account requires a stream config to have max bytes set
	errCodeMaxStreamBytes   jetstream.ErrorCode = 10122 // stream max bytes exceeds account limit max stream bytes
	errCodeStorageResources jetstream.ErrorCode = 10047 // insufficient storage resources available
	errCodeMemoryResources  jetstream.ErrorCode = 10028 // insufficient memory resources available
	unlimited                                   = "unlimited"
)

// ParseMode returns the Mode named s ("" is ModeManage).
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return ModeManage, nil
	}
	if m := Mode(s); slices.Contains(Modes, m) {
		return m, nil
	}
	return "", fmt.Errorf("%w %q (want manage, verify or off)", ErrBadMode, s)
}

// Config sizes the stream and buckets and says how to provision them. Zero
// values take the defaults below.
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
	// StreamMaxBytes caps the CHAT stream's size in bytes: beyond it
	// JetStream discards the oldest messages, as it does after MaxAge
	// (history keeps its own copy, so size it well above what history can
	// lag behind). 0 or -1: no limit. Accounts with max_bytes_required
	// need it.
	StreamMaxBytes int64
	// BucketMaxBytes caps each KV bucket's size in bytes: beyond it writes
	// to that bucket fail (KV buckets discard new writes), so size it
	// generously (rosters hold one small entry per user and room). 0 or
	// -1: no limit. Accounts with max_bytes_required need it.
	BucketMaxBytes int64
	// Mode is what Ensure may do; "" is ModeManage.
	Mode Mode
	// Log receives what Ensure created and the differences it found; nil
	// is slog.Default().
	Log *slog.Logger
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
	defaults.Positive(&c.Replicas, 1)
	defaults.Positive(&c.MaxAge, DefaultMaxAge)
	defaults.Positive(&c.Duplicates, DefaultDuplicates)
	defaults.Positive(&c.TypingTTL, DefaultTypingTTL)
	defaults.Positive(&c.LeaseTTL, DefaultLeaseTTL)
	c.StreamMaxBytes, c.BucketMaxBytes = maxBytes(c.StreamMaxBytes), maxBytes(c.BucketMaxBytes)
	if c.Mode == "" {
		c.Mode = ModeManage
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// maxBytes is n as JetStream's MaxBytes: -1 (no limit) for 0 and below.
func maxBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// StreamConfig is the CHAT stream: it captures chat.room.*, keeps messages
// on disk for MaxAge (and within StreamMaxBytes), de-duplicates by Nats-Msg-Id and republishes every
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
		MaxBytes:    c.StreamMaxBytes,
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
			MaxBytes:    c.BucketMaxBytes,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
		},
		{
			Bucket:         subjects.BucketTyping,
			Description:    "typing state: <room>.<usertoken>, expires after TTL",
			History:        1,
			TTL:            c.TypingTTL,
			LimitMarkerTTL: time.Minute,
			MaxBytes:       c.BucketMaxBytes,
			Storage:        jetstream.FileStorage,
			Replicas:       c.Replicas,
		},
		{
			Bucket:      subjects.BucketMembers,
			Description: "room members: <room>.<usertoken> -> first join, until an explicit leave",
			History:     1,
			MaxBytes:    c.BucketMaxBytes,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
		},
		{
			Bucket:      subjects.BucketRooms,
			Description: "rooms: <room> -> record (private, dm, owner, title, topic); <room>.<usertoken> -> grant (role, invite, ban, mute); _quota.<usertoken> -> rooms created",
			History:     1,
			MaxBytes:    c.BucketMaxBytes,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
		},
		{
			Bucket:      subjects.BucketReads,
			Description: "read state: <usertoken>.<room> -> last message id read",
			History:     1,
			MaxBytes:    c.BucketMaxBytes,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
		},
		{
			Bucket:         subjects.BucketEdges,
			Description:    "edge leases: <edgeid>, renewed while the edge lives",
			History:        1,
			TTL:            c.LeaseTTL,
			LimitMarkerTTL: time.Minute,
			MaxBytes:       c.BucketMaxBytes,
			Storage:        jetstream.FileStorage,
			Replicas:       c.Replicas,
		},
	}
}

// kvStreamPrefix names a bucket's backing stream: KV_<bucket>.
const kvStreamPrefix = "KV_"

// difference is one setting of an existing stream or bucket that is not
// what the configuration asks for.
type difference struct {
	setting, have, want string
	// required: Hubbub does not work with have (ErrIncompatible).
	required bool
}

// Ensure makes sure the stream and buckets exist, as c.Mode allows:
// ModeManage creates those that are missing, ModeVerify fails with
// ErrMissing when one is missing, ModeOff returns at once. What exists is
// never updated: every setting that differs from c is logged as a warning
// with the fields setting, have and want. A CHAT stream whose subjects or
// RePublish Hubbub cannot work with fails with ErrIncompatible.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	c = c.WithDefaults()
	switch c.Mode {
	case ModeOff:
		return nil
	case ModeManage, ModeVerify:
	default:
		return fmt.Errorf("provision: %w %q", ErrBadMode, c.Mode)
	}
	var missing, incompatible []string
	check := func(kind, name string, diffs []difference) {
		for _, d := range diffs {
			level, msg := slog.LevelWarn, "provisioning: existing "+kind+" differs from the configuration; left as it is"
			if d.required {
				level, msg = slog.LevelError, "provisioning: existing "+kind+" lacks a setting Hubbub needs"
				incompatible = append(incompatible, fmt.Sprintf("%s %s: %s is %s, want %s", kind, name, d.setting, d.have, d.want))
			}
			c.Log.Log(ctx, level, msg, kind, name, "setting", d.setting, "have", d.have, "want", d.want)
		}
	}

	want := StreamConfig(c)
	have, err := ensureOne(ctx, js, c, "stream", want.Name, func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, want)
		return err
	})
	if errors.Is(err, ErrMissing) {
		missing = append(missing, "stream "+want.Name)
	} else if err != nil {
		return err
	}
	if have != nil {
		check("stream", want.Name, compareStream(*have, want))
	}

	for _, b := range Buckets(c) {
		have, err := ensureOne(ctx, js, c, "bucket", b.Bucket, func(ctx context.Context) error {
			_, err := js.CreateKeyValue(ctx, b)
			return err
		})
		if errors.Is(err, ErrMissing) {
			missing = append(missing, "bucket "+b.Bucket)
			continue
		}
		if err != nil {
			return err
		}
		if have != nil {
			check("bucket", b.Bucket, compareBucket(*have, b))
		}
	}

	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("provision: %w: %s (HUBBUB_PROVISION=verify creates nothing: create them, or use manage)",
			ErrMissing, strings.Join(missing, ", ")))
	}
	if len(incompatible) > 0 {
		errs = append(errs, fmt.Errorf("provision: %w: %s (provisioning never changes an existing stream: fix it with the nats CLI)",
			ErrIncompatible, strings.Join(incompatible, "; ")))
	}
	return errors.Join(errs...)
}

// ensureOne looks up the stream (kind "stream") or the bucket's backing
// stream (kind "bucket") called name and returns its configuration. When
// it is missing, it is created with create (ModeManage: the result is nil,
// nothing to compare) or reported as ErrMissing (ModeVerify). One created
// meanwhile by another process is looked up again and compared.
func ensureOne(ctx context.Context, js jetstream.JetStream, c Config, kind, name string, create func(context.Context) error) (*jetstream.StreamConfig, error) {
	stream := name
	if kind == "bucket" {
		stream = kvStreamPrefix + name
	}
	lookup := func() (*jetstream.StreamConfig, error) {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return nil, err
		}
		cfg := st.CachedInfo().Config
		return &cfg, nil
	}
	have, err := lookup()
	switch {
	case err == nil:
		return have, nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("provision %s %s: %w", kind, name, err)
	case c.Mode == ModeVerify:
		return nil, ErrMissing
	}
	err = create(ctx)
	if err == nil {
		size := c.StreamMaxBytes
		if kind == "bucket" {
			size = c.BucketMaxBytes
		}
		c.Log.Info("provisioning: created "+kind, kind, name, "replicas", c.Replicas, "max_bytes", bytesString(size))
		return nil, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, fmt.Errorf("provision %s %s: create: %w", kind, name, explainLimits(kind, err))
	}
	// Another process created it with other settings in the meantime.
	if have, err = lookup(); err != nil {
		return nil, fmt.Errorf("provision %s %s: %w", kind, name, err)
	}
	return have, nil
}

// compareStream lists how the existing CHAT stream differs from want.
func compareStream(have, want jetstream.StreamConfig) []difference {
	var d []difference
	add := func(setting string, h, w any, required bool) {
		hs, ws := fmt.Sprint(h), fmt.Sprint(w)
		if hs != ws {
			d = append(d, difference{setting: setting, have: hs, want: ws, required: required})
		}
	}
	hs, ws := slices.Sorted(slices.Values(have.Subjects)), slices.Sorted(slices.Values(want.Subjects))
	if !slices.Equal(hs, ws) {
		// Extra subjects are the operator's business; not capturing the
		// rooms is not.
		covered := true
		for _, w := range want.Subjects {
			covered = covered && slices.ContainsFunc(have.Subjects, func(h string) bool { return subjectCovers(h, w) })
		}
		d = append(d, difference{setting: "subjects", have: strings.Join(hs, ","), want: strings.Join(ws, ","), required: !covered})
	}
	add("storage", have.Storage, want.Storage, false)
	add("retention", have.Retention, want.Retention, false)
	add("discard", have.Discard, want.Discard, false)
	add("max_age", have.MaxAge, want.MaxAge, false)
	add("max_bytes", bytesString(have.MaxBytes), bytesString(want.MaxBytes), false)
	add("duplicate_window", have.Duplicates, want.Duplicates, false)
	add("replicas", have.Replicas, want.Replicas, false)
	add("allow_direct", have.AllowDirect, want.AllowDirect, false)
	add("republish", republish(have.RePublish), republish(want.RePublish), true)
	return d
}

// compareBucket lists how a bucket's existing backing stream differs from
// the bucket configuration want.
func compareBucket(have jetstream.StreamConfig, want jetstream.KeyValueConfig) []difference {
	var d []difference
	add := func(setting string, h, w any) {
		hs, ws := fmt.Sprint(h), fmt.Sprint(w)
		if hs != ws {
			d = append(d, difference{setting: setting, have: hs, want: ws})
		}
	}
	add("history", have.MaxMsgsPerSubject, int64(max(want.History, 1)))
	add("ttl", have.MaxAge, want.TTL)
	add("max_bytes", bytesString(have.MaxBytes), bytesString(want.MaxBytes))
	add("limit_marker_ttl", have.SubjectDeleteMarkerTTL, want.LimitMarkerTTL)
	add("storage", have.Storage, want.Storage)
	add("replicas", have.Replicas, max(want.Replicas, 1))
	return d
}

// bytesString renders a MaxBytes: "unlimited" for 0 and below.
func bytesString(n int64) string {
	if n <= 0 {
		return unlimited
	}
	return fmt.Sprint(n)
}

// explainLimits wraps the account-limit errors of creating a stream
// (kind "stream") or bucket with ErrMaxBytesRequired or ErrAccountLimits
// and the setting to change.
func explainLimits(kind string, err error) error {
	flag, env := FlagStreamMaxBytes, EnvStreamMaxBytes
	if kind == "bucket" {
		flag, env = FlagBucketMaxBytes, EnvBucketMaxBytes
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return err
	}
	switch apiErr.ErrorCode {
	case errCodeMaxBytesRequired:
		return fmt.Errorf("%w (%w): set -%s (%s) to the %s's size limit in bytes", ErrMaxBytesRequired, err, flag, env, kind)
	case errCodeMaxStreamBytes, errCodeStorageResources, errCodeMemoryResources:
		return fmt.Errorf("%w (%w): lower -%s (%s) or raise the account's JetStream limits", ErrAccountLimits, err, flag, env)
	}
	return err
}

func republish(r *jetstream.RePublish) string {
	if r == nil {
		return "none"
	}
	s := r.Source + " -> " + r.Destination
	if r.HeadersOnly {
		s += " (headers only)"
	}
	return s
}

// subjectCovers reports whether every subject matching w also matches the
// filter h (both may hold wildcards).
func subjectCovers(h, w string) bool {
	ht, wt := strings.Split(h, "."), strings.Split(w, ".")
	for i, t := range ht {
		if t == ">" {
			return len(wt) > i
		}
		if i >= len(wt) || wt[i] == ">" {
			return false
		}
		if t != "*" && (t != wt[i] || wt[i] == "*") {
			return false
		}
	}
	return len(ht) == len(wt)
}

// EnsureRetry is Ensure retried with backoff while NATS is unreachable or
// JetStream is not answering yet (services may start before NATS). It
// returns nil when provisioning succeeded, ctx.Err() when ctx ended first,
// and at once when JetStream is disabled on the server or Ensure failed
// for a reason retrying cannot change (ErrMissing, ErrIncompatible,
// ErrBadMode, ErrMaxBytesRequired, ErrAccountLimits). A nil c.Log is log.
func EnsureRetry(ctx context.Context, js jetstream.JetStream, c Config, log *slog.Logger) error {
	if c.Log == nil {
		c.Log = log
	}
	return backoff.Retry(ctx, backoff.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := Ensure(actx, js, c)
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
			errors.Is(err, ErrMissing) || errors.Is(err, ErrIncompatible) || errors.Is(err, ErrBadMode) ||
			errors.Is(err, ErrMaxBytesRequired) || errors.Is(err, ErrAccountLimits) {
			return backoff.Permanent(err)
		}
		return err
	}, func(err error, wait time.Duration) {
		log.Warn("provisioning failed; retrying", "err", err, "retry_in", wait)
	})
}
