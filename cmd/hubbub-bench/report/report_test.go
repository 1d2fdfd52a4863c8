package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/scenario"
)

// loadRun decodes a results fixture the way `hubbub-bench report` does.
func loadRun(t *testing.T, name string) *Run {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return &r
}

// TestMarkdownGolden pins the whole rendered report of each fixture byte
// for byte. HUBBUB_UPDATE_GOLDEN=1 rewrites the .md files; review the diff.
func TestMarkdownGolden(t *testing.T) {
	for _, name := range []string{"run", "nofullreach", "nosummary"} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			Markdown(&buf, loadRun(t, name+".json"))
			golden := filepath.Join("testdata", name+".md")
			if os.Getenv("HUBBUB_UPDATE_GOLDEN") == "1" {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (HUBBUB_UPDATE_GOLDEN=1 writes it)", err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("Markdown(%s) differs from %s:\n%s", name, golden, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the first differing line of want and got.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + itoa(i+1) + ":\nwant " + wl + "\ngot  " + gl
		}
	}
	return "(same lines, different bytes)"
}

// summaryRows renders only the summary and returns its rows by figure.
func summaryRows(t *testing.T, rs []scenario.Result) map[string][]string {
	t.Helper()
	var buf bytes.Buffer
	summary(&buf, rs)
	rows := map[string][]string{}
	for line := range strings.Lines(buf.String()) {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| figure ") || strings.HasPrefix(line, "| --- ") {
			continue
		}
		cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "| "), " |"), " | ")
		if len(cells) != 5 {
			t.Fatalf("summary row with %d cells: %q", len(cells), line)
		}
		rows[cells[0]] = cells[1:]
	}
	return rows
}

func TestSummaryRows(t *testing.T) {
	rows := summaryRows(t, loadRun(t, "run.json").Results)
	tests := []struct {
		figure string
		want   []string // target, measured, baseline, met
	}{
		// The last idle stage with clients counts, against the last baseline stage.
		{"RSS per idle joined WebSocket (edge)", []string{"≤ 4 KiB", "4.88 KiB at 2000", "2.44 KiB (×2.00)", "**no**"}},
		{"connections across edge processes", []string{"≥ 100,000", "2000", "—", "**no**"}},
		// The best fan-out point is the fastest with full reach that did not
		// fail (the failed 20×100 point is faster); baselines with no figure
		// at that point are left out.
		{"fan-out deliveries/s at 100% reach", []string{"≥ 150,000", "4900 (10×100, 5 msg/s/room)", "baseline-ws 9800 (×0.50)", "**no**"}},
		{"latency p50 / p99 at 1000 deliveries/s (10×100)", []string{"≤ 2 / ≤ 10 ms", "1.50 / 8.00 ms (reach 100.00%)", "baseline-ws 2 (×4.00)", "yes"}},
		// Within the latency targets but short of full reach: not met.
		{"latency p50 / p99 at 10000 deliveries/s (10×1000)", []string{"≤ 2 / ≤ 10 ms", "1.75 / 9.50 ms (reach 99.90%)", "—", "**no**"}},
		{"history recent pages/s, Postgres (concurrency 16)", []string{"≥ 8,000", "7000", "—", "**no**"}},
		{"history ingest msg/s, Postgres", []string{"≥ 50,000", "60000 (publish 90000/s)", "—", "yes"}},
		{"reconnect storm: resumed gap-free ≤ 10s (500 affected of 1000)", []string{"≥ 95%", "96.00%", "—", "yes"}},
	}
	for _, tt := range tests {
		got, ok := rows[tt.figure]
		if !ok {
			t.Errorf("no summary row %q; rows: %v", tt.figure, rows)
			continue
		}
		if strings.Join(got, " | ") != strings.Join(tt.want, " | ") {
			t.Errorf("row %q = %q, want %q", tt.figure, got, tt.want)
		}
	}
	if len(rows) != len(tests) {
		t.Errorf("%d summary rows, want %d: %v", len(rows), len(tests), rows)
	}
}

