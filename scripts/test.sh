#!/usr/bin/env bash
# The test command (README and CI run exactly this). Every test that needs PostgreSQL starts
# its own throwaway server (wal_level=logical) on a free port; nothing else must be running.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-libduckdb.sh
if cargo nextest --version >/dev/null 2>&1; then
  # No test is skipped unless .config/expected-ignored.txt says why.
  ./scripts/check-ignored.sh
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
