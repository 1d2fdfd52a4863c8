package helmtest

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/hubbub-chat/hubbub/deploy/internal/kube"
	"github.com/hubbub-chat/hubbub/deploy/internal/mainvars"
)

const (
	root      = "../.."
	chartDir  = "../helm/hubbub"
	prodFile  = "../helm/examples/production.yaml"
	rulesFile = "../monitoring/rules.yaml"
)

var mains = map[string]string{
	"edge":     "services/edge/cmd/hubbub-edge/main.go",
	"history":  "services/history/cmd/hubbub-history/main.go",
	"presence": "services/presence/cmd/hubbub-presence/main.go",
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// renderChart renders the chart like `helm template hubbub deploy/helm/hubbub
// -n hubbub -f file`: a client-only dry run, no cluster.
func renderChart(t *testing.T, vals map[string]any) (string, error) {
	t.Helper()
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = "hubbub"
	inst.Namespace = "hubbub"
	inst.Replace = true
	rel, err := inst.Run(loadChart(t), vals)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		t.Fatalf("release type %T", rel)
	}
	return r.Manifest, nil
}

func valuesFile(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func render(t *testing.T, vals map[string]any) *kube.Objects {
	t.Helper()
	manifest, err := renderChart(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	o, err := kube.Decode([]byte(manifest))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	return o
}

func report(t *testing.T, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Error(p)
	}
}

func TestDefaultValues(t *testing.T) {
	o := render(t, nil)
	checkChart(t, o)
	if n := len(o.PodMonitors) + len(o.ServiceMonitors) + len(o.PrometheusRules); n != 0 {
		t.Errorf("default values render %d monitoring resources; they need the prometheus-operator CRDs and are opt-in", n)
	}
	edge := container(t, o, "edge")
	if env(edge, "HUBBUB_NATS_USER") == nil || env(edge, "HUBBUB_NATS_PASSWORD") == nil || env(edge, "HUBBUB_NATS_CA") != nil {
		t.Error("default NATS auth: want user + password from the Secret, no TLS")
	}
	if e := env(edge, "GOMEMLIMIT"); e == nil || e.Value != "1638MiB" {
		t.Errorf("edge GOMEMLIMIT %+v, want 1638MiB (80%% of 2Gi)", e)
	}
}

func TestProductionValues(t *testing.T) {
	o := render(t, valuesFile(t, prodFile))
	checkChart(t, o)

	if h := o.HPAs[0]; *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 30 {
		t.Errorf("HPA %d..%d, want the values' 3..30", *h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	for _, tier := range []string{"edge", "history", "presence"} {
		c := container(t, o, tier)
		for name, want := range map[string]string{
			"HUBBUB_NATS_URL":  "tls://nats.nats.svc:4222",
			"HUBBUB_NATS_NKEY": "/etc/hubbub/nats-auth/" + tier + ".nk",
			"HUBBUB_NATS_CA":   "/etc/hubbub/nats-tls/ca.crt",
			"HUBBUB_NATS_CERT": "/etc/hubbub/nats-tls/tls.crt",
			"HUBBUB_NATS_KEY":  "/etc/hubbub/nats-tls/tls.key",
		} {
			if e := env(c, name); e == nil || e.Value != want {
				t.Errorf("%s: %s = %+v, want %q", tier, name, e, want)
			}
		}
		if env(c, "HUBBUB_NATS_PASSWORD") != nil {
			t.Errorf("%s: a password next to the NKey", tier)
		}
		d := o.Deployment(tier)
		checkMountedSecret(t, d, c, "/etc/hubbub/nats-auth", "hubbub-nats-nkeys")
		checkMountedSecret(t, d, c, "/etc/hubbub/nats-tls", "hubbub-nats-client-tls")
	}
	hist := container(t, o, "history")
	if e := env(hist, "HUBBUB_DATABASE_URL"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
		e.ValueFrom.SecretKeyRef.Name != "hubbub-db-app" || e.ValueFrom.SecretKeyRef.Key != "uri" {
		t.Errorf("HUBBUB_DATABASE_URL %+v, want Secret hubbub-db-app key uri", e)
	}
	if e := env(hist, "GOMEMLIMIT"); e == nil || e.Value != "1525MiB" {
		t.Errorf("history GOMEMLIMIT %+v, want 1525MiB (80%% of 2G)", e)
	}
	if e := env(container(t, o, "edge"), "HUBBUB_JWT_SECRET"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Error("edge auth jwt without HUBBUB_JWT_SECRET from a Secret")
	}
	checkNATSEgress(t, o, "nats")
	checkMonitoring(t, o)
}

// TestRefusedValues: values the chart cannot turn into a working
// deployment fail the render instead of rendering something wrong.
func TestRefusedValues(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"memory limit in bytes": {"edge": map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "2147483648"}}}},
		"unknown NATS auth":     {"nats": map[string]any{"auth": map[string]any{"mode": "kerberos"}}},
		"nkey without secret":   {"nats": map[string]any{"auth": map[string]any{"mode": "nkey"}}},
		"TLS without secret":    {"nats": map[string]any{"tls": map[string]any{"enabled": true}}},
	} {
		if _, err := renderChart(t, vals); err == nil {
			t.Errorf("%s: rendered without error", name)
		}
	}
}

