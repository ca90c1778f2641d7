#!/bin/sh
# packaging/build.sh [--lint] deb|rpm OUTDIR: build pysvscan's Debian package
# (dpkg-buildpackage -us -uc -b) or its RPM (rpmbuild -bb with
# packaging/rpm-shim.macros) from a copy of this tree in a temporary directory, and copy
# the results into OUTDIR. With --lint, then check them: lintian -I --pedantic, failing
# on any error or warning, or rpmlint with packaging/rpmlint.toml on the spec and the
# RPM, failing on any finding that file does not filter.
#
# The copy keeps the working tree clean (dpkg-buildpackage writes its results into
# the parent directory, setuptools leaves build/ and *.egg-info behind) and holds
# exactly what git would commit: tracked files plus new ones that .gitignore does not
# exclude, as they are now. The build runs with the system toolchain alone on PATH and
# a scratch HOME, so neither a venv or pyenv python3 nor the caller's ~/.rpmmacros
# takes part, and the ~/.rpmdb that rpmlint creates lands in the temporary directory,
# which is removed in every case.
set -eu

usage() {
    echo "usage: packaging/build.sh [--lint] deb|rpm OUTDIR" >&2
    exit 2
}
lint=false
if [ "${1-}" = --lint ]; then
    lint=true
    shift
fi
[ $# -eq 2 ] || usage
kind=$1
case $kind in deb | rpm) ;; *) usage ;; esac

here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/pyproject.toml")
[ -n "$version" ] || { echo "build.sh: no version in pyproject.toml" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pysvscan-$kind.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
src="$tmp/pysvscan-$version"
mkdir "$src"

if git -C "$here" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # --ignore-failed-read: a tracked file deleted in the working tree is left out.
    git -C "$here" ls-files -z --cached --others --exclude-standard |
        tar -C "$here" --null --files-from=- --ignore-failed-read -cf - |
        tar -C "$src" -xf -
else
    tar -C "$here" --exclude-vcs --exclude=./.venv --exclude=./dist --exclude=./build \
        --exclude=./demo --exclude=./bench/results --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis -cf - . |
        tar -C "$src" -xf -
fi

# Only what the build needs from the caller: DEB_BUILD_OPTIONS (nocheck, parallel=N).
system() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$tmp" TMPDIR="$tmp" LC_ALL=C.UTF-8 \
        ${DEB_BUILD_OPTIONS+"DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS"} "$@"
}

case $kind in
deb)
    (cd "$src" && system dpkg-buildpackage -us -uc -b)
    rm -f "$out"/pysvscan_*.deb "$out"/pysvscan_*.changes "$out"/pysvscan_*.buildinfo
    cp "$tmp"/pysvscan_*.deb "$tmp"/pysvscan_*.changes "$tmp"/pysvscan_*.buildinfo "$out"/
    if $lint; then
        system lintian -I --pedantic --fail-on error,warning "$tmp"/pysvscan_*.changes
    fi
    ;;
rpm)
    top="$tmp/rpmbuild"
    mkdir -p "$top/SOURCES"
    tar -C "$tmp" -czf "$top/SOURCES/pysvscan-$version.tar.gz" "pysvscan-$version"
    # --nodeps: Debian's rpm database knows none of the BuildRequires (they are Debian
    # packages here; build.sh's callers install them with apt).
    system rpmbuild -bb --nodeps --define "_topdir $top" \
        --load="$src/packaging/rpm-shim.macros" "$src/packaging/pysvscan.spec"
    rm -f "$out"/pysvscan-*.noarch.rpm
    cp "$top"/RPMS/noarch/pysvscan-*.noarch.rpm "$out"/
    if $lint; then
        system rpmlint --strict -c "$src/packaging/rpmlint.toml" "$src/packaging/pysvscan.spec" \
            "$top"/RPMS/noarch/pysvscan-*.noarch.rpm
    fi
    ;;
esac
