#!/bin/sh
# verify_units.sh BINDIR UNITFILE... -- `systemd-analyze verify` on pysvscan's units,
# the way systemd.md §4.8/§6.3 asks: in a private mount namespace with a tmpfs on /run
# (verify leaves /run/systemd/systemd-units-load behind otherwise), and with BINDIR's
# svscan and supervise (the programs ExecStart= names) in /usr/bin through an overlay, so the
# check neither depends on nor touches what the host has in /usr/bin (the C daemontools
# may or may not be installed there). --man=no: whether man pages are installed is the
# host's business; tests check the project's own pages.
#
# Prints what systemd-analyze prints; any output at all is a failure (unknown keys and
# bad values are only warnings with exit 0). Exit 0 when every unit verified silently,
# 1 when one did not, 125 when the tools or privileges are missing. Needs root and the
# Debian packages systemd (systemd-analyze) and util-linux (unshare) and mount.
set -eu
ME=verify_units.sh
die() { echo "$ME: $*" >&2; exit 125; }

if [ "${1:-}" != --inner ]; then
    [ $# -ge 2 ] || die "usage: $ME BINDIR UNITFILE..."
    [ "$(id -u)" = 0 ] || die "must run as root (mount namespaces, tmpfs and overlay mounts)"
    missing=""
    command -v unshare >/dev/null 2>&1 || missing="$missing util-linux(unshare)"
    command -v mount >/dev/null 2>&1 || missing="$missing mount(mount)"
    command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd(systemd-analyze)"
    [ -z "$missing" ] || die "missing:$missing -- install the Debian packages systemd, util-linux and mount"
    exec unshare --mount --propagation private -- "$0" --inner "$@"
fi

# ---- inside the private mount namespace
shift
bindir=$1
shift
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/verify/upper /run/verify/work
for program in svscan supervise; do
    cp "$bindir/$program" /run/verify/upper/$program
    chmod 0755 /run/verify/upper/$program
done
usr_bin=$(readlink -f /usr/bin)
mount -t overlay overlay \
    -o "lowerdir=$usr_bin,upperdir=/run/verify/upper,workdir=/run/verify/work" "$usr_bin" \
    || die "cannot mount an overlay on $usr_bin"
rc=0
for unit; do
    out=$(systemd-analyze verify --man=no "$unit" 2>&1) || rc=1
    if [ -n "$out" ]; then
        printf '%s\n' "$out"
        rc=1
    fi
done
exit $rc
