package composetest

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadProject loads docker-compose.yml, with the test's override when
// override is set, the way `docker compose -f … -f …` does.
func loadProject(t *testing.T, override bool) *types.Project {
	t.Helper()
	root := filepath.Join("..", "..")
	files := []string{filepath.Join(root, "docker-compose.yml")}
	if override {
		files = append(files, filepath.Join("testdata", "override.yml"))
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(root),
		cli.WithEnv([]string{"HUBBUB_COMPOSETEST_NOFILE=4096"}),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

// TestOverrideChangesOnlyWhatItSays runs without Docker (no build tag): the
// compose test's override must still fit docker-compose.yml — it names
// services that exist, publishes the load balancer on a loopback ephemeral
// port only, unpublishes NATS, caps the open files of the edges and the load
// balancer, and leaves everything else as the file has it. A renamed
// service or port in docker-compose.yml fails here, not twenty minutes into
// `make test-compose`.
func TestOverrideChangesOnlyWhatItSays(t *testing.T) {
	base, over := loadProject(t, false), loadProject(t, true)
	if !slices.Equal(base.ServiceNames(), over.ServiceNames()) {
		t.Fatalf("override changes the services: %v → %v", base.ServiceNames(), over.ServiceNames())
	}
	for _, name := range base.ServiceNames() {
		b, o := base.Services[name], over.Services[name]
		switch name {
		case "nats":
			if len(o.Ports) != 0 {
				t.Errorf("nats still publishes %v", o.Ports)
			}
			o.Ports = b.Ports
		case "lb":
			if len(o.Ports) != 1 || o.Ports[0].HostIP != "127.0.0.1" || o.Ports[0].Published != "" || o.Ports[0].Target != 8080 {
				t.Errorf("lb publishes %+v, want only 127.0.0.1::8080", o.Ports)
			}
			o.Ports = b.Ports
		}
		if name == "edge" || name == "lb" {
			nf := o.Ulimits["nofile"]
			if nf == nil || nf.Soft != 4096 || nf.Hard != 4096 {
				t.Errorf("%s nofile = %+v, want 4096/4096 from HUBBUB_COMPOSETEST_NOFILE", name, nf)
			}
			o.Ulimits = b.Ulimits
		}
		bj, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		oj, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		if string(bj) != string(oj) {
			t.Errorf("override changes %s beyond ports and open files:\nbase     %s\noverride %s", name, bj, oj)
		}
	}
}
