package kube

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// EdgeConnectionsMetric is the custom metric the edge HPA scales on.
const EdgeConnectionsMetric = "hubbub_edge_connections"

// MemLimitMin and MemLimitMax bound how much of the memory limit
// GOMEMLIMIT may be.
const (
	MemLimitMin = 0.75
	MemLimitMax = 0.85
)

// ParseGoMemLimit parses a GOMEMLIMIT value as the Go runtime does: an
// integer with an optional unit B, KiB, MiB, GiB or TiB.
func ParseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("GOMEMLIMIT %q: not a positive integer with a B/KiB/MiB/GiB/TiB unit", s)
	}
	return n * mult, nil
}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// CheckGoRuntime checks that GOMEMLIMIT is a literal ≈ 80% of the memory
// limit and that GOMAXPROCS is the CPU request through the downward API
// (divisor 1: whole cores, rounded up).
func CheckGoRuntime(c corev1.Container) []string {
	var out []string
	lim := c.Resources.Limits[corev1.ResourceMemory]
	switch e := env(c, "GOMEMLIMIT"); {
	case e == nil:
		out = append(out, fmt.Sprintf("container %s: no GOMEMLIMIT", c.Name))
	case e.ValueFrom != nil:
		out = append(out, fmt.Sprintf("container %s: GOMEMLIMIT from %+v: the downward API gives 100%% of the limit; set ≈80%%", c.Name, e.ValueFrom))
	case lim.IsZero():
		out = append(out, fmt.Sprintf("container %s: GOMEMLIMIT without a memory limit", c.Name))
	default:
		n, err := ParseGoMemLimit(e.Value)
		if err != nil {
			out = append(out, fmt.Sprintf("container %s: %v", c.Name, err))
			break
		}
		ratio := float64(n) / float64(lim.Value())
		if ratio < MemLimitMin || ratio > MemLimitMax {
			out = append(out, fmt.Sprintf("container %s: GOMEMLIMIT %s is %.0f%% of the memory limit %s, want ≈80%%", c.Name, e.Value, ratio*100, lim.String()))
		}
	}
	cpu := c.Resources.Requests[corev1.ResourceCPU]
	e := env(c, "GOMAXPROCS")
	switch {
	case e == nil || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil:
		out = append(out, fmt.Sprintf("container %s: GOMAXPROCS not from the downward API (%+v)", c.Name, e))
	case e.ValueFrom.ResourceFieldRef.Resource != "requests.cpu":
		out = append(out, fmt.Sprintf("container %s: GOMAXPROCS from %s, want requests.cpu", c.Name, e.ValueFrom.ResourceFieldRef.Resource))
	case e.ValueFrom.ResourceFieldRef.Divisor.Cmp(resource.MustParse("1")) != 0:
		out = append(out, fmt.Sprintf("container %s: GOMAXPROCS divisor %s, want 1 (whole cores)", c.Name, e.ValueFrom.ResourceFieldRef.Divisor.String()))
	case cpu.IsZero():
		out = append(out, fmt.Sprintf("container %s: GOMAXPROCS from a CPU request that is not set", c.Name))
	}
	return out
}

// CheckRestricted checks the "restricted" Pod Security Standard and the
// project's own rules (read-only root, no service-account token).
func CheckRestricted(name string, spec corev1.PodSpec) []string {
	out := restrictedPod(name, spec)
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		out = append(out, restrictedContainer(name+"/"+c.Name, c)...)
	}
	return out
}

// restrictedPod checks the pod-level rules of CheckRestricted.
func restrictedPod(name string, spec corev1.PodSpec) []string {
	var out []string
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		out = append(out, name+": pod runAsNonRoot is not true")
	}
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		out = append(out, name+": pod runAsUser is not a non-root uid")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		out = append(out, name+": pod seccompProfile is not RuntimeDefault")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		out = append(out, name+": service-account token mounted")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		out = append(out, name+": host namespaces")
	}
	return out
}

// restrictedContainer checks the container rules of CheckRestricted: its
// security context, then a CPU request and a memory limit. who is
// "<pod>/<container>".
func restrictedContainer(who string, c corev1.Container) []string {
	sc := c.SecurityContext
	if sc == nil {
		return []string{who + ": no securityContext"}
	}
	var out []string
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		out = append(out, who+": allowPrivilegeEscalation not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		out = append(out, who+": root filesystem writable")
	}
	if sc.Privileged != nil && *sc.Privileged {
		out = append(out, who+": privileged")
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		out = append(out, who+": runs as root")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
		out = append(out, fmt.Sprintf("%s: capabilities %+v, want drop ALL, add none", who, sc.Capabilities))
	}
	if q := c.Resources.Requests[corev1.ResourceCPU]; q.IsZero() {
		out = append(out, who+": no CPU request")
	}
	if q := c.Resources.Limits[corev1.ResourceMemory]; q.IsZero() {
		out = append(out, who+": no memory limit")
	}
	return out
}

// ContainerPort resolves a named or numeric port of c (0 when absent).
func ContainerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

// CheckHubbubProbes checks readiness on /readyz and liveness on /healthz,
// both on a port of the container.
func CheckHubbubProbes(c corev1.Container) []string {
	var out []string
	for _, p := range []struct {
		kind, path string
		probe      *corev1.Probe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
			out = append(out, fmt.Sprintf("container %s: %s probe %+v, want GET %s", c.Name, p.kind, p.probe, p.path))
			continue
		}
		if ContainerPort(c, p.probe.HTTPGet.Port) == 0 {
			out = append(out, fmt.Sprintf("container %s: %s probe port %s is not a container port", c.Name, p.kind, p.probe.HTTPGet.Port.String()))
		}
	}
	return out
}

