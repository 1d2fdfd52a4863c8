package compose_test

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/hubbub-chat/hubbub/deploy/internal/mainvars"
)

const root = "../.."

// hubbub are the Hubbub services: their NATS user, ops port and main package.
var hubbub = map[string]struct {
	port string
	main string
}{
	"edge":     {"8080", "services/edge/cmd/hubbub-edge/main.go"},
	"history":  {"8081", "services/history/cmd/hubbub-history/main.go"},
	"presence": {"8082", "services/presence/cmd/hubbub-presence/main.go"},
}

// dependsOn is the start-up order: every edge waits for healthy dependencies.
var dependsOn = map[string][]string{
	"history":  {"nats", "postgres"},
	"presence": {"nats"},
	"edge":     {"history", "nats", "presence"},
	"lb":       {"edge"},
}

func load(t *testing.T, env ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(env),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

func env(s types.ServiceConfig, key string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return ""
}

func TestServices(t *testing.T) {
	p := load(t)
	want := []string{"edge", "history", "lb", "nats", "postgres", "presence"}
	if got := p.ServiceNames(); !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v (nats-box only in the tools profile)", got, want)
	}
	if _, ok := p.DisabledServices["nats-box"]; !ok {
		t.Error("nats-box (the nats CLI) should exist in the tools profile")
	}
	for _, s := range p.Services {
		t.Run(s.Name, func(t *testing.T) {
			if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 {
				t.Fatalf("no healthcheck")
			}
			if s.HealthCheck.Interval == nil || s.HealthCheck.Retries == nil {
				t.Errorf("healthcheck without interval/retries")
			}
			if s.Restart != "unless-stopped" {
				t.Errorf("restart %q, want unless-stopped", s.Restart)
			}
			if !s.ReadOnly {
				t.Errorf("root filesystem is writable")
			}
			if !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("cap_drop %v, security_opt %v: want ALL dropped and no-new-privileges", s.CapDrop, s.SecurityOpt)
			}
			image, tag, ok := strings.Cut(s.Image, ":")
			if !ok || image == "" || tag == "" || tag == "latest" || strings.Contains(tag, "$") {
				t.Errorf("image %q not pinned by tag", s.Image)
			}
			for dep, cond := range s.DependsOn {
				if cond.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on %s: condition %q, want service_healthy", dep, cond.Condition)
				}
			}
			var deps []string
			for dep := range s.DependsOn {
				deps = append(deps, dep)
			}
			slices.Sort(deps)
			if !slices.Equal(deps, dependsOn[s.Name]) {
				t.Errorf("depends_on %v, want %v", deps, dependsOn[s.Name])
			}
		})
	}
}

