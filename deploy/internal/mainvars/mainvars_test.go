package mainvars

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadFixture(t *testing.T) {
	got, err := Read(filepath.Join("testdata", "root"), "cmd/svc/main.go")
	if err != nil {
		t.Fatal(err)
	}
	// The main file, the packages it imports transitively (every non-test
	// file of each, once, through the a ↔ b cycle); not test files, not
	// packages nobody imports, not subpackages, not names built at run time.
	want := []string{"HUBBUB_9_DIGITS", "HUBBUB_A_FLAG", "HUBBUB_A_NAME", "HUBBUB_B_VALUE", "HUBBUB_MAIN"}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
		t.Errorf("Read = %v, want %v", keys, want)
	}
	for k, v := range got {
		if !v {
			t.Errorf("Read[%s] = false", k)
		}
	}
}

func TestReadPackageMain(t *testing.T) {
	// Reading an imported package alone starts there.
	got, err := Read(filepath.Join("testdata", "root"), "lib/b/b.go")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"HUBBUB_9_DIGITS", "HUBBUB_A_FLAG", "HUBBUB_A_NAME", "HUBBUB_B_VALUE"}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
		t.Errorf("Read = %v, want %v", keys, want)
	}
}

func TestReadErrors(t *testing.T) {
	root := t.TempDir()
	write := func(path, src string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cmd/ok/main.go", "package main\n\nimport _ \"github.com/hubbub-chat/hubbub/broken\"\n\nfunc main() {}\n")
	write("broken/broken.go", "package broken\n\nimport (\n")                       // an import block that never ends
	write("cmd/bad/main.go", "package main\n\nfunc main() {\n\t_ = \"HUBBUB_X\"\n") // the body is not parsed
	tests := []struct {
		name, main, want string
	}{
		{"missing main", "cmd/none/main.go", "read "},
		{"imported package does not parse", "cmd/ok/main.go", "parse " + filepath.Join(root, "broken", "broken.go")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(root, tt.main)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Read(%s) = %v, %v; want an error with %q", tt.main, got, err, tt.want)
			}
		})
	}
	// Only imports are parsed: a main whose body is cut short still counts.
	got, err := Read(root, "cmd/bad/main.go")
	if err != nil || !got["HUBBUB_X"] {
		t.Errorf("Read(cmd/bad) = %v, %v; want HUBBUB_X", got, err)
	}
}

// TestReadRepository reads the all-in-one binary of this repository: the
// variables it documents must be found through its imports.
func TestReadRepository(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root not at %s: %v", root, err)
	}
	got, err := Read(root, "cmd/hubbub/main.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"HUBBUB_HTTP_ADDR", "HUBBUB_DATA_DIR", "HUBBUB_NATS_URL", "HUBBUB_DATABASE_URL", "HUBBUB_AUTH", "HUBBUB_LOG_FORMAT"} {
		if !got[v] {
			t.Errorf("Read(cmd/hubbub) lacks %s", v)
		}
	}
}
