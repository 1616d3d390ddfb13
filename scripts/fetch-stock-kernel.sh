#!/usr/bin/env bash
# Fetch Debian's stock kernel for Kiln guests: an uncompressed ELF vmlinux
# (PVH-bootable by QEMU microvm) plus the virtio/vsock/ext4/overlay modules
# the guest initramfs loads (Debian builds those as modules).
#
#   scripts/fetch-stock-kernel.sh           # fetch (or report the cached one)
#   scripts/fetch-stock-kernel.sh --print   # only print the kernel directory
#
# Result: ${KILN_HOME:-~/.local/share/kiln}/kernels/stock-<release>/   (release e.g. 6.1.0-56-amd64)
#   vmlinux                      uncompressed ELF extracted from vmlinuz
#   config                       Debian's kernel config
#   modules/lib/modules/<release>/kernel/...   the needed modules (+ depmod -b output)
#   modules/lib/modules/<release>/kiln-modules.load   insmod order (deps first),
#                                 paths relative to lib/modules/<release>/
#
# Which modules: Debian 6.1 has VIRTIO, VIRTIO_MMIO (without
# VIRTIO_MMIO_CMDLINE_DEVICES: virtio-mmio devices are found via microvm's
# ACPI tables, so this kernel boots *with* ACPI), virtio_blk/net/console,
# virtio-rng, vsock + virtio transport, ext4 and overlay all as modules
# (serial 8250, unix, inet/ipv6, packet, tmpfs, devtmpfs are built in).
# The dependency closure is computed with `modprobe --show-depends`.
#
# Extraction: vmlinuz is a bzImage whose payload is xz. Like Linux's
# scripts/extract-vmlinux, find every offset of the xz magic FD 37 7A 58 5A 00
# (`grep -obUaP`), decompress from there with `tail -c +N | xz -dc
# --single-stream` (ignores the trailer after the stream) and keep the first
# result that starts with the ELF magic. zstd and gzip payloads are handled the same way.
set -euo pipefail

KILN_HOME=${KILN_HOME:-$HOME/.local/share/kiln}
MODULES=(virtio_mmio virtio_blk virtio_net virtio_console virtio_rng
         vmw_vsock_virtio_transport ext4 overlay)

print_only=0
case "${1:-}" in
    --print) print_only=1 ;;
    "") ;;
    *) echo "fetch-stock-kernel.sh: unknown argument: $1" >&2; exit 2 ;;
esac

resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
pkg=$(resolve || true)
if [ -z "$pkg" ]; then
    echo "fetch-stock-kernel.sh: apt lists empty, running apt-get update" >&2
    apt-get update -qq
    pkg=$(resolve)
fi
[ -n "$pkg" ] || { echo "fetch-stock-kernel.sh: cannot resolve linux-image-amd64's dependency" >&2; exit 1; }
release=${pkg#linux-image-}                      # 6.1.0-56-amd64
dest="$KILN_HOME/kernels/stock-$release"

if [ "$print_only" = 1 ]; then echo "$dest"; exit 0; fi
if [ -f "$dest/vmlinux" ] && [ -f "$dest/modules/lib/modules/$release/kiln-modules.load" ]; then
    echo "fetch-stock-kernel.sh: cached: $dest"
    exit 0
fi

for tool in depmod modprobe xz; do
    command -v "$tool" >/dev/null || { echo "fetch-stock-kernel.sh: $tool missing; run scripts/setup.sh" >&2; exit 1; }
done

mkdir -p "$KILN_HOME/kernels"
work=$(mktemp -d "$KILN_HOME/kernels/.tmp-stock-$release.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fetch-stock-kernel.sh: apt-get download $pkg"
# As root, apt's _apt sandbox user cannot write into our 0700 temp dir.
sandbox=()
[ "$(id -u)" -eq 0 ] && sandbox=(-o APT::Sandbox::User=root)
(cd "$work" && apt-get "${sandbox[@]}" download "$pkg")
dpkg -x "$work"/"$pkg"_*.deb "$work/root"

# --- vmlinuz (bzImage) -> vmlinux (ELF) -----------------------------------
extract_vmlinux() { # in out
    local in=$1 out=$2 magic tool off
    for pair in 'xz:\xfd\x37\x7a\x58\x5a\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
        tool=${pair%%:*}; magic=${pair#*:}
        # shellcheck disable=SC2013 # one number per line
        for off in $(LC_ALL=C grep -obUaP "$magic" "$in" | cut -d: -f1); do
            case "$tool" in
                xz)   tail -c +"$((off + 1))" "$in" | xz -dc --single-stream > "$out" 2>/dev/null || true ;;
                zstd) tail -c +"$((off + 1))" "$in" | zstd -dcq > "$out" 2>/dev/null || true ;;
                gzip) tail -c +"$((off + 1))" "$in" | gzip -dc > "$out" 2>/dev/null || true ;;
            esac
            if [ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
                echo "fetch-stock-kernel.sh: $tool payload at offset $off -> ELF vmlinux"
                return 0
            fi
        done
    done
    return 1
}
mkdir -p "$work/out"
extract_vmlinux "$work/root/boot/vmlinuz-$release" "$work/out/vmlinux" \
    || { echo "fetch-stock-kernel.sh: no compressed ELF payload found in vmlinuz" >&2; exit 1; }
cp "$work/root/boot/config-$release" "$work/out/config"
grep -qx 'CONFIG_PVH=y' "$work/out/config" || echo "fetch-stock-kernel.sh: warning: CONFIG_PVH not set, microvm cannot boot vmlinux directly" >&2

# --- modules: dependency closure, in insmod order --------------------------
depmod -b "$work/root" "$release"
moddir="lib/modules/$release"
mkdir -p "$work/out/modules/$moddir"
load="$work/out/modules/$moddir/kiln-modules.load"
: > "$load"
for m in "${MODULES[@]}"; do
    modprobe -d "$work/root" -S "$release" --show-depends "$m" | while read -r verb path _; do
        [ "$verb" = insmod ] || continue          # "builtin X" lines need nothing
        rel=${path#"$work/root/$moddir/"}
        grep -qxF "$rel" "$load" || echo "$rel" >> "$load"
    done
done
while read -r rel; do
    mkdir -p "$work/out/modules/$moddir/$(dirname "$rel")"
    cp "$work/root/$moddir/$rel" "$work/out/modules/$moddir/$rel"
done < "$load"
cp "$work/root/$moddir"/modules.order "$work/root/$moddir"/modules.builtin* "$work/out/modules/$moddir/"
depmod -b "$work/out/modules" "$release"
echo "fetch-stock-kernel.sh: $(wc -l < "$load") modules ($(du -sh "$work/out/modules" | cut -f1)):"
sed 's/^/  /' "$load"

rm -rf "$dest"
mv "$work/out" "$dest"
echo "$pkg" > "$dest/package"
echo "fetch-stock-kernel.sh: $dest/vmlinux ($(du -h "$dest/vmlinux" | cut -f1))"
