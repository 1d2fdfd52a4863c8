package natsconn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// pki is a private CA in a test's temporary directory.
type pki struct {
	t      *testing.T
	dir    string
	caFile string
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: t.TempDir(), ca: ca, key: key}
	p.caFile = p.write(name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(name, typ string, der []byte) string {
	p.t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return f
}

// issue signs a certificate for 127.0.0.1/localhost (server) or a client.
func (p *pki) issue(name string, serverCert bool) (certFile, keyFile string) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if serverCert {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.write(name+".pem", "CERTIFICATE", der), p.write(name+"-key.pem", "EC PRIVATE KEY", kder)
}

// tlsServer configures opts for TLS with a certificate from p; verify
// makes the server require client certificates signed by p (mutual TLS).
func tlsServer(t *testing.T, opts *server.Options, p *pki, verify bool) {
	t.Helper()
	cert, key := p.issue("nats-server", true)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key, CaFile: p.caFile, Verify: verify, Timeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	opts.TLS, opts.TLSVerify, opts.TLSConfig, opts.TLSTimeout = true, verify, tc, 5
}

// runServer starts a real nats-server with opts on a loopback port (or
// port, when non-zero) and returns its client URL.
func runServer(t *testing.T, opts *server.Options, port int) string {
	t.Helper()
	opts.Host = "127.0.0.1"
	opts.Port = server.RANDOM_PORT
	if port != 0 {
		opts.Port = port
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
	return s.ClientURL()
}

// syncBuffer collects log output written from nats.go's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func logger(w *syncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// mustConnect connects with cfg and proves the connection carries traffic.
func mustConnect(t *testing.T, cfg Config) *nats.Conn {
	t.Helper()
	nc, err := Connect(cfg, logger(&syncBuffer{}))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	if !nc.IsConnected() {
		t.Fatalf("status %v after Connect returned", nc.Status())
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return nc
}

// refused connects with cfg, expecting an error wrapping want whose text
// names every one of mentions.
func refused(t *testing.T, cfg Config, want error, mentions ...string) error {
	t.Helper()
	nc, err := Connect(cfg, logger(&syncBuffer{}))
	if err == nil {
		nc.Close()
		t.Fatalf("connected; want %v", want)
	}
	t.Logf("refused: %v", err)
	if !errors.Is(err, want) {
		t.Fatalf("error %q does not wrap %q", err, want)
	}
	for _, m := range mentions {
		if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(m)) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
	return err
}

func TestTLSWithPrivateCA(t *testing.T) {
	ca := newPKI(t, "private")
	opts := &server.Options{}
	tlsServer(t, opts, ca, false)
	url := runServer(t, opts, 0)

	t.Run("CAFile", func(t *testing.T) {
		nc := mustConnect(t, Config{URL: url, Name: "t", CAFile: ca.caFile})
		st, err := nc.TLSConnectionState()
		if err != nil || len(st.VerifiedChains) == 0 {
			t.Fatalf("not a verified TLS connection: %v", err)
		}
	})
	t.Run("unknown CA", func(t *testing.T) {
		other := newPKI(t, "other")
		refused(t, Config{URL: url, CAFile: other.caFile}, ErrTLS, "x509", "-nats-ca (HUBBUB_NATS_CA)", "not signed by a CA this client trusts")
	})
	t.Run("system roots only", func(t *testing.T) {
		refused(t, Config{URL: url}, ErrTLS, "x509", "-nats-ca (HUBBUB_NATS_CA)")
	})
	// The binaries read HUBBUB_NATS_CA as the default of -nats-ca
	// (shared/config); Connect itself reads no environment.
	t.Run("the environment is not read", func(t *testing.T) {
		t.Setenv(EnvCA, ca.caFile)
		refused(t, Config{URL: url}, ErrTLS, "x509")
	})
}

func TestMutualTLS(t *testing.T) {
	ca := newPKI(t, "private")
	opts := &server.Options{}
	tlsServer(t, opts, ca, true)
	url := runServer(t, opts, 0)

	cert, key := ca.issue("hubbub-edge", false)
	nc := mustConnect(t, Config{URL: url, Name: "t", CAFile: ca.caFile, CertFile: cert, KeyFile: key})
	if st, err := nc.TLSConnectionState(); err != nil || len(st.PeerCertificates) == 0 {
		t.Fatalf("TLS state: %v", err)
	}

	t.Run("no client certificate", func(t *testing.T) {
		refused(t, Config{URL: url, CAFile: ca.caFile}, ErrTLS, "-nats-cert (HUBBUB_NATS_CERT)", "-nats-key (HUBBUB_NATS_KEY)")
	})
	t.Run("client certificate of another CA", func(t *testing.T) {
		ocert, okey := newPKI(t, "other").issue("intruder", false)
		refused(t, Config{URL: url, CAFile: ca.caFile, CertFile: ocert, KeyFile: okey}, ErrTLS, "-nats-cert (HUBBUB_NATS_CERT)")
	})
	t.Run("certificate without key", func(t *testing.T) {
		refused(t, Config{URL: url, CAFile: ca.caFile, CertFile: cert}, ErrConfig, "-nats-cert (HUBBUB_NATS_CERT)", "-nats-key (HUBBUB_NATS_KEY)")
	})
	t.Run("unreadable key", func(t *testing.T) {
		refused(t, Config{URL: url, CAFile: ca.caFile, CertFile: cert, KeyFile: filepath.Join(t.TempDir(), "absent")}, ErrConfig, "-nats-key (HUBBUB_NATS_KEY)")
	})
}

func TestNKey(t *testing.T) {
	user := func(t *testing.T) (pub, seedFile string) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ = kp.PublicKey()
		seed, _ := kp.Seed()
		seedFile = filepath.Join(t.TempDir(), "user.nk")
		if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		return pub, seedFile
	}
	pub, seedFile := user(t)
	url := runServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}}, 0)

	mustConnect(t, Config{URL: url, Name: "t", NKeyFile: seedFile})
	t.Run("unknown key", func(t *testing.T) {
		_, other := user(t)
		refused(t, Config{URL: url, NKeyFile: other}, ErrAuth, "authorization violation", "-nats-nkey (HUBBUB_NATS_NKEY)")
	})
	t.Run("no key", func(t *testing.T) {
		refused(t, Config{URL: url}, ErrAuth, "none are set", "-nats-nkey (HUBBUB_NATS_NKEY)")
	})
	t.Run("not a seed", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.nk")
		if err := os.WriteFile(bad, []byte("hello\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		refused(t, Config{URL: url, NKeyFile: bad}, ErrConfig, "-nats-nkey (HUBBUB_NATS_NKEY)")
	})
	t.Run("missing file", func(t *testing.T) {
		refused(t, Config{URL: url, NKeyFile: filepath.Join(t.TempDir(), "absent")}, ErrConfig, "-nats-nkey (HUBBUB_NATS_NKEY)")
	})
}

