package k8s_test

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hubbub-chat/hubbub/deploy/internal/mainvars"
)

const root = "../.."

// overlay describes what each overlay must render.
type overlay struct {
	path           string
	namespace      string
	streamReplicas string
	inClusterDB    bool
}

var overlays = []overlay{
	{path: "overlays/dev", namespace: "hubbub-dev", streamReplicas: "1", inClusterDB: true},
	{path: "overlays/prod", namespace: "hubbub", streamReplicas: "3", inClusterDB: false},
}

// hubbub are the Hubbub services with their ops port and main package.
var hubbub = map[string]struct {
	port int32
	main string
}{
	"edge":     {8080, "services/edge/cmd/hubbub-edge/main.go"},
	"history":  {8081, "services/history/cmd/hubbub-history/main.go"},
	"presence": {8082, "services/presence/cmd/hubbub-presence/main.go"},
}

// operatorSecrets are the Secrets production operators create (documented
// in docs/deploy.md), with their keys.
var operatorSecrets = map[string][]string{
	"hubbub-nats-users": {"admin-password", "edge-password", "history-password", "presence-password", "route-password"},
	"hubbub-database":   {"url"},
	"hubbub-jwt":        {"secret"},
}

// TestStrictDecoding proves the decoder the other tests use refuses unknown
// and duplicate fields (a typo in a manifest is an error, not a no-op).
func TestStrictDecoding(t *testing.T) {
	dec := decoder(t)
	good := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i:1}]}}\n"
	if _, _, err := dec.Decode([]byte(good), nil, nil); err != nil {
		t.Fatalf("valid deployment: %v", err)
	}
	for name, bad := range map[string]string{
		"unknown field":   strings.Replace(good, "replicas: 1", "replicaz: 1", 1),
		"nested unknown":  strings.Replace(good, "image: i:1", "image: i:1, imagePullPolice: Always", 1),
		"duplicate field": strings.Replace(good, "replicas: 1", "replicas: 1\n  replicas: 2", 1),
	} {
		if _, _, err := dec.Decode([]byte(bad), nil, nil); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestBaseRenders(t *testing.T) {
	m := render(t, "base")
	if len(m.secrets) != 0 {
		t.Errorf("the base carries %d Secrets; secrets belong to overlays or operators", len(m.secrets))
	}
	t.Run("nats", func(t *testing.T) { checkNATS(t, m, false) })
}

func TestOverlays(t *testing.T) {
	for _, o := range overlays {
		t.Run(o.path, func(t *testing.T) {
			m := render(t, o.path)
			t.Run("namespace", func(t *testing.T) { checkNamespace(t, m, o) })
			t.Run("workloads", func(t *testing.T) { checkWorkloads(t, m, o) })
			t.Run("disruption budgets", func(t *testing.T) { checkPDBs(t, m) })
			t.Run("edge", func(t *testing.T) { checkEdge(t, m, o) })
			t.Run("nats", func(t *testing.T) { checkNATS(t, m, false) })
			t.Run("configuration", func(t *testing.T) { checkConfiguration(t, m, o) })
			t.Run("secrets", func(t *testing.T) { checkSecrets(t, m, o) })
			t.Run("services", func(t *testing.T) { checkServices(t, m) })
			t.Run("network policies", func(t *testing.T) { checkNetworkPolicies(t, m, o) })
		})
	}
}

func checkNamespace(t *testing.T, m *manifests, o overlay) {
	if len(m.namespaces) != 1 || m.namespaces[0].Name != o.namespace {
		t.Fatalf("want exactly the Namespace %s", o.namespace)
	}
	if got := m.namespaces[0].Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace enforces pod security %q, want restricted", got)
	}
	check := func(kind, name, ns string) {
		if ns != o.namespace {
			t.Errorf("%s %s in namespace %q, want %s", kind, name, ns, o.namespace)
		}
	}
	for _, w := range m.deployments {
		check("Deployment", w.Name, w.Namespace)
	}
	for _, w := range m.statefulSets {
		check("StatefulSet", w.Name, w.Namespace)
	}
	for _, s := range m.services {
		check("Service", s.Name, s.Namespace)
	}
	for _, c := range m.configMaps {
		check("ConfigMap", c.Name, c.Namespace)
	}
	for _, s := range m.secrets {
		check("Secret", s.Name, s.Namespace)
	}
	for _, p := range m.netpols {
		check("NetworkPolicy", p.Name, p.Namespace)
	}
	for _, p := range m.pdbs {
		check("PodDisruptionBudget", p.Name, p.Namespace)
	}
	for _, h := range m.hpas {
		check("HorizontalPodAutoscaler", h.Name, h.Namespace)
	}
}