// TestStrictDecoding proves a typo in a rendered manifest is an error.
func TestStrictDecoding(t *testing.T) {
	good := "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {a: b}}\n  podMetricsEndpoints: [{port: metrics}]\n"
	if _, err := kube.Decode([]byte(good)); err != nil {
		t.Fatalf("valid PodMonitor: %v", err)
	}
	for name, bad := range map[string]string{
		"PodMonitor unknown field": strings.Replace(good, "port: metrics", "port: metrics, intervall: 5s", 1),
		"unknown kind":             "apiVersion: v1\nkind: Pod2\nmetadata: {name: x}\n",
		"unknown CRD kind":         strings.Replace(good, "PodMonitor", "Probe", 1),
		"Deployment unknown field": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicaz: 1}\n",
	} {
		if _, err := kube.Decode([]byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	o, err := kube.Decode([]byte(strings.Replace(good, "{matchLabels: {a: b}}", "{}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if o.Validate() == nil {
		t.Error("a PodMonitor selecting everything passed validation")
	}
}

func checkChart(t *testing.T, o *kube.Objects) {
	t.Helper()
	if len(o.Deployments) != 3 || len(o.HPAs) != 1 || len(o.PDBs) != 3 || len(o.Services) != 3 || len(o.ConfigMaps) != 1 || len(o.NetworkPolicies) != 3 {
		t.Fatalf("rendered %d Deployments, %d HPAs, %d PDBs, %d Services, %d ConfigMaps, %d NetworkPolicies; want 3, 1, 3, 3, 1, 3",
			len(o.Deployments), len(o.HPAs), len(o.PDBs), len(o.Services), len(o.ConfigMaps), len(o.NetworkPolicies))
	}
	if len(o.Secrets) != 0 {
		t.Errorf("the chart renders %d Secrets; the operator creates them", len(o.Secrets))
	}
	edge := o.Deployment("edge")
	report(t, kube.CheckEdgeScaling(edge, o.HPAs))
	report(t, kube.CheckEdgeMetricsPort(edge, o.Services, 9090))
	if ru := edge.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("edge rolling update may lower capacity: want maxUnavailable 0")
	}
	ec := container(t, o, "edge")
	drain, err := time.ParseDuration(env(ec, "HUBBUB_DRAIN_PERIOD").Value)
	if err != nil {
		t.Fatal(err)
	}
	if ec.Lifecycle == nil || ec.Lifecycle.PreStop == nil || ec.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("edge has no preStop sleep")
	}
	preStop := time.Duration(ec.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if grace := time.Duration(*edge.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second; grace < preStop+drain+10*time.Second {
		t.Errorf("edge grace %v < preStop %v + drain %v + 10s", grace, preStop, drain)
	}
	if e := env(ec, "HUBBUB_EDGE_ID"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Error("HUBBUB_EDGE_ID is not the pod name")
	}

	cm := o.ConfigMaps[0]
	for _, d := range o.Deployments {
		tier := d.Labels["app.kubernetes.io/component"]
		t.Run(tier, func(t *testing.T) {
			spec := d.Spec.Template.Spec
			report(t, kube.CheckRestricted(d.Name, spec))
			if !selects(d.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("selector %v does not select the pod template", d.Spec.Selector)
			}
			if tier != "edge" && (d.Spec.Replicas == nil || *d.Spec.Replicas < 2) {
				t.Errorf("replicas %v: one pod is a single point of failure", d.Spec.Replicas)
			}
			if len(spec.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(spec.Containers))
			}
			c := spec.Containers[0]
			report(t, kube.CheckHubbubProbes(c))
			report(t, kube.CheckGoRuntime(c))
			repo, tag, _ := strings.Cut(c.Image, ":")
			if repo != "ghcr.io/hubbub-chat/hubbub-"+tier || tag == "" || tag == "latest" {
				t.Errorf("image %q", c.Image)
			}
			if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name {
				t.Errorf("envFrom %+v, want the ConfigMap %s", c.EnvFrom, cm.Name)
			}
			if env(c, "HUBBUB_NATS_URL") == nil {
				t.Error("no HUBBUB_NATS_URL")
			}
			read, err := mainvars.Read(root, mains[tier])
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "HUBBUB_") && !read[e.Name] {
					t.Errorf("%s is set but %s never reads it", e.Name, mains[tier])
				}
			}
			for k := range cm.Data {
				if !read[k] {
					t.Errorf("ConfigMap key %s is not read by %s", k, mains[tier])
				}
			}
			vols := map[string]bool{}
			for _, v := range spec.Volumes {
				vols[v.Name] = true
			}
			for _, m := range c.VolumeMounts {
				if !vols[m.Name] {
					t.Errorf("mount %s has no volume", m.Name)
				}
			}
			var pdbs int
			for _, p := range o.PDBs {
				if selectsLabels(p.Spec.Selector, d.Spec.Template.Labels) {
					pdbs++
					if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() < 1 {
						t.Errorf("PDB %s allows no disruption", p.Name)
					}
				}
			}
			if pdbs != 1 {
				t.Errorf("covered by %d PDBs, want 1", pdbs)
			}
			var svcs int
			for _, s := range o.Services {
				if !labelsMatch(s.Spec.Selector, d.Spec.Template.Labels) {
					continue
				}
				svcs++
				for _, p := range s.Spec.Ports {
					if kube.ContainerPort(c, p.TargetPort) == 0 {
						t.Errorf("Service %s port %s targets %s, not a container port", s.Name, p.Name, p.TargetPort.String())
					}
				}
			}
			if svcs != 1 {
				t.Errorf("%d Services select %s, want 1", svcs, tier)
			}
			checkNetworkPolicy(t, o, d, c)
		})
	}
}

