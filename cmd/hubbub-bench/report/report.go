// Package report renders load-tool results: a JSON document for machines
// and markdown tables (a summary against the design targets with the ratio
// to the baselines, then one table per scenario) for people.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/scenario"
)

// Machine describes where the figures were measured.
type Machine struct {
	CPUs      int     `json:"cpus"`
	MemoryGiB float64 `json:"memory_gib"`
	Kernel    string  `json:"kernel"`
	Go        string  `json:"go"`
	LoadAvg   float64 `json:"loadavg_1m_at_start"`
}

// Run is a whole suite run.
type Run struct {
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Command  string            `json:"command"`
	Machine  Machine           `json:"machine"`
	Quick    bool              `json:"quick"`
	Results  []scenario.Result `json:"results"`
	Profiles []string          `json:"profiles,omitempty"`
	Notes    []string          `json:"notes,omitempty"`
}

// WriteJSON writes r to path.
func WriteJSON(path string, r *Run) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("marshal results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// Markdown writes the tables.
func Markdown(w io.Writer, r *Run) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## Hubbub load test — %s\n\n", r.Started.UTC().Format(time.RFC3339))
	p("Machine: %d CPUs, %.1f GiB, kernel %s, %s; 1-minute load average at start %.2f.\n\n",
		r.Machine.CPUs, r.Machine.MemoryGiB, r.Machine.Kernel, r.Machine.Go, r.Machine.LoadAvg)
	if r.Quick {
		p("**Quick mode**: sizes are far too small to judge the targets; this run checks that every scenario works.\n\n")
	}
	summary(w, r.Results)
	sections := []struct {
		name, title string
		cols        []string
		row         func(scenario.Result) []string
	}{
		{"idle", "Idle connections (memory per joined WebSocket)",
			[]string{"target", "connections", "edges", "joined", "connects/s", "connect p99 ms", "RSS growth", "RSS/conn", "Go stack/conn", "Go heap/conn", "goroutines/conn", "server CPU", "gen CPU", "load"},
			func(x scenario.Result) []string {
				return []string{x.Target, num(x.Params["connections"]), num(x.Params["edges"]), itoa(x.Clients), f0(x.ConnectPerSec), f1(x.ConnectP99Ms),
					mib(x.RSSGrowth), kib(x.RSSPerConn), kib(x.StackPerConn), kib(x.HeapPerConn), f2(x.GoroutinesConn), cpus(x.ServerCPU), f2(x.GenCPU), f2(x.LoadAvg)}
			}},
		{"fanout", "Fan-out (deliveries per second, 100% reach required)", fanCols(), fanRow},
		{"latency", "Latency at a fixed delivery rate", fanCols(), fanRow},
		{"storm", "Reconnect storm (SIGKILL one edge)",
			[]string{"target", "clients", "edges", "affected", "resumed", "gap-free", "gap-free ≤ window", "%", "resume p50 ms", "p99 ms", "max ms", "gaps", "dups", "unrecovered", "gen CPU", "load"},
			func(x scenario.Result) []string {
				return []string{x.Target, itoa(x.Clients), num(x.Params["edges"]), itoa(x.Affected), itoa(x.Resumed), itoa(x.ResumedClean), itoa(x.InWindowClean),
					f2(x.ResumedPct), f1(x.ResumeTime.P50), f1(x.ResumeTime.P99), f1(x.ResumeTime.Max), i64(x.Gaps), i64(x.Dups), itoa(x.Unrecovered), f2(x.GenCPU), f2(x.LoadAvg)}
			}},
		{"history", "History `recent` pages of 50 over NATS request-reply",
			[]string{"target", "concurrency", "pages/s", "p50 ms", "p99 ms", "errors", "server CPU", "gen CPU", "load"},
			func(x scenario.Result) []string {
				return []string{x.Target, num(x.Params["concurrency"]), f0(x.PagesPerSec), f2(x.PageTime.P50), f2(x.PageTime.P99), i64(x.PageErrors), cpus(x.ServerCPU), f2(x.GenCPU), f2(x.LoadAvg)}
			}},
		{"ingest", "History ingest (JetStream → store)",
			[]string{"target", "messages", "publish/s", "ingest/s", "server CPU", "load"},
			func(x scenario.Result) []string {
				return []string{x.Target, num(x.Params["messages"]), f0(x.PublishSec), f0(x.IngestSec), cpus(x.ServerCPU), f2(x.LoadAvg)}
			}},
	}
	for _, s := range sections {
		var rows [][]string
		var failed []string
		for _, x := range r.Results {
			if x.Scenario != s.name {
				continue
			}
			rows = append(rows, s.row(x))
			if x.Failed != "" {
				failed = append(failed, fmt.Sprintf("%s %v: %s", x.Target, x.Params, x.Failed))
			}
			for _, n := range x.Notes {
				failed = append(failed, fmt.Sprintf("%s %v: %s", x.Target, x.Params, n))
			}
			if len(x.Errors) > 0 {
				failed = append(failed, fmt.Sprintf("%s %v: errors %v", x.Target, x.Params, x.Errors))
			}
		}
		if len(rows) == 0 {
			continue
		}
		p("### %s\n\n", s.title)
		table(w, s.cols, rows)
		for _, f := range failed {
			p("- %s\n", f)
		}
		p("\n")
	}
	for _, n := range r.Notes {
		p("- %s\n", n)
	}
}

