// Package nats holds the nats-server configuration docker compose runs
// (nats.conf, with a system account), the users and permissions every
// deployment shares (auth.conf) and two options nats.conf includes when
// asked to: client TLS (tls.conf) and a cluster with route authorization
// and mutual TLS (cluster.conf). Its tests parse every NATS configuration
// file of the repository with nats-server's own parser, prove the
// permission model on a real embedded server, and turn each option on.
package nats