// checkNetworkPolicy: each tier is isolated both ways by exactly one
// policy; ingress only on the tier's ports (the edge's metrics port from
// the monitoring namespace only), egress to DNS, NATS and for history the
// database.
func checkNetworkPolicy(t *testing.T, o *kube.Objects, d *appsv1.Deployment, c corev1.Container) {
	t.Helper()
	var pols int
	for _, p := range o.NetworkPolicies {
		if !selectsLabels(&p.Spec.PodSelector, d.Spec.Template.Labels) {
			continue
		}
		pols++
		if !slices.Contains(p.Spec.PolicyTypes, "Ingress") || !slices.Contains(p.Spec.PolicyTypes, "Egress") {
			t.Errorf("NetworkPolicy %s policy types %v", p.Name, p.Spec.PolicyTypes)
		}
		for _, r := range p.Spec.Ingress {
			for _, port := range r.Ports {
				if port.Port == nil || kube.ContainerPort(c, *port.Port) == 0 {
					t.Errorf("NetworkPolicy %s admits port %v, not a port of %s", p.Name, port.Port, c.Name)
				}
				if port.Port != nil && port.Port.String() == "metrics" && (len(r.From) != 1 || r.From[0].NamespaceSelector == nil) {
					t.Errorf("NetworkPolicy %s opens the metrics port beyond the monitoring namespace", p.Name)
				}
			}
		}
		wantEgress := 2
		if c.Name == "history" {
			wantEgress = 3
		}
		if len(p.Spec.Egress) != wantEgress {
			t.Errorf("NetworkPolicy %s: %d egress rules, want %d (DNS, NATS[, database])", p.Name, len(p.Spec.Egress), wantEgress)
		}
	}
	if pols != 1 {
		t.Errorf("%d NetworkPolicies select %s, want 1", pols, d.Name)
	}
}