func TestSummaryEdgeCases(t *testing.T) {
	rows := summaryRows(t, loadRun(t, "nofullreach.json").Results)
	want := map[string][]string{
		"fan-out deliveries/s at 100% reach": {"≥ 150,000", "no point reached 100%", "—", "**no**"},
		// Exactly on the targets is met; a baseline stage without clients is no baseline.
		"RSS per idle joined WebSocket (edge)": {"≤ 4 KiB", "4.00 KiB at 100000", "—", "yes"},
		"connections across edge processes":    {"≥ 100,000", "100000", "—", "yes"},
	}
	for fig, w := range want {
		if got := rows[fig]; strings.Join(got, " | ") != strings.Join(w, " | ") {
			t.Errorf("row %q = %q, want %q", fig, got, w)
		}
	}
	if len(rows) != len(want) {
		t.Errorf("%d summary rows, want %d: %v", len(rows), len(want), rows)
	}

	// Nothing the summary reports on: no heading, no table.
	var buf bytes.Buffer
	summary(&buf, loadRun(t, "nosummary.json").Results)
	if buf.Len() != 0 {
		t.Errorf("summary of results without a headline figure wrote %q", buf.String())
	}
	buf.Reset()
	summary(&buf, nil)
	if buf.Len() != 0 {
		t.Errorf("summary(nil) wrote %q", buf.String())
	}
}

// TestMarkdownInMemory renders results as the suite builds them (int
// parameters, not JSON's float64) and checks the sections it must hold.
func TestMarkdownInMemory(t *testing.T) {
	r := &Run{
		Started: time.Date(2026, 12, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600)),
		Machine: Machine{CPUs: 4, MemoryGiB: 7.5, Kernel: "6.1", Go: "go1.26.8", LoadAvg: 0.125},
		Results: []scenario.Result{
			{Scenario: "ingest", Target: "hubbub/sqlite", Params: map[string]any{"messages": 5000, "rooms": 10}, PublishSec: 1234.4, IngestSec: 999.5,
				ServerCPU: map[string]float64{"history": 0.5}},
			{Scenario: "unknown", Target: "hubbub"},
		},
	}
	var buf bytes.Buffer
	Markdown(&buf, r)
	got := buf.String()
	for _, want := range []string{
		"## Hubbub load test — 2026-12-01T11:00:00Z\n\n",
		"Machine: 4 CPUs, 7.5 GiB, kernel 6.1, go1.26.8; 1-minute load average at start 0.12.\n\n",
		"### History ingest (JetStream → store)\n\n| target | messages | publish/s | ingest/s | server CPU | load |\n| --- | --- | --- | --- | --- | --- |\n" +
			"| hubbub/sqlite | 5000 | 1234 | 1000 | history 0.50 | 0.00 |\n\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Markdown lacks %q; got:\n%s", want, got)
		}
	}
	for _, absent := range []string{"Quick mode", "### Summary", "### Idle", "### Fan-out", "unknown"} {
		if strings.Contains(got, absent) {
			t.Errorf("Markdown has %q; got:\n%s", absent, got)
		}
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	in := loadRun(t, "run.json")
	path := filepath.Join(t.TempDir(), "results.json")
	if err := WriteJSON(path, in); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte("}\n")) {
		t.Errorf("results file does not end in a newline: %q", b[max(0, len(b)-10):])
	}
	var out Run
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	var a, c bytes.Buffer
	Markdown(&a, in)
	Markdown(&c, &out)
	if a.String() != c.String() {
		t.Errorf("report of the written file differs:\n%s", lineDiff(a.String(), c.String()))
	}
	if err := WriteJSON(filepath.Join(t.TempDir(), "missing", "results.json"), in); err == nil {
		t.Error("WriteJSON into a missing directory succeeded")
	}
	if err := WriteJSON(path, &Run{Results: []scenario.Result{{Params: map[string]any{"bad": func() {}}}}}); err == nil {
		t.Error("WriteJSON of an unencodable parameter succeeded")
	}
}