func checkWorkloads(t *testing.T, m *manifests, o overlay) {
	want := []string{"edge", "history", "nats", "presence"}
	if o.inClusterDB {
		want = append(want, "postgres")
	}
	slices.Sort(want)
	var got []string
	for _, w := range m.workloads() {
		got = append(got, w.name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("workloads %v, want %v", got, want)
	}
	tags := map[string]string{}
	for _, w := range m.workloads() {
		t.Run(w.String(), func(t *testing.T) {
			switch w.name {
			case "nats":
				if w.replicas != 3 {
					t.Errorf("NATS runs %d nodes, want a 3-node cluster", w.replicas)
				}
			case "postgres":
				if w.replicas != 1 {
					t.Errorf("postgres replicas %d, want 1", w.replicas)
				}
			default:
				if w.replicas < 2 {
					t.Errorf("replicas %d: one pod is a single point of failure", w.replicas)
				}
			}
			if !labelsMatch(w.selector, w.template.Labels) || len(w.selector) == 0 {
				t.Errorf("selector %v does not select the pod template %v", w.selector, w.template.Labels)
			}
			spec := w.template.Spec
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("service account token mounted: no Hubbub pod talks to the Kubernetes API")
			}
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Error("pod securityContext.runAsNonRoot is not true")
			}
			if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Error("pod securityContext.runAsUser is not a non-root uid")
			}
			if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("pod seccompProfile is not RuntimeDefault")
			}
			if spec.TerminationGracePeriodSeconds == nil {
				t.Error("no terminationGracePeriodSeconds")
			}
			if len(spec.InitContainers) != 0 {
				t.Error("init containers are not expected")
			}
			for _, c := range spec.Containers {
				checkContainer(t, w, c)
				repo, tag := splitImage(c.Image)
				if strings.HasPrefix(repo, "ghcr.io/hubbub-chat/") {
					tags["hubbub"] += tag + " "
					if prev, ok := tags[repo]; ok && prev != tag {
						t.Errorf("%s used with tags %s and %s", repo, prev, tag)
					}
					tags[repo] = tag
				}
			}
		})
	}
	var hubbubTags []string
	for repo, tag := range tags {
		if repo != "hubbub" {
			hubbubTags = append(hubbubTags, tag)
		}
	}
	slices.Sort(hubbubTags)
	if len(slices.Compact(hubbubTags)) != 1 {
		t.Errorf("Hubbub images run different releases: %v", tags)
	}
}

