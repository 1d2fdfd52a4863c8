//go:build composetest

package composetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// debRecipe names the recipe below in the cache: change it with the recipe.
const debRecipe = "r1"

// pgMajor is the PostgreSQL of the local image: trixie's postgresql-17, the
// major version of the compose file's postgres:17.
const pgMajor = "17"

// Suites. nginx comes from unstable: deploy/nginx/nginx.conf re-resolves the
// edges with `server edge:8080 resolve`, which needs nginx 1.27.3 or later
// (trixie has 1.26). HUBBUB_COMPOSE_NGINX_SUITE overrides it.
const (
	pgSuite    = "trixie"
	nginxSuite = "sid"
)

// debianFiles are root filesystem tarballs (for docker import) and the
// static busybox the NATS image borrows for its healthcheck's wget.
type debianFiles struct{ postgres, nginx, busybox string }

// Packages left out of the root filesystems: JIT (PostgreSQL runs with
// jit=off), perl (postgresql-common's wrappers; the entrypoint calls the
// binaries), locales (initdb uses C.UTF-8).
var (
	skipPackages = []string{"perl", "locales", "libc-l10n"}
	skipPrefixes = []string{"libllvm", "libz3-", "perl-modules-", "libperl"}
)

var tarExcludes = []string{
	"--exclude=./usr/share/doc", "--exclude=./usr/share/man", "--exclude=./usr/share/info",
	"--exclude=./usr/share/locale", "--exclude=./usr/share/lintian",
	"--exclude=./usr/lib/postgresql/*/lib/bitcode", "--exclude=./usr/lib/postgresql/*/lib/llvmjit*",
}

