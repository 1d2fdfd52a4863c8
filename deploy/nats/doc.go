// Package nats holds the nats-server configuration docker compose runs
// (nats.conf) and the users and permissions every deployment shares
// (auth.conf). Its tests parse every NATS configuration file of the
// repository with nats-server's own parser and prove the permission model
// on a real embedded server.
package nats
