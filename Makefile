# Extend Challenge: the workspace's everyday commands (README "Developing").
CARGO ?= cargo

.PHONY: proto build test check-deploy lint fmt dev smoke docker migrate-up migrate-status

# The protos compile in extend-challenge-common's build script (protox, no protoc).
proto:
	$(CARGO) build -p extend-challenge-common

build: proto
	$(CARGO) build --release -p extend-challenge-service -p extend-challenge-event-handler

# Everything CI runs: deploy/ checks (promtool, kubernetes-validate) and every test.
test:
	scripts/test.sh

check-deploy:
	scripts/check-deploy.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Both binaries against a local Postgres (and Redis if running); prints the URLs.
dev:
	scripts/dev.sh

smoke:
	scripts/smoke.sh

docker:
	$(MAKE) -C extend-challenge-service docker
	$(MAKE) -C extend-challenge-event-handler docker

migrate-up:
	$(CARGO) run -q -p extend-challenge-service -- migrate up

migrate-status:
	$(CARGO) run -q -p extend-challenge-service -- migrate status
