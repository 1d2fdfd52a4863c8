package k8s_test

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
	"math/big"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"
)

// tlsComponent is the kustomize Component that turns on NATS TLS.
const tlsComponent = "components/nats-tls"

// natsConf is the nats-server configuration of the rendered nats pods, written
// to a directory so that nats-server's own parser reads it, with the
// environment each pod gets.
type natsConf struct {
	m         *manifests
	container corev1.Container
	configMap *corev1.ConfigMap
	confDir   string // where the pods mount the ConfigMap
	dir       string // where the test wrote it
	// Secret volumes of the nats container: mount path → Secret name. Their
	// files are test certificates in certDir (the config's paths rewritten).
	secretMounts map[string]string
	certDir      string
}

// natsConfig writes the ConfigMap the nats pods mount to a temporary
// directory. When the container mounts a Secret (the certificate of
// components/nats-tls), test certificates stand in for it: every path under
// the mount is rewritten to them, so a file the config names outside the
// mount makes the parse fail.
func natsConfig(t *testing.T, m *manifests) *natsConf {
	t.Helper()
	w := m.workload(t, "nats")
	nc := &natsConf{m: m, container: container(t, w, "nats"), secretMounts: map[string]string{}}
	mounts := map[string]string{}
	for _, vm := range nc.container.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	for _, v := range w.template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			nc.configMap = m.configMap(v.ConfigMap.Name)
			nc.confDir = mounts[v.Name]
			if nc.configMap == nil {
				t.Fatalf("nats config map %q not rendered", v.ConfigMap.Name)
			}
		case v.Secret != nil && mounts[v.Name] != "":
			nc.secretMounts[mounts[v.Name]] = v.Secret.SecretName
		}
	}
	if nc.configMap == nil {
		t.Fatal("the nats pods mount no ConfigMap")
	}
	if len(nc.secretMounts) > 0 {
		nc.certDir = t.TempDir()
		writeCerts(t, nc.certDir)
	}
	nc.dir = t.TempDir()
	for k, v := range nc.configMap.Data {
		for mount := range nc.secretMounts {
			v = strings.ReplaceAll(v, strings.TrimSuffix(mount, "/")+"/", nc.certDir+"/")
		}
		if err := os.WriteFile(filepath.Join(nc.dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return nc
}

// env is the environment of the nats container in pod as the kubelet builds
// it: Secret values from the rendered Secret (or "from-<key>" when the
// operator creates it), the pod name, and $(VAR) references to variables
// defined earlier expanded.
func (nc *natsConf) env(pod string) map[string]string {
	vars := map[string]string{}
	for _, e := range nc.container.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = expandEnv(e.Value, vars)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v = "from-" + ref.Key
			if s := nc.m.secret(ref.Name); s != nil {
				v = string(s.Data[ref.Key])
			}
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = pod
		case e.ValueFrom.ResourceFieldRef != nil:
			v = "1"
		}
		vars[e.Name] = v
	}
	return vars
}

// expandEnv expands $(NAME) as Kubernetes does in env values: only names
// defined before; $$ is a literal $; anything else stays as written.
func expandEnv(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteByte('$')
				continue
			}
			ref := s[i : i+3+end]
			if v, ok := vars[s[i+2:i+2+end]]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func TestExpandEnv(t *testing.T) {
	vars := map[string]string{"A": "x", "B": "y"}
	for in, want := range map[string]string{
		"nats://r:$(A)@h:1": "nats://r:x@h:1",
		"$(A)$(B)":          "xy",
		"$(C)":              "$(C)",
		"$$(A)":             "$(A)",
		"$A $(A":            "$A $(A",
	} {
		if got := expandEnv(in, vars); got != want {
			t.Errorf("expandEnv(%q) = %q, want %q", in, got, want)
		}
	}
}

