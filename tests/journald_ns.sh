#!/bin/sh
# journald_ns.sh -- run a command next to a private, real systemd-journald.
#
#   journald_ns.sh [--no-journald] -- CMD [ARG...]
#
# Enters a private mount namespace (unshare --mount --propagation private), mounts an
# empty tmpfs on /run (and on /var/log/journal when that directory exists), so neither
# the host's journal nor its sockets are visible or touched. Then, unless --no-journald
# is given, starts a standalone /lib/systemd/systemd-journald there (volatile storage in
# /run/log/journal, no kmsg, no syslog forwarding, no rate limit), waits for its sockets,
# runs CMD with JOURNALD_PID set, stops journald (by its pid) and exits with CMD's status.
# `journalctl` run inside the namespace (by CMD, or by `nsenter --target PID --mount`
# into any process of it) reads that journal with no extra options.
#
# With --no-journald the namespace has an empty /run: no journal socket at all.
#
# Needs root, and the Debian packages util-linux (unshare, mount) and systemd
# (systemd-journald, journalctl). Written for systemd.md §6.1; the host's PID 1 need
# not be systemd. Kills nothing but the journald it started.
set -eu

JOURNALD=/lib/systemd/systemd-journald
ME=journald_ns.sh

die() { echo "$ME: $*" >&2; exit 125; }

if [ "${1:-}" != --inner ]; then
    journald=yes
    if [ "${1:-}" = --no-journald ]; then journald=no; shift; fi
    [ "${1:-}" = -- ] && shift
    [ $# -gt 0 ] || die "usage: $ME [--no-journald] -- CMD [ARG...]"
    [ "$(id -u)" = 0 ] || die "must run as root (mount namespaces, tmpfs mounts)"
    missing=""
    command -v unshare >/dev/null 2>&1 || missing="$missing util-linux(unshare)"
    command -v mount >/dev/null 2>&1 || missing="$missing mount(mount)"
    if [ $journald = yes ]; then
        [ -x $JOURNALD ] || missing="$missing systemd($JOURNALD)"
        command -v journalctl >/dev/null 2>&1 || missing="$missing systemd(journalctl)"
    fi
    [ -z "$missing" ] || die "missing:$missing -- install the Debian packages systemd and util-linux"
    exec unshare --mount --propagation private -- "$0" --inner "$journald" "$@"
fi

# ---- inside the private mount namespace
shift
journald=$1
shift
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
[ -d /var/log/journal ] && mount -t tmpfs -o mode=2755 tmpfs /var/log/journal
if [ "$journald" = no ]; then
    exec "$@"
fi

[ -s /etc/machine-id ] || die "/etc/machine-id is missing or empty (journald needs it)"
mkdir -p /run/systemd/journal /run/systemd/journald.conf.d
cat > /run/systemd/journald.conf.d/test.conf <<'EOF'
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitIntervalSec=0
EOF
# journald must not talk to whatever supervises this script
env -u NOTIFY_SOCKET -u WATCHDOG_PID -u WATCHDOG_USEC -u LISTEN_FDS -u LISTEN_PID \
    -u LISTEN_FDNAMES $JOURNALD 2>/run/journald.stderr </dev/null >/dev/null &
jpid=$!
i=0
while [ ! -S /run/systemd/journal/socket ] || [ ! -S /run/systemd/journal/stdout ]; do
    kill -0 $jpid 2>/dev/null || die "systemd-journald exited: $(cat /run/journald.stderr)"
    i=$((i + 1))
    if [ $i -gt 200 ]; then
        kill $jpid 2>/dev/null || true
        die "journald's sockets did not appear within 10 s"
    fi
    sleep 0.05
done

stop_journald() {
    kill $jpid 2>/dev/null || true
    wait $jpid 2>/dev/null || true
}
trap 'stop_journald; exit 143' TERM
trap 'stop_journald; exit 129' HUP
trap 'stop_journald; exit 130' INT
rc=0
JOURNALD_PID=$jpid "$@" || rc=$?
stop_journald
exit $rc
