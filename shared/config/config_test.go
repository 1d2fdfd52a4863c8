package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

func TestEnvDefaultsAndFlags(t *testing.T) {
	env := map[string]string{"HUBBUB_A": "from-env", "HUBBUB_D": "3s", "HUBBUB_N": "7"}
	f := NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	var a, b string
	var d time.Duration
	var n int
	f.String(&a, "a", "HUBBUB_A", "def", "")
	f.String(&b, "b", "HUBBUB_B", "def", "")
	f.Duration(&d, "d", "HUBBUB_D", time.Second, "")
	f.Int(&n, "n", "HUBBUB_N", 1, "")
	if err := f.Parse([]string{"-n", "9"}); err != nil {
		t.Fatal(err)
	}
	if a != "from-env" || b != "def" || d != 3*time.Second || n != 9 {
		t.Fatalf("got a=%q b=%q d=%v n=%d", a, b, d, n)
	}
}

func TestBadEnvFails(t *testing.T) {
	f := NewWithLookup("t", func(k string) (string, bool) { return "soon", k == "HUBBUB_D" })
	var d time.Duration
	f.Duration(&d, "d", "HUBBUB_D", time.Second, "")
	if err := f.Parse(nil); err == nil {
		t.Fatal("bad duration in the environment was accepted")
	}
}

func TestChoice(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
		ok   bool
	}{
		{nil, nil, "a", true},
		{map[string]string{"HUBBUB_C": "b"}, nil, "b", true},
		{map[string]string{"HUBBUB_C": "b"}, []string{"-c", "a"}, "a", true},
		{map[string]string{"HUBBUB_C": "z"}, nil, "", false},
		{nil, []string{"-c", "z"}, "", false},
	} {
		f := NewWithLookup("t", func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
		f.SetOutput(io.Discard)
		var v string
		f.Choice(&v, "c", "HUBBUB_C", "a", []string{"a", "b"}, "")
		err := f.Parse(c.args)
		if c.ok && (err != nil || v != c.want) {
			t.Errorf("env %v args %v: %q, %v; want %q", c.env, c.args, v, err, c.want)
		}
		// (the flag package does not wrap a Set error: only the text says)
		if !c.ok && (err == nil || !strings.Contains(err.Error(), ErrNotAChoice.Error())) {
			t.Errorf("env %v args %v: %v, want ErrNotAChoice", c.env, c.args, err)
		}
	}
}