// TestHubbubServices checks the configuration of history, presence and
// edge: images built from the Dockerfile targets, HUBBUB_* variables that
// their mains actually read, their NATS users, health on /readyz.
func TestHubbubServices(t *testing.T) {
	p := load(t)
	nats := service(t, p, "nats")
	for name, want := range hubbub {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			if s.Build == nil || s.Build.Target != name || filepath.Clean(s.Build.Context) != mustAbs(t, root) {
				t.Errorf("build %+v: want target %s of the repository's Dockerfile", s.Build, name)
			}
			if !strings.HasPrefix(s.Image, "ghcr.io/hubbub-chat/hubbub-"+name+":") {
				t.Errorf("image %s", s.Image)
			}
			checks := map[string]string{
				"HUBBUB_NATS_URL":        "nats://nats:4222",
				"HUBBUB_NATS_USER":       name,
				"HUBBUB_NATS_PASSWORD":   env(nats, "HUBBUB_NATS_"+strings.ToUpper(name)+"_PASSWORD"),
				"HUBBUB_HTTP_ADDR":       ":" + want.port,
				"HUBBUB_LOG_FORMAT":      "json",
				"HUBBUB_LOG_LEVEL":       "info",
				"HUBBUB_STREAM_REPLICAS": "1", // one NATS node
			}
			for k, v := range checks {
				if got := env(s, k); got != v || v == "" {
					t.Errorf("%s=%q, want %q", k, got, v)
				}
			}
			test := s.HealthCheck.Test
			if !slices.Equal(test, []string{"CMD", "/usr/local/bin/hubbub-healthcheck", "-path", "/readyz"}) {
				t.Errorf("healthcheck %v: want hubbub-healthcheck -path /readyz (probes $HUBBUB_HTTP_ADDR)", test)
			}
			if !slices.Contains(s.Tmpfs, "/tmp") {
				t.Errorf("no tmpfs /tmp for a read-only container")
			}

			// Every HUBBUB_* variable set here is one the binary reads.
			read, err := mainvars.Read(root, want.main)
			if err != nil {
				t.Fatal(err)
			}
			for k := range s.Environment {
				if strings.HasPrefix(k, "HUBBUB_") && !read[k] {
					t.Errorf("%s is set but %s never reads it", k, want.main)
				}
			}
		})
	}

	t.Run("provisioning settings agree", func(t *testing.T) {
		// Every service provisions the stream and buckets with what it reads:
		// two values of one setting would make them rewrite each other's.
		for _, k := range []string{"HUBBUB_STREAM_REPLICAS", "HUBBUB_LEASE_TTL", "HUBBUB_TYPING_TTL"} {
			seen := map[string]string{}
			for name := range hubbub {
				if v, ok := service(t, p, name).Environment[k]; ok && v != nil {
					seen[name] = *v
				}
			}
			for a, va := range seen {
				for b, vb := range seen {
					if va != vb {
						t.Errorf("%s: %s has %q, %s has %q", k, a, va, b, vb)
					}
				}
			}
		}
		if v := env(service(t, p, "presence"), "HUBBUB_TYPING_TTL"); v != "5s" {
			t.Errorf("HUBBUB_TYPING_TTL %q: edge and history provision the typing bucket with 5s", v)
		}
	})

	t.Run("history stores in postgres", func(t *testing.T) {
		s := service(t, p, "history")
		pg := service(t, p, "postgres")
		u, err := url.Parse(env(s, "HUBBUB_DATABASE_URL"))
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := u.User.Password()
		if u.Scheme != "postgres" || u.Hostname() != "postgres" || u.Port() != "5432" ||
			u.User.Username() != env(pg, "POSTGRES_USER") || pw != env(pg, "POSTGRES_PASSWORD") ||
			strings.TrimPrefix(u.Path, "/") != env(pg, "POSTGRES_DB") {
			t.Errorf("HUBBUB_DATABASE_URL %s does not match the postgres service", u.Redacted())
		}
	})

	t.Run("edge scales behind the load balancer", func(t *testing.T) {
		s := service(t, p, "edge")
		if s.ContainerName != "" {
			t.Errorf("container_name %q prevents --scale", s.ContainerName)
		}
		if len(s.Ports) != 0 {
			t.Errorf("edge publishes %v: replicas would clash; the load balancer publishes :8080", s.Ports)
		}
		if !slices.Contains(s.Expose, "8080") {
			t.Errorf("edge expose %v, want 8080", s.Expose)
		}
		if _, ok := s.Environment["HUBBUB_EDGE_ID"]; ok {
			t.Error("HUBBUB_EDGE_ID is fixed: every replica would hold the same lease")
		}
		drain, err := time.ParseDuration(env(s, "HUBBUB_DRAIN_PERIOD"))
		if err != nil {
			t.Fatalf("HUBBUB_DRAIN_PERIOD: %v", err)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < drain+5*time.Second {
			t.Errorf("stop_grace_period %v must exceed the drain period %v by a margin", s.StopGracePeriod, drain)
		}
		if u := s.Ulimits["nofile"]; u == nil || u.Soft < 20000 {
			t.Errorf("nofile ulimit %+v too low for many WebSockets", u)
		}
	})

	t.Run("passwords default to development values only", func(t *testing.T) {
		for _, s := range p.Services {
			for k := range s.Environment {
				if strings.Contains(k, "PASSWORD") && !strings.HasPrefix(env(s, k), "dev-") {
					t.Errorf("%s %s default %q is not a marked dev- default", s.Name, k, env(s, k))
				}
			}
		}
		over := load(t, "HUBBUB_NATS_EDGE_PASSWORD=from-env", "HUBBUB_POSTGRES_PASSWORD=pg-from-env")
		if env(service(t, over, "edge"), "HUBBUB_NATS_PASSWORD") != "from-env" ||
			env(service(t, over, "nats"), "HUBBUB_NATS_EDGE_PASSWORD") != "from-env" {
			t.Error("HUBBUB_NATS_EDGE_PASSWORD does not override both the server and the edge")
		}
		if env(service(t, over, "postgres"), "POSTGRES_PASSWORD") != "pg-from-env" ||
			!strings.Contains(env(service(t, over, "history"), "HUBBUB_DATABASE_URL"), ":pg-from-env@") {
			t.Error("HUBBUB_POSTGRES_PASSWORD does not override both postgres and history")
		}
	})
}

