package nats_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

// TestSystemAccount: the sys user (system account, admin password) gets
// the server-wide answers `nats server report` and `nats server list`
// ask for; the global account's admin does not.
func TestSystemAccount(t *testing.T) {
	url, pw := startServer(t)
	sys, err := nats.Connect(url, nats.UserInfo("sys", pw["admin"]))
	if err != nil {
		t.Fatalf("connect as sys: %v", err)
	}
	defer sys.Close()
	for _, subj := range []string{"$SYS.REQ.SERVER.PING.STATSZ", "$SYS.REQ.SERVER.PING.JSZ", "$SYS.REQ.SERVER.PING.CONNZ"} {
		msg, err := sys.Request(subj, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("sys %s: %v", subj, err)
		}
		var reply struct {
			Server struct{ Name string } `json:"server"`
		}
		if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.Server.Name != "hubbub-nats" {
			t.Fatalf("sys %s: reply %s (%v)", subj, msg.Data, err)
		}
	}
	admin, err := nats.Connect(url, nats.UserInfo("admin", pw["admin"]))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Request("$SYS.REQ.SERVER.PING.STATZ", nil, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("admin (global account) reached the system account: %v", err)
	}
}

// TestClientTLSOption turns on tls.conf, as the comment in nats.conf says,
// with certificates of a private CA, and connects the way the services do.
func TestClientTLSOption(t *testing.T) {
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("verify=%v", mutual), func(t *testing.T) {
			pw := setPasswords(t)
			dir := t.TempDir()
			ca := newCA(t)
			ca.leaf(t, filepath.Join(dir, "tls"))
			ca.leaf(t, filepath.Join(dir, "client"))
			edits := map[string][][2]string{
				"nats.conf": {{"# include ./tls.conf", "include ./tls.conf"}},
				"tls.conf":  {{"/etc/nats/tls/", filepath.Join(dir, "tls") + "/"}},
			}
			if mutual {
				edits["tls.conf"] = append(edits["tls.conf"], [2]string{"# verify: true", "verify: true"})
			}
			s := runConfig(t, copyConfig(t, dir, edits), nil)
			want := tls.NoClientCert
			if mutual {
				want = tls.RequireAndVerifyClientCert
			}
			if tc := s.opts.TLSConfig; tc == nil || tc.ClientAuth != want {
				t.Fatalf("tls.conf: TLS config %v, want client auth %v", tc, want)
			}
			cfg := natsconn.Config{URL: s.ClientURL(), Name: "hubbub-edge", User: "edge", Password: pw["edge"], CAFile: ca.file, InboxPrefix: subjects.EdgeInbox}
			if mutual {
				_, err := natsconn.Connect(cfg, slog.New(slog.DiscardHandler))
				if !errors.Is(err, natsconn.ErrTLS) {
					t.Fatalf("connected without a client certificate to verify: true: %v", err)
				}
				cfg.CertFile, cfg.KeyFile = filepath.Join(dir, "client", "tls.crt"), filepath.Join(dir, "client", "tls.key")
			}
			nc, err := natsconn.Connect(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("connect over TLS: %v", err)
			}
			defer nc.Close()
			if st, err := nc.TLSConnectionState(); err != nil || len(st.VerifiedChains) == 0 {
				t.Fatalf("not a verified TLS connection: %v", err)
			}
			if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
				t.Fatalf("edge over TLS: $JS.API.INFO: %v", err)
			}
		})
	}
}

// TestClusterOption turns on cluster.conf on two nodes and shows they
// route to each other over mutual TLS with the route user and password.
func TestClusterOption(t *testing.T) {
	pw := setPasswords(t)
	dir := t.TempDir()
	ca := newCA(t)
	ca.leaf(t, filepath.Join(dir, "tls", "route"))
	conf := copyConfig(t, dir, map[string][][2]string{
		"nats.conf":    {{"# include ./cluster.conf", "include ./cluster.conf"}},
		"cluster.conf": {{"/etc/nats/tls/", filepath.Join(dir, "tls") + "/"}},
	})
	ports := []int{freePort(t), freePort(t)}
	t.Setenv("HUBBUB_NATS_ROUTE_PASSWORD", "route-secret")
	var nodes []*natsServer
	for i := range ports {
		t.Setenv("HUBBUB_NATS_SERVER_NAME", fmt.Sprintf("nats-%d", i+1))
		t.Setenv("HUBBUB_NATS_ROUTES", fmt.Sprintf("[nats-route://route:route-secret@127.0.0.1:%d]", ports[1-i]))
		nodes = append(nodes, runConfig(t, conf, func(o *server.Options) {
			o.Cluster.Host, o.Cluster.Port = "127.0.0.1", ports[i]
			if o.Cluster.Username != "route" || o.Cluster.Password != "route-secret" {
				t.Errorf("cluster authorization %q/%q, want the route user", o.Cluster.Username, o.Cluster.Password)
			}
			if o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
				t.Errorf("routes without mutual TLS")
			}
		}))
	}
	deadline := time.Now().Add(30 * time.Second)
	for nodes[0].NumRoutes() == 0 || nodes[1].NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no route between the nodes: %d and %d routes", nodes[0].NumRoutes(), nodes[1].NumRoutes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Traffic crosses the route.
	sub, err := nats.Connect(nodes[0].ClientURL(), nats.UserInfo("admin", pw["admin"]))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	s, err := sub.SubscribeSync("cross.route")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	pub, err := nats.Connect(nodes[1].ClientURL(), nats.UserInfo("admin", pw["admin"]))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for {
		if err := pub.Publish("cross.route", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		// The subscription's interest reaches node 2 asynchronously:
		// publish until one arrives.
		if _, err := s.NextMsg(200 * time.Millisecond); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a message published on node 2 never reached a subscriber on node 1")
		}
	}
}

// natsServer is a running server of a test, with the options it runs with.
type natsServer struct {
	*server.Server
	opts *server.Options
}

// copyConfig copies the shipped configuration files to dir, applying the
// string replacements edits[file] (turning options on, moving paths).
func copyConfig(t *testing.T, dir string, edits map[string][][2]string) string {
	t.Helper()
	for _, f := range []string{"nats.conf", "auth.conf", "tls.conf", "cluster.conf"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, e := range edits[f] {
			if !strings.Contains(s, e[0]) {
				t.Fatalf("%s no longer contains %q", f, e[0])
			}
			s = strings.ReplaceAll(s, e[0], e[1])
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "nats.conf")
}

// runConfig starts a JetStream server from config file conf on loopback
// ports; adjust may change the options first.
func runConfig(t *testing.T, conf string, adjust func(*server.Options)) *natsServer {
	t.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("parse %s: %v", conf, err)
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.HTTPHost, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT
	opts.StoreDir = t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	if adjust != nil {
		adjust(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("new server: %v", err)
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
	return &natsServer{Server: s, opts: opts}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// testCA is a private CA whose certificate is in file.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hubbub test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.crt")
	writePEM(t, file, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, file: file}
}

// leaf writes tls.crt, tls.key and ca.crt into dir (cert-manager's
// layout): a certificate for 127.0.0.1 and localhost, good for both ends
// of a connection.
func (ca *testCA) leaf(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: filepath.Base(dir)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "tls.crt"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, "tls.key"), "EC PRIVATE KEY", kder)
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", ca.cert.Raw)
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
