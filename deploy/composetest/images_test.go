//go:build composetest

package composetest

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const root = "../.."

// The Compose v2 CLI plugin, built from the Go module proxy: Debian's
// docker-compose package is Compose v1 (1.29, Python).
const (
	composeModule  = "github.com/docker/compose/v5"
	composeVersion = "v5.6.0"
)

// Local image names, handed to docker-compose.yml through its variables.
var images = map[string]string{
	"HUBBUB_EDGE_IMAGE":     "hubbub-local/hubbub-edge:test",
	"HUBBUB_HISTORY_IMAGE":  "hubbub-local/hubbub-history:test",
	"HUBBUB_PRESENCE_IMAGE": "hubbub-local/hubbub-presence:test",
	"HUBBUB_NATS_IMAGE":     "hubbub-local/nats:test",
	"HUBBUB_POSTGRES_IMAGE": "hubbub-local/postgres:test",
	"HUBBUB_LB_IMAGE":       "hubbub-local/nginx:test",
}

const staticBase = "hubbub-local/static:test"

// cacheDir holds what is slow to make and safe to keep between runs: the
// compose plugin and the root filesystems assembled from Debian packages.
func cacheDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HUBBUB_COMPOSE_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("no cache directory (set HUBBUB_COMPOSE_CACHE): %v", err)
		}
		dir = filepath.Join(base, "hubbub-composetest")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func goEnv(extra ...string) []string {
	env := append(os.Environ(), "CGO_ENABLED=0")
	return append(env, extra...)
}