// CheckEdgeScaling checks the edge Deployment and its HPA: no replicas on
// the Deployment, a Pods metric on the connections gauge with an average
// value target, and CPU utilization as another metric.
func CheckEdgeScaling(d *appsv1.Deployment, hpas []*autoscalingv2.HorizontalPodAutoscaler) []string {
	var out []string
	if d.Spec.Replicas != nil {
		out = append(out, fmt.Sprintf("Deployment %s sets replicas %d although an HPA scales it", d.Name, *d.Spec.Replicas))
	}
	h := hpaFor(d, hpas)
	if h == nil {
		return append(out, fmt.Sprintf("no HPA targets Deployment %s", d.Name))
	}
	conns, cpu := edgeMetrics(h.Spec.Metrics)
	if !conns {
		out = append(out, fmt.Sprintf("HPA %s: no Pods metric %s with an AverageValue target", h.Name, EdgeConnectionsMetric))
	}
	if !cpu {
		out = append(out, fmt.Sprintf("HPA %s: no CPU utilization target between 50%% and 90%%", h.Name))
	}
	if min := h.Spec.MinReplicas; min == nil || *min < 2 || h.Spec.MaxReplicas <= *min {
		shown := "unset"
		if min != nil {
			shown = fmt.Sprint(*min)
		}
		out = append(out, fmt.Sprintf("HPA %s: %s..%d, want min ≥ 2 and room to grow", h.Name, shown, h.Spec.MaxReplicas))
	}
	return out
}

// hpaFor is the last of hpas whose target is the Deployment d (nil: none).
func hpaFor(d *appsv1.Deployment, hpas []*autoscalingv2.HorizontalPodAutoscaler) *autoscalingv2.HorizontalPodAutoscaler {
	var h *autoscalingv2.HorizontalPodAutoscaler
	for _, x := range hpas {
		if ref := x.Spec.ScaleTargetRef; ref.Kind == "Deployment" && ref.Name == d.Name && ref.APIVersion == "apps/v1" {
			h = x
		}
	}
	return h
}

// edgeMetrics reports whether the last Pods metric on the connections
// gauge has a positive AverageValue target, and whether the last CPU
// resource metric has a utilization target between 50% and 90%.
func edgeMetrics(metrics []autoscalingv2.MetricSpec) (conns, cpu bool) {
	for _, m := range metrics {
		switch {
		case m.Type == autoscalingv2.PodsMetricSourceType && m.Pods != nil && m.Pods.Metric.Name == EdgeConnectionsMetric:
			t := m.Pods.Target
			conns = t.Type == autoscalingv2.AverageValueMetricType && t.AverageValue != nil && t.AverageValue.Sign() > 0
		case m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU:
			u := m.Resource.Target.AverageUtilization
			cpu = m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && u != nil && *u >= 50 && *u <= 90
		}
	}
	return conns, cpu
}

// CheckEdgeMetricsPort checks that the edge serves /metrics on its own
// port (HUBBUB_METRICS_ADDR and a container port named metrics) and that
// no Service selecting the edge pods routes to that port.
func CheckEdgeMetricsPort(d *appsv1.Deployment, services []*corev1.Service, wantPort int32) []string {
	var out []string
	var c *corev1.Container
	for i := range d.Spec.Template.Spec.Containers {
		if d.Spec.Template.Spec.Containers[i].Name == "edge" {
			c = &d.Spec.Template.Spec.Containers[i]
		}
	}
	if c == nil {
		return []string{"edge Deployment has no container edge"}
	}
	e := env(*c, "HUBBUB_METRICS_ADDR")
	if e == nil {
		return []string{"edge: HUBBUB_METRICS_ADDR not set"}
	}
	_, port, err := net.SplitHostPort(e.Value)
	if err != nil || port != strconv.Itoa(int(wantPort)) {
		out = append(out, fmt.Sprintf("edge: HUBBUB_METRICS_ADDR %q, want :%d", e.Value, wantPort))
	}
	if ContainerPort(*c, intstr.FromString("metrics")) != wantPort {
		out = append(out, fmt.Sprintf("edge: no container port metrics=%d", wantPort))
	}
	addr := env(*c, "HUBBUB_HTTP_ADDR")
	if addr != nil && addr.Value == e.Value {
		out = append(out, "edge: metrics and public listener on the same address")
	}
	selected := 0
	for _, s := range services {
		if !selects(s.Spec.Selector, d.Spec.Template.Labels) {
			continue
		}
		selected++
		for _, p := range s.Spec.Ports {
			tp := p.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(p.Port)
			}
			if ContainerPort(*c, tp) == wantPort || p.Port == wantPort {
				out = append(out, fmt.Sprintf("Service %s routes port %s to the metrics port", s.Name, p.Name))
			}
			if ContainerPort(*c, tp) == 0 {
				out = append(out, fmt.Sprintf("Service %s port %s targets %s, not a port of the edge", s.Name, p.Name, tp.String()))
			}
		}
	}
	if selected == 0 {
		out = append(out, "no Service selects the edge pods")
	}
	return out
}

func selects(selector, labels map[string]string) bool {
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
