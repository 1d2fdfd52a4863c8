// Package monitoring holds the monitoring that ships with Hubbub: the
// PodMonitors/ServiceMonitors and PrometheusRule for the kustomize
// deployment, the alert rules in Prometheus' format (rules.yaml, also in
// the Helm chart), the prometheus-adapter rule behind the edge HPA's
// connections metric and the Grafana dashboard. Its tests decode the
// monitoring.coreos.com resources strictly, parse the rules with
// Prometheus' rulefmt and every expression with its PromQL parser, check
// that only metrics Hubbub and the NATS exporter export are used, and
// validate the dashboard.
package monitoring
