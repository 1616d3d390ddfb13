#!/usr/bin/env bash
# Build Kiln's `minimal` guest initramfs (newc cpio, gzip or uncompressed):
# busybox-static (+ applet symlinks), bash-static as /bin/bash, the shell
# init images/initramfs/init as /lib/kiln/init.sh, optionally the agent, the
# stock kernel's modules and git.
#
# /init is the agent when there is one and no root disk: it boots the
# machine itself (kiln-agent's `boot` module, no forks) and hands the boot
# to /lib/kiln/init.sh for what only the script does (kiln.marker=,
# kiln.shell=1, kiln.debug=1, kiln.init=sh). Otherwise /init is the script.
#
#   scripts/build-initramfs.sh [--agent PATH] [--kernel-dir DIR] [--compress gzip|none]
#                              [--with-git] [--root DEV] [--out FILE]
#
#   --agent PATH       static kiln-agent binary, installed as /usr/bin/kiln-agent
#                      (and linked as /init unless --root is given)
#                      (optional: without it /init powers off after the port wait,
#                      or prints the marker with kiln.marker=1)
#   --kernel-dir DIR   a stock kernel dir from scripts/fetch-stock-kernel.sh: its
#                      modules/lib/modules/<release> go into /lib/modules and /init
#                      insmods them (the minimal kernel needs none)
#   --compress C       none (default; under TCG gunzip in the guest is no faster
#                      than reading the 2x larger file) or gzip
#   --with-git         add Debian's git (dynamic: binary + git-remote-http(s) + their
#                      ldd libraries + the dynamic loader + CA bundle); needs the
#                      `git` package on the host. Adds ~24 MiB (~11 MiB gzipped),
#                      mostly libcurl-gnutls' dependency tree.
#   --root DEV         the root filesystem is on the disk DEV (`debian` image flavour):
#                      written to /etc/kiln-root, the default of /init's kiln.root=
#   --out FILE         default ${KILN_HOME}/initramfs/minimal[-<release>][-git].cpio[.gz]
#
# Needs root only for mknod of /dev/console (without root /init reopens the
# console after mounting devtmpfs). Always rebuilds (takes < 1 s).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
KILN_HOME=${KILN_HOME:-$HOME/.local/share/kiln}

agent='' kdir='' compress=none with_git=0 out='' root_dev=''
while [ $# -gt 0 ]; do
    case "$1" in
        --agent) agent=$2; shift 2 ;;
        --kernel-dir) kdir=$2; shift 2 ;;
        --compress) compress=$2; shift 2 ;;
        --with-git) with_git=1; shift ;;
        --root) root_dev=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "build-initramfs.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$compress" in gzip|none) ;; *) echo "build-initramfs.sh: --compress gzip|none" >&2; exit 2 ;; esac
for f in /bin/busybox /bin/bash-static; do
    [ -x "$f" ] || { echo "build-initramfs.sh: $f missing; run scripts/setup.sh" >&2; exit 1; }
done
if [ -n "$agent" ]; then
    [ -x "$agent" ] || { echo "build-initramfs.sh: agent $agent is not an executable file" >&2; exit 1; }
    if file "$agent" 2>/dev/null | grep -q 'dynamically linked'; then
        echo "build-initramfs.sh: warning: $agent is dynamically linked; the guest has no libc" >&2
    fi
fi

release=
if [ -n "$kdir" ]; then
    release=$(find "$kdir/modules/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf "%f\n" | head -1)
    [ -f "$kdir/modules/lib/modules/$release/kiln-modules.load" ] ||
        { echo "build-initramfs.sh: $kdir has no modules/lib/modules/*/kiln-modules.load" >&2; exit 1; }
fi

if [ -z "$out" ]; then
    out="$KILN_HOME/initramfs/minimal${release:+-$release}"
    [ "$with_git" = 1 ] && out="$out-git"
    out="$out.cpio"
    [ "$compress" = gzip ] && out="$out.gz"
fi
mkdir -p "$(dirname "$out")"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cd "$stage"

mkdir -p bin sbin usr/bin usr/sbin lib lib64 etc root proc sys dev tmp run var/tmp mnt
chmod 1777 tmp var/tmp
chmod 700 root

# busybox + every applet as a symlink (skipping anything we ship for real).
cp /bin/busybox bin/busybox
/bin/busybox --list-full | while read -r applet; do
    [ -e "$applet" ] || [ -L "$applet" ] && continue
    up=$(dirname "$applet" | sed 's|[^/]*|..|g')
    ln -s "$up/bin/busybox" "$applet"
done
cp /bin/bash-static bin/bash

mkdir -p lib/kiln
install -m 0755 "$repo/images/initramfs/init" lib/kiln/init.sh
if [ -n "$agent" ] && [ -z "$root_dev" ]; then
    ln -s usr/bin/kiln-agent init
else
    ln -s lib/kiln/init.sh init
fi
cat > etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > etc/group <<'EOF'
root:x:0:
tty:x:5:
nogroup:x:65534:
EOF
cat > etc/hosts <<'EOF'
127.0.0.1 localhost
::1 localhost
EOF
echo "kiln" > etc/hostname
: > etc/resolv.conf
echo "KILN_INITRAMFS=minimal" > etc/kiln-release
[ -n "$root_dev" ] && echo "$root_dev" > etc/kiln-root

if [ "$(id -u)" -eq 0 ]; then
    mknod -m 600 dev/console c 5 1
    mknod -m 666 dev/null c 1 3
fi

if [ -n "$agent" ]; then
    install -m 0755 "$agent" usr/bin/kiln-agent
fi

if [ -n "$kdir" ]; then
    mkdir -p lib/modules
    cp -a "$kdir/modules/lib/modules/$release" lib/modules/
fi

if [ "$with_git" = 1 ]; then
    gitbin=/usr/bin/git
    [ -x "$gitbin" ] || { echo "build-initramfs.sh: --with-git needs Debian's git (/usr/bin/git): apt-get install git" >&2; exit 1; }
    mkdir -p usr/lib/git-core
    cp "$gitbin" usr/bin/git
    # git-remote-http(s) is what clone/fetch over https execs.
    # (Debian ships git-remote-https as a symlink to git-remote-http: keep it one.)
    [ -e /usr/lib/git-core/git-remote-http ] && cp -L /usr/lib/git-core/git-remote-http usr/lib/git-core/
    ln -sf git-remote-http usr/lib/git-core/git-remote-https
    ln -sf ../../bin/git usr/lib/git-core/git
    for bin in usr/bin/git usr/lib/git-core/git-remote-http; do
        [ -e "$bin" ] || continue
        ldd "/$bin" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib/{print $1}'
    done | sort -u | while read -r lib; do
        mkdir -p ".$(dirname "$lib")"
        cp -L "$lib" ".$lib"
    done
    # ldd shows the loader as /lib64/ld-linux-x86-64.so.2.
    [ -e lib64/ld-linux-x86-64.so.2 ] || cp -L /lib64/ld-linux-x86-64.so.2 lib64/
    mkdir -p etc/ssl/certs
    [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt etc/ssl/certs/
fi

# newc cpio, owned by root, stable order and timestamps.
find . -exec touch -h -d @0 {} +
tmp="$out.tmp.$$"
if [ "$compress" = gzip ]; then
    find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible | gzip -9 -n > "$tmp"
else
    find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible > "$tmp"
fi
mv "$tmp" "$out"
echo "build-initramfs.sh: $out ($(du -h "$out" | cut -f1); unpacked $(du -sh --apparent-size . | cut -f1))"
