package dockerfile_test

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// localDockerfile builds the Hubbub images from binaries built on the host
// (deploy/composetest runs docker-compose.yml with them on a machine that
// cannot pull the golang and distroless images).
const localDockerfile = "deploy/compose/local/Dockerfile.hubbub"

// TestLocalDockerfileMirrors: each of its stages configures its image as the
// Dockerfile's stage of the same name does (ENV, EXPOSE, USER, VOLUME,
// HEALTHCHECK, ENTRYPOINT and the files copied, by name, destination and
// owner), so the compose test runs the images that are shipped.
func TestLocalDockerfileMirrors(t *testing.T) {
	main := load(t)
	f, err := os.Open(filepath.Join(root, localDockerfile))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse %s: %v", localDockerfile, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s warning: %s", localDockerfile, w.Short)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("parse %s instructions: %v", localDockerfile, err)
	}
	var names []string
	for _, s := range stages {
		names = append(names, s.Name)
		if s.BaseName != "${BASE}" {
			t.Errorf("stage %s is FROM %s, want ${BASE}", s.Name, s.BaseName)
		}
		want, got := configuration(main.stage(t, s.Name)), configuration(s)
		if !slices.Equal(got, want) {
			t.Errorf("stage %s:\n got %q\nwant %q (the Dockerfile's)", s.Name, got, want)
		}
	}
	if want := []string{"edge", "history", "presence"}; !slices.Equal(names, want) {
		t.Errorf("stages %v, want %v", names, want)
	}
}

// configuration is what a final stage gives its image, in order.
func configuration(s instructions.Stage) []string {
	var out []string
	for _, c := range s.Commands {
		switch c := c.(type) {
		case *instructions.CopyCommand:
			var files []string
			for _, src := range c.SourcePaths {
				files = append(files, path.Base(src))
			}
			out = append(out, fmt.Sprintf("COPY %v -> %s chown=%s", files, c.DestPath, c.Chown))
		case fmt.Stringer:
			out = append(out, c.String())
		default:
			out = append(out, c.Name())
		}
	}
	return out
}
