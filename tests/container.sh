#!/bin/sh
# container.sh -- systemd booted in a Debian 12 container, for the tests that need a
# real PID 1 (systemd.md §6.4). The host's PID 1 need not be systemd.
#
#   container.sh rootfs            build the cached rootfs once (debootstrap), print its path
#   container.sh boot RUNDIR [-- NSPAWN_ARG...]
#                                  boot a throw-away copy of it in the background; RUNDIR
#                                  (new or empty) receives the copy, nspawn.pid, pid1, log
#   container.sh exec RUNDIR CMD...  run CMD inside the booted container
#   container.sh halt RUNDIR       clean shutdown (SIGTERM to nspawn), then remove the copy
#
# The rootfs lives in $PYSVSCAN_ROOTFS (default /var/tmp/pysvscan-rootfs). It is built
# with `debootstrap --variant=minbase` from the mirror in the host's apt sources, and
# rebuilt only when the package list below changes (a stamp file records it). Every boot
# works on a copy (`cp -a`, about a second), so a test can never spoil the cache.
# nspawn runs in a private mount namespace with its own tmpfs /run, so nothing of it
# shows on the host; it never talks to a host systemd (--keep-unit, --register=no).
#
# Needs root and the Debian packages debootstrap, systemd-container and util-linux,
# which it installs with apt when missing. Kills nothing it did not start.
set -eu

ME=container.sh
ROOTFS=${PYSVSCAN_ROOTFS:-/var/tmp/pysvscan-rootfs}
SYSPATH=/usr/sbin:/usr/bin:/sbin:/bin
# What pysvscan needs (and recommends) at run time in Debian 12, plus pip to install it
# and procps/psmisc for looking at the process tree from inside.
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-systemd,python3-click,python3-sdnotify,python3-prometheus-client,python3-pip,procps
STAMP="bookworm minbase $PACKAGES"

die() { echo "$ME: $*" >&2; exit 125; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

need_tools() {
    missing=""
    command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
    command -v systemd-nspawn >/dev/null 2>&1 || missing="$missing systemd-container"
    command -v unshare >/dev/null 2>&1 || missing="$missing util-linux"
    command -v nsenter >/dev/null 2>&1 || missing="$missing util-linux"
    [ -z "$missing" ] && return 0
    echo "$ME: installing$missing" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
}

mirror() {
    m=$(sed -n 's|^URIs: *\([^ ]*/debian\)/*$|\1|p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
    echo "${m:-http://deb.debian.org/debian}"
}

cmd_rootfs() {
    need_root
    need_tools
    if [ -f "$ROOTFS/.pysvscan-stamp" ] && [ "$(cat "$ROOTFS/.pysvscan-stamp")" = "$STAMP" ]; then
        echo "$ROOTFS"
        return 0
    fi
    t=$(now)
    build="$ROOTFS.build.$$"
    rm -rf "$build"
    log="$ROOTFS.debootstrap.log"
    echo "$ME: building the Debian 12 rootfs in $ROOTFS (about a minute, once)" >&2
    if ! debootstrap --variant=minbase --include="$PACKAGES" bookworm "$build" "$(mirror)" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rm -rf "$build"
        die "debootstrap failed (full log: $log)"
    fi
    # A fixed machine id keeps journald happy; no getty on the console; quiet apt.
    echo 0123456789abcdef0123456789abcdef >"$build/etc/machine-id"
    rm -f "$build/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
    echo "$STAMP" >"$build/.pysvscan-stamp"
    rm -rf "$ROOTFS"
    mv "$build" "$ROOTFS"
    echo "$ME: rootfs built in $(since "$t")" >&2
    echo "$ROOTFS"
}

cmd_boot() {
    need_root
    [ $# -ge 1 ] || die "usage: $ME boot RUNDIR [-- NSPAWN_ARG...]"
    run=$1
    shift
    [ "${1:-}" = -- ] && shift
    [ -f "$ROOTFS/.pysvscan-stamp" ] || die "no rootfs in $ROOTFS: run '$ME rootfs' first"
    command -v systemd-nspawn >/dev/null 2>&1 || need_tools
    mkdir -p "$run"
    [ ! -e "$run/root" ] || die "$run/root exists: halt that container first"
    t=$(now)
    cp -a "$ROOTFS" "$run/root"
    # --keep-unit: no scope from a host systemd over D-Bus; --register=no: no machined.
    # The private mount namespace with a tmpfs /run keeps /run/systemd/nspawn off the host.
    setsid unshare --mount --propagation private -- sh -c \
        'mount -t tmpfs tmpfs /run && exec systemd-nspawn -D "$0" -b --register=no --keep-unit --console=pipe -q "$@"' \
        "$run/root" "$@" >"$run/nspawn.log" 2>&1 </dev/null &
    np=$!
    echo $np >"$run/nspawn.pid"
    pid1=""
    i=0
    while [ -z "$pid1" ]; do
        # nspawn forks the container's PID 1 (systemd) as its direct child.
        pid1=$(grep -l '^PPid:[[:space:]]*'"$np"'$' /proc/[0-9]*/status 2>/dev/null | head -n1 | cut -d/ -f3 || true)
        [ -n "$pid1" ] && [ "$(cat /proc/"$pid1"/comm 2>/dev/null)" = systemd ] || pid1=""
        kill -0 $np 2>/dev/null || { cat "$run/nspawn.log" >&2; die "systemd-nspawn exited"; }
        i=$((i + 1))
        [ $i -le 600 ] || die "the container's PID 1 did not appear within 30 s"
        sleep 0.05
    done
    echo "$pid1" >"$run/pid1"
    i=0
    while :; do
        st=$(nsenter -t "$pid1" -a -- env -i PATH=$SYSPATH systemctl is-system-running 2>/dev/null || true)
        case $st in running|degraded) break ;; esac
        i=$((i + 1))
        [ $i -le 600 ] || die "the container did not finish booting within 60 s (state: $st)"
        sleep 0.1
    done
    echo "$ME: booted ($st) in $(since "$t"); PID 1 is host pid $pid1" >&2
}

cmd_exec() {
    [ $# -ge 2 ] || die "usage: $ME exec RUNDIR CMD..."
    run=$1
    shift
    [ -s "$run/pid1" ] || die "no container booted in $run"
    exec nsenter -t "$(cat "$run/pid1")" -a -- env -i PATH=$SYSPATH LANG=C.UTF-8 TERM=dumb "$@"
}

cmd_halt() {
    [ $# -eq 1 ] || die "usage: $ME halt RUNDIR"
    run=$1
    if [ -s "$run/nspawn.pid" ]; then
        np=$(cat "$run/nspawn.pid")
        if kill -0 "$np" 2>/dev/null; then
            kill -TERM "$np"           # nspawn asks the container's systemd to power off
            i=0
            while kill -0 "$np" 2>/dev/null && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
            if kill -0 "$np" 2>/dev/null; then
                # A second SIGTERM makes nspawn kill the container at once.
                kill -TERM "$np" 2>/dev/null || true
                i=0
                while kill -0 "$np" 2>/dev/null && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
                kill -KILL -- "-$np" 2>/dev/null || true
            fi
        fi
    fi
    rm -f "$run/nspawn.pid" "$run/pid1"
    rm -rf "$run/root"
}

case "${1:-}" in
    rootfs) shift; cmd_rootfs "$@" ;;
    boot) shift; cmd_boot "$@" ;;
    exec) shift; cmd_exec "$@" ;;
    halt) shift; cmd_halt "$@" ;;
    *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
