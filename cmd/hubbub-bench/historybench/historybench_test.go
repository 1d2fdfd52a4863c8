package historybench

import (
	"testing"

	"github.com/hubbub-chat/hubbub/services/history/pgtest"
)

// TestRun runs a small measurement end to end on each store: it publishes,
// ingests and serves recent pages without failing. Its figures are not
// checked (benchmarks measure; tests do not time).
func TestRun(t *testing.T) {
	small := []string{"-n", "1000", "-rooms", "5", "-requesters", "4", "-conns", "2", "-duration", "300ms"}
	cases := []struct {
		name string
		args []string
	}{
		{"sqlite", []string{"-database-url", ""}},
		{"postgres", []string{"-database-url", pgtest.AdminURL(t)}},
		{"verify", []string{"-database-url", "", "-verify", "-profile-dir", t.TempDir()}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := run(t.Context(), append(append([]string{}, small...), c.args...)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseRefusesNonsense(t *testing.T) {
	for _, args := range [][]string{{"-n", "0"}, {"-rooms", "-1"}, {"-limit", "0"}, {"-bogus"}} {
		if _, err := parse(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