func checkContainer(t *testing.T, w workload, c corev1.Container) {
	t.Helper()
	repo, tag := splitImage(c.Image)
	if repo == "" || tag == "" || tag == "latest" {
		t.Errorf("container %s: image %q not pinned by tag", c.Name, c.Image)
	}
	if c.ImagePullPolicy == corev1.PullAlways {
		t.Errorf("container %s: imagePullPolicy Always with a pinned tag", c.Name)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("container %s: no securityContext", c.Name)
	default:
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation not false", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: root filesystem writable", c.Name)
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("container %s: runAsNonRoot not true", c.Name)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("container %s: runs as root", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s: privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s: capabilities %+v, want drop ALL, add none", c.Name, sc.Capabilities)
		}
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	cpu, mem, memLim := req[corev1.ResourceCPU], req[corev1.ResourceMemory], lim[corev1.ResourceMemory]
	if cpu.IsZero() || mem.IsZero() || memLim.IsZero() {
		t.Errorf("container %s: resources %+v: want cpu and memory requests and a memory limit", c.Name, c.Resources)
	} else if memLim.Cmp(mem) < 0 {
		t.Errorf("container %s: memory limit %s below request %s", c.Name, memLim.String(), mem.String())
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Errorf("container %s: readiness and liveness probes required", c.Name)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		if p != nil && p.HTTPGet != nil && containerPort(c, p.HTTPGet.Port) == 0 {
			t.Errorf("container %s: probe port %s is not a container port", c.Name, p.HTTPGet.Port.String())
		}
	}
	// Every volume mount a writable path needs is backed by a volume.
	vols := map[string]bool{}
	for _, v := range w.template.Spec.Volumes {
		vols[v.Name] = true
	}
	for _, v := range c.VolumeMounts {
		if !vols[v.Name] && v.Name != "data" {
			t.Errorf("container %s: mount %s has no volume", c.Name, v.Name)
		}
	}
}

func checkPDBs(t *testing.T, m *manifests) {
	for _, w := range m.workloads() {
		if w.replicas < 2 {
			continue // a single database instance: a PDB would only block node drains
		}
		var matching int
		for _, p := range m.pdbs {
			if !selects(p.Spec.Selector, w.template.Labels) {
				continue
			}
			matching++
			var down int
			switch {
			case p.Spec.MaxUnavailable != nil:
				v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, int(w.replicas), false)
				if err != nil {
					t.Fatal(err)
				}
				down = v
			case p.Spec.MinAvailable != nil:
				v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, int(w.replicas), true)
				if err != nil {
					t.Fatal(err)
				}
				down = int(w.replicas) - v
			}
			if down < 1 {
				t.Errorf("PDB %s allows no disruption of %s: node drains would hang", p.Name, w)
			}
			need := 1
			if w.name == "nats" {
				need = int(w.replicas)/2 + 1 // JetStream quorum
			}
			if int(w.replicas)-down < need {
				t.Errorf("PDB %s lets %d of %d pods of %s go: fewer than %d remain", p.Name, down, w.replicas, w, need)
			}
		}
		if matching != 1 {
			t.Errorf("%s is covered by %d PodDisruptionBudgets, want 1", w, matching)
		}
	}
}

