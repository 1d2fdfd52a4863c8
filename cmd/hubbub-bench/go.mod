module github.com/hubbub-chat/hubbub/cmd/hubbub-bench

go 1.26.8

require (
	github.com/gobwas/ws v1.5.0
	github.com/hubbub-chat/hubbub/services/edge v0.0.0
	github.com/hubbub-chat/hubbub/shared v0.0.0
	github.com/jackc/pgx/v5 v5.13.0
	github.com/nats-io/nats.go v1.56.0
	golang.org/x/time v0.16.0
)

require (
	github.com/antithesishq/antithesis-sdk-go v0.9.0-default-no-op // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/nats-io/jwt/v2 v2.8.3 // indirect
	github.com/nats-io/nats-server/v2 v2.15.3 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

tool github.com/nats-io/nats-server/v2

// Resolvable outside the workspace (GOWORK=off, go install from a clone).
replace (
	github.com/hubbub-chat/hubbub/services/edge => ../../services/edge
	github.com/hubbub-chat/hubbub/services/history => ../../services/history
	github.com/hubbub-chat/hubbub/services/presence => ../../services/presence
	github.com/hubbub-chat/hubbub/shared => ../../shared
)
