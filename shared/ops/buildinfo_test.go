package ops

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := RegisterBuildInfo(reg, "edge"); err != nil {
		t.Fatal(err)
	}
	if err := RegisterBuildInfo(reg, "edge"); err == nil {
		t.Fatal("registering twice succeeded")
	}
	b := BuildInfo()
	want := `
# HELP hubbub_build_info Always 1; the labels describe the running binary.
# TYPE hubbub_build_info gauge
hubbub_build_info{component="edge",go_version="` + runtime.Version() + `",revision="` + b.Revision + `",version="` + b.Version + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "hubbub_build_info"); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); !strings.Contains(s, runtime.Version()) {
		t.Fatalf("version line %q", s)
	}
}
