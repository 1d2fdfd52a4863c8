package kube

import (
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The prometheus-operator resources (monitoring.coreos.com/v1), reduced
// to the fields Hubbub uses. Decoding is strict: a field not declared here
// fails, so a typo cannot pass; Validate checks what the CRD's schema
// requires of those fields.

// NamespaceSelector selects the namespaces a monitor looks in.
type NamespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

// Endpoint is a ServiceMonitor endpoint or a PodMonitor podMetricsEndpoint.
type Endpoint struct {
	Port          string `json:"port"`
	Path          string `json:"path,omitempty"`
	Interval      string `json:"interval,omitempty"`
	ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
}

// MonitorTarget is what a ServiceMonitor or PodMonitor selects: its
// objects by label, in which namespaces, and the label naming the job.
type MonitorTarget struct {
	JobLabel          string               `json:"jobLabel,omitempty"`
	Selector          metav1.LabelSelector `json:"selector"`
	NamespaceSelector *NamespaceSelector   `json:"namespaceSelector,omitempty"`
}

// ServiceMonitor is monitoring.coreos.com/v1 ServiceMonitor.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		MonitorTarget
		Endpoints []Endpoint `json:"endpoints"`
	} `json:"spec"`
}

// PodMonitor is monitoring.coreos.com/v1 PodMonitor.
type PodMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		MonitorTarget
		PodMetricsEndpoints []Endpoint `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// Rule is one alerting or recording rule of a PrometheusRule.
type Rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// RuleGroup is a named group of rules.
type RuleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []Rule `json:"rules"`
}

// PrometheusRule is monitoring.coreos.com/v1 PrometheusRule.
type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []RuleGroup `json:"groups"`
	} `json:"spec"`
}

// Validate checks what the CRD schemas require: names, a non-empty
// selector, endpoints with a named port, rules with exactly one of alert
// and record and an expression.
func (o *Objects) Validate() error {
	var errs []error
	sel := func(kind, name string, s metav1.LabelSelector) {
		if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
			errs = append(errs, fmt.Errorf("%s %s: empty selector selects everything", kind, name))
		}
		if _, err := metav1.LabelSelectorAsSelector(&s); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: selector: %w", kind, name, err))
		}
	}
	eps := func(kind, name string, e []Endpoint) {
		if len(e) == 0 {
			errs = append(errs, fmt.Errorf("%s %s: no endpoints", kind, name))
		}
		for _, ep := range e {
			if ep.Port == "" {
				errs = append(errs, fmt.Errorf("%s %s: endpoint without a named port", kind, name))
			}
		}
	}
	for _, m := range o.ServiceMonitors {
		if m.Name == "" {
			errs = append(errs, errors.New("ServiceMonitor without a name"))
		}
		sel("ServiceMonitor", m.Name, m.Spec.Selector)
		eps("ServiceMonitor", m.Name, m.Spec.Endpoints)
	}
	for _, m := range o.PodMonitors {
		if m.Name == "" {
			errs = append(errs, errors.New("PodMonitor without a name"))
		}
		sel("PodMonitor", m.Name, m.Spec.Selector)
		eps("PodMonitor", m.Name, m.Spec.PodMetricsEndpoints)
	}
	for _, r := range o.PrometheusRules {
		if r.Name == "" || len(r.Spec.Groups) == 0 {
			errs = append(errs, fmt.Errorf("PrometheusRule %q: no name or no groups", r.Name))
		}
		for _, g := range r.Spec.Groups {
			for _, rule := range g.Rules {
				if (rule.Alert == "") == (rule.Record == "") || rule.Expr == "" {
					errs = append(errs, fmt.Errorf("PrometheusRule %s group %s: rule %+v needs exactly one of alert/record and an expr", r.Name, g.Name, rule))
				}
			}
		}
	}
	return errors.Join(errs...)
}
