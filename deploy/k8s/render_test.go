package k8s_test

import (
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// manifests is one rendered kustomization, decoded into API types.
type manifests struct {
	path         string
	namespaces   []*corev1.Namespace
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	pdbs         []*policyv1.PodDisruptionBudget
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	netpols      []*networkingv1.NetworkPolicy
}

// decoder decodes YAML strictly: unknown or duplicate fields are errors.
func decoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// render builds the kustomization at path (like kubectl apply -k would)
// and decodes every object.
func render(t *testing.T, path string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), path)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", path, err)
	}
	dec := decoder(t)
	m := &manifests{path: path}
	for _, r := range resMap.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, gvk, err := dec.Decode(y, nil, nil)
		if err != nil {
			t.Fatalf("%s: decode %s %s: %v", path, r.GetKind(), r.GetName(), err)
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
		case *appsv1.Deployment:
			m.deployments = append(m.deployments, o)
		case *appsv1.StatefulSet:
			m.statefulSets = append(m.statefulSets, o)
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ConfigMap:
			m.configMaps = append(m.configMaps, o)
		case *corev1.Secret:
			m.secrets = append(m.secrets, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas = append(m.hpas, o)
		case *networkingv1.NetworkPolicy:
			m.netpols = append(m.netpols, o)
		default:
			t.Fatalf("%s: unexpected kind %s (%s)", path, gvk, r.GetName())
		}
	}
	return m
}

// workload is a Deployment or StatefulSet seen through what the checks need.
type workload struct {
	kind     string
	name     string
	replicas int32
	template corev1.PodTemplateSpec
	selector map[string]string
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, d := range m.deployments {
		replicas := ptrOr(d.Spec.Replicas, 1)
		// An HPA-managed Deployment has no replicas field: it runs at least
		// the HPA's minimum.
		for _, h := range m.hpas {
			if ref := h.Spec.ScaleTargetRef; d.Spec.Replicas == nil && ref.Kind == "Deployment" && ref.Name == d.Name {
				replicas = ptrOr(h.Spec.MinReplicas, 1)
			}
		}
		out = append(out, workload{"Deployment", d.Name, replicas, d.Spec.Template, d.Spec.Selector.MatchLabels})
	}
	for _, s := range m.statefulSets {
		out = append(out, workload{"StatefulSet", s.Name, ptrOr(s.Spec.Replicas, 1), s.Spec.Template, s.Spec.Selector.MatchLabels})
	}
	return out
}

func (m *manifests) workload(t *testing.T, name string) workload {
	t.Helper()
	for _, w := range m.workloads() {
		if w.name == name {
			return w
		}
	}
	t.Fatalf("%s: no workload %q", m.path, name)
	return workload{}
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for _, c := range m.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (m *manifests) secret(name string) *corev1.Secret {
	for _, s := range m.secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func (w workload) String() string { return fmt.Sprintf("%s/%s", w.kind, w.name) }