func TestRatios(t *testing.T) {
	point := func(target string, rooms, members, rate float64, v float64) scenario.Result {
		return scenario.Result{Scenario: "fanout", Target: target, DeliveriesSec: v,
			Params: map[string]any{"rooms": rooms, "members": members, "rate_per_room": rate}}
	}
	v := func(x scenario.Result) float64 { return x.DeliveriesSec }
	x := point("hubbub", 10, 100, 5, 3000)
	tests := []struct {
		name string
		rs   []scenario.Result
		want string
	}{
		{"none", []scenario.Result{x}, "—"},
		{"one", []scenario.Result{x, point("baseline-ws", 10, 100, 5, 6000)}, "baseline-ws 6000 (×0.50)"},
		{"two in order", []scenario.Result{point("baseline-nats", 10, 100, 5, 1000), x, point("baseline-ws", 10, 100, 5, 2000.5)},
			"baseline-nats 1000 (×3.00); baseline-ws 2000.50 (×1.50)"},
		{"other point", []scenario.Result{x, point("baseline-ws", 10, 100, 2.5, 6000), point("baseline-ws", 20, 100, 5, 6000)}, "—"},
		{"zero baseline", []scenario.Result{x, point("baseline-ws", 10, 100, 5, 0)}, "—"},
		{"other scenario", []scenario.Result{x, {Scenario: "latency", Target: "baseline-ws", DeliveriesSec: 1, Params: x.Params}}, "—"},
		// An int parameter (in memory) and a float64 one (decoded) are the same point.
		{"int and float params", []scenario.Result{x, {Scenario: "fanout", Target: "baseline-ws", DeliveriesSec: 1500,
			Params: map[string]any{"rooms": 10, "members": 100, "rate_per_room": 5}}}, "baseline-ws 1500 (×2.00)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ratios(tt.rs, x, v); got != tt.want {
				t.Errorf("ratios = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLastAndHasAny(t *testing.T) {
	rs := []scenario.Result{
		{Scenario: "idle", Target: "hubbub", Clients: 10, RSSPerConn: 1},
		{Scenario: "idle", Target: "hubbub", Clients: 20, RSSPerConn: 2},
		{Scenario: "idle", Target: "hubbub", Clients: 0, RSSPerConn: 3},
		{Scenario: "fanout", Target: "hubbub"},
	}
	if x, ok := last(rs, "idle", "hubbub"); !ok || x.RSSPerConn != 2 {
		t.Errorf("last(idle, hubbub) = %v, %v; want the stage with RSSPerConn 2", x.RSSPerConn, ok)
	}
	if _, ok := last(rs, "idle", "baseline-ws"); ok {
		t.Error("last found a target that has no result")
	}
	if _, ok := last(rs, "fanout", "hubbub"); ok {
		t.Error("last found a result without clients")
	}
	if !hasAny(rs, "fanout", "hubbub") || hasAny(rs, "fanout", "baseline-ws") || hasAny(nil, "idle", "hubbub") {
		t.Error("hasAny is wrong")
	}
}

func TestFormatters(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"num nil", num(nil), "—"},
		{"num int", num(7), "7"},
		{"num whole float", num(float64(100000)), "100000"},
		{"num fraction", num(2.5), "2.50"},
		{"num string", num("sqlite"), "sqlite"},
		{"num bool", num(true), "true"},
		{"trim negative", trim(-3), "-3"},
		{"trim rounds", trim(1.005), "1.00"},
		{"itoa", itoa(-12), "-12"},
		{"i64", i64(1 << 40), "1099511627776"},
		{"f0", f0(2.5), "2"},
		{"f0 up", f0(3.5), "4"},
		{"f1", f1(0.25), "0.2"},
		{"f2", f2(1.0 / 3), "0.33"},
		{"pct", pct(0.98765), "98.77%"},
		{"pct full", pct(1), "100.00%"},
		{"kib", kib(3584), "3.50 KiB"},
		{"mib", mib(3 << 19), "1.5 MiB"},
		{"cpus none", cpus(nil), "—"},
		{"cpus empty", cpus(map[string]float64{}), "—"},
		// Fixed role order; unknown roles are not shown.
		{"cpus order", cpus(map[string]float64{"history": 0.125, "edges": 1.5, "nats-server": 0.5, "other": 9}), "edges 1.50, nats-server 0.50, history 0.12"},
		{"cpus unknown only", cpus(map[string]float64{"other": 1}), ""},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestTable(t *testing.T) {
	var buf bytes.Buffer
	table(&buf, []string{"a", "b"}, [][]string{{"1", "2"}, {"x", ""}})
	want := "| a | b |\n| --- | --- |\n| 1 | 2 |\n| x |  |\n"
	if buf.String() != want {
		t.Errorf("table = %q, want %q", buf.String(), want)
	}
}
