#!/usr/bin/env bash
# The project's whole check: formatting, lints, and every test, including
# the ones that boot real QEMU microVMs (under TCG where KVM is unusable).
#
# Installs what it needs first: Debian packages (scripts/setup.sh) and the
# guest images (scripts/build-images.sh: static agent, minimal kernel,
# initramfs, Debian root disk), all idempotent. KILN_HOME says where images
# go (default ~/.local/share/kiln); .ci/run points it inside the checkout so
# CI never reuses anything a fresh machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo git; do
    command -v "$tool" >/dev/null || { echo "test.sh: $tool is required" >&2; exit 2; }
done
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== guest images (packages, agent, kernel, initramfs, debian rootfs)"
./scripts/build-images.sh --flavour all

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== expression conformance"
cargo test --locked -p kiln-expr --test conformance -- --nocapture

# VM tests must run, never skip, here.
export KILN_REQUIRE_QEMU=1

# Includes the VM tests that always boot microVMs: crates/kiln-vm/tests/qemu.rs
# and crates/kiln/tests/qemu.rs (`kiln run` on both images: a real workflow,
# isolation, leaks, kill -9 and reaping, guest features).
echo "== all tests"
cargo test --workspace --locked

# The same test files again with every run in a microVM (`minimal` image
# unless a test asks for `debian`): what holds on `local` must hold in a VM.
echo "== the runner's verification suite and workflow semantics on real microVMs"
KILN_TEST_BACKEND=qemu cargo test --locked -p kiln-runner \
    --test vm_allocation_verification_test --test semantics

echo "== the examples on real microVMs"
KILN_TEST_BACKEND=qemu cargo test --locked -p kiln --test examples
