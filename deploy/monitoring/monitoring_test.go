package monitoring

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/hubbub-chat/hubbub/deploy/internal/kube"
)

const root = "../.."

// promql is the PromQL parser Prometheus and promtool use, default functions.
var promql = parser.NewParser(parser.Options{})

// exported lists the metric names the Hubbub binaries register, read from
// the metrics code (a renamed metric breaks the rules loudly here).
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{"up": true}
	full := regexp.MustCompile(`(?:Name:\s*|(?:counter|gauge)\()"(hubbub_[a-z_]+)"`)
	sub := regexp.MustCompile(`Namespace:\s*(?:"hubbub"|ns),\s*Subsystem:\s*(?:"([a-z]+)"|sub),\s*Name:\s*"([a-z_]+)"`)
	for file, subsystem := range map[string]string{
		"services/edge/internal/metrics/metrics.go":    "",
		"services/history/internal/metrics/metrics.go": "history",
		"services/presence/metrics.go":                 "presence",
		"shared/ops/buildinfo.go":                      "",
	} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range full.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		for _, m := range sub.FindAllStringSubmatch(string(b), -1) {
			s := m[1]
			if s == "" {
				s = subsystem
			}
			names["hubbub_"+s+"_"+m[2]] = true
		}
	}
	for _, want := range []string{"hubbub_edge_connections", "hubbub_history_ingest_lag_seconds", "hubbub_presence_online_users", "hubbub_build_info"} {
		if !names[want] {
			t.Fatalf("metric %s not found in the services' code; the scan is broken", want)
		}
	}
	return names
}

// known reports whether a metric used in an expression exists: a Hubbub
// metric (histograms with their _bucket/_sum/_count series), a Go/process
// collector metric, or the NATS exporter's.
func known(names map[string]bool, metric string) bool {
	if names[metric] || strings.HasPrefix(metric, "gnatsd_varz_") || strings.HasPrefix(metric, "go_") || strings.HasPrefix(metric, "process_") {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if names[strings.TrimSuffix(metric, suf)] && strings.HasSuffix(metric, suf) {
			return true
		}
	}
	return false
}

// checkExpr parses expr as PromQL and checks every metric it selects.
func checkExpr(t *testing.T, names map[string]bool, where, expr string) {
	t.Helper()
	e, err := promql.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q: %v", where, expr, err)
		return
	}
	n := 0
	for _, vs := range parser.ExtractSelectors(e) {
		for _, m := range vs {
			if m.Name == "__name__" {
				n++
				if !known(names, m.Value) {
					t.Errorf("%s: metric %s is not exported by Hubbub or the NATS exporter", where, m.Value)
				}
			}
		}
	}
	if n == 0 {
		t.Errorf("%s: %q selects no metric", where, expr)
	}
}

func TestRules(t *testing.T) {
	names := exported(t)
	b, err := os.ReadFile("rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// What promtool check rules does: parse, validate (PromQL, templates, durations).
	groups, errs := rulefmt.Parse(b, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, e := range errs {
		t.Errorf("rules.yaml: %v", e)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: recording rule %s; only alerts expected", g.Name, r.Record)
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			checkExpr(t, names, r.Alert, r.Expr)
			if sev := r.Labels["severity"]; !slices.Contains([]string{"info", "warning", "critical"}, sev) {
				t.Errorf("%s: severity %q", r.Alert, sev)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary and description required", r.Alert)
			}
		}
	}
	// What issue 12 asks the alerts to cover, by the metric each must use.
	for alert, metric := range map[string]string{
		"HubbubHistoryIngestLag":      "hubbub_history_ingest_lag_seconds",
		"HubbubEdgeAckFailures":       `hubbub_edge_error_frames_total{code="unavailable"}`,
		"HubbubEdgeSlowConsumers":     `hubbub_edge_closes_total{reason="slow_consumer"}`,
		"HubbubNATSDisconnected":      `up{job="nats"}`,
		"HubbubHistoryUnavailable":    `up{job="history"}`,
		"HubbubEdgeConnectionCapsHit": `reason=~"refused_edge_full|refused_address_full"`,
	} {
		found := false
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				found = found || (r.Alert == alert && strings.Contains(r.Expr, metric))
			}
		}
		if !found {
			t.Errorf("no alert %s on %s", alert, metric)
		}
	}

	// A broken rule is caught (the check can fail).
	bad := strings.Replace(string(b), "max by (namespace) (hubbub_history_ingest_lag_seconds) > 30", "max by (namespace) (hubbub_history_ingest_lag_seconds > 30", 1)
	if _, errs := rulefmt.Parse([]byte(bad), false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler)); len(errs) == 0 {
		t.Error("an unbalanced expression passed rulefmt")
	}
}