// parse reads the rendered nats.conf with nats-server's parser, with the
// environment of pod.
func (nc *natsConf) parse(t *testing.T, pod string) *server.Options {
	t.Helper()
	for k, v := range nc.env(pod) {
		if !strings.HasPrefix(k, "GO") {
			t.Setenv(k, v)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(nc.dir, "nats.conf"))
	if err != nil {
		t.Fatalf("rendered nats.conf: %v", err)
	}
	return opts
}

func (nc *natsConf) caFile() string { return filepath.Join(nc.certDir, "ca.crt") }

// checkNATSSecurity checks the system account, route authorization and TLS
// of the configuration one pod runs.
func checkNATSSecurity(t *testing.T, c corev1.Container, env map[string]string, opts *server.Options, wantTLS bool) {
	t.Helper()
	fromSecret := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && isSecret(e.ValueFrom.SecretKeyRef.Name, "hubbub-nats-users") {
			fromSecret[e.Name] = e.ValueFrom.SecretKeyRef.Key
		}
	}
	for v, key := range map[string]string{"HUBBUB_NATS_ADMIN_PASSWORD": "admin-password", "HUBBUB_NATS_ROUTE_PASSWORD": "route-password"} {
		if fromSecret[v] != key {
			t.Errorf("nats container: %s comes from key %q of hubbub-nats-users, want %s", v, fromSecret[v], key)
		}
	}

	// The system account, for nats server report/list/ping.
	if opts.SystemAccount != "SYS" {
		t.Errorf("system_account %q, want SYS", opts.SystemAccount)
	}
	var sys []string
	for _, u := range opts.Users {
		if u.Account == nil || u.Account.Name != "SYS" {
			continue
		}
		sys = append(sys, u.Username)
		if u.Password == "" || u.Password != env["HUBBUB_NATS_ADMIN_PASSWORD"] {
			t.Errorf("system user %s: password is not $HUBBUB_NATS_ADMIN_PASSWORD", u.Username)
		}
	}
	if !slices.Equal(sys, []string{"sys"}) {
		t.Errorf("users of the system account %v, want [sys]", sys)
	}

	// Route authorization, and every route URL carrying it.
	pw := env["HUBBUB_NATS_ROUTE_PASSWORD"]
	if opts.Cluster.Username != "route" || pw == "" || opts.Cluster.Password != pw {
		t.Errorf("cluster authorization user %q password %q, want route / $HUBBUB_NATS_ROUTE_PASSWORD (%q)", opts.Cluster.Username, opts.Cluster.Password, pw)
	}
	if len(opts.Routes) == 0 {
		t.Error("no routes")
	}
	for _, r := range opts.Routes {
		p, _ := r.User.Password()
		if r.User.Username() != opts.Cluster.Username || p != opts.Cluster.Password {
			t.Errorf("route %s does not carry the route user and password %q", r.Redacted(), opts.Cluster.Password)
		}
	}

	if !wantTLS {
		if opts.TLSConfig != nil || opts.Cluster.TLSConfig != nil {
			t.Error("TLS is on without components/nats-tls")
		}
		return
	}
	if opts.TLSConfig == nil || opts.TLSTimeout <= 0 {
		t.Error("client TLS is off")
	}
	if opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Error("route TLS is off (no tls block in the cluster block), or not mutual")
	}
}

// renderWithTLS renders the dev overlay with components/nats-tls, as an
// operator's overlay would list it.
func renderWithTLS(t *testing.T) *manifests {
	t.Helper()
	dev, err := filepath.Abs("overlays/dev")
	if err != nil {
		t.Fatal(err)
	}
	comp, err := filepath.Abs(tlsComponent)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// kustomize refuses absolute paths: relative to the temporary directory.
	if dev, err = filepath.Rel(dir, dev); err != nil {
		t.Fatal(err)
	}
	if comp, err = filepath.Rel(dir, comp); err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n", dev, comp)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	return render(t, dir)
}

