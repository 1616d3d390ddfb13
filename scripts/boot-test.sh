#!/usr/bin/env bash
# Boot Kiln's guest kernels with the minimal initramfs under QEMU microvm
# (TCG) and time them: QEMU start -> KILN-BOOT-MARKER on the serial console,
# and QEMU start -> QEMU exiting by itself (guest power-off).
#
#   scripts/boot-test.sh [-n RUNS] [--kernel minimal|stock|both] [--devices] [--verbose]
#
#   -n RUNS      boots per kernel (default 5); medians are reported
#   --kernel K   which kernel(s) (default both)
#   --devices    attach virtio-serial (port org.kiln.agent on a unix socket),
#                virtio-rng and virtio-net (user, restrict=on) and print the
#                marker only once the port is visible in the guest (kiln.marker=port)
#   --verbose    drop `quiet` from the kernel command line
#
# Env: KILN_HOME, KILN_ACCEL (tcg), KILN_CPU (max), KILN_SMP (1), KILN_MEM (512),
#      KILN_TSC_KHZ (host TSC kHz; default from /proc/cpuinfo "cpu MHz"),
#      KILN_BOOT_TIMEOUT (seconds per boot, default 60).
# Builds/fetches what is missing via the other scripts (cached ones are reused).
# Serial logs of each boot: ${KILN_HOME}/boot-test/<kernel>-<n>.log
# Exit status: 0 only if every boot printed the marker and QEMU exited by itself.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
KILN_HOME=${KILN_HOME:-$HOME/.local/share/kiln}
export KILN_HOME
runs=5 which=both devices=0 quiet=quiet
while [ $# -gt 0 ]; do
    case "$1" in
        -n) runs=$2; shift 2 ;;
        --kernel) which=$2; shift 2 ;;
        --devices) devices=1; shift ;;
        --verbose) quiet=; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "boot-test.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$which" in minimal) kernels=(minimal) ;; stock) kernels=(stock) ;; both) kernels=(minimal stock) ;;
    *) echo "boot-test.sh: --kernel minimal|stock|both" >&2; exit 2 ;; esac

accel=${KILN_ACCEL:-tcg} cpu=${KILN_CPU:-max} smp=${KILN_SMP:-1} mem=${KILN_MEM:-512}
timeout_s=${KILN_BOOT_TIMEOUT:-60}
# Under TCG the guest TSC ticks at the host's rate; telling the guest skips
# its calibration, which fails (hangs at t=0) when several guests share 2 cores.
tsc_khz=${KILN_TSC_KHZ:-$(awk -F: '/^cpu MHz/{printf "%d", $2 * 1000; exit}' /proc/cpuinfo)}
[ -n "$tsc_khz" ] || { echo "boot-test.sh: cannot read the host TSC frequency; set KILN_TSC_KHZ" >&2; exit 1; }

command -v qemu-system-x86_64 >/dev/null || { echo "boot-test.sh: qemu-system-x86_64 missing; run scripts/setup.sh" >&2; exit 1; }
logdir="$KILN_HOME/boot-test"
mkdir -p "$logdir"

# Artifacts: kernel + matching initramfs (uncompressed cpio: under TCG,
# gunzip in the guest costs more than reading the larger file).
declare -A vmlinux initrd
for k in "${kernels[@]}"; do
    if [ "$k" = minimal ]; then
        "$here/build-kernel.sh" >&2
        vmlinux[$k]=$("$here/build-kernel.sh" --print)
        initrd[$k]="$KILN_HOME/initramfs/minimal.cpio"
        "$here/build-initramfs.sh" --compress none --out "${initrd[$k]}" >&2
    else
        "$here/fetch-stock-kernel.sh" >&2
        kdir=$("$here/fetch-stock-kernel.sh" --print)
        vmlinux[$k]="$kdir/vmlinux"
        initrd[$k]="$KILN_HOME/initramfs/minimal-$(basename "$kdir" | sed 's/^stock-//').cpio"
        "$here/build-initramfs.sh" --compress none --kernel-dir "$kdir" --out "${initrd[$k]}" >&2
    fi
done

