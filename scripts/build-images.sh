#!/usr/bin/env bash
# One command from a fresh checkout to bootable guest images; idempotent
# (a second run installs nothing, rebuilds nothing and takes seconds).
#
#   scripts/build-images.sh [--flavour minimal|debian|all] [--kernel minimal|stock]
#
# 1. scripts/setup.sh: the Debian packages (debootstrap too for debian/all)
# 2. `kiln image build` for each flavour (default: minimal), which builds the
#    static guest agent (target/agent), the kernel (scripts/build-kernel.sh:
#    ~4-8 minutes the first time, then cached; falls back to Debian's stock
#    kernel if it fails), the initramfs and, for debian, the root disk
#    (debootstrap, about a minute the first time).
#
# Result: ${KILN_HOME:-~/.local/share/kiln}/images/<flavour>/current/ (see
# images/README.md); `cargo run -q -- image list` shows it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
flavours=(minimal) kernel=minimal
while [ $# -gt 0 ]; do
    case "$1" in
        --flavour)
            case "$2" in
                minimal|debian) flavours=("$2") ;;
                all) flavours=(minimal debian) ;;
                *) echo "build-images.sh: --flavour minimal|debian|all" >&2; exit 2 ;;
            esac
            shift 2 ;;
        --kernel) kernel=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "build-images.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
command -v cargo >/dev/null || { echo "build-images.sh: cargo is required" >&2; exit 1; }

setup_args=()
case " ${flavours[*]} " in *" debian "*) setup_args+=(--debootstrap) ;; esac
"$here/setup.sh" "${setup_args[@]}"

cd "$repo"
echo "build-images.sh: building kiln"
cargo build -q -p kiln
for flavour in "${flavours[@]}"; do
    cargo run -q -p kiln -- image build --flavour "$flavour" --kernel "$kernel"
done
