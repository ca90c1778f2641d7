"""The Debian package and the RPM (issue 6; systemd.md §5): both build here, lint clean,
and install the same files.

The .deb and the RPM are built once per session by packaging/build.sh, exactly as
`make deb` and `make rpm` build them, into a temporary directory. They are only ever
inspected (dpkg-deb, rpm -qp, lintian, rpmlint) or unpacked into scratch roots, never
installed on this machine: the package conflicts with the daemontools package whose
/usr/bin programs the rest of the suite uses as its reference.

Needs the Debian packages in the Makefile's PACKAGING_DEBS (`make test` installs
them) and root (for `rpm -i --root`); without them these tests fail, saying so.
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "packaging" / "build.sh"
SPEC = ROOT / "packaging" / "pysvscan.spec"
RPMLINT_CONFIG = ROOT / "packaging" / "rpmlint.toml"
OVERRIDES = ROOT / "debian" / "pysvscan.lintian-overrides"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# Every program: the classic 17 (pyproject's script-files) and the pysvscan command.
PROGRAMS = sorted([Path(s).name for s in PYPROJECT["tool"]["setuptools"]["script-files"]]
                  + list(PYPROJECT["project"]["scripts"]))
CLASSIC = [p for p in PROGRAMS if p != "pysvscan"]
CONFLICTS = {"daemontools", "daemontools-run", "runit-run"}
# The shell completion of `pysvscan` (issue 7): committed file -> where both packages
# install it, under the name each shell looks for.
COMPLETION = {
    "completion/pysvscan.bash": "/usr/share/bash-completion/completions/pysvscan",
    "completion/_pysvscan": "/usr/share/zsh/vendor-completions/_pysvscan",
}


def system_env(home: Path) -> dict[str, str]:
    return {"PATH": SYSTEM_PATH, "HOME": str(home), "LC_ALL": "C.UTF-8"}


def packaging_debs() -> list[str]:
    """PACKAGING_DEBS from the Makefile: the single list of what these tests need."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    found = re.search(r"^PACKAGING_DEBS\s*:=(.*)$", text, flags=re.M)
    assert found, "the Makefile defines PACKAGING_DEBS"
    return found.group(1).split()


def require_tools() -> None:
    missing = []
    for package in packaging_debs():
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                                capture_output=True, text=True).stdout
        if not status.endswith("ok installed"):
            missing.append(package)
    if missing:
        pytest.fail("the packaging tests need the Debian packages " + " ".join(missing)
                    + " (`make test` installs them)", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the packaging tests need root (rpm -i --root into a scratch root)",
                    pytrace=False)


@dataclass(frozen=True)
class Built:
    files: list[Path]
    log: str
    seconds: float

    def one(self, pattern: str) -> Path:
        matches = [f for f in self.files if f.match(pattern)]
        assert len(matches) == 1, (pattern, self.files)
        return matches[0]


