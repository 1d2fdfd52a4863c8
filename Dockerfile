# syntax=docker/dockerfile:1
#
# Hubbub images: one multi-stage Dockerfile, one target per binary.
#
#   docker build --target edge     -t ghcr.io/hubbub-chat/hubbub-edge:0.1.0 .
#   docker build --target history  -t ghcr.io/hubbub-chat/hubbub-history:0.1.0 .
#   docker build --target presence -t ghcr.io/hubbub-chat/hubbub-presence:0.1.0 .
#   docker build --target hubbub   -t ghcr.io/hubbub-chat/hubbub:0.1.0 .    # all-in-one
#
# Static (CGO_ENABLED=0) binaries on distroless/static (no shell, no package manager),
# running as the unprivileged user 65532. Each image also carries hubbub-healthcheck
# (deploy/cmd/hubbub-healthcheck), which GETs the binary's /healthz or /readyz on
# $HUBBUB_HTTP_ADDR and exits 0/1 — the HEALTHCHECK below and docker-compose.yml use it.
# deploy/dockerfile/dockerfile_test.go checks this file.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=local

# The go.work workspace needs every module's go.mod (each service module replaces
# .../shared with ../../shared, so the tree layout is kept as is).
COPY go.work go.work.su[m] ./
COPY shared/go.mod shared/go.sum shared/
COPY services/edge/go.mod services/edge/go.su[m] services/edge/
COPY services/history/go.mod services/history/go.su[m] services/history/
COPY services/presence/go.mod services/presence/go.su[m] services/presence/
COPY cmd/hubbub/go.mod cmd/hubbub/go.su[m] cmd/hubbub/
COPY cmd/hubbub-bench/go.mod cmd/hubbub-bench/go.su[m] cmd/hubbub-bench/
COPY deploy/go.mod deploy/go.sum deploy/

# Download the dependencies of the modules that make up the binaries (not the
# deploy module's test-only dependencies: Kubernetes, kustomize, compose-spec).
RUN --mount=type=cache,target=/go/pkg/mod \
    for m in shared services/edge services/history services/presence cmd/hubbub; do \
      (cd "$m" && GOWORK=off go mod download) || exit 1; \
    done

COPY . .

RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/ \
      ./services/edge/cmd/hubbub-edge \
      ./services/history/cmd/hubbub-history \
      ./services/presence/cmd/hubbub-presence \
      ./cmd/hubbub \
      ./deploy/cmd/hubbub-healthcheck \
 && mkdir -p /out/data

# ---------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS edge
COPY --from=build /out/hubbub-edge /out/hubbub-healthcheck /usr/local/bin/
ENV HUBBUB_HTTP_ADDR=:8080
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 CMD ["/usr/local/bin/hubbub-healthcheck"]
ENTRYPOINT ["/usr/local/bin/hubbub-edge"]

# ---------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS history
COPY --from=build /out/hubbub-history /out/hubbub-healthcheck /usr/local/bin/
# SQLite (the default without HUBBUB_DATABASE_URL) lives in the /data volume.
COPY --from=build --chown=65532:65532 /out/data /data
ENV HUBBUB_HTTP_ADDR=:8081 HUBBUB_DATA_DIR=/data
VOLUME /data
EXPOSE 8081
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 CMD ["/usr/local/bin/hubbub-healthcheck"]
ENTRYPOINT ["/usr/local/bin/hubbub-history"]

# ---------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS presence
COPY --from=build /out/hubbub-presence /out/hubbub-healthcheck /usr/local/bin/
ENV HUBBUB_HTTP_ADDR=:8082
EXPOSE 8082
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 CMD ["/usr/local/bin/hubbub-healthcheck"]
ENTRYPOINT ["/usr/local/bin/hubbub-presence"]

# ---------------------------------------------------------------------------
# All-in-one: embedded NATS + edge + history + presence on SQLite, data in /data.
FROM gcr.io/distroless/static-debian12:nonroot AS hubbub
COPY --from=build /out/hubbub /out/hubbub-healthcheck /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /data
ENV HUBBUB_HTTP_ADDR=:8080 HUBBUB_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 CMD ["/usr/local/bin/hubbub-healthcheck"]
ENTRYPOINT ["/usr/local/bin/hubbub"]
