package provision_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// limitedServer runs a real nats-server whose accounts have JetStream
// limits with max_bytes_required: HUBBUB (1 GiB of file storage) and TIGHT
// (1 MiB), and returns a JetStream handle for each.
func limitedServer(t *testing.T) (hubbub, tight jetstream.JetStream) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `
listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
accounts {
  HUBBUB: {
    jetstream: { max_file: 1G, max_mem: 64M, max_bytes_required: true }
    users: [ { user: hubbub, password: hubbub-pw } ]
  }
  TIGHT: {
    jetstream: { max_file: 1M, max_mem: 1M, max_bytes_required: true }
    users: [ { user: tight, password: tight-pw } ]
  }
}
`, filepath.Join(dir, "js")), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	js := func(user, pw string) jetstream.JetStream {
		nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, pw))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		// The limits are the server's, not this test's assumption.
		info, err := js.AccountInfo(within(t))
		if err != nil {
			t.Fatal(err)
		}
		if !info.Limits.MaxBytesRequired {
			t.Fatalf("account of %s: max_bytes_required is off", user)
		}
		return js
	}
	return js("hubbub", "hubbub-pw"), js("tight", "tight-pw")
}

// TestMaxBytesRequired: an account whose JetStream limits require max bytes
// refuses the stream and the buckets without a size; Ensure fails at once
// with ErrMaxBytesRequired naming the flag and variable to set (the
// stream's, then the buckets'), and succeeds with both, creating each with
// its size. Verify mode warns about a different size and changes nothing;
// a size beyond the account's limits fails with ErrAccountLimits.
func TestMaxBytesRequired(t *testing.T) {
	js, tight := limitedServer(t)

	// Neither size: the stream is refused.
	err := provision.Ensure(within(t), js, provision.Config{})
	if !errors.Is(err, provision.ErrMaxBytesRequired) {
		t.Fatalf("Ensure without sizes: %v, want ErrMaxBytesRequired", err)
	}
	for _, want := range []string{"stream CHAT", "-stream-max-bytes (HUBBUB_STREAM_MAX_BYTES)", "max bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Logf("without sizes: %v", err)
	if names := streamNames(t, js); len(names) != 0 {
		t.Fatalf("created %v", names)
	}
	// Not retried: only a setting can fix it.
	log, _ := newRecorder()
	if err := provision.EnsureRetry(within(t), js, provision.Config{}, log); !errors.Is(err, provision.ErrMaxBytesRequired) {
		t.Fatalf("EnsureRetry without sizes: %v, want ErrMaxBytesRequired (not retried)", err)
	}

	// The stream's size only: the buckets are refused, naming their setting.
	const streamSize, bucketSize = 256 << 20, 8 << 20
	log, _ = newRecorder()
	err = provision.Ensure(within(t), js, provision.Config{StreamMaxBytes: streamSize, Log: log})
	if !errors.Is(err, provision.ErrMaxBytesRequired) || !strings.Contains(err.Error(), "-bucket-max-bytes (HUBBUB_BUCKET_MAX_BYTES)") ||
		!strings.Contains(err.Error(), "bucket "+subjects.BucketRoster) {
		t.Fatalf("Ensure with the stream's size only: %v, want ErrMaxBytesRequired naming -bucket-max-bytes", err)
	}
	t.Logf("without a bucket size: %v", err)

	// Both: everything is created with its size.
	log, records := newRecorder()
	if err := provision.Ensure(within(t), js, provision.Config{StreamMaxBytes: streamSize, BucketMaxBytes: bucketSize, Log: log}); err != nil {
		t.Fatalf("Ensure with both sizes: %v", err)
	}
	if got := streamConfig(t, js, subjects.Stream).MaxBytes; got != streamSize {
		t.Errorf("CHAT max bytes %d, want %d", got, streamSize)
	}
	for _, b := range []string{subjects.BucketRoster, subjects.BucketTyping, subjects.BucketEdges} {
		if got := streamConfig(t, js, "KV_"+b).MaxBytes; got != bucketSize {
			t.Errorf("bucket %s max bytes %d, want %d", b, got, bucketSize)
		}
	}
	if d := differences(records()); len(d) != 0 {
		t.Errorf("differences right after creating: %v", d)
	}
	kv, err := js.KeyValue(within(t), subjects.BucketRoster)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(within(t), "general.alice", []byte("1")); err != nil {
		t.Fatalf("write to a sized bucket: %v", err)
	}
	if _, err := js.Publish(within(t), subjects.Room("general"), []byte(`{}`)); err != nil {
		t.Fatalf("publish to a sized stream: %v", err)
	}

	// Verify with other sizes: warnings, no change, no error.
	log, records = newRecorder()
	if err := provision.Ensure(within(t), js, provision.Config{Mode: provision.ModeVerify, StreamMaxBytes: 512 << 20, Log: log}); err != nil {
		t.Fatalf("verify with other sizes: %v", err)
	}
	want := []string{
		"WARN bucket hubbub_edges max_bytes: 8388608 -> unlimited",
		"WARN bucket hubbub_members max_bytes: 8388608 -> unlimited",
		"WARN bucket hubbub_reads max_bytes: 8388608 -> unlimited",
		"WARN bucket hubbub_rooms max_bytes: 8388608 -> unlimited",
		"WARN bucket hubbub_roster max_bytes: 8388608 -> unlimited",
		"WARN bucket hubbub_typing max_bytes: 8388608 -> unlimited",
		"WARN stream CHAT max_bytes: 268435456 -> 536870912",
	}
	if got := differences(records()); !slices.Equal(got, want) {
		t.Errorf("logged differences\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := streamConfig(t, js, subjects.Stream).MaxBytes; got != streamSize {
		t.Errorf("verify changed CHAT max bytes to %d", got)
	}

	// A stream larger than the account may hold.
	err = provision.Ensure(within(t), tight, provision.Config{StreamMaxBytes: 64 << 20, BucketMaxBytes: 64 << 10, Log: log})
	if !errors.Is(err, provision.ErrAccountLimits) || !strings.Contains(err.Error(), "-stream-max-bytes (HUBBUB_STREAM_MAX_BYTES)") {
		t.Fatalf("a 64 MiB stream in a 1 MiB account: %v, want ErrAccountLimits naming -stream-max-bytes", err)
	}
	t.Logf("beyond the account: %v", err)
}

// TestMaxBytesUnlimited: 0 and -1 both mean no limit (JetStream's -1), and
// a server without account limits takes them.
func TestMaxBytesUnlimited(t *testing.T) {
	for _, n := range []int64{0, -1} {
		c := provision.Config{StreamMaxBytes: n, BucketMaxBytes: n}
		if got := provision.StreamConfig(c).MaxBytes; got != -1 {
			t.Errorf("StreamMaxBytes %d: stream MaxBytes %d, want -1", n, got)
		}
		for _, b := range provision.Buckets(c) {
			if b.MaxBytes != -1 {
				t.Errorf("BucketMaxBytes %d: bucket %s MaxBytes %d, want -1", n, b.Bucket, b.MaxBytes)
			}
		}
	}
	js := connect(t)
	log, records := newRecorder()
	if err := provision.Ensure(within(t), js, provision.Config{StreamMaxBytes: -1, Log: log}); err != nil {
		t.Fatal(err)
	}
	if got := streamConfig(t, js, subjects.Stream).MaxBytes; got != -1 {
		t.Errorf("CHAT max bytes %d, want -1", got)
	}
	// 0 against the -1 created: the same (no difference logged).
	if err := provision.Ensure(within(t), js, provision.Config{Log: log}); err != nil {
		t.Fatal(err)
	}
	if d := differences(records()); len(d) != 0 {
		t.Errorf("0 and -1 reported as different: %v", d)
	}
}