// TestNATSTLSComponent renders the dev overlay with components/nats-tls and
// runs every check of the dev overlay on it, with TLS on in nats.conf, the
// certificate mounted on the nats pods and its CA on every service.
func TestNATSTLSComponent(t *testing.T) {
	m := renderWithTLS(t)
	o := overlays[0]
	if o.path != "overlays/dev" {
		t.Fatalf("overlays[0] is %s", o.path)
	}
	t.Run("namespace", func(t *testing.T) { checkNamespace(t, m, o) })
	t.Run("workloads", func(t *testing.T) { checkWorkloads(t, m, o) })
	t.Run("disruption budgets", func(t *testing.T) { checkPDBs(t, m) })
	t.Run("edge", func(t *testing.T) { checkEdge(t, m, o) })
	t.Run("nats", func(t *testing.T) { checkNATS(t, m, true) })
	t.Run("configuration", func(t *testing.T) { checkConfiguration(t, m, o) })
	t.Run("secrets", func(t *testing.T) { checkSecrets(t, m, o) })
	t.Run("services", func(t *testing.T) { checkServices(t, m) })
	t.Run("network policies", func(t *testing.T) { checkNetworkPolicies(t, m, o) })

	nc := natsConfig(t, m)
	var natsSecret string
	for mount, s := range nc.secretMounts {
		natsSecret = s
		for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
			if !strings.Contains(nc.configMap.Data["client-tls.conf"]+nc.configMap.Data["route-tls.conf"], path.Join(mount, f)) {
				t.Errorf("the tls blocks do not use %s of the Secret mounted at %s", f, mount)
			}
		}
	}
	if len(nc.secretMounts) != 1 || natsSecret != "hubbub-nats-tls" {
		t.Fatalf("nats mounts Secrets %v, want hubbub-nats-tls", nc.secretMounts)
	}
	for _, v := range m.workload(t, "nats").template.Spec.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0) {
			t.Errorf("Secret volume %s (tls.key) is readable by others: defaultMode %v", v.Name, v.Secret.DefaultMode)
		}
	}
	for name := range hubbub {
		t.Run("ca/"+name, func(t *testing.T) {
			w := m.workload(t, name)
			c := container(t, w, name)
			ca := resolveEnv(t, m, c)["HUBBUB_NATS_CA"].value
			if ca == "" {
				t.Fatal("HUBBUB_NATS_CA is not set: the service would not trust the private CA nor turn TLS on")
			}
			var vol string
			for _, vm := range c.VolumeMounts {
				if path.Dir(ca) == path.Clean(vm.MountPath) {
					vol = vm.Name
				}
			}
			var ok bool
			for _, v := range w.template.Spec.Volumes {
				if v.Name != vol || v.Secret == nil || v.Secret.SecretName != natsSecret {
					continue
				}
				ok = len(v.Secret.Items) == 0 && path.Base(ca) == "ca.crt"
				for _, it := range v.Secret.Items {
					ok = ok || (it.Key == "ca.crt" && it.Path == path.Base(ca))
				}
			}
			if !ok {
				t.Errorf("HUBBUB_NATS_CA=%s is not ca.crt of the Secret %s mounted in the container", ca, natsSecret)
			}
		})
	}
}

// TestNATSClusterFromManifests starts three real nats-servers from the
// rendered configuration (ports moved to 127.0.0.1): the routes form with the
// route password the pods get, nodes without it (or, with TLS, without the
// certificate) are refused, and the system account answers
// $SYS.REQ.SERVER.PING for user sys from every node.
func TestNATSClusterFromManifests(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-servers")
	}
	for _, withTLS := range []bool{false, true} {
		name := "plain"
		if withTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			var m *manifests
			if withTLS {
				m = renderWithTLS(t)
			} else {
				m = render(t, "overlays/dev")
			}
			runCluster(t, natsConfig(t, m), withTLS)
		})
	}
}