// debianImages returns the PostgreSQL and nginx root filesystems, assembling
// them from Debian's packages (downloaded with apt-get into a private apt
// directory, unpacked with dpkg-deb, no maintainer script run) when the cache
// does not have them yet.
func debianImages(t *testing.T, ctx context.Context, cache string) debianFiles {
	t.Helper()
	dir := mkdirAll(t, filepath.Join(cache, "debian-"+debRecipe))
	f := debianFiles{
		postgres: filepath.Join(dir, "postgres.tar"),
		nginx:    filepath.Join(dir, "nginx.tar"),
		busybox:  filepath.Join(dir, "busybox"),
	}
	if exists(f.postgres) && exists(f.nginx) && exists(f.busybox) {
		return f
	}
	start := time.Now()
	mirror := os.Getenv("HUBBUB_COMPOSE_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	ngSuite := os.Getenv("HUBBUB_COMPOSE_NGINX_SUITE")
	if ngSuite == "" {
		ngSuite = nginxSuite
	}
	t.Logf("assembling PostgreSQL (%s) and nginx (%s) images from Debian packages (first run only)", pgSuite, ngSuite)
	work, err := os.MkdirTemp(dir, "work-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)

	// PostgreSQL, with busybox for the entrypoint's sh.
	pg := filepath.Join(work, "postgres")
	unpack(t, ctx, aptFetch(t, ctx, cache, mirror, pgSuite, work, "postgresql-"+pgMajor, "busybox-static"), pg)
	busybox := filepath.Join(pg, "usr", "bin", "busybox")
	if !exists(busybox) {
		t.Fatal("busybox-static did not provide /usr/bin/busybox")
	}
	if !exists(filepath.Join(pg, "usr", "lib", "postgresql", pgMajor, "bin", "postgres")) {
		t.Fatalf("postgresql-%s did not provide /usr/lib/postgresql/%s/bin/postgres", pgMajor, pgMajor)
	}
	users(t, pg, "postgres:x:70:70:PostgreSQL:/var/lib/postgresql:/bin/sh")
	applets(t, ctx, pg)
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		{"tmp", 0o1777},
		{"var/lib/postgresql", 0o755},
		{"var/lib/postgresql/data", 0o700},
		{"var/run/postgresql", 0o3777}, // a tmpfs in the compose file; the mode is the official image's
	} {
		p := filepath.Join(pg, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			t.Fatal(err)
		}
		if d.path != "tmp" {
			if err := os.Chown(p, 70, 70); err != nil {
				t.Fatal(err)
			}
		}
	}
	script, err := os.ReadFile(filepath.Join(root, "deploy", "compose", "local", "postgres-entrypoint.sh"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(pg, "usr", "local", "bin", "docker-entrypoint.sh"), script, 0o755)
	copyFile(t, busybox, f.busybox+".tmp", 0o755)

	// nginx.
	ng := filepath.Join(work, "nginx")
	unpack(t, ctx, aptFetch(t, ctx, cache, mirror, ngSuite, work, "nginx"), ng)
	if !exists(filepath.Join(ng, "usr", "sbin", "nginx")) {
		t.Fatal("the nginx package did not provide /usr/sbin/nginx")
	}
	copyFile(t, busybox, filepath.Join(ng, "usr", "bin", "busybox"), 0o755)
	users(t, ng, "nginx:x:101:101:nginx:/nonexistent:/bin/false")
	applets(t, ctx, ng)
	if err := os.MkdirAll(filepath.Join(ng, "var", "log", "nginx"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Like the official image: the compiled-in log paths go to the container's output.
	for name, target := range map[string]string{"access.log": "/dev/stdout", "error.log": "/dev/stderr"} {
		p := filepath.Join(ng, "var", "log", "nginx", name)
		_ = os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(ng, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(ng, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}

	for _, x := range []struct{ src, dst string }{{pg, f.postgres}, {ng, f.nginx}} {
		if err := run(ctx, "", nil, "tar", "--numeric-owner", "-C", x.src, "-cf", x.dst+".tmp", "."); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{f.postgres, f.nginx, f.busybox} {
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("Debian images assembled in %s", time.Since(start).Round(time.Second))
	return f
}

// aptFetch downloads pkgs and their dependencies from suite into a fresh
// directory and returns the .deb files. apt-get runs with its own source
// list, package lists and an empty dpkg status under the cache: the host's
// apt configuration and installed packages are neither used nor changed.
func aptFetch(t *testing.T, ctx context.Context, cache, mirror, suite, work string, pkgs ...string) []string {
	t.Helper()
	d := mkdirAll(t, filepath.Join(cache, "apt", suite))
	for _, sub := range []string{"lists/partial", "sources.list.d", "preferences.d", "cache"} {
		mkdirAll(t, filepath.Join(d, sub))
	}
	keyring := "/usr/share/keyrings/debian-archive-keyring.gpg"
	if !exists(keyring) {
		t.Fatalf("%s is missing: apt-get install debian-archive-keyring", keyring)
	}
	writeFile(t, filepath.Join(d, "sources.list"), fmt.Appendf(nil, "deb [signed-by=%s] %s %s main\n", keyring, mirror, suite), 0o644)
	writeFile(t, filepath.Join(d, "status"), nil, 0o644)
	writeFile(t, filepath.Join(d, "preferences"), nil, 0o644)
	archives := mkdirAll(t, filepath.Join(work, suite+"-debs"))
	mkdirAll(t, filepath.Join(archives, "partial"))
	opts := []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(d, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(d, "sources.list.d"),
		"-o", "Dir::Etc::Preferences=" + filepath.Join(d, "preferences"),
		"-o", "Dir::Etc::PreferencesParts=" + filepath.Join(d, "preferences.d"),
		"-o", "Dir::State=" + d,
		"-o", "Dir::State::Lists=" + filepath.Join(d, "lists"),
		"-o", "Dir::State::status=" + filepath.Join(d, "status"),
		"-o", "Dir::Cache=" + filepath.Join(d, "cache"),
		"-o", "Dir::Cache::archives=" + archives,
		"-o", "APT::Install-Recommends=false",
		"-o", "Debug::NoLocking=true",
		"-qq",
	}
	if err := run(ctx, "", nil, "apt-get", append(opts, "update")...); err != nil {
		t.Fatalf("apt-get update for Debian %s from %s (the first run downloads PostgreSQL and nginx packages): %v", suite, mirror, err)
	}
	if err := run(ctx, "", nil, "apt-get", append(opts, append([]string{"install", "--download-only", "-y"}, pkgs...)...)...); err != nil {
		t.Fatalf("download %v from Debian %s: %v", pkgs, suite, err)
	}
	debs, err := filepath.Glob(filepath.Join(archives, "*.deb"))
	if err != nil || len(debs) == 0 {
		t.Fatalf("apt-get downloaded no package for %v (%v)", pkgs, err)
	}
	return debs
}

// unpack extracts the packages into dir, a merged-/usr root filesystem.
func unpack(t *testing.T, ctx context.Context, debs []string, dir string) {
	t.Helper()
	for _, sub := range []string{"bin", "sbin", "lib", "lib64"} {
		mkdirAll(t, filepath.Join(dir, "usr", sub))
		if err := os.Symlink("usr/"+sub, filepath.Join(dir, sub)); err != nil {
			t.Fatal(err)
		}
	}
	for _, deb := range debs {
		name, _, _ := strings.Cut(filepath.Base(deb), "_")
		if skipped(name) {
			continue
		}
		script := `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --keep-directory-symlink "${@:3}"`
		if err := run(ctx, "", nil, "bash", append([]string{"-o", "pipefail", "-c", script, "unpack", deb, dir}, tarExcludes...)...); err != nil {
			t.Fatalf("unpack %s: %v", filepath.Base(deb), err)
		}
	}
}

func skipped(pkg string) bool {
	if slices.Contains(skipPackages, pkg) {
		return true
	}
	return slices.ContainsFunc(skipPrefixes, func(p string) bool { return strings.HasPrefix(pkg, p) })
}

// users writes /etc/passwd and /etc/group: root, nobody and one service user.
func users(t *testing.T, dir, user string) {
	t.Helper()
	f := strings.Split(user, ":")
	mkdirAll(t, filepath.Join(dir, "etc"))
	writeFile(t, filepath.Join(dir, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"+
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"+user+"\n"), 0o644)
	writeFile(t, filepath.Join(dir, "etc", "group"), []byte("root:x:0:\nnogroup:x:65534:\n"+f[0]+":x:"+f[3]+":\n"), 0o644)
}

// applets links busybox's applets that no package provides into /usr/bin.
func applets(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "usr", "bin", "busybox"), "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if exists(filepath.Join(dir, "usr", "bin", a)) || exists(filepath.Join(dir, "usr", "sbin", a)) {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "usr", "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	mkdirAll(t, filepath.Dir(path))
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, data, mode)
}
