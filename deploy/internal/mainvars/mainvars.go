// Package mainvars finds the HUBBUB_* environment variables a Hubbub binary
// reads, so deployment files can be checked against the code: a variable
// set in compose or Kubernetes that no code reads is a silent mistake.
package mainvars

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// projectPrefix is the import path prefix of the project's packages.
const projectPrefix = "github.com/hubbub-chat/hubbub/"

var variable = regexp.MustCompile(`"(HUBBUB_[A-Z0-9_]+)"`)

// Read returns the variables named in the main file (a path relative to the
// repository root) and in the project packages it imports, transitively
// (the service's RegisterFlags, shared/config's Common, the daemon body …).
// Test files are not read.
func Read(root, main string) (map[string]bool, error) {
	read := map[string]bool{}
	seen := map[string]bool{}
	var scan func(files []string) error
	scan = func(files []string) error {
		for _, file := range files {
			src, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read %s: %w", file, err)
			}
			for _, m := range variable.FindAllStringSubmatch(string(src), -1) {
				read[m[1]] = true
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, src, parser.ImportsOnly)
			if err != nil {
				return fmt.Errorf("parse %s: %w", file, err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if !strings.HasPrefix(path, projectPrefix) || seen[path] {
					continue
				}
				seen[path] = true
				all, err := filepath.Glob(filepath.Join(root, strings.TrimPrefix(path, projectPrefix), "*.go"))
				if err != nil {
					return fmt.Errorf("list %s: %w", path, err)
				}
				var pkg []string
				for _, g := range all {
					if !strings.HasSuffix(g, "_test.go") {
						pkg = append(pkg, g)
					}
				}
				if err := scan(pkg); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := scan([]string{filepath.Join(root, main)}); err != nil {
		return nil, err
	}
	return read, nil
}