func TestUserPassword(t *testing.T) {
	url := runServer(t, &server.Options{Users: []*server.User{{Username: "edge", Password: "s3cret-pw"}}}, 0)
	withUser := func(userinfo string) string {
		return strings.Replace(url, "nats://", "nats://"+userinfo+"@", 1)
	}

	mustConnect(t, Config{URL: url, Name: "t", User: "edge", Password: "s3cret-pw"})
	mustConnect(t, Config{URL: withUser("edge:s3cret-pw"), Name: "t"})

	t.Run("wrong password", func(t *testing.T) {
		err := refused(t, Config{URL: url, User: "edge", Password: "wrong-pw"}, ErrAuth,
			"authorization violation", "-nats-user (HUBBUB_NATS_USER)", "-nats-password (HUBBUB_NATS_PASSWORD)")
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%q does not wrap nats.ErrAuthorization", err)
		}
		if strings.Contains(err.Error(), "wrong-pw") {
			t.Errorf("the password is in the error: %q", err)
		}
	})
	t.Run("wrong password in the URL", func(t *testing.T) {
		err := refused(t, Config{URL: withUser("edge:wrong-pw")}, ErrAuth, "authorization violation", "-nats-url (HUBBUB_NATS_URL)")
		if strings.Contains(err.Error(), "wrong-pw") {
			t.Errorf("the password is in the error: %q", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		refused(t, Config{URL: url}, ErrAuth, "none are set")
	})
}

// TestUnreachableServer: Connect does not fail while no server answers; it
// says why in the log, keeps trying and connects once the server is up.
func TestUnreachableServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()

	logs := &syncBuffer{}
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	nc, err := Connect(Config{URL: url, Name: "t"}, logger(logs))
	if err != nil {
		t.Fatalf("Connect with no server yet: %v (want a connection retrying in the background)", err)
	}
	t.Cleanup(nc.Close)
	for _, want := range []string{ErrUnreachable.Error(), "-nats-url (HUBBUB_NATS_URL)", "connection refused"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs)
		}
	}
	// Each background attempt's failure is explained too.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "nats connection attempt failed; retrying") ||
		strings.Count(logs.String(), "HUBBUB_NATS_URL") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no explained retry in the log:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	runServer(t, &server.Options{}, port)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected once the server is up: %v\n%s", nc.Status(), logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnreachableExplained: the error behind the log line names the cause
