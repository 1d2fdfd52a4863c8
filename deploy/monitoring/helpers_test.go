package monitoring

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/hubbub-chat/hubbub/deploy/internal/kube"
)

type corev1ServicePort = corev1.ServicePort

type podTemplate struct {
	labels map[string]string
	ports  []string
}

func podTemplates(o *kube.Objects) []podTemplate {
	var out []podTemplate
	add := func(t corev1.PodTemplateSpec) {
		var ports []string
		for _, c := range t.Spec.Containers {
			for _, p := range c.Ports {
				ports = append(ports, p.Name)
			}
		}
		out = append(out, podTemplate{t.Labels, ports})
	}
	for _, d := range o.Deployments {
		add(d.Spec.Template)
	}
	for _, s := range o.StatefulSets {
		add(s.Spec.Template)
	}
	return out
}

func matches(selector, labels map[string]string) bool {
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
