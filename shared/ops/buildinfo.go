package ops

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Build describes the running binary, from the Go build information.
type Build struct {
	// Version is the main module's version ("(devel)" for a local build).
	Version string
	// Revision is the VCS commit the binary was built from ("" unknown),
	// with "-dirty" when the tree had local changes.
	Revision string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// BuildInfo reads the running binary's build information.
func BuildInfo() Build {
	b := Build{Version: "(unknown)", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "" {
		b.Revision += "-dirty"
	}
	return b
}

// String is the line -version prints.
func (b Build) String() string {
	rev := b.Revision
	if rev == "" {
		rev = "unknown revision"
	}
	return fmt.Sprintf("%s (%s, %s)", b.Version, rev, b.GoVersion)
}

// RegisterBuildInfo registers hubbub_build_info{component,version,revision,go_version},
// always 1, so dashboards and alerts can tell which build runs where.
func RegisterBuildInfo(reg prometheus.Registerer, component string) error {
	b := BuildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hubbub_build_info",
		Help: "Always 1; the labels describe the running binary.",
		ConstLabels: prometheus.Labels{
			"component": component, "version": b.Version, "revision": b.Revision, "go_version": b.GoVersion,
		},
	})
	g.Set(1)
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("build info metric: %w", err)
	}
	return nil
}
