package k8s_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func labelSet(l map[string]string) labels.Set { return labels.Set(l) }

// pod is a traffic endpoint for the NetworkPolicy evaluation: a workload's
// pod, or a stand-in for something outside the workloads.
type pod struct {
	name      string
	namespace string
	nsLabels  map[string]string
	labels    map[string]string
	ports     []corev1.ContainerPort
}

// flow is one permitted connection.
type flow struct {
	from, to string
	port     int32
}

func (f flow) String() string { return fmt.Sprintf("%s -> %s:%d", f.from, f.to, f.port) }

// checkNetworkPolicies evaluates the rendered NetworkPolicies with the
// Kubernetes semantics (a pod selected by a policy of a direction is
// isolated in that direction; a connection needs both the source's egress
// and the destination's ingress) between every pair of pods on every
// container port, and compares the result with exactly the flows Hubbub
// needs.
func checkNetworkPolicies(t *testing.T, m *manifests, o overlay) {
	nsLabels := map[string]string{"kubernetes.io/metadata.name": o.namespace}
	maps.Copy(nsLabels, m.namespaces[0].Labels)

	var pods []pod
	for _, w := range m.workloads() {
		var ports []corev1.ContainerPort
		for _, c := range w.template.Spec.Containers {
			ports = append(ports, c.Ports...)
		}
		pods = append(pods, pod{name: w.name, namespace: o.namespace, nsLabels: nsLabels, labels: w.template.Labels, ports: ports})
	}
	// Stand-ins: an ingress controller, Prometheus, an operator's nats-box
	// (docs/deploy.md labels it as a NATS client) and any other pod that
	// lands in the namespace.
	pods = append(pods,
		pod{name: "ingress-controller", namespace: "ingress-nginx", nsLabels: map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"}, labels: map[string]string{"app": "ingress"}},
		pod{name: "prometheus", namespace: "monitoring", nsLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}, labels: map[string]string{"app": "prometheus"}},
		pod{name: "nats-box", namespace: o.namespace, nsLabels: nsLabels, labels: map[string]string{"app.kubernetes.io/name": "nats-box", "hubbub.io/nats-client": "true"}},
		pod{name: "stranger", namespace: o.namespace, nsLabels: nsLabels, labels: map[string]string{"app": "something-else"}},
	)

	want := map[flow]bool{
		{"ingress-controller", "edge", 8080}: true,
		{"prometheus", "edge", 8080}:         true,
		{"prometheus", "edge", 9090}:         true,
		{"prometheus", "nats", 7777}:         true,
		{"edge", "nats", 4222}:               true,
		{"history", "nats", 4222}:            true,
		{"presence", "nats", 4222}:           true,
		{"nats-box", "nats", 4222}:           true,
		{"nats", "nats", 6222}:               true,
		{"prometheus", "nats", 8222}:         true,
		{"prometheus", "history", 8081}:      true,
		{"prometheus", "presence", 8082}:     true,
	}
	if o.inClusterDB {
		want[flow{"history", "postgres", 5432}] = true
	}

	got := map[flow]bool{}
	for _, src := range pods {
		for _, dst := range pods {
			for _, p := range dst.ports {
				if allowed(m.netpols, src, dst, p) {
					got[flow{src.name, dst.name, p.ContainerPort}] = true
				}
			}
		}
	}
	var extra, missing []string
	for f := range got {
		if !want[f] {
			extra = append(extra, f.String())
		}
	}
	for f := range want {
		if !got[f] {
			missing = append(missing, f.String())
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	for _, f := range extra {
		t.Errorf("NetworkPolicies allow %s, which nothing needs", f)
	}
	for _, f := range missing {
		t.Errorf("NetworkPolicies block %s, which Hubbub needs", f)
	}

	// Every pod in the namespace is covered by a default deny in both directions.
	deny := false
	for _, p := range m.netpols {
		if len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
			len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 &&
			slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			deny = true
		}
	}
	if !deny {
		t.Error("no default-deny NetworkPolicy for ingress and egress")
	}
	// DNS keeps working for everyone.
	for _, src := range pods[:len(m.workloads())] {
		dns := pod{name: "kube-dns", namespace: "kube-system", nsLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}, labels: map[string]string{"k8s-app": "kube-dns"}}
		udp := corev1.ContainerPort{ContainerPort: 53, Protocol: corev1.ProtocolUDP}
		if !egressAllowed(m.netpols, src, dns, udp) {
			t.Errorf("%s cannot reach cluster DNS", src.name)
		}
	}
}

func allowed(pols []*networkingv1.NetworkPolicy, src, dst pod, port corev1.ContainerPort) bool {
	return egressAllowed(pols, src, dst, port) && ingressAllowed(pols, src, dst, port)
}

func ingressAllowed(pols []*networkingv1.NetworkPolicy, src, dst pod, port corev1.ContainerPort) bool {
	isolated := false
	for _, p := range pols {
		if p.Namespace != dst.namespace || !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !selectorMatches(&p.Spec.PodSelector, dst.labels) {
			continue
		}
		isolated = true
		for _, r := range p.Spec.Ingress {
			if peersMatch(r.From, p.Namespace, src) && portsMatch(r.Ports, dst, port) {
				return true
			}
		}
	}
	return !isolated
}

func egressAllowed(pols []*networkingv1.NetworkPolicy, src, dst pod, port corev1.ContainerPort) bool {
	isolated := false
	for _, p := range pols {
		if p.Namespace != src.namespace || !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !selectorMatches(&p.Spec.PodSelector, src.labels) {
			continue
		}
		isolated = true
		for _, r := range p.Spec.Egress {
			if peersMatch(r.To, p.Namespace, dst) && portsMatch(r.Ports, dst, port) {
				return true
			}
		}
	}
	return !isolated
}

// peersMatch: no peers means everyone; an ipBlock is taken to match any
// address, pods included (the conservative reading).
func peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNS string, other pod) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		switch {
		case peer.IPBlock != nil:
			return true
		case peer.NamespaceSelector != nil:
			if selectorMatches(peer.NamespaceSelector, other.nsLabels) &&
				(peer.PodSelector == nil || selectorMatches(peer.PodSelector, other.labels)) {
				return true
			}
		case peer.PodSelector != nil:
			if other.namespace == policyNS && selectorMatches(peer.PodSelector, other.labels) {
				return true
			}
		}
	}
	return false
}

// portsMatch resolves named ports against the destination pod.
func portsMatch(ports []networkingv1.NetworkPolicyPort, dst pod, port corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	proto := port.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.Type == intstr.String {
			if port.Name == p.Port.StrVal {
				return true
			}
			continue
		}
		end := p.Port.IntVal
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if port.ContainerPort >= p.Port.IntVal && port.ContainerPort <= end {
			return true
		}
	}
	return false
}

// selectorMatches: an empty selector matches everything.
func selectorMatches(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(l))
}
