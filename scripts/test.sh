#!/usr/bin/env bash
# Runs every test in the workspace against real Postgres (and Redis where a test uses it).
# Each database test gets a fresh database of its own (sqlx::test).
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
cargo test --workspace --all-targets "$@"