qemu_cmd() { # kernel sockpath -> prints nothing, fills global array cmd
    local k=$1 sock=$2 machine append marker=1
    [ "$devices" = 1 ] && marker=port
    if [ "$k" = minimal ]; then
        # No ACPI in this kernel. QEMU's microvm lists virtio-mmio devices on
        # the kernel command line only when its own ACPI is off (acpi=off on
        # the *machine*); reboot=t: `reboot -f` triple-faults, -no-reboot exits.
        machine=microvm,acpi=off
        append="console=ttyS0 reboot=t panic=-1"
    else
        # Debian's kernel finds virtio-mmio devices via microvm's ACPI tables
        # (no VIRTIO_MMIO_CMDLINE_DEVICES) and powers off via ACPI (keep the RTC).
        machine=microvm
        append="console=ttyS0 panic=-1"
    fi
    append="$append tsc_early_khz=$tsc_khz tsc=reliable $quiet kiln.marker=$marker"
    cmd=(qemu-system-x86_64 -M "$machine" -accel "$accel" -cpu "$cpu" -m "$mem" -smp "$smp"
         -nodefaults -no-user-config -nographic -no-reboot -serial stdio
         -kernel "${vmlinux[$k]}" -initrd "${initrd[$k]}" -append "$append")
    if [ "$devices" = 1 ]; then
        # shellcheck disable=SC2054 # commas are QEMU option syntax
        cmd+=(-device virtio-serial-device
              -chardev "socket,id=agent,path=$sock,server=on,wait=off"
              -device virtserialport,chardev=agent,name=org.kiln.agent
              -device virtio-rng-device
              -netdev user,id=net0,restrict=on -device virtio-net-device,netdev=net0)
    fi
}

median() { sort -n | awk '{v[NR]=$1} END{if(NR==0){print "n/a"; exit} if(NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }

failures=0
summary=()
for k in "${kernels[@]}"; do
    sock=$(mktemp -u "/tmp/kiln-boot-test.XXXXXX.sock")
    qemu_cmd "$k" "$sock"
    echo "== $k: ${cmd[*]}"
    marker_times=() exit_times=() guest_times=()
    for i in $(seq 1 "$runs"); do
        log="$logdir/$k-$i.log"
        t_marker='' guest=''
        t0=$EPOCHREALTIME
        set +e
        while IFS= read -r line; do
            printf '%s\n' "$line"
            case "$line" in
                *KILN-BOOT-MARKER*)
                    t_marker=$EPOCHREALTIME
                    guest=$(sed -n 's/.*uptime=\([0-9.]*\)s.*/\1/p' <<<"$line") ;;
            esac
        done < <(timeout "$timeout_s" "${cmd[@]}" </dev/null 2>&1; echo "KILN-BOOT-TEST-QEMU-RC=$?") > "$log"
        t_exit=$EPOCHREALTIME
        set -e
        rm -f "$sock"
        rc=$(sed -n 's/^KILN-BOOT-TEST-QEMU-RC=//p' "$log")
        dm='' de=$(awk -v a="$t0" -v b="$t_exit" 'BEGIN{printf "%.3f", b-a}')
        [ -n "$t_marker" ] && dm=$(awk -v a="$t0" -v b="$t_marker" 'BEGIN{printf "%.3f", b-a}')
        if [ -z "$dm" ] || [ "$rc" != 0 ]; then
            failures=$((failures + 1))
            note=; [ "$rc" = 124 ] && note=" = timeout after ${timeout_s}s"
            echo "  $k #$i: FAILED (marker: ${dm:-none}, qemu rc=${rc:-?}$note) log: $log"
            continue
        fi
        marker_times+=("$dm") exit_times+=("$de") guest_times+=("$guest")
        echo "  $k #$i: marker ${dm}s  exit ${de}s  (guest uptime at marker ${guest}s)"
    done
    mm=$(printf '%s\n' "${marker_times[@]}" | grep . | median || true)
    me=$(printf '%s\n' "${exit_times[@]}" | grep . | median || true)
    mg=$(printf '%s\n' "${guest_times[@]}" | grep . | median || true)
    summary+=("$(printf '%-8s ok %d/%d  median: marker %ss  exit %ss  guest uptime at marker %ss' \
        "$k" "${#marker_times[@]}" "$runs" "$mm" "$me" "$mg")")
done

echo "== summary (accel=$accel cpu=$cpu smp=$smp mem=${mem}M devices=$devices tsc_khz=$tsc_khz, load: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${summary[@]}"
[ "$failures" = 0 ] || { echo "boot-test.sh: $failures boot(s) failed" >&2; exit 1; }
