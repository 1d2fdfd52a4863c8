// Package k8s holds the Kubernetes manifests: a kustomize base, the postgres
// and nats-tls components and the dev and prod overlays. Its tests render the
// base, every overlay and the dev overlay with nats-tls in-process with the
// kustomize API, decode every object strictly into the Kubernetes API types,
// check the deployment's invariants, and start three nats-servers from the
// rendered NATS configuration.
package k8s