// fanCols are the columns of fanRow.
func fanCols() []string {
	return []string{"target", "rooms", "members", "msg/s/room", "offered/s", "deliveries/s", "reach", "p50 ms", "p90 ms", "p99 ms", "max ms", "ack p50 ms", "gaps", "dups", "server CPU", "gen CPU", "server µs/delivery", "gen µs/delivery", "load"}
}

func fanRow(x scenario.Result) []string {
	return []string{x.Target, num(x.Params["rooms"]), num(x.Params["members"]), num(x.Params["rate_per_room"]), f0(x.OfferedSec), f0(x.DeliveriesSec),
		pct(x.Reach), f2(x.Latency.P50), f2(x.Latency.P90), f2(x.Latency.P99), f1(x.Latency.Max), f2(x.AckLatency.P50), i64(x.Gaps), i64(x.Dups),
		cpus(x.ServerCPU), f2(x.GenCPU), f2(x.ServerUsPerDelivery), f2(x.GenUsPerDelivery), f2(x.LoadAvg)}
}

// summary compares the headline figures with docs/design.md §5: one table
// row per figure, from the idle, fan-out, latency, history, ingest and
// storm results (none when rs has none of them).
func summary(w io.Writer, rs []scenario.Result) {
	var rows [][]string
	rows = append(rows, idleRows(rs)...)
	rows = append(rows, fanoutRows(rs)...)
	rows = append(rows, latencyRows(rs)...)
	rows = append(rows, pointRows(rs)...)
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "### Summary against docs/design.md §5\n\n")
	table(w, []string{"figure", "target", "measured", "baseline (ratio Hubbub ÷ baseline)", "met"}, rows)
	fmt.Fprintln(w)
}

// met is the summary's last column.
func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// idleRows judge idle memory and the connection count at the largest
// stage, against the WebSocket baseline's largest stage.
func idleRows(rs []scenario.Result) [][]string {
	x, ok := last(rs, "idle", "hubbub")
	if !ok {
		return nil
	}
	b, hasB := last(rs, "idle", "baseline-ws")
	base := "—"
	if hasB && b.RSSPerConn > 0 {
		base = fmt.Sprintf("%s (×%.2f)", kib(b.RSSPerConn), x.RSSPerConn/b.RSSPerConn)
	}
	return [][]string{
		{"RSS per idle joined WebSocket (edge)", "≤ 4 KiB", kib(x.RSSPerConn) + " at " + itoa(x.Clients), base, met(x.RSSPerConn > 0 && x.RSSPerConn <= 4096)},
		{"connections across edge processes", "≥ 100,000", itoa(x.Clients), "—", met(x.Clients >= 100000)},
	}
}

// fanoutRows judge the best fan-out point with full reach.
func fanoutRows(rs []scenario.Result) [][]string {
	const figure, target = "fan-out deliveries/s at 100% reach", "≥ 150,000"
	best, ok := bestFanout(rs)
	if !ok {
		if hasAny(rs, "fanout", "hubbub") {
			return [][]string{{figure, target, "no point reached 100%", "—", "**no**"}}
		}
		return nil
	}
	return [][]string{{figure, target,
		fmt.Sprintf("%s (%v×%v, %v msg/s/room)", f0(best.DeliveriesSec), best.Params["rooms"], best.Params["members"], best.Params["rate_per_room"]),
		ratios(rs, best, func(x scenario.Result) float64 { return x.DeliveriesSec }), met(best.DeliveriesSec >= 150000)}}
}

// bestFanout is Hubbub's fan-out point with the most deliveries per second
// among those that reached every client and did not fail (the first of
// equals).
func bestFanout(rs []scenario.Result) (scenario.Result, bool) {
	var best *scenario.Result
	for i := range rs {
		x := &rs[i]
		if x.Scenario == "fanout" && x.Target == "hubbub" && x.Reach >= 1 && x.Failed == "" && (best == nil || x.DeliveriesSec > best.DeliveriesSec) {
			best = x
		}
	}
	if best == nil {
		return scenario.Result{}, false
	}
	return *best, true
}