// composePlugin returns the docker-compose CLI plugin, building it on the
// first run. `go install module/cmd@version` refuses the module (its go.mod
// has exclude directives), so its source is copied from the module cache
// and built as the main module.
func composePlugin(t *testing.T, ctx context.Context, cache string) string {
	t.Helper()
	bin := filepath.Join(cache, "compose", "docker-compose-"+composeVersion)
	if exists(bin) {
		return bin
	}
	start := time.Now()
	t.Logf("building the compose plugin %s@%s (first run only; a few minutes)", composeModule, composeVersion)
	tmp, err := os.MkdirTemp(mkdirAll(t, filepath.Dir(bin)), "src-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", composeModule+"@"+composeVersion)
	dl.Dir, dl.Env = tmp, goEnv("GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := dl.Output()
	if err != nil {
		t.Fatalf("go mod download %s@%s: %v", composeModule, composeVersion, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s@%s: %s %v", composeModule, composeVersion, mod.Error, err)
	}
	src := filepath.Join(tmp, "compose")
	if err := run(ctx, "", nil, "cp", "-r", mod.Dir, src); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, "", nil, "chmod", "-R", "u+w", src); err != nil {
		t.Fatal(err)
	}
	ldflags := "-s -w -X " + composeModule + "/internal.Version=" + composeVersion
	if err := run(ctx, src, goEnv("GOWORK=off", "GOFLAGS=-mod=mod"),
		"go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin+".tmp", "./cmd"); err != nil {
		t.Fatalf("build the compose plugin: %v", err)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("compose plugin built in %s", time.Since(start).Round(time.Second))
	return bin
}

func mkdirAll(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// installPlugin makes bin this run's `docker compose`.
func (e *engine) installPlugin(t *testing.T, ctx context.Context, bin string) {
	t.Helper()
	if err := os.Symlink(bin, filepath.Join(e.config, "cli-plugins", "docker-compose")); err != nil {
		t.Fatal(err)
	}
	out := e.must(t, ctx, "compose", "version", "--short")
	t.Logf("docker compose %s", strings.TrimSpace(out))
}

// buildBinaries builds the static binaries the images carry: Hubbub's
// (like the Dockerfile's build stage) and nats-server from the module
// version the workspace requires.
func buildBinaries(t *testing.T, ctx context.Context, dir string) (natsVersion string) {
	t.Helper()
	hubbub := filepath.Join(dir, "hubbub")
	if err := os.MkdirAll(filepath.Join(hubbub, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, root, goEnv(), "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", hubbub+"/",
		"./services/edge/cmd/hubbub-edge",
		"./services/history/cmd/hubbub-history",
		"./services/presence/cmd/hubbub-presence",
		"./deploy/cmd/hubbub-healthcheck"); err != nil {
		t.Fatalf("build the Hubbub binaries: %v", err)
	}
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
	if err != nil {
		t.Fatalf("go list -m nats-server: %v", err)
	}
	natsVersion = strings.TrimSpace(string(out))
	if err := run(ctx, root+"/deploy", goEnv(), "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w",
		"-o", filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2"); err != nil {
		t.Fatalf("build nats-server: %v", err)
	}
	return natsVersion
}

// buildImages makes every image of the compose file on the engine.
func buildImages(t *testing.T, ctx context.Context, e *engine, deb debianFiles, dir string) {
	t.Helper()
	// A distroless/static-like base: the nonroot user, CA certificates, /tmp.
	base := filepath.Join(dir, "static.tar")
	writeTar(t, base, staticRootfs(t))
	e.must(t, ctx, "import", base, staticBase)

	// Hubbub: the mirror of the Dockerfile's final stages, on that base.
	ctxDir := filepath.Join(dir, "hubbub")
	df, err := os.ReadFile(filepath.Join(root, "deploy", "compose", "local", "Dockerfile.hubbub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"edge", "history", "presence"} {
		img := images["HUBBUB_"+strings.ToUpper(target)+"_IMAGE"]
		e.must(t, ctx, "build", "-q", "--build-arg", "BASE="+staticBase, "--target", target, "-t", img, ctxDir)
	}

	// NATS: the static nats-server, with busybox for the compose healthcheck's wget.
	natsTar := filepath.Join(dir, "nats.tar")
	entries := staticRootfs(t)
	entries = append(entries,
		entry{name: "usr/bin/", mode: 0o755},
		entry{name: "usr/local/bin/nats-server", mode: 0o755, src: filepath.Join(dir, "nats-server")},
		entry{name: "usr/bin/busybox", mode: 0o755, src: deb.busybox},
		entry{name: "usr/bin/wget", link: "busybox"},
		entry{name: "usr/bin/sh", link: "busybox"},
		entry{name: "data/", mode: 0o755},
	)
	writeTar(t, natsTar, entries)
	e.must(t, ctx, "import",
		"--change", "ENV PATH=/usr/local/bin:/usr/bin",
		"--change", "EXPOSE 4222 6222 8222",
		"--change", `CMD ["nats-server", "--config", "/etc/nats/nats.conf"]`,
		natsTar, images["HUBBUB_NATS_IMAGE"])

	// PostgreSQL and nginx from Debian packages.
	e.must(t, ctx, "import",
		"--change", "ENV PATH=/usr/lib/postgresql/"+pgMajor+"/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
		"--change", "ENV PGDATA=/var/lib/postgresql/data",
		"--change", "USER 70:70",
		"--change", "EXPOSE 5432",
		"--change", "VOLUME /var/lib/postgresql/data",
		"--change", `ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]`,
		deb.postgres, images["HUBBUB_POSTGRES_IMAGE"])
	e.must(t, ctx, "import",
		"--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
		"--change", "EXPOSE 8080",
		"--change", `ENTRYPOINT ["nginx", "-g", "daemon off;"]`,
		deb.nginx, images["HUBBUB_LB_IMAGE"])
}

// entry is one file of a root filesystem tarball.
type entry struct {
	name     string // relative; a trailing / makes a directory
	mode     int64
	uid, gid int
	data     []byte
	src      string // a file on the host instead of data
	link     string // a symbolic link instead
}

func staticRootfs(t *testing.T) []entry {
	t.Helper()
	es := []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n")},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: 65532, gid: 65532},
		{name: "root/", mode: 0o700},
		{name: "tmp/", mode: 0o1777},
		{name: "usr/", mode: 0o755},
		{name: "usr/local/", mode: 0o755},
		{name: "usr/local/bin/", mode: 0o755},
	}
	if ca := "/etc/ssl/certs/ca-certificates.crt"; exists(ca) {
		es = append(es, entry{name: "etc/ssl/", mode: 0o755}, entry{name: "etc/ssl/certs/", mode: 0o755},
			entry{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, src: ca})
	}
	return es
}

func writeTar(t *testing.T, path string, entries []entry) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, en := range entries {
		h := &tar.Header{Name: en.name, Mode: en.mode, Uid: en.uid, Gid: en.gid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		var body io.Reader
		switch {
		case en.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, en.link, 0o777
		case strings.HasSuffix(en.name, "/"):
			h.Typeflag = tar.TypeDir
		case en.src != "":
			src, err := os.Open(en.src)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			st, err := src.Stat()
			if err != nil {
				t.Fatal(err)
			}
			h.Typeflag, h.Size, body = tar.TypeReg, st.Size(), src
		default:
			h.Typeflag, h.Size, body = tar.TypeReg, int64(len(en.data)), strings.NewReader(string(en.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if body != nil {
			if _, err := io.Copy(tw, body); err != nil {
				t.Fatal(fmt.Errorf("%s: %w", en.name, err))
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
