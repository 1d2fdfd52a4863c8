package k8s_test

import (
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hubbub-chat/hubbub/deploy/internal/kube"
)

// checkGoRuntimeEnv: GOMEMLIMIT ≈ 80% of the memory limit, GOMAXPROCS
// from the CPU request (the same rule the Helm chart is held to).
func checkGoRuntimeEnv(t *testing.T, c corev1.Container) {
	t.Helper()
	for _, p := range kube.CheckGoRuntime(c) {
		t.Error(p)
	}
}

// TestScalingAndMetrics checks, on every overlay, what issue 12 asks of
// both the overlays and the chart: the HPA owns the edge's replica count
// and scales on connections per pod and CPU, the Go runtime follows the
// container's resources, /metrics is on an internal port the public
// Service does not route to, NATS spreads across zones and exports its
// metrics through the exporter sidecar.
func TestScalingAndMetrics(t *testing.T) {
	for _, o := range overlays {
		t.Run(o.path, func(t *testing.T) {
			m := render(t, o.path)
			edge := deployment(t, m, "edge")
			for _, p := range kube.CheckEdgeScaling(edge, m.hpas) {
				t.Error(p)
			}
			for _, p := range kube.CheckEdgeMetricsPort(edge, m.services, 9090) {
				t.Error(p)
			}
			for _, name := range []string{"edge", "history", "presence"} {
				w := m.workload(t, name)
				c := container(t, w, name)
				for _, p := range kube.CheckHubbubProbes(c) {
					t.Error(p)
				}
				for _, p := range kube.CheckRestricted(w.String(), w.template.Spec) {
					t.Error(p)
				}
			}
			nats := m.workload(t, "nats")
			checkGoRuntimeEnv(t, container(t, nats, "nats"))
			for _, p := range kube.CheckRestricted(nats.String(), nats.template.Spec) {
				t.Error(p)
			}
			checkZoneSpread(t, nats, o.path == "overlays/prod")

			exp := container(t, nats, "nats-exporter")
			if exp.Image == "" || len(exp.Ports) != 1 || exp.Ports[0].Name != "metrics" {
				t.Errorf("nats-exporter %s ports %+v, want one port named metrics", exp.Image, exp.Ports)
			}
			monitor := containerPort(container(t, nats, "nats"), intstrName("monitor"))
			found := false
			for _, a := range exp.Args {
				found = found || a == "http://localhost:"+itoa(monitor)
			}
			if !found {
				t.Errorf("nats-exporter args %v do not read the local monitoring port %d", exp.Args, monitor)
			}
		})
	}
}

func checkZoneSpread(t *testing.T, w workload, required bool) {
	t.Helper()
	for _, c := range w.template.Spec.TopologySpreadConstraints {
		if c.TopologyKey != "topology.kubernetes.io/zone" {
			continue
		}
		if c.MaxSkew != 1 || !labelsMatch(c.LabelSelector.MatchLabels, w.template.Labels) || len(c.LabelSelector.MatchLabels) == 0 {
			t.Errorf("%s zone spread %+v: want maxSkew 1 over its own pods", w, c)
		}
		if required && c.WhenUnsatisfiable != corev1.DoNotSchedule {
			t.Errorf("%s zone spread is %s, want DoNotSchedule in production", w, c.WhenUnsatisfiable)
		}
		return
	}
	t.Errorf("%s has no topology spread across topology.kubernetes.io/zone", w)
}

func deployment(t *testing.T, m *manifests, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range m.deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("%s: no Deployment %s", m.path, name)
	return nil
}

func intstrName(n string) intstr.IntOrString { return intstr.FromString(n) }

func itoa(n int32) string { return strconv.Itoa(int(n)) }
