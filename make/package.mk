# The per-service targets of the deployment guide, shared by extend-challenge-service/Makefile
# and extend-challenge-event-handler/Makefile, which set PACKAGE and IMAGE and include this.
# Cargo builds the whole workspace's dependencies; run from the binary's folder (make build)
# or the root (make -C <binary folder> build).
CARGO ?= cargo
ROOT := ..

.PHONY: proto build test run docker compose-up compose-down

# The protos compile in extend-challenge-common's build script (protox, no protoc).
proto:
	cd $(ROOT) && $(CARGO) build -p extend-challenge-common

build: proto
	cd $(ROOT) && $(CARGO) build --release -p $(PACKAGE)

# Needs Postgres (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
test:
	cd $(ROOT) && $(CARGO) test -p $(PACKAGE)

run:
	cd $(ROOT) && $(CARGO) run -p $(PACKAGE)

docker:
	cd $(ROOT) && docker build -f $(PACKAGE)/Dockerfile -t $(IMAGE):local .

compose-up:
	docker compose up -d --build

compose-down:
	docker compose down