// and the setting.
func TestUnreachableExplained(t *testing.T) {
	_, err := nats.Connect("nats://127.0.0.1:1", nats.Timeout(time.Second))
	if err == nil {
		t.Fatal("connected to port 1")
	}
	got := explain(Config{URL: "nats://u:pw@127.0.0.1:1"}, err)
	if !errors.Is(got, ErrUnreachable) || !strings.Contains(got.Error(), "-nats-url (HUBBUB_NATS_URL)") || strings.Contains(got.Error(), ":pw@") {
		t.Fatalf("explain(%v) = %q", err, got)
	}
}

func TestTLSNotOffered(t *testing.T) {
	ca := newPKI(t, "private")
	url := runServer(t, &server.Options{}, 0)
	refused(t, Config{URL: url, CAFile: ca.caFile}, ErrTLS, "does not offer it", "-nats-ca (HUBBUB_NATS_CA)")
}

func TestTLSRequired(t *testing.T) {
	ca := newPKI(t, "private")
	opts := &server.Options{}
	tlsServer(t, opts, ca, false)
	url := runServer(t, opts, 0)
	// nats.go upgrades to TLS when the server asks, so without a CA it is
	// the certificate that fails, and the error says which setting helps.
	refused(t, Config{URL: url}, ErrTLS, "-nats-ca (HUBBUB_NATS_CA)")
}

func TestServerVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"2.11.0": true, "2.11.9": true, "2.12.1": true, "2.15.2": true, "3.0.0": true, "v2.11.0": true,
		"2.11.0-RC.1": true, "2.11": true,
		"2.10.29": false, "2.9.0": false, "1.4.1": false, "": false, "dev": false, "2": false,
	} {
		err := CheckServerVersion(v)
		if (err == nil) != ok {
			t.Errorf("CheckServerVersion(%q) = %v, want ok=%v", v, err, ok)
		}
		if err != nil && (!errors.Is(err, ErrServerTooOld) || !strings.Contains(err.Error(), "2.11.0 is the minimum")) {
			t.Errorf("CheckServerVersion(%q) = %q: want ErrServerTooOld saying 2.11.0 is the minimum", v, err)
		}
	}
	// The embedded server of this module's dependency passes.
	if err := CheckServerVersion(server.VERSION); err != nil {
		t.Fatal(err)
	}
}

func TestRedact(t *testing.T) {
	got := redact("nats://edge:s3cret@a:4222, tls://tok3n@b:4222,nats://c:4222")
	for _, secret := range []string{"s3cret", "tok3n"} {
		if strings.Contains(got, secret) {
			t.Errorf("redact left %q in %q", secret, got)
		}
	}
	if !strings.Contains(got, "nats://c:4222") || !strings.Contains(got, "edge") {
		t.Errorf("redact(…) = %q", got)
	}
}
