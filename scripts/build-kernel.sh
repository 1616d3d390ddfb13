#!/usr/bin/env bash
# Build Kiln's minimal guest kernel (an uncompressed, PVH-bootable vmlinux)
# from Debian's linux-source-6.1: `make tinyconfig` + images/kernel/microvm.config.
#
#   scripts/build-kernel.sh            # build (or report the cached one)
#   scripts/build-kernel.sh --print    # only print the path the kernel has/would have
#
# Result: ${KILN_HOME:-~/.local/share/kiln}/kernels/minimal-<debian-version>-<sha256(fragment)[:12]>/
#         vmlinux, config, build.log-summary
# Work:   ${KILN_HOME}/build/linux-source-<version>/ (unpacked once, shared)
#         ${KILN_HOME}/build/obj-minimal-<version>-<hash>/ (out-of-tree objects)
# Skips the build when the cached vmlinux exists. Runs make under
# `nice -n ${KILN_NICE:-19}`; build output is shown.
# KILN_KERNEL_FRAGMENT overrides the fragment (for experiments).
# Needs: scripts/setup.sh (linux-source-6.1, gcc, make, bc, flex, bison, libelf-dev, libssl-dev).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
fragment=${KILN_KERNEL_FRAGMENT:-$repo/images/kernel/microvm.config}
KILN_HOME=${KILN_HOME:-$HOME/.local/share/kiln}
nice_level=${KILN_NICE:-19}
pkg=linux-source-6.1

print_only=0
case "${1:-}" in
    --print) print_only=1 ;;
    "") ;;
    *) echo "build-kernel.sh: unknown argument: $1" >&2; exit 2 ;;
esac

tarball=$(ls /usr/src/${pkg}.tar.xz 2>/dev/null || true)
if [ -z "$tarball" ]; then
    echo "build-kernel.sh: /usr/src/${pkg}.tar.xz not found; run scripts/setup.sh" >&2
    exit 1
fi
version=$(dpkg-query -W -f='${Version}' "$pkg")          # e.g. 6.1.192-2
hash=$(sha256sum "$fragment" | cut -c1-12)
name="minimal-${version}-${hash}"
dest="$KILN_HOME/kernels/$name"

if [ "$print_only" = 1 ]; then
    echo "$dest/vmlinux"
    exit 0
fi
if [ -f "$dest/vmlinux" ]; then
    echo "build-kernel.sh: cached: $dest/vmlinux"
    exit 0
fi

build="$KILN_HOME/build"
src="$build/${pkg}-${version}"
obj="$build/obj-$name"
mkdir -p "$build"

# 1. Unpack the source once (marker file makes an interrupted unpack redo).
if [ ! -f "$src/.kiln-unpacked" ]; then
    echo "build-kernel.sh: unpacking $tarball -> $src"
    rm -rf "$src" "$src.tmp"
    mkdir -p "$src.tmp"
    nice -n "$nice_level" tar -xJf "$tarball" -C "$src.tmp" --strip-components=1
    mv "$src.tmp" "$src"
    touch "$src/.kiln-unpacked"
fi

# 2. Configure: tinyconfig, merge the fragment, resolve dependencies.
#    ARCH=x86_64 matters: with the default ARCH=x86 tinyconfig picks 32-bit.
mk=(nice -n "$nice_level" make -C "$src" O="$obj" ARCH=x86_64)
# (The object dir is kept across runs: an interrupted build resumes.)
mkdir -p "$obj"
echo "build-kernel.sh: configuring in $obj"
"${mk[@]}" tinyconfig
(cd "$src" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m -O "$obj" "$obj/.config" "$fragment")
"${mk[@]}" olddefconfig

# 3. Every line of the fragment must have survived dependency resolution.
missing=()
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*)
            grep -qxF -- "$line" "$obj/.config" || missing+=("$line (got: $(grep -E "^(# )?${line%%=*}[= ]" "$obj/.config" || echo absent))")
            ;;
        "# CONFIG_"*" is not set")
            opt=${line#\# }; opt=${opt%% *}
            if grep -q "^${opt}=" "$obj/.config"; then
                missing+=("$line (got: $(grep "^${opt}=" "$obj/.config"))")
            fi
            ;;
    esac
done < "$fragment"
if [ "${#missing[@]}" -gt 0 ]; then
    echo "build-kernel.sh: ERROR: these fragment options did not end up in .config:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "(fix images/kernel/microvm.config: a dependency is missing or the symbol does not exist)" >&2
    exit 1
fi
echo "build-kernel.sh: all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set)' "$fragment") fragment options are set"

# 4. Build.
start=$(date +%s)
echo "build-kernel.sh: make -j$(nproc) vmlinux (nice $nice_level)"
"${mk[@]}" -j"$(nproc)" vmlinux
secs=$(( $(date +%s) - start ))

# 5. Cache atomically.
mkdir -p "$KILN_HOME/kernels"
tmp=$(mktemp -d "$KILN_HOME/kernels/.tmp-$name.XXXXXX")
cp "$obj/vmlinux" "$tmp/vmlinux"
cp "$obj/.config" "$tmp/config"
cat > "$tmp/build-info" <<EOF
source=$pkg $version
fragment_sha256_12=$hash
build_seconds=$secs
nproc=$(nproc)
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
rm -rf "$dest"
mv "$tmp" "$dest"
echo "build-kernel.sh: built in ${secs}s: $dest/vmlinux ($(du -h "$dest/vmlinux" | cut -f1))"