func checkEdge(t *testing.T, m *manifests, o overlay) {
	w := m.workload(t, "edge")
	var d *appsv1.Deployment
	for _, x := range m.deployments {
		if x.Name == "edge" {
			d = x
		}
	}
	c := container(t, w, "edge")
	env := resolveEnv(t, m, c)

	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("edge readiness probe %+v, want GET /readyz", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("edge liveness probe %+v, want GET /healthz", p)
	}
	drain, err := time.ParseDuration(env["HUBBUB_DRAIN_PERIOD"].value)
	if err != nil {
		t.Fatalf("HUBBUB_DRAIN_PERIOD: %v", err)
	}
	var preStop time.Duration
	if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	grace := time.Duration(ptrOr(w.template.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
	if grace < preStop+drain+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + drain %v + 10s margin", grace, preStop, drain)
	}
	if preStop == 0 {
		t.Error("no preStop pause: endpoints may still send clients to a draining edge")
	}
	if e := env["HUBBUB_EDGE_ID"]; e.fieldPath != "metadata.name" {
		t.Errorf("HUBBUB_EDGE_ID %+v, want the pod name (unique lease key)", e)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("rolling update may lower edge capacity: want maxUnavailable 0")
	}
	wantAuth := "none"
	if o.path == "overlays/prod" {
		wantAuth = "jwt"
		if s := env["HUBBUB_JWT_SECRET"].secret; s == nil || s.Name != "hubbub-jwt" {
			t.Error("prod edge: HUBBUB_JWT_SECRET must come from the Secret hubbub-jwt")
		}
	}
	if got := env["HUBBUB_AUTH"].value; got != wantAuth {
		t.Errorf("HUBBUB_AUTH %q, want %q", got, wantAuth)
	}

	if len(m.hpas) != 1 {
		t.Fatalf("%d HPAs, want 1 (edge)", len(m.hpas))
	}
	h := m.hpas[0]
	if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != "edge" || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, want Deployment edge", ref)
	}
	minR := ptrOr(h.Spec.MinReplicas, 1)
	if minR < 2 || h.Spec.MaxReplicas <= minR {
		t.Errorf("HPA %d..%d: want min ≥ 2 and room to grow", minR, h.Spec.MaxReplicas)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("edge Deployment sets replicas %d: the HPA owns the count (every apply would reset it)", *d.Spec.Replicas)
	}
	cpuTarget := false
	for _, mt := range h.Spec.Metrics {
		if mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU && mt.Resource.Target.AverageUtilization != nil {
			u := *mt.Resource.Target.AverageUtilization
			cpuTarget = u >= 50 && u <= 90
		}
	}
	if !cpuTarget {
		t.Error("HPA has no CPU utilization target between 50% and 90%")
	}
	sd := h.Spec.Behavior
	if sd == nil || sd.ScaleDown == nil {
		t.Fatal("HPA without scale-down behavior: the default drops half the edges at once")
	}
	if w := ptrOr(sd.ScaleDown.StabilizationWindowSeconds, 0); w < 300 {
		t.Errorf("scale-down stabilization %ds, want ≥ 300s", w)
	}
	if len(sd.ScaleDown.Policies) == 0 {
		t.Error("no scale-down policies")
	}
	for _, p := range sd.ScaleDown.Policies {
		if (p.Type == "Pods" && p.Value > 1) || (p.Type == "Percent" && p.Value > 10) || p.PeriodSeconds < 60 {
			t.Errorf("scale-down policy %+v too aggressive: each removed edge reconnects all its clients", p)
		}
	}
}

