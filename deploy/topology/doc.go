// Package topology holds the multi-process fault test: the real binaries
// (nats-server, hubbub-edge, hubbub-history, hubbub-presence) run as
// separate processes on loopback — a 3-node JetStream cluster with the
// per-service NATS users, two edges, history and presence — while WebSocket
// clients chat and processes are killed with SIGKILL.
package topology
