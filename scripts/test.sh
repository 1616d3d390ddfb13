#!/usr/bin/env bash
# The project's whole check: formatting, lints, and every test.
# Needs only cargo and git today: the VM tests (which need scripts/setup.sh's
# packages) arrive with the qemu backend.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo git; do
    command -v "$tool" >/dev/null || { echo "test.sh: $tool is required" >&2; exit 2; }
done

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== expression conformance"
cargo test --locked -p kiln-expr --test conformance -- --nocapture

echo "== all tests"
cargo test --workspace --locked
