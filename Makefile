# Hubbub — common tasks. Every target works from a fresh clone.
GO        ?= go
MODULES   := shared services/edge services/history services/presence cmd/hubbub cmd/hubbub-bench deploy
PKGS      := $(addsuffix /...,$(addprefix ./,$(MODULES)))
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run test test-short lint fmt build bench fuzz

## run: the whole system in one process on the embedded default (NATS + SQLite), http://localhost:8080
run:
	$(GO) run ./cmd/hubbub

## build: every binary into ./bin
build:
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/hubbub ./services/edge/cmd/hubbub-edge ./services/history/cmd/hubbub-history ./services/presence/cmd/hubbub-presence

## test: every test of every module with the race detector. Needs the PostgreSQL server binaries
## (a throwaway server is started per test binary unless HUBBUB_TEST_DATABASE_URL is set),
## PgBouncer and Chromium: see README
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## lint: gofmt, go vet and staticcheck over every module
lint:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

fmt:
	gofmt -w $(MODULES)

## fuzz: run each fuzz target briefly (FUZZTIME=30s make fuzz for longer)
FUZZTIME ?= 10s
fuzz:
	./scripts/fuzz $(FUZZTIME)

## bench: the load suite against a local multi-process deployment; results in bench-results/
## (BENCH_FLAGS=-quick for a ~1-2 minute smoke run; see docs/benchmarks.md)
BENCH_FLAGS ?=
bench:
	./scripts/bench $(BENCH_FLAGS)

## test-compose: docker-compose.yml for real, as root with Debian's docker.io installed (no engine
## need run): a private dockerd, every image built offline, compose up --scale edge=3, one edge
## killed, its clients resume gap-free through the load balancer; all torn down. Not part of
## `make test`, which needs no Docker (docs/deploy.md, "docker compose, tested")
.PHONY: test-compose
test-compose:
	$(GO) vet -tags composetest ./deploy/composetest
	$(GO) test -tags composetest -count=1 -timeout 30m -v -run TestComposeScaleKillResume ./deploy/composetest