func TestKustomization(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), ".")
	if err != nil {
		t.Fatal(err)
	}
	y, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	o, err := kube.Decode(y)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(o.PodMonitors) != 2 || len(o.ServiceMonitors) != 2 || len(o.PrometheusRules) != 1 {
		t.Fatalf("%d PodMonitors, %d ServiceMonitors, %d PrometheusRules; want 2, 2, 1", len(o.PodMonitors), len(o.ServiceMonitors), len(o.PrometheusRules))
	}
	b, err := os.ReadFile("rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Groups []kube.RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.PrometheusRules[0].Spec.Groups, want.Groups) {
		t.Error("prometheusrule.yaml's groups differ from rules.yaml")
	}
	chart, err := os.ReadFile("../helm/hubbub/files/hubbub-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := strings.Cut(string(chart), "\n"); body != string(b) {
		t.Error("deploy/helm/hubbub/files/hubbub-rules.yaml is not a copy of rules.yaml")
	}

	// The monitors find the kustomize workloads on the ports that serve
	// /metrics, and produce the job names the rules use.
	base, err := k.Run(filesys.MakeFsOnDisk(), "../k8s/base")
	if err != nil {
		t.Fatal(err)
	}
	by, err := base.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	w, err := kube.Decode(by)
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]string{}
	for _, pm := range o.PodMonitors {
		for _, ls := range podTemplates(w) {
			if !matches(pm.Spec.Selector.MatchLabels, ls.labels) {
				continue
			}
			jobs[ls.labels[pm.Spec.JobLabel]] = pm.Spec.PodMetricsEndpoints[0].Port
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				if !slices.Contains(ls.ports, ep.Port) {
					t.Errorf("PodMonitor %s: pods %v have no port %s", pm.Name, ls.labels, ep.Port)
				}
			}
		}
	}
	for _, sm := range o.ServiceMonitors {
		for _, s := range w.Services {
			if !matches(sm.Spec.Selector.MatchLabels, s.Labels) {
				continue
			}
			jobs[s.Labels[sm.Spec.JobLabel]] = sm.Spec.Endpoints[0].Port
			for _, ep := range sm.Spec.Endpoints {
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1ServicePort) bool { return p.Name == ep.Port }) {
					t.Errorf("ServiceMonitor %s: Service %s has no port %s", sm.Name, s.Name, ep.Port)
				}
			}
		}
	}
	if want := map[string]string{"edge": "metrics", "nats": "metrics", "history": "http", "presence": "http"}; !reflect.DeepEqual(jobs, want) {
		t.Errorf("monitors scrape %v, want %v", jobs, want)
	}
}

func TestAdapterRule(t *testing.T) {
	b, err := os.ReadFile("prometheus-adapter/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Prometheus map[string]any `json:"prometheus"`
		Rules      struct {
			Default bool `json:"default"`
			Custom  []struct {
				SeriesQuery string `json:"seriesQuery"`
				Resources   struct {
					Overrides map[string]struct {
						Resource string `json:"resource"`
					} `json:"overrides"`
				} `json:"resources"`
				Name struct {
					Matches string `json:"matches"`
					As      string `json:"as"`
				} `json:"name"`
				MetricsQuery string `json:"metricsQuery"`
			} `json:"custom"`
		} `json:"rules"`
	}
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Rules.Custom) != 1 {
		t.Fatalf("%d custom rules, want 1", len(v.Rules.Custom))
	}
	r := v.Rules.Custom[0]
	checkExpr(t, exported(t), "adapter seriesQuery", r.SeriesQuery)
	if r.Name.As != kube.EdgeConnectionsMetric || !regexp.MustCompile(r.Name.Matches).MatchString(kube.EdgeConnectionsMetric) {
		t.Errorf("adapter rule names %q as %q, want %s", r.Name.Matches, r.Name.As, kube.EdgeConnectionsMetric)
	}
	if r.Resources.Overrides["pod"].Resource != "pod" || r.Resources.Overrides["namespace"].Resource != "namespace" {
		t.Error("adapter rule does not attach the series to pods and namespaces (the HPA's Pods metric needs both)")
	}
	q := strings.NewReplacer("<<.Series>>", kube.EdgeConnectionsMetric, "<<.LabelMatchers>>", `namespace="hubbub"`, "<<.GroupBy>>", "pod").Replace(r.MetricsQuery)
	checkExpr(t, exported(t), "adapter metricsQuery", q)
}

func TestDashboard(t *testing.T) {
	names := exported(t)
	b, err := os.ReadFile("grafana/hubbub.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int            `json:"id"`
			Title      string         `json:"title"`
			Type       string         `json:"type"`
			Datasource map[string]any `json:"datasource"`
			Targets    []struct {
				RefID      string         `json:"refId"`
				Expr       string         `json:"expr"`
				Datasource map[string]any `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana/hubbub.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatal("dashboard without uid, title or panels")
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] || !vars["namespace"] {
		t.Errorf("dashboard variables %v, want datasource and namespace", vars)
	}
	// Grafana's variables, replaced as Grafana does before the query is sent.
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$namespace", "hubbub")
	ids := map[int]bool{}
	for _, p := range d.Panels {
		where := p.Title
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d missing or not unique", where, p.ID)
		}
		ids[p.ID] = true
		if p.Datasource["uid"] != "${datasource}" {
			t.Errorf("panel %q: datasource %v, want the ${datasource} variable", where, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no targets", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q missing or repeated", where, tg.RefID)
			}
			refs[tg.RefID] = true
			if strings.Contains(grafana.Replace(tg.Expr), "$") {
				t.Errorf("panel %q: unknown variable in %q", where, tg.Expr)
			}
			checkExpr(t, names, where, grafana.Replace(tg.Expr))
		}
	}
}
