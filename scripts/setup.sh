#!/usr/bin/env bash
# Install the Debian packages needed to build and boot Kiln guests.
#
# Idempotent: every package is checked with dpkg first; when all are present
# apt is not touched at all (fast, needs no network). Run as root, or as a
# user with sudo.
#
#   scripts/setup.sh                  # guest build + boot ingredients
#   scripts/setup.sh --debootstrap    # also debootstrap (Debian rootfs flavour)
#
# Also installs vhost-device-vsock (the vhost-user daemon of the optional
# vsock agent transport, `--transport vsock`) from crates.io into
# ${KILN_HOME:-~/.local/share/kiln}/bin with `cargo install`, unless that
# version is already there.
#
# Pitfall: installing qemu-system-x86 removes the machine's backported
# qemu-utils (qemu-img), so qemu-utils is (re)installed right after it.
set -euo pipefail

with_debootstrap=0
for arg in "$@"; do
    case "$arg" in
        --debootstrap) with_debootstrap=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: run as root (sudo not found)" >&2; exit 1; }
    SUDO="sudo"
fi

# Booting: QEMU microvm, qemu-img; passt is the guests' user-mode NAT.
boot_pkgs=(qemu-system-x86 passt)
# Initramfs / images: static busybox and bash, archivers, ext4 images,
# kmod for depmod/modinfo on the stock kernel's modules.
image_pkgs=(busybox-static bash-static cpio gzip xz-utils zstd e2fsprogs kmod)
# Minimal kernel build: toolchain + Debian's patched 6.1 source tarball.
kernel_pkgs=(bc bison flex libelf-dev libssl-dev make gcc linux-source-6.1)
extra_pkgs=()
[ "$with_debootstrap" = 1 ] && extra_pkgs+=(debootstrap)

installed() { # pkg -> 0 if installed (any version)
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing() {
    local p out=()
    for p in "$@"; do installed "$p" || out+=("$p"); done
    echo "${out[@]:-}"
}

updated=0
apt_install() {
    [ "$#" -gt 0 ] || return 0
    if [ "$updated" = 0 ]; then
        echo "setup.sh: apt-get update"
        $SUDO apt-get update -qq
        updated=1
    fi
    echo "setup.sh: installing: $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# 1. qemu-system-x86, then qemu-utils right after (see pitfall above).
m=$(missing "${boot_pkgs[@]}")
if [ -n "$m" ]; then
    # shellcheck disable=SC2086
    apt_install $m
fi
if ! installed qemu-utils || ! command -v qemu-img >/dev/null; then
    apt_install qemu-utils
fi

# 2. Everything else.
m=$(missing "${image_pkgs[@]}" "${kernel_pkgs[@]}" "${extra_pkgs[@]}")
if [ -n "$m" ]; then
    # shellcheck disable=SC2086
    apt_install $m
fi

# Sanity: the tools the other scripts call.
for tool in qemu-system-x86_64 qemu-img cpio xz zstd mkfs.ext4 depmod make gcc bc flex bison; do
    command -v "$tool" >/dev/null || { echo "setup.sh: $tool still missing after install" >&2; exit 1; }
done
for f in /bin/busybox /bin/bash-static; do
    [ -x "$f" ] || { echo "setup.sh: $f missing" >&2; exit 1; }
done
ls /usr/src/linux-source-6.1.tar.* >/dev/null 2>&1 || { echo "setup.sh: /usr/src/linux-source-6.1.tar.* missing" >&2; exit 1; }

# 3. vhost-device-vsock: crates.io only, no system libraries (~40 s once).
vsock_version=0.3.0
kiln_home=${KILN_HOME:-$HOME/.local/share/kiln}
vsock_daemon="$kiln_home/bin/vhost-device-vsock"
if "$vsock_daemon" --version 2>/dev/null | grep -qx "vhost-device-vsock $vsock_version"; then
    :
elif command -v cargo >/dev/null; then
    echo "setup.sh: installing vhost-device-vsock $vsock_version into $kiln_home/bin"
    mkdir -p "$kiln_home"
    cargo install vhost-device-vsock --version "$vsock_version" --locked --quiet --force \
        --root "$kiln_home"
    "$vsock_daemon" --version | grep -qx "vhost-device-vsock $vsock_version" \
        || { echo "setup.sh: $vsock_daemon is not version $vsock_version after install" >&2; exit 1; }
    updated=1
else
    echo "setup.sh: cargo not found: vhost-device-vsock (the vsock transport) not installed" >&2
fi

if [ "$updated" = 0 ]; then
    echo "setup.sh: all packages present, nothing to do"
else
    echo "setup.sh: done"
fi