// TestProvisionMode: HUBBUB_PROVISION (or -provision) reaches
// provision.Config with the logger the binary logs with; manage is the
// default and an unknown mode fails start-up.
func TestProvisionMode(t *testing.T) {
	parse := func(env map[string]string, args ...string) (Common, error) {
		f := NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		f.SetOutput(io.Discard)
		var c Common
		c.Register(f)
		return c, f.Parse(args)
	}
	c, err := parse(nil)
	if err != nil || c.Provision().Mode != provision.ModeManage {
		t.Fatalf("default: mode %q, %v", c.Provision().Mode, err)
	}
	if c, err = parse(map[string]string{"HUBBUB_PROVISION": "verify"}); err != nil || c.Provision().Mode != provision.ModeVerify {
		t.Fatalf("HUBBUB_PROVISION=verify: mode %q, %v", c.Provision().Mode, err)
	}
	if c, err = parse(map[string]string{"HUBBUB_PROVISION": "verify"}, "-provision", "off"); err != nil || c.Provision().Mode != provision.ModeOff {
		t.Fatalf("-provision off: mode %q, %v", c.Provision().Mode, err)
	}
	if _, err = parse(map[string]string{"HUBBUB_PROVISION": "never"}); !errors.Is(err, ErrNotAChoice) || !strings.Contains(err.Error(), "HUBBUB_PROVISION") {
		t.Fatalf("HUBBUB_PROVISION=never: %v", err)
	}
	if _, err = parse(nil, "-provision", "update"); err == nil || !strings.Contains(err.Error(), ErrNotAChoice.Error()) {
		t.Fatalf("-provision update: %v", err)
	}
	c, _ = parse(nil)
	log, err := c.Logger(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Provision().Log != log {
		t.Fatal("Provision does not log through the logger Logger built")
	}
}

// TestNATSSettings: every connection setting is a flag defaulting to its
// HUBBUB_NATS_* variable, and Common.NATS hands it to natsconn.
func TestNATSSettings(t *testing.T) {
	parse := func(env map[string]string, args ...string) natsconn.Config {
		t.Helper()
		f := NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		f.SetOutput(io.Discard)
		var c Common
		c.Register(f)
		if err := f.Parse(args); err != nil {
			t.Fatal(err)
		}
		return c.NATS("hubbub-test")
	}
	want := natsconn.Config{
		URL: "tls://n1:4222", Name: "hubbub-test", User: "u", Password: "p", Token: "tok", CredsFile: "c.creds",
		NKeyFile: "u.nk", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", JSDomain: "hub",
	}
	env := map[string]string{
		"HUBBUB_NATS_URL": want.URL, "HUBBUB_NATS_USER": want.User, "HUBBUB_NATS_PASSWORD": want.Password,
		"HUBBUB_NATS_TOKEN": want.Token, "HUBBUB_NATS_CREDS": want.CredsFile, "HUBBUB_NATS_NKEY": want.NKeyFile,
		"HUBBUB_NATS_CA": want.CAFile, "HUBBUB_NATS_CERT": want.CertFile, "HUBBUB_NATS_KEY": want.KeyFile,
		"HUBBUB_NATS_JS_DOMAIN": want.JSDomain,
	}
	if got := parse(env); got != want {
		t.Errorf("from the environment:\n got %+v\nwant %+v", got, want)
	}
	args := []string{
		"-nats-url", want.URL, "-nats-user", want.User, "-nats-password", want.Password, "-nats-token", want.Token,
		"-nats-creds", want.CredsFile, "-nats-nkey", want.NKeyFile, "-nats-ca", want.CAFile, "-nats-cert", want.CertFile,
		"-nats-key", want.KeyFile, "-nats-js-domain", want.JSDomain,
	}
	if got := parse(nil, args...); got != want {
		t.Errorf("from flags:\n got %+v\nwant %+v", got, want)
	}
	// A flag wins over its variable.
	if got := parse(map[string]string{"HUBBUB_NATS_CA": "env.pem"}, "-nats-ca", "flag.pem"); got.CAFile != "flag.pem" {
		t.Errorf("-nats-ca flag.pem with HUBBUB_NATS_CA=env.pem: CAFile %q", got.CAFile)
	}
	if got := parse(nil); got.CAFile != "" || got.CertFile != "" || got.KeyFile != "" || got.NKeyFile != "" || got.JSDomain != "" {
		t.Errorf("defaults: %+v (TLS, NKey and domain must be off unless set)", got)
	}
}

// TestNATSFlagsConnect connects to a real nats-server that requires TLS
// with a private CA, a client certificate and an NKey user, once with the
// HUBBUB_NATS_* variables and once with the flags, and is refused (naming
// the flag and the variable) without them.
func TestNATSFlagsConnect(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSignedCA(t, dir)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile, CaFile: certFile, Verify: true, Timeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 5,
		Nkeys: []*server.NkeyUser{{Nkey: pub}},
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)

	connect := func(env map[string]string, args ...string) error {
		t.Helper()
		f := NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		f.SetOutput(io.Discard)
		var c Common
		c.Register(f)
		if err := f.Parse(append([]string{"-nats-url", s.ClientURL()}, args...)); err != nil {
			t.Fatal(err)
		}
		nc, err := natsconn.Connect(c.NATS("hubbub-test"), slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		defer nc.Close()
		return nc.Flush()
	}
	env := map[string]string{"HUBBUB_NATS_CA": certFile, "HUBBUB_NATS_CERT": certFile, "HUBBUB_NATS_KEY": keyFile, "HUBBUB_NATS_NKEY": seedFile}
	if err := connect(env); err != nil {
		t.Fatalf("with HUBBUB_NATS_CA, _CERT, _KEY and _NKEY: %v", err)
	}
	if err := connect(nil, "-nats-ca", certFile, "-nats-cert", certFile, "-nats-key", keyFile, "-nats-nkey", seedFile); err != nil {
		t.Fatalf("with -nats-ca, -nats-cert, -nats-key and -nats-nkey: %v", err)
	}
	for _, c := range []struct {
		name string
		args []string
		want error
		says string
	}{
		{"no CA", []string{"-nats-cert", certFile, "-nats-key", keyFile, "-nats-nkey", seedFile}, natsconn.ErrTLS, "-nats-ca (HUBBUB_NATS_CA)"},
		{"no client certificate", []string{"-nats-ca", certFile, "-nats-nkey", seedFile}, natsconn.ErrTLS, "-nats-cert (HUBBUB_NATS_CERT)"},
		{"no NKey", []string{"-nats-ca", certFile, "-nats-cert", certFile, "-nats-key", keyFile}, natsconn.ErrAuth, "-nats-nkey (HUBBUB_NATS_NKEY)"},
	} {
		err := connect(nil, c.args...)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %v naming %s", c.name, err, c.want, c.says)
		}
	}
}

