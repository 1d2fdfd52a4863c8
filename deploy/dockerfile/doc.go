// Package dockerfile checks the repository's Dockerfile (there is no Docker
// engine to build it here): it is parsed with BuildKit's own parser and its
// stages, COPY sources, users, base images and healthchecks are verified
// against the go.work workspace on disk. deploy/compose/local/Dockerfile.hubbub,
// which deploy/composetest builds from host binaries, is checked to configure
// its images as the Dockerfile's final stages do.
package dockerfile
