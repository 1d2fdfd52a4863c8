// Package compose checks the repository's docker-compose.yml: its tests load
// it with the compose-spec loader (the library docker compose itself uses)
// and verify services, healthchecks, start-up ordering, the HUBBUB_*
// configuration each binary reads, networks and the load balancer.
package compose