// selfSignedCA writes a self-signed certificate for 127.0.0.1 usable as
// the CA, the server's certificate and a client certificate at once.
func selfSignedCA(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hubbub test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "-1": -1, "1024": 1024, "1K": 1 << 10, "1k": 1 << 10, "512M": 512 << 20, "512MiB": 512 << 20,
		"10G": 10 << 30, "10 GiB": 10 << 30, "2T": 2 << 40, "100b": 100, " 64m ": 64 << 20,
	} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-2", "1.5G", "10GB", "ten", "G", "9999999999T", "1P"} {
		if got, err := ParseBytes(in); !errors.Is(err, ErrNotASize) {
			t.Errorf("ParseBytes(%q) = %d, %v; want ErrNotASize", in, got, err)
		}
	}
}

// TestProvisionSizes: -stream-max-bytes and -bucket-max-bytes (and their
// variables) reach provision.Config; a bad size fails start-up naming
// the variable.
func TestProvisionSizes(t *testing.T) {
	parse := func(env map[string]string, args ...string) (Common, error) {
		f := NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		f.SetOutput(io.Discard)
		var c Common
		c.Register(f)
		return c, f.Parse(args)
	}
	c, err := parse(nil)
	if p := c.Provision(); err != nil || p.StreamMaxBytes != 0 || p.BucketMaxBytes != 0 {
		t.Fatalf("defaults: %d, %d, %v; want 0 (no limit)", p.StreamMaxBytes, p.BucketMaxBytes, err)
	}
	c, err = parse(map[string]string{"HUBBUB_STREAM_MAX_BYTES": "10G", "HUBBUB_BUCKET_MAX_BYTES": "64M"})
	if p := c.Provision(); err != nil || p.StreamMaxBytes != 10<<30 || p.BucketMaxBytes != 64<<20 {
		t.Fatalf("from the environment: %d, %d, %v", p.StreamMaxBytes, p.BucketMaxBytes, err)
	}
	c, err = parse(map[string]string{"HUBBUB_STREAM_MAX_BYTES": "10G"}, "-stream-max-bytes", "1G", "-bucket-max-bytes", "-1")
	if p := c.Provision(); err != nil || p.StreamMaxBytes != 1<<30 || p.BucketMaxBytes != -1 {
		t.Fatalf("from flags: %d, %d, %v", p.StreamMaxBytes, p.BucketMaxBytes, err)
	}
	if _, err := parse(map[string]string{"HUBBUB_BUCKET_MAX_BYTES": "lots"}); !errors.Is(err, ErrNotASize) || !strings.Contains(err.Error(), "HUBBUB_BUCKET_MAX_BYTES") {
		t.Fatalf("HUBBUB_BUCKET_MAX_BYTES=lots: %v", err)
	}
	if _, err := parse(nil, "-stream-max-bytes", "1.5G"); err == nil || !strings.Contains(err.Error(), ErrNotASize.Error()) {
		t.Fatalf("-stream-max-bytes 1.5G: %v", err)
	}
}
