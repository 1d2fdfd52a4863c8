package kube_test

import (
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/deploy/internal/kube"
)

// everyKind is one manifest of each kind Decode accepts.
const everyKind = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: edge}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: nats}
---
apiVersion: v1
kind: Service
metadata: {name: edge}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
---
apiVersion: v1
kind: Namespace
metadata: {name: hubbub}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
---
# only a comment: skipped
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: sm}
spec: {selector: {}, endpoints: []}
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: pm}
spec: {selector: {}, podMetricsEndpoints: []}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: pr}
spec: {groups: []}
`

func TestDecodeEveryKind(t *testing.T) {
	o, err := kube.Decode([]byte(everyKind))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{
		"Deployments": len(o.Deployments), "StatefulSets": len(o.StatefulSets), "Services": len(o.Services),
		"ConfigMaps": len(o.ConfigMaps), "Secrets": len(o.Secrets), "ServiceAccounts": len(o.ServiceAccounts),
		"Namespaces": len(o.Namespaces), "PDBs": len(o.PDBs), "HPAs": len(o.HPAs),
		"NetworkPolicies": len(o.NetworkPolicies), "ServiceMonitors": len(o.ServiceMonitors),
		"PodMonitors": len(o.PodMonitors), "PrometheusRules": len(o.PrometheusRules),
	}
	for kind, n := range counts {
		if n != 1 {
			t.Errorf("%d %s, want 1", n, kind)
		}
	}
	if d := o.Deployment("edge"); d == nil || d.Name != "edge" {
		t.Errorf("Deployment(edge) = %v", d)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, manifest, want string
	}{
		{"not YAML", "kind: [", "document 0"},
		{"unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata2: {}\n", "unknown field"},
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nmetadata: {name: d}\n", "metadata"},
		{"kind without a scheme", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\n", "batch/v1"},
		{"registered kind Hubbub does not ship", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\n", "unexpected kind networking.k8s.io/v1, Kind=Ingress"},
		{"monitoring beta", "apiVersion: monitoring.coreos.com/v1alpha1\nkind: ServiceMonitor\n", "want monitoring.coreos.com/v1"},
		{"unknown monitoring kind", "apiVersion: monitoring.coreos.com/v1\nkind: Alertmanager\n", "unexpected kind monitoring.coreos.com/v1/Alertmanager"},
		{"ServiceMonitor unknown field", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nspec: {selectors: {}}\n", "ServiceMonitor: "},
		{"PodMonitor unknown field", "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nspec: {endpoints: []}\n", "PodMonitor: "},
		{"PrometheusRule unknown field", "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nspec: {rules: []}\n", "PrometheusRule: "},
		{"second document", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "document 1: unexpected kind /v1, Kind=Pod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := kube.Decode([]byte(tt.manifest))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode = %v, %v; want an error containing %q", o, err, tt.want)
			}
		})
	}
}