func runCluster(t *testing.T, nc *natsConf, withTLS bool) {
	ports := freePorts(t, 3)
	// routeTo points a rendered route (nats-N.nats-headless:6222) at node N.
	routeTo := func(r *url.URL) *url.URL {
		var n int
		if _, err := fmt.Sscanf(r.Hostname(), "nats-%d.", &n); err != nil || n < 0 || n >= len(ports) {
			t.Fatalf("route %s names no node", r.Redacted())
		}
		u := *r
		u.Host = fmt.Sprintf("127.0.0.1:%d", ports[n])
		return &u
	}
	start := func(opts *server.Options) *server.Server {
		t.Helper()
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
		opts.HTTPHost, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT
		opts.Cluster.Host = "127.0.0.1"
		opts.StoreDir = t.TempDir()
		opts.PidFile = ""
		opts.NoSigs, opts.NoLog = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("new server %s: %v", opts.ServerName, err)
		}
		go s.Start()
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		if !s.ReadyForConnections(20 * time.Second) {
			t.Fatalf("%s not ready", opts.ServerName)
		}
		return s
	}

	var nodes []*server.Server
	for i := range ports {
		opts := nc.parse(t, fmt.Sprintf("nats-%d", i))
		opts.Cluster.Port = ports[i]
		for j, r := range opts.Routes {
			opts.Routes[j] = routeTo(r)
		}
		nodes = append(nodes, start(opts))
	}
	waitFor(t, 30*time.Second, "the 3 nodes route to each other", func() bool {
		for _, s := range nodes {
			if s.NumRemotes() != len(nodes)-1 {
				return false
			}
		}
		return true
	})

	env := nc.env("nats-0")
	connect := func(user string, withCA bool) (*nats.Conn, error) {
		o := []nats.Option{nats.UserInfo(user, env["HUBBUB_NATS_ADMIN_PASSWORD"]), nats.Timeout(5 * time.Second)}
		if withCA {
			o = append(o, nats.RootCAs(nc.caFile()))
		}
		return nats.Connect(nodes[0].ClientURL(), o...)
	}
	t.Run("system account", func(t *testing.T) {
		conn, err := connect("sys", withTLS)
		if err != nil {
			t.Fatalf("connect as sys: %v", err)
		}
		defer conn.Close()
		inbox := nats.NewInbox()
		sub, err := conn.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.PublishRequest("$SYS.REQ.SERVER.PING", inbox, nil); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		deadline := time.Now().Add(10 * time.Second)
		for len(seen) < len(nodes) && time.Now().Before(deadline) {
			msg, err := sub.NextMsg(time.Until(deadline))
			if err != nil {
				break
			}
			var pong struct {
				Server struct {
					Name string `json:"name"`
				} `json:"server"`
			}
			if err := json.Unmarshal(msg.Data, &pong); err != nil {
				t.Fatalf("ping answer %q: %v", msg.Data, err)
			}
			seen[pong.Server.Name] = true
		}
		for i := range nodes {
			if !seen[fmt.Sprintf("nats-%d", i)] {
				t.Errorf("nats-%d did not answer $SYS.REQ.SERVER.PING (answers from %v)", i, seen)
			}
		}
		// The same request from a user of the global account reaches nothing.
		admin, err := connect("admin", withTLS)
		if err != nil {
			t.Fatalf("connect as admin: %v", err)
		}
		defer admin.Close()
		if _, err := admin.Request("$SYS.REQ.SERVER.PING", nil, 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("admin (global account) ping: %v, want no responders", err)
		}
	})
	if withTLS {
		t.Run("plain client refused", func(t *testing.T) {
			conn, err := connect("admin", false)
			if err == nil {
				conn.Close()
				t.Fatal("a client without TLS connected")
			}
		})
	}

	// A control node with the rendered config joins; the others must not.
	type joiner struct {
		name   string
		mutate func(*server.Options)
		s      *server.Server
	}
	joiners := []*joiner{
		{name: "control", mutate: func(*server.Options) {}},
		{name: "no-credentials", mutate: func(o *server.Options) { o.Routes[0].User = nil }},
		{name: "wrong-password", mutate: func(o *server.Options) { o.Routes[0].User = url.UserPassword("route", "wrong") }},
	}
	if withTLS {
		joiners = append(joiners, &joiner{name: "no-certificate", mutate: func(o *server.Options) { o.Cluster.TLSConfig = nil }})
	}
	started := time.Now()
	for _, j := range joiners {
		opts := nc.parse(t, "joiner-"+j.name)
		opts.JetStream = false
		opts.Cluster.Port = server.RANDOM_PORT
		opts.Routes = []*url.URL{routeTo(opts.Routes[0])}
		j.mutate(opts)
		j.s = start(opts)
	}
	waitFor(t, 30*time.Second, "the control node joins", func() bool { return joiners[0].s.NumRemotes() > 0 })
	if d := 3*time.Second - time.Since(started); d > 0 {
		time.Sleep(d)
	}
	for _, j := range joiners[1:] {
		if n := j.s.NumRemotes(); n != 0 {
			t.Errorf("node %s routes to %d nodes, want refused", j.name, n)
		}
	}
	for i, s := range nodes {
		if n := s.NumRemotes(); n != len(nodes) {
			t.Errorf("nats-%d routes to %d nodes, want %d (the others and the control node)", i, n, len(nodes))
		}
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// writeCerts writes a CA and a certificate it signs, in the layout of a
// cert-manager Certificate's Secret (ca.crt, tls.crt, tls.key): valid for the
// client Service, the nodes behind the headless Service and 127.0.0.1, for
// server and client authentication (mutual TLS between routes).
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hubbub test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "nats"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"nats", "*.nats-headless"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*pem.Block{
		"ca.crt":  {Type: "CERTIFICATE", Bytes: caDER},
		"tls.crt": {Type: "CERTIFICATE", Bytes: der},
		"tls.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