// checkNATS checks the NATS StatefulSet and the configuration its pods run,
// parsed by nats-server itself; wantTLS says whether client and route TLS
// must be on (components/nats-tls) or off (the base).
func checkNATS(t *testing.T, m *manifests, wantTLS bool) {
	var sts *appsv1.StatefulSet
	for _, s := range m.statefulSets {
		if s.Name == "nats" {
			sts = s
		}
	}
	if sts == nil {
		t.Fatal("no nats StatefulSet")
	}
	w := m.workload(t, "nats")
	c := container(t, w, "nats")

	var headless *corev1.Service
	for _, s := range m.services {
		if s.Name == sts.Spec.ServiceName {
			headless = s
		}
	}
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Fatalf("serviceName %q is not a headless Service publishing not-ready addresses", sts.Spec.ServiceName)
	}
	if !labelsMatch(headless.Spec.Selector, w.template.Labels) {
		t.Error("headless Service does not select the nats pods")
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Error("nats pods should start in parallel (JetStream meta quorum)")
	}

	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volumeClaimTemplate, got %d", len(sts.Spec.VolumeClaimTemplates))
	}
	pvc := sts.Spec.VolumeClaimTemplates[0]
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.Cmp(resource.MustParse("1Gi")) < 0 || mounts[pvc.Name] == "" {
		t.Errorf("JetStream volume %s (%s) missing or not mounted", pvc.Name, size.String())
	}

	// The configuration the pods run, as nats-server reads it.
	nc := natsConfig(t, m)
	wantAuth, err := os.ReadFile(filepath.Join("..", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if nc.configMap.Data["auth.conf"] != string(wantAuth) {
		t.Error("rendered auth.conf differs from deploy/nats/auth.conf")
	}
	if !slices.Equal(c.Command, []string{"nats-server", "--config", nc.confDir + "/nats.conf"}) {
		t.Errorf("nats command %v does not run %s/nats.conf", c.Command, nc.confDir)
	}
	env := nc.env("nats-0")
	opts := nc.parse(t, "nats-0")
	checkNATSSecurity(t, c, env, opts, wantTLS)
	if !opts.JetStream || opts.StoreDir != mounts[pvc.Name] {
		t.Errorf("JetStream store %q is not the volume mounted at %q", opts.StoreDir, mounts[pvc.Name])
	}
	if opts.Cluster.Name == "" || opts.Cluster.Port != int(containerPort(c, intstr.FromString("cluster"))) {
		t.Errorf("cluster %q on port %d, want a named cluster on the container's cluster port", opts.Cluster.Name, opts.Cluster.Port)
	}
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	var want []string
	for i := range int(w.replicas) {
		want = append(want, net.JoinHostPort(fmt.Sprintf("nats-%d.%s", i, headless.Name), strconv.Itoa(opts.Cluster.Port)))
	}
	slices.Sort(routes)
	if !slices.Equal(routes, want) {
		t.Errorf("routes %v, want every node %v", routes, want)
	}
	if opts.Port != int(containerPort(c, intstr.FromString("client"))) || opts.HTTPPort != int(containerPort(c, intstr.FromString("monitor"))) {
		t.Errorf("client port %d / monitoring port %d do not match the container ports", opts.Port, opts.HTTPPort)
	}
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || containerPort(c, p.HTTPGet.Port) != int32(opts.HTTPPort) || !strings.HasPrefix(p.HTTPGet.Path, "/healthz") {
			t.Errorf("probe %+v: want /healthz on the monitoring port", p)
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && !strings.Contains(c.LivenessProbe.HTTPGet.Path, "js-enabled-only=true") {
		t.Error("liveness must not depend on stream health (js-enabled-only=true): a slow catch-up would restart the node")
	}

	// Lame duck on the way out, within the grace period.
	ps := c.Lifecycle
	if ps == nil || ps.PreStop == nil || ps.PreStop.Exec == nil || !strings.Contains(strings.Join(ps.PreStop.Exec.Command, " "), "--signal ldm="+opts.PidFile) {
		t.Errorf("preStop does not signal lame duck mode through the pid file %q", opts.PidFile)
	}
	if mounts["pid"] != filepath.Dir(opts.PidFile) {
		t.Errorf("pid file %s is not on a writable volume", opts.PidFile)
	}
	grace := time.Duration(ptrOr(w.template.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
	if need := opts.LameDuckDuration + opts.LameDuckGracePeriod + 10*time.Second; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < lame duck %v + grace %v + 10s", grace, opts.LameDuckDuration, opts.LameDuckGracePeriod)
	}
}

// envValue is a resolved environment variable.
type envValue struct {
	value     string
	secret    *corev1.SecretKeySelector
	fieldPath string
	resource  string
}

// resolveEnv resolves a container's environment: envFrom ConfigMaps, then
// env entries (which win).
func resolveEnv(t *testing.T, m *manifests, c corev1.Container) map[string]envValue {
	t.Helper()
	out := map[string]envValue{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Fatalf("container %s: envFrom %+v: only ConfigMaps expected", c.Name, ef)
		}
		cm := m.configMap(ef.ConfigMapRef.Name)
		if cm == nil {
			t.Fatalf("container %s: ConfigMap %s not rendered", c.Name, ef.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			out[ef.Prefix+k] = envValue{value: v}
		}
	}
	for _, e := range c.Env {
		v := envValue{value: e.Value}
		if e.ValueFrom != nil {
			switch {
			case e.ValueFrom.SecretKeyRef != nil:
				v.secret = e.ValueFrom.SecretKeyRef
			case e.ValueFrom.FieldRef != nil:
				v.fieldPath = e.ValueFrom.FieldRef.FieldPath
			case e.ValueFrom.ResourceFieldRef != nil:
				v.resource = e.ValueFrom.ResourceFieldRef.Resource
			case e.ValueFrom.ConfigMapKeyRef != nil:
				cm := m.configMap(e.ValueFrom.ConfigMapKeyRef.Name)
				if cm == nil {
					t.Fatalf("container %s: ConfigMap %s not rendered", c.Name, e.ValueFrom.ConfigMapKeyRef.Name)
				}
				v.value = cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
			}
		}
		out[e.Name] = v
	}
	return out
}

func checkConfiguration(t *testing.T, m *manifests, o overlay) {
	natsReplicas := m.workload(t, "nats").replicas
	provisioning := map[string]map[string]string{} // setting -> service -> value
	for name, want := range hubbub {
		t.Run(name, func(t *testing.T) {
			w := m.workload(t, name)
			c := container(t, w, name)
			env := resolveEnv(t, m, c)

			if got := env["HUBBUB_STREAM_REPLICAS"].value; got != o.streamReplicas {
				t.Errorf("HUBBUB_STREAM_REPLICAS=%q, want %s", got, o.streamReplicas)
			}
			if n, _ := strconv.Atoi(env["HUBBUB_STREAM_REPLICAS"].value); n > int(natsReplicas) || n < 1 {
				t.Errorf("stream replicas %d with %d NATS nodes", n, natsReplicas)
			}
			u, err := url.Parse(env["HUBBUB_NATS_URL"].value)
			if err != nil || u.Scheme != "nats" {
				t.Fatalf("HUBBUB_NATS_URL %q", env["HUBBUB_NATS_URL"].value)
			}
			svc := serviceNamed(m, u.Hostname())
			if svc == nil || !labelsMatch(svc.Spec.Selector, m.workload(t, "nats").template.Labels) || !servicePort(svc, u.Port()) {
				t.Errorf("HUBBUB_NATS_URL %s does not reach the nats pods through a Service", u)
			}
			if env["HUBBUB_NATS_USER"].value != name {
				t.Errorf("HUBBUB_NATS_USER %q, want %q", env["HUBBUB_NATS_USER"].value, name)
			}
			if s := env["HUBBUB_NATS_PASSWORD"].secret; s == nil || !isSecret(s.Name, "hubbub-nats-users") || s.Key != name+"-password" {
				t.Errorf("HUBBUB_NATS_PASSWORD %+v, want Secret hubbub-nats-users key %s-password", s, name)
			}
			_, port, err := net.SplitHostPort(env["HUBBUB_HTTP_ADDR"].value)
			if err != nil || port != strconv.Itoa(int(want.port)) || containerPort(c, intstr.FromString("http")) != want.port {
				t.Errorf("HUBBUB_HTTP_ADDR %q and port http %d, want :%d", env["HUBBUB_HTTP_ADDR"].value, containerPort(c, intstr.FromString("http")), want.port)
			}
			if name != "edge" {
				if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
					t.Errorf("readiness probe %+v, want GET /readyz", p)
				}
				if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
					t.Errorf("liveness probe %+v, want GET /healthz", p)
				}
			}
			if name == "history" {
				if s := env["HUBBUB_DATABASE_URL"].secret; s == nil || !isSecret(s.Name, "hubbub-database") || s.Key != "url" {
					t.Errorf("HUBBUB_DATABASE_URL %+v, want Secret hubbub-database key url", s)
				}
			}
			checkGoRuntimeEnv(t, c)

			// Every HUBBUB_* variable given is one the binary reads.
			read, err := mainvars.Read(root, want.main)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "HUBBUB_") && !read[e.Name] {
					t.Errorf("%s is set but %s never reads it", e.Name, want.main)
				}
			}
			for _, k := range []string{"HUBBUB_STREAM_REPLICAS", "HUBBUB_LEASE_TTL", "HUBBUB_TYPING_TTL"} {
				if v, ok := env[k]; ok && read[k] {
					if provisioning[k] == nil {
						provisioning[k] = map[string]string{}
					}
					provisioning[k][name] = v.value
				}
			}
		})
	}
	// Every service provisions the stream and buckets with what it reads.
	for k, bySvc := range provisioning {
		var vals []string
		for _, v := range bySvc {
			vals = append(vals, v)
		}
		slices.Sort(vals)
		if len(slices.Compact(vals)) > 1 {
			t.Errorf("%s differs between services %v: they would rewrite each other's stream/bucket config", k, bySvc)
		}
	}
}

