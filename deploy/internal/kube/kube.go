// Package kube decodes rendered Kubernetes manifests strictly (the API
// types of k8s.io/api, and small local types for the prometheus-operator
// resources, which k8s.io/api does not have) and checks the properties
// both the kustomize overlays and the Helm chart must have. The checks
// return their findings as strings so that tests of either renderer can
// report them.
package kube

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Objects is a decoded set of manifests.
type Objects struct {
	Deployments     []*appsv1.Deployment
	StatefulSets    []*appsv1.StatefulSet
	Services        []*corev1.Service
	ConfigMaps      []*corev1.ConfigMap
	Secrets         []*corev1.Secret
	ServiceAccounts []*corev1.ServiceAccount
	Namespaces      []*corev1.Namespace
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicies []*networkingv1.NetworkPolicy
	ServiceMonitors []*ServiceMonitor
	PodMonitors     []*PodMonitor
	PrometheusRules []*PrometheusRule
}

// Decoder decodes YAML or JSON into the API types strictly: unknown and
// duplicate fields are errors.
func Decoder() (runtime.Decoder, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer(), nil
}

// Split returns the non-empty YAML documents of a multi-document stream.
func Split(manifest []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		docs = append(docs, doc)
	}
}

// Decode decodes every document of manifest strictly. A kind outside the
// ones Hubbub ships is an error.
func Decode(manifest []byte) (*Objects, error) {
	dec, err := Decoder()
	if err != nil {
		return nil, err
	}
	docs, err := Split(manifest)
	if err != nil {
		return nil, err
	}
	o := &Objects{}
	for i, doc := range docs {
		if err := o.add(dec, doc); err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", i, err, doc)
		}
	}
	return o, nil
}

// add decodes one document strictly and appends it to its kind's list.
func (o *Objects) add(dec runtime.Decoder, doc []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return err
	}
	if strings.HasPrefix(head.APIVersion, "monitoring.coreos.com/") {
		return o.addMonitoring(head.APIVersion, head.Kind, doc)
	}
	obj, gvk, err := dec.Decode(doc, nil, nil)
	if err != nil {
		return err
	}
	if !o.addAPI(obj) {
		return fmt.Errorf("unexpected kind %s", gvk)
	}
	return nil
}

// addMonitoring decodes a prometheus-operator resource (apiVersion
// monitoring.coreos.com/v1) into the local types.
func (o *Objects) addMonitoring(apiVersion, kind string, doc []byte) error {
	if apiVersion != "monitoring.coreos.com/v1" {
		return fmt.Errorf("%s %s: want monitoring.coreos.com/v1", apiVersion, kind)
	}
	switch kind {
	case "ServiceMonitor":
		return appendStrict(&o.ServiceMonitors, kind, doc)
	case "PodMonitor":
		return appendStrict(&o.PodMonitors, kind, doc)
	case "PrometheusRule":
		return appendStrict(&o.PrometheusRules, kind, doc)
	}
	return fmt.Errorf("unexpected kind %s/%s", apiVersion, kind)
}

// appendStrict decodes doc strictly into a new T and appends it to list.
func appendStrict[T any](list *[]*T, kind string, doc []byte) error {
	var v T
	if err := yaml.UnmarshalStrict(doc, &v); err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	*list = append(*list, &v)
	return nil
}

// addAPI appends a decoded API object to its kind's list; false for a kind
// Hubbub does not ship.
func (o *Objects) addAPI(obj runtime.Object) bool {
	switch v := obj.(type) {
	case *appsv1.Deployment:
		o.Deployments = append(o.Deployments, v)
	case *appsv1.StatefulSet:
		o.StatefulSets = append(o.StatefulSets, v)
	case *corev1.Service:
		o.Services = append(o.Services, v)
	case *corev1.ConfigMap:
		o.ConfigMaps = append(o.ConfigMaps, v)
	case *corev1.Secret:
		o.Secrets = append(o.Secrets, v)
	case *corev1.ServiceAccount:
		o.ServiceAccounts = append(o.ServiceAccounts, v)
	case *corev1.Namespace:
		o.Namespaces = append(o.Namespaces, v)
	case *policyv1.PodDisruptionBudget:
		o.PDBs = append(o.PDBs, v)
	case *autoscalingv2.HorizontalPodAutoscaler:
		o.HPAs = append(o.HPAs, v)
	case *networkingv1.NetworkPolicy:
		o.NetworkPolicies = append(o.NetworkPolicies, v)
	default:
		return false
	}
	return true
}

// Deployment returns the Deployment whose name is name or ends in "-"+name.
func (o *Objects) Deployment(name string) *appsv1.Deployment {
	for _, d := range o.Deployments {
		if d.Name == name || strings.HasSuffix(d.Name, "-"+name) {
			return d
		}
	}
	return nil
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