def build(kind: str, out: Path) -> Built:
    require_tools()
    started = time.monotonic()
    cp = subprocess.run(["sh", str(BUILD), kind, str(out)], capture_output=True, text=True,
                        env=system_env(out), timeout=600)
    seconds = time.monotonic() - started
    log = cp.stdout + cp.stderr
    assert cp.returncode == 0, f"packaging/build.sh {kind} failed:\n{log[-6000:]}"
    return Built(sorted(out.iterdir()), log, seconds)


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build("deb", tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="session")
def rpm(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build("rpm", tmp_path_factory.mktemp("rpm"))


def run(*argv: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          env=system_env(home), timeout=300)


# -- versions ---------------------------------------------------------------------------

def test_one_version_everywhere() -> None:
    changelog = (ROOT / "debian" / "changelog").read_text().splitlines()[0]
    assert re.match(rf"pysvscan \({re.escape(VERSION)}-\d+\) ", changelog), changelog
    spec_version = re.search(r"^Version:\s*(\S+)$", SPEC.read_text(), flags=re.M)
    assert spec_version and spec_version.group(1) == VERSION


# -- the Debian package -----------------------------------------------------------------

def test_deb_build_ran_the_root_free_tests(deb: Built) -> None:
    """dh_auto_test ran tests/test_primitives.py under the system python3, and all passed."""
    assert re.search(r"python3\.\d+ -m pytest -p no:cacheprovider tests/test_primitives\.py",
                     deb.log)
    summary = re.findall(r"=+ (.*) in [\d.]+s =+", deb.log)
    assert len(summary) == 1 and re.fullmatch(r"\d+ passed", summary[0]), summary
    assert [f.name for f in deb.files] == [
        f"pysvscan_{VERSION}-1_all.deb", f"pysvscan_{VERSION}-1_amd64.buildinfo",
        f"pysvscan_{VERSION}-1_amd64.changes"]


def test_lintian_finds_no_error_and_no_warning(deb: Built, tmp_path: Path) -> None:
    cp = run("lintian", "-I", "--pedantic", "--tag-display-limit", "0",
             deb.one("*.changes"), home=tmp_path)
    tags = [ln for ln in cp.stdout.splitlines() if re.match(r"[A-Z]: ", ln)]
    assert [t for t in tags if t[0] in "EW"] == []
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # Overrides that no longer match anything show up as I: tags.
    assert [t for t in tags if "unused-override" in t or "mismatched-override" in t] == []


def test_every_lintian_override_is_explained() -> None:
    """Each override line comes right after a comment saying why."""
    lines = OVERRIDES.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("# "), f"no comment above: {line}"


def test_deb_control_fields(deb: Built, tmp_path: Path) -> None:
    package = deb.one("*.deb")

    def field(name: str) -> str:
        cp = run("dpkg-deb", "-f", package, name, home=tmp_path)
        assert cp.returncode == 0, cp.stderr
        return cp.stdout.strip()

    def names(value: str) -> set[str]:
        return {re.split(r"[\s(]", part.strip())[0] for part in value.split(",")}

    assert field("Package") == "pysvscan"
    assert field("Version") == f"{VERSION}-1"
    assert field("Architecture") == "all"
    assert {"python3-click", "python3-sdnotify", "python3-systemd",
            "python3:any"} <= names(field("Depends"))
    assert names(field("Conflicts")) == CONFLICTS
    assert names(field("Replaces")) == CONFLICTS
    # prometheus_client is for `pysvscan metrics` alone: recommended, not required.
    assert names(field("Recommends")) == {"python3-prometheus-client"}
    assert "python3-prometheus-client" not in names(field("Depends"))


@dataclass(frozen=True)
class Entry:
    mode: str  # as ls -l shows it: -rwxr-xr-x, drwxr-xr-x
    owner: str


def deb_listing(package: Path, home: Path) -> dict[str, Entry]:
    """dpkg-deb -c: absolute path -> mode and owner."""
    cp = run("dpkg-deb", "-c", package, home=home)
    assert cp.returncode == 0, cp.stderr
    found = {}
    for line in cp.stdout.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        found["/" + path.removeprefix("./").rstrip("/")] = Entry(mode, owner)
    return found


def test_deb_contents(deb: Built, tmp_path: Path) -> None:
    files = deb_listing(deb.one("*.deb"), tmp_path)
    assert {e.owner for e in files.values()} == {"root/root"}
    for program in PROGRAMS:
        assert files.get(f"/usr/bin/{program}") == Entry("-rwxr-xr-x", "root/root"), program
    assert sorted(p.removeprefix("/usr/bin/") for p in files
                  if p.startswith("/usr/bin/")) == PROGRAMS
    assert "/lib/systemd/system/pysvscan.service" in files
    assert "/lib/systemd/system/pysvscan-supervise@.service" in files
    assert "/usr/lib/tmpfiles.d/pysvscan.conf" in files
    for program in CLASSIC:
        assert f"/usr/share/man/man8/{program}.8.gz" in files, program
    assert files.get("/usr/share/man/man1/pysvscan.1.gz") == Entry("-rw-r--r--", "root/root")
    for path in COMPLETION.values():
        assert files.get(path) == Entry("-rw-r--r--", "root/root"), path
    # /etc/service: an empty directory, and the only thing in /etc (no conffiles).
    assert files["/etc/service"].mode.startswith("d")
    assert [p for p in files if p.startswith("/etc")] == ["/etc", "/etc/service"]
    assert "/usr/lib/python3/dist-packages/pysvscan/cli.py" in files


def test_deb_maintainer_scripts(deb: Built, tmp_path: Path) -> None:
    """Generated by debhelper: tmpfiles applied, unit enabled and started on install,
    never restarted on upgrade (--no-restart-on-upgrade), stopped on removal."""
    control = tmp_path / "control"
    cp = run("dpkg-deb", "-e", deb.one("*.deb"), control, home=tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert not (control / "conffiles").exists()
    postinst = (control / "postinst").read_text()
    assert "systemd-tmpfiles ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} --create pysvscan.conf" \
        in postinst
    assert "deb-systemd-helper enable 'pysvscan.service'" in postinst
    assert "deb-systemd-invoke start 'pysvscan.service'" in postinst
    assert "restart" not in postinst
    assert "deb-systemd-invoke stop 'pysvscan.service'" in (control / "prerm").read_text()
    assert "deb-systemd-helper purge 'pysvscan.service'" in (control / "postrm").read_text()


# -- the RPM ----------------------------------------------------------------------------

def test_rpmlint_finds_nothing_beyond_the_documented(rpm: Built, tmp_path: Path) -> None:
    cp = run("rpmlint", "-c", RPMLINT_CONFIG, SPEC, rpm.one("*.noarch.rpm"), home=tmp_path)
    assert re.search(r"1 packages and 1 specfiles checked; 0 errors, 0 warnings",
                     cp.stdout), cp.stdout + cp.stderr
    assert cp.returncode == 0


def test_rpm_metadata(rpm: Built, tmp_path: Path) -> None:
    package = rpm.one(f"pysvscan-{VERSION}-1*.noarch.rpm")

    def query(*args: str) -> str:
        cp = run("rpm", "-qp", *args, package, home=tmp_path)
        assert cp.returncode == 0, cp.stderr
        return cp.stdout

    assert query("--qf", "%{NAME} %{VERSION} %{ARCH}") == f"pysvscan {VERSION} noarch"
    assert query("--conflicts").split() == ["daemontools"]
    assert "python3dist(systemd-python)" in query("--requires").split()
    recommends = query("--recommends").splitlines()
    assert recommends == ["python3dist(prometheus-client) >= 0.16"], recommends
    scripts = query("--scripts")
    assert "systemctl --no-reload preset pysvscan.service" in scripts
    assert "systemctl --no-reload disable --now pysvscan.service" in scripts
    assert "systemd-tmpfiles --create pysvscan.conf" in scripts
    assert "restart" not in scripts  # %systemd_postun, not ..._with_restart


# -- the same files in both -------------------------------------------------------------

def tree(root: Path) -> dict[str, tuple[str, bytes | None]]:
    """Absolute path -> (kind and permission bits, content) of everything under root.

    Compressed man pages and docs are compared uncompressed, under their plain name."""
    found: dict[str, tuple[str, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        name = "/" + str(path.relative_to(root))
        st = path.lstat()
        kind = stat.filemode(st.st_mode)
        if stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
            if name.endswith(".gz"):
                name, data = name.removesuffix(".gz"), gzip.decompress(data)
            found[name] = (kind, data)
        else:
            found[name] = (kind, None)
    return found


def ignored(path: str) -> bool:
    """What differs by design between the two packages:
    * bytecode: the RPM ships it, as Fedora's packages do; the .deb compiles it in its
      postinst (py3compile), as Debian's do;
    * /usr/share/doc: each distribution's own layout (changelog.Debian, copyright;
      the RPM's %doc), compared separately below;
    * /usr/share/lintian: the .deb's lintian overrides;
    * the RPM database that rpm -i --root writes into the scratch root;
    * RECORD lists the bytecode files and the hashes of the installed files."""
    return ("/__pycache__" in path
            or path.startswith(("/usr/share/doc", "/usr/share/lintian", "/var"))
            or path.endswith(".dist-info/RECORD"))


def test_rpm_payload_installs_the_same_files_as_the_deb(deb: Built, rpm: Built,
                                                          tmp_path: Path) -> None:
    deb_root, rpm_root = tmp_path / "deb-root", tmp_path / "rpm-root"
    cp = run("dpkg-deb", "-x", deb.one("*.deb"), deb_root, home=tmp_path)
    assert cp.returncode == 0, cp.stderr
    rpm_root.mkdir()
    cp = run("rpm", "-i", "--nodeps", "--noscripts", "--notriggers", "--root", rpm_root,
             "--dbpath", "/var/lib/rpm", rpm.one("*.noarch.rpm"), home=tmp_path)
    assert cp.returncode == 0, cp.stderr
    from_deb = {k: v for k, v in tree(deb_root).items() if not ignored(k)}
    from_rpm = {k: v for k, v in tree(rpm_root).items() if not ignored(k)}
    assert sorted(set(from_rpm) - set(from_deb)) == []
    assert sorted(set(from_deb) - set(from_rpm)) == []
    assert [k for k in from_deb if from_deb[k] != from_rpm[k]] == []
    # Both document the package with the README, each in its own way.
    assert (deb_root / "usr/share/doc/pysvscan/README.md.gz").is_file()
    assert (rpm_root / f"usr/share/doc/pysvscan-{VERSION}/README.md").is_file() or \
        (rpm_root / "usr/share/doc/pysvscan/README.md").is_file()
    # One copy of the unit and of the tmpfiles entry: the files in systemd-units/.
    unit = (ROOT / "systemd-units" / "pysvscan.service").read_bytes()
    tmpfiles = (ROOT / "systemd-units" / "pysvscan.conf").read_bytes()
    assert from_deb["/lib/systemd/system/pysvscan.service"][1] == unit
    assert from_deb["/usr/lib/tmpfiles.d/pysvscan.conf"][1] == tmpfiles
    # The committed completion scripts and pysvscan(1), as they are in the tree.
    for committed, path in COMPLETION.items():
        assert from_deb[path] == ("-rw-r--r--", (ROOT / committed).read_bytes()), path
    assert from_deb["/usr/share/man/man1/pysvscan.1"][1] == \
        (ROOT / "man" / "pysvscan.1").read_bytes()
    # The programs start the packaged Python, wherever they were built.
    for program in PROGRAMS:
        first = (from_deb[f"/usr/bin/{program}"][1] or b"").split(b"\n", 1)[0]
        assert first in (b"#!/usr/bin/python3", b"#!/bin/sh"), (program, first)