func checkSecrets(t *testing.T, m *manifests, o overlay) {
	type ref struct{ name, key string }
	var refs []ref
	for _, w := range m.workloads() {
		for _, c := range w.template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					refs = append(refs, ref{e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key})
				}
			}
		}
	}
	if len(refs) == 0 {
		t.Fatal("no secret references at all")
	}
	if o.inClusterDB {
		// Development: everything is generated here, and marked as such.
		for _, r := range refs {
			s := m.secret(r.name)
			if s == nil {
				t.Errorf("Secret %s not rendered", r.name)
				continue
			}
			if _, ok := s.Data[r.key]; !ok {
				t.Errorf("Secret %s has no key %s", r.name, r.key)
			}
		}
		for _, s := range m.secrets {
			if s.Annotations["hubbub.io/dev-only"] != "true" {
				t.Errorf("generated Secret %s is not annotated hubbub.io/dev-only", s.Name)
			}
			for k, v := range s.Data {
				if strings.Contains(k, "password") && !strings.HasPrefix(string(v), "dev-") {
					t.Errorf("Secret %s key %s: development passwords start with dev-", s.Name, k)
				}
			}
		}
		return
	}
	// Production: no committed secret; only the documented operator-created ones.
	if len(m.secrets) != 0 {
		t.Errorf("prod renders %d Secrets: production secrets are created by the operator", len(m.secrets))
	}
	docs, err := os.ReadFile(filepath.Join(root, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		keys, ok := operatorSecrets[r.name]
		if !ok || !slices.Contains(keys, r.key) {
			t.Errorf("prod references Secret %s key %s, not one of the documented operator secrets", r.name, r.key)
		}
	}
	for name, keys := range operatorSecrets {
		for _, k := range keys {
			if !strings.Contains(string(docs), name) || !strings.Contains(string(docs), k) {
				t.Errorf("docs/deploy.md does not tell operators to create Secret %s with key %s", name, k)
			}
		}
	}
}

