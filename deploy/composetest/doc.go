// Package composetest runs the repository's docker-compose.yml for real:
// `make test-compose` (go test -tags composetest ./deploy/composetest) starts
// a private Docker engine (dockerd from Debian's docker.io, its data in a
// temporary directory), builds every image offline — Hubbub's from static
// binaries, NATS from the nats-server module, PostgreSQL and nginx from
// Debian packages — runs `docker compose up --scale edge=3`, sends messages
// through the load balancer to WebSocket clients spread over the edges, kills
// one edge and checks that its clients resume gap-free through the load
// balancer, then tears everything down and stops the engine.
//
// The test files carry the composetest build tag so that `make test` needs no
// Docker (except override_test.go, which checks without Docker that the
// test's override still fits docker-compose.yml). With the tag the test never
// skips: anything missing (root, dockerd, the Debian mirror on a first run)
// fails it with what to do. Downloads and
// slow one-off builds (the compose plugin, the Debian root filesystems) are
// cached in $HUBBUB_COMPOSE_CACHE (default ~/.cache/hubbub-composetest);
// docs/deploy.md ("docker compose, tested") describes the run.
package composetest
