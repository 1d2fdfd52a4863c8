package dockerfile_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// root is the repository root, relative to this package.
const root = "../.."

// targets are the images the Dockerfile must produce, with their binary.
var targets = map[string]string{
	"edge":     "hubbub-edge",
	"history":  "hubbub-history",
	"presence": "hubbub-presence",
	"hubbub":   "hubbub",
}

// mains are the packages built into the images.
var mains = []string{
	"services/edge/cmd/hubbub-edge",
	"services/history/cmd/hubbub-history",
	"services/presence/cmd/hubbub-presence",
	"cmd/hubbub",
	"deploy/cmd/hubbub-healthcheck",
}

type dockerfile struct {
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
}

func load(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile warning: %s", w.Short)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("parse Dockerfile instructions: %v", err)
	}
	return dockerfile{stages: stages, metaArgs: metaArgs}
}

func (d dockerfile) stage(t *testing.T, name string) instructions.Stage {
	t.Helper()
	for _, s := range d.stages {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("Dockerfile has no stage %q", name)
	return instructions.Stage{}
}

func commands[T any](s instructions.Stage) []T {
	var out []T
	for _, c := range s.Commands {
		if v, ok := c.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func (d dockerfile) metaArg(name string) string {
	for _, a := range d.metaArgs {
		for _, kv := range a.Args {
			if kv.Key == name && kv.Value != nil {
				return *kv.Value
			}
		}
	}
	return ""
}

// workspace returns the module directories go.work uses.
func workspace(t *testing.T) *modfile.WorkFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	wf, err := modfile.ParseWork("go.work", data, nil)
	if err != nil {
		t.Fatalf("parse go.work: %v", err)
	}
	return wf
}

func TestTargets(t *testing.T) {
	d := load(t)
	for target, binary := range targets {
		t.Run(target, func(t *testing.T) {
			s := d.stage(t, target)
			if s.BaseName != "scratch" && !strings.HasPrefix(s.BaseName, "gcr.io/distroless/") {
				t.Errorf("stage %s is based on %s, want distroless or scratch", target, s.BaseName)
			}
			if !strings.Contains(s.BaseName, ":") || strings.HasSuffix(s.BaseName, ":latest") {
				t.Errorf("stage %s: base image %s not pinned by tag", target, s.BaseName)
			}

			users := commands[*instructions.UserCommand](s)
			if len(users) == 0 {
				t.Fatalf("stage %s sets no USER", target)
			}
			user := users[len(users)-1].User
			name, _, _ := strings.Cut(user, ":")
			if name == "root" || name == "0" || name == "" {
				t.Errorf("stage %s runs as %q", target, user)
			}
			if _, err := strconv.Atoi(name); err != nil {
				t.Errorf("stage %s: USER %q is not numeric (runAsNonRoot cannot verify a name)", target, user)
			}

			copied := map[string]bool{}
			for _, c := range commands[*instructions.CopyCommand](s) {
				if c.From != "build" {
					t.Errorf("stage %s copies %v from %q, want only from the build stage", target, c.SourcePaths, c.From)
				}
				dest := c.DestPath
				for _, src := range c.SourcePaths {
					if strings.HasSuffix(dest, "/") {
						copied[dest+filepath.Base(src)] = true
					} else {
						copied[dest] = true
					}
				}
			}
			if len(commands[*instructions.RunCommand](s)) > 0 {
				t.Errorf("stage %s has RUN steps; the final image has no shell", target)
			}

			eps := commands[*instructions.EntrypointCommand](s)
			if len(eps) != 1 || !eps[0].PrependShell && len(eps[0].CmdLine) == 0 {
				t.Fatalf("stage %s: want exactly one ENTRYPOINT", target)
			}
			ep := eps[0]
			if ep.PrependShell {
				t.Errorf("stage %s: ENTRYPOINT in shell form (no shell in the image, no signals)", target)
			}
			if filepath.Base(ep.CmdLine[0]) != binary || !copied[ep.CmdLine[0]] {
				t.Errorf("stage %s: ENTRYPOINT %v is not the copied %s binary (copied %v)", target, ep.CmdLine, binary, copied)
			}

			hcs := commands[*instructions.HealthCheckCommand](s)
			if len(hcs) != 1 {
				t.Fatalf("stage %s: want one HEALTHCHECK", target)
			}
			test := hcs[0].Health.Test
			if len(test) < 2 || test[0] != "CMD" || filepath.Base(test[1]) != "hubbub-healthcheck" || !copied[test[1]] {
				t.Errorf("stage %s: HEALTHCHECK %v must exec the copied hubbub-healthcheck", target, test)
			}

			var httpAddr string
			for _, e := range commands[*instructions.EnvCommand](s) {
				for _, kv := range e.Env {
					if kv.Key == "HUBBUB_HTTP_ADDR" {
						httpAddr = kv.Value
					}
				}
			}
			if httpAddr == "" {
				t.Errorf("stage %s: HUBBUB_HTTP_ADDR not set (the healthcheck probes it)", target)
			}
			exposed := false
			for _, e := range commands[*instructions.ExposeCommand](s) {
				for _, p := range e.Ports {
					if ":"+p == httpAddr {
						exposed = true
					}
				}
			}
			if !exposed {
				t.Errorf("stage %s: HUBBUB_HTTP_ADDR %s is not EXPOSEd", target, httpAddr)
			}
		})
	}
}

func TestBuildStage(t *testing.T) {
	d := load(t)
	build := d.stage(t, "build")

	t.Run("Go version covers the workspace", func(t *testing.T) {
		goVersion := d.metaArg("GO_VERSION")
		if goVersion == "" || !strings.Contains(build.BaseName, "${GO_VERSION}") {
			t.Fatalf("build stage %s: want golang:${GO_VERSION}… with ARG GO_VERSION", build.BaseName)
		}
		need := workspace(t).Go.Version
		if semver.Compare("v"+goVersion, "v"+need) < 0 {
			t.Fatalf("GO_VERSION %s is older than go.work's go %s", goVersion, need)
		}
	})

	t.Run("every COPY source exists and every workspace module's go.mod is copied first", func(t *testing.T) {
		copiedMods := map[string]bool{}
		copiesAll := false
		for _, c := range commands[*instructions.CopyCommand](build) {
			if c.From != "" {
				t.Errorf("build stage copies from %q", c.From)
			}
			for _, src := range c.SourcePaths {
				if src == "." {
					copiesAll = true
					continue
				}
				matches, err := filepath.Glob(filepath.Join(root, src))
				if err != nil {
					t.Fatalf("COPY %s: %v", src, err)
				}
				glob := strings.ContainsAny(src, "*?[")
				if len(matches) == 0 && !glob {
					t.Errorf("COPY %s: no such file", src)
				}
				if filepath.Base(src) == "go.mod" || filepath.Base(src) == "go.work" {
					if len(matches) != 1 {
						t.Errorf("COPY %s: missing", src)
					}
					copiedMods[filepath.Dir(src)] = true
					if dest := strings.TrimSuffix(c.DestPath, "/"); dest != filepath.Dir(src) && !(dest == "." && filepath.Dir(src) == ".") {
						t.Errorf("COPY %s lands in %s, want the same layout as the repository", src, c.DestPath)
					}
				}
			}
		}
		if !copiesAll {
			t.Error("build stage never copies the source tree (COPY . .)")
		}
		if !copiedMods["."] {
			t.Error("go.work is not copied")
		}
		for _, use := range workspace(t).Use {
			dir := filepath.Clean(use.Path)
			if !copiedMods[dir] {
				t.Errorf("go.work uses %s but the Dockerfile does not copy %s/go.mod", use.Path, dir)
			}
			data, err := os.ReadFile(filepath.Join(root, dir, "go.mod"))
			if err != nil {
				t.Errorf("go.work uses %s: %v", use.Path, err)
				continue
			}
			mf, err := modfile.ParseLax(dir+"/go.mod", data, nil)
			if err != nil {
				t.Errorf("%s/go.mod: %v", dir, err)
				continue
			}
			// A replace by a local path (../../shared) needs that go.mod too.
			for _, r := range mf.Replace {
				if modfile.IsDirectoryPath(r.New.Path) {
					target := filepath.Join(dir, r.New.Path)
					if !copiedMods[target] {
						t.Errorf("%s/go.mod replaces %s with %s, whose go.mod the Dockerfile does not copy", dir, r.Old.Path, target)
					}
				}
			}
		}
	})

	t.Run("builds every binary statically", func(t *testing.T) {
		var script strings.Builder
		for _, r := range commands[*instructions.RunCommand](build) {
			script.WriteString(strings.Join(r.CmdLine, " "))
			script.WriteString("\n")
		}
		var env []string
		for _, e := range commands[*instructions.EnvCommand](build) {
			for _, kv := range e.Env {
				env = append(env, kv.Key+"="+kv.Value)
			}
		}
		if !slices.Contains(env, "CGO_ENABLED=0") {
			t.Error("build stage does not set CGO_ENABLED=0: binaries would not be static")
		}
		for _, m := range mains {
			if !strings.Contains(script.String(), "./"+m) {
				t.Errorf("build stage does not build ./%s", m)
			}
			if _, err := os.Stat(filepath.Join(root, m)); err != nil {
				t.Errorf("main package %s: %v", m, err)
			}
		}
	})
}

// TestDockerignore checks the build context keeps what the build needs.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	keep := []string{"go.work", "Dockerfile", "deploy/go.mod", "deploy/cmd/hubbub-healthcheck/main.go", "services/edge/internal/web/static/index.html"}
	for _, use := range workspace(t).Use {
		keep = append(keep, filepath.Join(filepath.Clean(use.Path), "go.mod"), filepath.Join(filepath.Clean(use.Path), "go.sum"))
	}
	keep = append(keep, mains...)
	for _, p := range keep {
		ignored, err := pm.MatchesOrParentMatches(p)
		if err != nil {
			t.Fatal(err)
		}
		if ignored {
			t.Errorf(".dockerignore excludes %s, which the build needs", p)
		}
	}
	for _, p := range []string{".git/config", "bin/hubbub", "hubbub-data/history.db"} {
		if ignored, _ := pm.MatchesOrParentMatches(p); !ignored {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
}
