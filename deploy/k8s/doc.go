// Package k8s holds the Kubernetes manifests: a kustomize base, a postgres
// component and the dev and prod overlays. Its tests render every overlay
// in-process with the kustomize API, decode every object strictly into the
// Kubernetes API types and check the deployment's invariants.
package k8s
