#!/usr/bin/env bash
# The project's whole check: formatting, lints, and every test.
# Installs what the tests need first (scripts/setup.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/setup.sh ] && [ "${KILN_SKIP_SETUP:-0}" != 1 ]; then
    ./scripts/setup.sh
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== expression conformance"
cargo test --locked -p kiln-expr --test conformance -- --nocapture

echo "== all tests"
cargo test --workspace --locked