func checkServices(t *testing.T, m *manifests) {
	for _, s := range m.services {
		var target *workload
		for _, w := range m.workloads() {
			if labelsMatch(s.Spec.Selector, w.template.Labels) {
				target = &w
			}
		}
		if target == nil || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s selects no workload", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			found := false
			for _, c := range target.template.Spec.Containers {
				if containerPort(c, p.TargetPort) != 0 {
					found = true
				}
			}
			if !found {
				t.Errorf("Service %s port %s: targetPort %s is not a port of %s", s.Name, p.Name, p.TargetPort.String(), target)
			}
		}
	}
}

// helpers

func container(t *testing.T, w workload, name string) corev1.Container {
	t.Helper()
	for _, c := range w.template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("%s has no container %s", w, name)
	return corev1.Container{}
}

// containerPort resolves a numeric or named port of c (0 when absent).
func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

func serviceNamed(m *manifests, name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func servicePort(s *corev1.Service, port string) bool {
	for _, p := range s.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			return true
		}
	}
	return false
}

// isSecret reports whether name is the Secret base, possibly with the hash
// suffix kustomize's generator adds.
func isSecret(name, base string) bool {
	return name == base || strings.HasPrefix(name, base+"-")
}

func splitImage(image string) (repo, tag string) {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i], image[i+1:]
	}
	return image, ""
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func selects(sel *metav1.LabelSelector, lbls map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return !s.Empty() && s.Matches(labelSet(lbls))
}
