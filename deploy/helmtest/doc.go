// Package helmtest renders the Helm chart deploy/helm/hubbub with Helm's
// Go SDK (helm.sh/helm/v4, client-only dry run, as `helm template` does),
// decodes every document strictly and checks the chart's invariants, with
// the default values and with deploy/helm/examples/production.yaml.
package helmtest