func TestNATS(t *testing.T) {
	p := load(t)
	s := service(t, p, "nats")
	var confDir string
	hasData := false
	for _, v := range s.Volumes {
		switch {
		case v.Type == types.VolumeTypeVolume && v.Target == "/data":
			hasData = true
		case v.Type == types.VolumeTypeBind && v.Target == "/etc/nats":
			confDir = v.Source
			if !v.ReadOnly {
				t.Error("configuration mounted read-write")
			}
		}
	}
	if !hasData {
		t.Error("JetStream store /data is not on a named volume")
	}
	if confDir != mustAbs(t, filepath.Join(root, "deploy", "nats")) {
		t.Fatalf("config mounted from %q, want deploy/nats", confDir)
	}
	if !slices.Equal(s.Command, []string{"nats-server", "--config", "/etc/nats/nats.conf"}) {
		t.Errorf("command %v", s.Command)
	}
	for k, v := range s.Environment {
		if v != nil {
			t.Setenv(k, *v)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(confDir, "nats.conf"))
	if err != nil {
		t.Fatalf("nats.conf with the compose environment: %v", err)
	}
	if opts.StoreDir != "/data" || !opts.JetStream {
		t.Errorf("JetStream store %q, want the /data volume", opts.StoreDir)
	}
	for _, port := range s.Ports {
		if port.HostIP != "127.0.0.1" {
			t.Errorf("port %d published on %q, want loopback only", port.Target, port.HostIP)
		}
	}
	if test := strings.Join(s.HealthCheck.Test, " "); !strings.Contains(test, ":8222/healthz") || opts.HTTPPort != 8222 {
		t.Errorf("healthcheck %q must probe the monitoring port (%d)", test, opts.HTTPPort)
	}
	if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= opts.LameDuckDuration {
		t.Errorf("stop_grace_period %v shorter than lame_duck_duration %v", s.StopGracePeriod, opts.LameDuckDuration)
	}
}

func TestPostgres(t *testing.T) {
	p := load(t)
	s := service(t, p, "postgres")
	found := false
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == "/var/lib/postgresql/data" {
			found = true
		}
	}
	if !found {
		t.Error("postgres data is not on a named volume")
	}
	if s.HealthCheck.Test[1] != "pg_isready" {
		t.Errorf("healthcheck %v, want pg_isready", s.HealthCheck.Test)
	}
	if len(s.Ports) != 0 {
		t.Errorf("postgres published on the host: %v", s.Ports)
	}
}

// TestNetworks: browsers reach only the load balancer, only history reaches
// Postgres, the load balancer reaches only the edges.
func TestNetworks(t *testing.T) {
	p := load(t)
	want := map[string][]string{
		"lb":       {"frontend"},
		"edge":     {"backend", "frontend"},
		"nats":     {"backend"},
		"history":  {"backend", "db"},
		"presence": {"backend"},
		"postgres": {"db"},
	}
	for name, nets := range want {
		var got []string
		for n := range service(t, p, name).Networks {
			got = append(got, n)
		}
		slices.Sort(got)
		if !slices.Equal(got, nets) {
			t.Errorf("%s on networks %v, want %v", name, got, nets)
		}
	}
	for _, s := range p.Services {
		if s.Name != "lb" && s.Name != "nats" && len(s.Ports) > 0 {
			t.Errorf("%s publishes ports %v", s.Name, s.Ports)
		}
	}
}

func TestLoadBalancer(t *testing.T) {
	p := load(t)
	s := service(t, p, "lb")
	if len(s.Ports) != 1 || s.Ports[0].Target != 8080 || s.Ports[0].Published != "8080" {
		t.Fatalf("lb ports %+v, want 8080:8080", s.Ports)
	}
	var conf string
	for _, v := range s.Volumes {
		if v.Target == "/etc/nginx/nginx.conf" {
			conf = v.Source
		}
	}
	if conf != mustAbs(t, filepath.Join(root, "deploy", "nginx", "nginx.conf")) {
		t.Fatalf("nginx.conf mounted from %q", conf)
	}
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{
		"server edge:8080 resolve",               // new replicas are found
		"resolver 127.0.0.11",                    // through Docker's DNS
		"least_conn",                             // long-lived connections spread evenly
		"proxy_http_version 1.1",                 // WebSocket upgrade needs HTTP/1.1
		"proxy_set_header Upgrade $http_upgrade", //
		"proxy_set_header Connection $connection_upgrade",
		"proxy_set_header Host $http_host", // the edge's Origin check
		"proxy_buffering off",              // SSE
		"proxy_read_timeout 1h",
		"listen 8080",
		"location = /lb-healthz",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("nginx.conf lacks %q", want)
		}
	}
	if test := strings.Join(s.HealthCheck.Test, " "); !strings.Contains(test, "/lb-healthz") {
		t.Errorf("lb healthcheck %q", test)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