func checkNATSEgress(t *testing.T, o *kube.Objects, namespace string) {
	t.Helper()
	for _, p := range o.NetworkPolicies {
		found := false
		for _, r := range p.Spec.Egress {
			for _, to := range r.To {
				if to.PodSelector != nil && to.PodSelector.MatchLabels["app.kubernetes.io/name"] == "nats" &&
					to.NamespaceSelector != nil && to.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == namespace {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("NetworkPolicy %s: no egress to the NATS pods in namespace %s", p.Name, namespace)
		}
	}
}

// checkMonitoring: the monitors scrape ports that exist on what they
// select, the job label the alert rules use (edge, history, presence) is
// the targets' label, and the PrometheusRule carries the rules of
// deploy/monitoring/rules.yaml.
func checkMonitoring(t *testing.T, o *kube.Objects) {
	t.Helper()
	if len(o.PodMonitors) != 1 || len(o.ServiceMonitors) != 2 || len(o.PrometheusRules) != 1 {
		t.Fatalf("%d PodMonitors, %d ServiceMonitors, %d PrometheusRules; want 1, 2, 1", len(o.PodMonitors), len(o.ServiceMonitors), len(o.PrometheusRules))
	}
	jobs := map[string]bool{}
	pm := o.PodMonitors[0]
	if pm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PodMonitor labels %v lack the values' monitoring.labels", pm.Labels)
	}
	for _, d := range o.Deployments {
		if !selectsLabels(&pm.Spec.Selector, d.Spec.Template.Labels) {
			continue
		}
		jobs[d.Spec.Template.Labels[pm.Spec.JobLabel]] = true
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if kube.ContainerPort(d.Spec.Template.Spec.Containers[0], intstr.FromString(ep.Port)) != 9090 {
				t.Errorf("PodMonitor %s scrapes port %s, not the edge's metrics port", pm.Name, ep.Port)
			}
		}
	}
	for _, sm := range o.ServiceMonitors {
		for _, s := range o.Services {
			if !selectsLabels(&sm.Spec.Selector, s.Labels) {
				continue
			}
			jobs[s.Labels[sm.Spec.JobLabel]] = true
			for _, ep := range sm.Spec.Endpoints {
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
					t.Errorf("ServiceMonitor %s: Service %s has no port %s", sm.Name, s.Name, ep.Port)
				}
			}
		}
	}
	if want := map[string]bool{"edge": true, "history": true, "presence": true}; !reflect.DeepEqual(jobs, want) {
		t.Errorf("monitors produce jobs %v, want %v", jobs, want)
	}

	b, err := os.ReadFile(rulesFile)
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
		t.Errorf("the chart's PrometheusRule differs from %s", rulesFile)
	}
	chartRules, err := os.ReadFile(filepath.Join(chartDir, "files", "hubbub-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := strings.Cut(string(chartRules), "\n"); body != string(b) {
		t.Errorf("%s/files/hubbub-rules.yaml is not a copy of %s", chartDir, rulesFile)
	}
}

func checkMountedSecret(t *testing.T, d *appsv1.Deployment, c corev1.Container, path, secret string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != path {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == secret && m.ReadOnly {
				return
			}
		}
	}
	t.Errorf("%s: Secret %s not mounted read-only at %s", c.Name, secret, path)
}

func container(t *testing.T, o *kube.Objects, tier string) corev1.Container {
	t.Helper()
	d := o.Deployment(tier)
	if d == nil {
		t.Fatalf("no Deployment for %s", tier)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == tier {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %s", d.Name, tier)
	return corev1.Container{}
}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func selects(sel *metav1.LabelSelector, labels map[string]string) bool {
	return sel != nil && selectsLabels(sel, labels)
}

func selectsLabels(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return false
	}
	return s.Matches(labelSet(l))
}
