#!/usr/bin/env bash
# Build the root disk of Kiln's `debian` image flavour: a raw ext4 image of a
# Debian bookworm minbase system plus the agent, made without loop mounts.
#
#   scripts/build-rootfs.sh --agent PATH --out FILE [--size SIZE] [--mirror URL]
#
#   --agent PATH   static kiln-agent, installed as /usr/bin/kiln-agent
#   --out FILE     the raw image to write (sparse)
#   --size SIZE    filesystem size, as for truncate(1) (default ${KILN_ROOTFS_SIZE:-4G});
#                  the file is sparse: it takes only the used blocks (~0.4 GiB) on disk.
#                  VMs write to a copy-on-write overlay, so this is also the most
#                  a job can add.
#   --mirror URL   Debian mirror (default: $KILN_DEBIAN_MIRROR, else the URI apt
#                  uses for bookworm in /etc/apt/sources.list{,.d/*})
#
# 1. debootstrap --variant=minbase --include=$PACKAGES bookworm into
#    ${KILN_HOME}/build/rootfs-bookworm-<sha256(recipe)[:12]>/ once (about a
#    minute); the apt caches and the host's resolv.conf are dropped. Cached
#    after that: a marker file next to the tree says it is complete.
# 2. Puts the agent at /usr/bin/kiln-agent and images/rootfs/kiln-init at
#    /sbin/kiln-init (what the initramfs switch_root's into), into that tree.
# 3. mkfs.ext4 -d TREE into FILE (label kiln-root, no reserved blocks).
#
# Needs root (debootstrap chroots; mkfs -d keeps the tree's owners) and the
# packages of `scripts/setup.sh --debootstrap`. Apt's proxy setting, if any,
# is passed on to debootstrap.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
KILN_HOME=${KILN_HOME:-$HOME/.local/share/kiln}
SUITE=bookworm
PACKAGES=bash,git,coreutils,ca-certificates,python3,procps,iproute2

agent='' out='' size=${KILN_ROOTFS_SIZE:-4G} mirror=${KILN_DEBIAN_MIRROR:-}
while [ $# -gt 0 ]; do
    case "$1" in
        --agent) agent=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --mirror) mirror=$2; shift 2 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "build-rootfs.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [ -z "$agent" ] || [ -z "$out" ]; then
    echo "build-rootfs.sh: --agent PATH and --out FILE are required" >&2; exit 2
fi
[ -x "$agent" ] || { echo "build-rootfs.sh: agent $agent is not an executable file" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "build-rootfs.sh: must run as root (debootstrap chroots into the tree)" >&2; exit 1; }
for tool in debootstrap mkfs.ext4; do
    command -v "$tool" >/dev/null || { echo "build-rootfs.sh: $tool missing; run scripts/setup.sh --debootstrap" >&2; exit 1; }
done
init="$repo/images/rootfs/kiln-init"
[ -f "$init" ] || { echo "build-rootfs.sh: $init missing" >&2; exit 1; }

# The mirror apt itself uses for $SUITE: deb822 .sources stanzas (URIs: +
# Suites:) or one-line `deb URL SUITE ...` entries.
apt_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() { if (uri != "" && has) { print uri; found = 1; exit } uri = ""; has = 0 }
            /^[ \t]*$/ { flush(); next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
            END { if (!found) flush() }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk -v suite="$SUITE" '$1 == "deb" { u = $2; s = $3; if ($2 ~ /^\[/) { for (i = 2; i <= NF && $i !~ /\]$/; i++); u = $(i+1); s = $(i+2) } if (s == suite) print u }'
}
if [ -z "$mirror" ]; then
    mirror=$(apt_mirror 2>/dev/null | head -1 || true)
    [ -n "$mirror" ] || { echo "build-rootfs.sh: no apt source for $SUITE in /etc/apt/sources.list*; pass --mirror URL" >&2; exit 1; }
fi
# Apt may reach the mirror through a proxy: debootstrap's wget needs it too.
if [ -z "${http_proxy:-}" ] && command -v apt-config >/dev/null; then
    eval "$(apt-config shell http_proxy Acquire::http::Proxy)"
    if [ -n "${http_proxy:-}" ]; then export http_proxy; fi
fi

recipe="debootstrap --variant=minbase --include=$PACKAGES $SUITE"
key=$(printf '%s\n' "$recipe" | sha256sum | cut -c1-12)
tree="$KILN_HOME/build/rootfs-$SUITE-$key"
mkdir -p "$KILN_HOME/build"

if [ -f "$tree.done" ]; then
    echo "build-rootfs.sh: cached debootstrap tree: $tree"
else
    echo "build-rootfs.sh: $recipe from $mirror -> $tree"
    if ! wget -q -T 20 -t 2 -O /dev/null "$mirror/dists/$SUITE/Release"; then
        echo "build-rootfs.sh: cannot reach the Debian mirror $mirror (fetching dists/$SUITE/Release failed)." >&2
        echo "build-rootfs.sh: the debian flavour needs it; pass --mirror URL or set KILN_DEBIAN_MIRROR." >&2
        exit 1
    fi
    rm -rf "$tree" "$tree.tmp"
    start=$(date +%s)
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tree.tmp" "$mirror"
    # Not part of the image: downloaded .debs, apt's caches and lists (jobs run
    # `apt-get update` anyway), the host's resolv.conf.
    rm -rf "$tree.tmp"/var/cache/apt/archives/*.deb "$tree.tmp"/var/cache/apt/*.bin \
        "$tree.tmp"/var/lib/apt/lists/* "$tree.tmp"/var/log/*.log
    mkdir -p "$tree.tmp/var/lib/apt/lists/partial"
    : > "$tree.tmp/etc/resolv.conf"
    echo kiln > "$tree.tmp/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 kiln\n::1 localhost ip6-localhost ip6-loopback\n' > "$tree.tmp/etc/hosts"
    mv "$tree.tmp" "$tree"
    echo "$recipe from $mirror in $(( $(date +%s) - start ))s, $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$tree.done"
    echo "build-rootfs.sh: debootstrap done: $(du -sh "$tree" | cut -f1)"
fi

# The Kiln parts: fully determined by the inputs, so rewriting them in the
# cached tree is safe.
install -m 0755 "$agent" "$tree/usr/bin/kiln-agent"
install -m 0755 "$init" "$tree/sbin/kiln-init"
echo "KILN_ROOTFS=debian-$SUITE" > "$tree/etc/kiln-release"

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
rm -f "$tmp"
truncate -s "$size" "$tmp"
mkfs.ext4 -q -F -L kiln-root -m 0 -d "$tree" "$tmp"
mv "$tmp" "$out"
echo "build-rootfs.sh: $out ($(du -h --apparent-size "$out" | cut -f1) filesystem, $(du -h "$out" | cut -f1) on disk)"
