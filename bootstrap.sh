#!/bin/sh
# bootstrap.sh TARGET: everything a fresh Debian 12 machine needs (as root), then `make TARGET`.
# `sh bootstrap.sh run` sets up and runs the demo; `sh bootstrap.sh test` runs the whole suite.
set -eu
cd "$(dirname "$0")"
missing=""
command -v make >/dev/null 2>&1 || missing="$missing make"
[ -x /usr/bin/python3 ] || missing="$missing python3"
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$missing python3-venv"
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap.sh: please install as root:$missing" >&2
        exit 1
    fi
    echo "bootstrap.sh: installing$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
exec make "$@"