// latencyRows judge every latency point of Hubbub.
func latencyRows(rs []scenario.Result) [][]string {
	var rows [][]string
	for _, x := range rs {
		if x.Scenario != "latency" || x.Target != "hubbub" {
			continue
		}
		rows = append(rows, []string{
			fmt.Sprintf("latency p50 / p99 at %s deliveries/s (%v×%v)", f0(x.OfferedSec), x.Params["rooms"], x.Params["members"]), "≤ 2 / ≤ 10 ms",
			fmt.Sprintf("%s / %s ms (reach %s)", f2(x.Latency.P50), f2(x.Latency.P99), pct(x.Reach)),
			ratios(rs, x, func(x scenario.Result) float64 { return x.Latency.P99 }),
			met(x.Latency.P50 <= 2 && x.Latency.P99 <= 10 && x.Reach >= 1)})
	}
	return rows
}

// pointRows judge the results that stand alone — history pages and ingest
// on Postgres, Hubbub's reconnect storm — in result order.
func pointRows(rs []scenario.Result) [][]string {
	var rows [][]string
	for _, x := range rs {
		switch {
		case x.Scenario == "history" && strings.HasSuffix(x.Target, "/postgres"):
			rows = append(rows, []string{fmt.Sprintf("history recent pages/s, Postgres (concurrency %v)", x.Params["concurrency"]), "≥ 8,000",
				f0(x.PagesPerSec), "—", met(x.PagesPerSec >= 8000)})
		case x.Scenario == "ingest" && strings.HasSuffix(x.Target, "/postgres"):
			rows = append(rows, []string{"history ingest msg/s, Postgres", "≥ 50,000",
				f0(x.IngestSec) + fmt.Sprintf(" (publish %s/s)", f0(x.PublishSec)), "—", met(x.IngestSec >= 50000)})
		case x.Scenario == "storm" && x.Target == "hubbub":
			rows = append(rows, []string{fmt.Sprintf("reconnect storm: resumed gap-free ≤ %vs (%d affected of %d)", x.Params["window_s"], x.Affected, x.Clients), "≥ 95%",
				f2(x.ResumedPct) + "%", "—", met(x.ResumedPct >= 95)})
		}
	}
	return rows
}

// ratios finds the baselines measured at the same point as x.
func ratios(rs []scenario.Result, x scenario.Result, v func(scenario.Result) float64) string {
	var parts []string
	for _, b := range rs {
		if b.Scenario != x.Scenario || b.Target == x.Target || !samePoint(b, x) || v(b) == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s (×%.2f)", b.Target, trim(v(b)), v(x)/v(b)))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, "; ")
}

func samePoint(a, b scenario.Result) bool {
	for _, k := range []string{"rooms", "members", "rate_per_room"} {
		if fmt.Sprint(a.Params[k]) != fmt.Sprint(b.Params[k]) {
			return false
		}
	}
	return true
}

func last(rs []scenario.Result, sc, target string) (scenario.Result, bool) {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Scenario == sc && rs[i].Target == target && rs[i].Clients > 0 {
			return rs[i], true
		}
	}
	return scenario.Result{}, false
}

func hasAny(rs []scenario.Result, sc, target string) bool {
	for _, x := range rs {
		if x.Scenario == sc && x.Target == target {
			return true
		}
	}
	return false
}

func table(w io.Writer, cols []string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat(" --- |", len(cols)))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

func num(v any) string {
	switch x := v.(type) {
	case nil:
		return "—"
	case float64:
		return trim(x)
	default:
		return fmt.Sprint(x)
	}
}

func trim(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.2f", v)
}

func itoa(v int) string   { return fmt.Sprintf("%d", v) }
func i64(v int64) string  { return fmt.Sprintf("%d", v) }
func f0(v float64) string { return fmt.Sprintf("%.0f", v) }
func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func pct(v float64) string {
	return fmt.Sprintf("%.2f%%", 100*v)
}
func kib(v float64) string { return fmt.Sprintf("%.2f KiB", v/1024) }
func mib(v int64) string   { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }

func cpus(m map[string]float64) string {
	if len(m) == 0 {
		return "—"
	}
	var parts []string
	for _, k := range []string{"edges", "baseline-ws", "nats-server", "presence", "history"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
		}
	}
	return strings.Join(parts, ", ")
}
