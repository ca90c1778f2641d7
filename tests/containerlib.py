"""systemd booted in a Debian 12 container, driven from pytest (systemd.md §6.4).

tests/container.sh does the work (cached rootfs, boot, exec, halt); this wraps it for
tests and installs pysvscan into the container the way an operator would from a
working tree: a wheel built from the tree, installed with the container's own pip and
Python, the unit and tmpfiles entry copied from systemd-units/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
SCRIPT = HERE / "container.sh"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# The programs a package puts in /usr/bin (the unit names /usr/bin/svscan).
PROGRAMS = sorted(p.name for p in (TREE / "scripts").iterdir()) + ["pysvscan"]

# A numbered line every millisecond; on SIGTERM one last line that names the count.
# With COUNTER_LOG_RUN as its log/run, counter_runs() then shows whether the logger
# outlived the service and kept every line.
COUNTER_RUN = """#!/usr/bin/python3
import signal, sys, time
n = 0
def term(*_):
    sys.stdout.write(f"last {n}\\n")
    sys.stdout.flush()
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    n += 1
    sys.stdout.write(f"line {n}\\n")
    sys.stdout.flush()
    time.sleep(0.001)
"""
COUNTER_LOG_RUN = """#!/bin/sh
exec multilog s999999 ./main
"""


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    if "PYSVSCAN_ROOTFS" in os.environ:
        env["PYSVSCAN_ROOTFS"] = os.environ["PYSVSCAN_ROOTFS"]
    return subprocess.run(["sh", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def require_container() -> None:
    """Fail (not skip) with the reason when systemd cannot be booted in a container."""
    if os.geteuid() != 0:
        pytest.fail("the container tests need root (mount namespaces, systemd-nspawn)",
                    pytrace=False)
    started = time.monotonic()
    result = _script("rootfs", timeout=900)
    if result.returncode != 0:
        pytest.fail(f"could not build the container rootfs:\n{result.stderr}", pytrace=False)
    elapsed = time.monotonic() - started
    if elapsed > 5:
        print(f"\ncontainer rootfs built in {elapsed:.0f} s", file=sys.stderr)


class Container:
    """One booted container; `run` executes a command inside it as root."""

    def __init__(self, rundir: Path) -> None:
        self.rundir = rundir
        self.root = rundir / "root"

    @classmethod
    def boot(cls, rundir: Path, *nspawn_args: str) -> "Container":
        result = _script("boot", str(rundir), "--", *nspawn_args, timeout=120)
        if result.returncode != 0:
            _script("halt", str(rundir), timeout=60)
            raise AssertionError(f"the container did not boot:\n{result.stderr}")
        return cls(rundir)

    def halt(self) -> None:
        result = _script("halt", str(self.rundir), timeout=90)
        assert result.returncode == 0, result.stderr

    def run(self, *command: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["sh", str(SCRIPT), "exec", str(self.rundir), *command],
                                input=input, capture_output=True, text=True,
                                timeout=timeout, env={"PATH": SYSTEM_PATH})
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def sh(self, script: str, check: bool = True, timeout: float = 60) -> str:
        return self.run("sh", "-c", script, check=check, timeout=timeout).stdout

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Create a file inside the container (its root is a directory on the host)."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def read(self, path: str) -> str:
        return (self.root / path.lstrip("/")).read_text()

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()

    def install_pysvscan(self) -> None:
        """Install pysvscan from the working tree with the container's own pip, Python
        and setuptools, and lay the programs, unit and tmpfiles entry where a package
        puts them."""
        src = self.root / "usr/local/src/pysvscan"
        src.mkdir(parents=True)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(TREE / name, src / name)
        for name in ("pysvscan", "scripts"):
            shutil.copytree(TREE / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        self.run("python3", "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                 "--no-build-isolation", "--break-system-packages",
                 "--root-user-action=ignore", "--disable-pip-version-check",
                 "/usr/local/src/pysvscan", timeout=300)
        # Debian's pip puts programs in /usr/local/bin; the unit uses /usr/bin.
        for program in PROGRAMS:
            link = self.root / "usr/bin" / program
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(f"/usr/local/bin/{program}")
        for unit in (TREE / "systemd-units").glob("*.service"):
            self.write(f"/etc/systemd/system/{unit.name}", unit.read_text())
        self.write("/etc/tmpfiles.d/pysvscan.conf",
                   (TREE / "systemd-units/pysvscan.conf").read_text())
        (self.root / "etc/service").mkdir(exist_ok=True)
        self.run("systemd-tmpfiles", "--create", "/etc/tmpfiles.d/pysvscan.conf")
        self.run("systemctl", "daemon-reload")
        self.run("python3", "-c", "import pysvscan.commands.svscan")

    def install_deb(self, deb: Path, reinstall: bool = False) -> str:
        """Install a built .deb the way an operator does, `apt-get install ./NAME.deb`
        (`--reinstall` for an upgrade to the same version), from /var/tmp inside the
        container (not /tmp: a tmpfs there). Returns apt's output.

        The container need not have a network. Its rootfs already holds every
        dependency (container.sh's PACKAGES), and apt resolves a local .deb against
        dpkg's status alone, even with empty apt lists (tried). So nothing may be
        downloaded, and apt must install this package and nothing else: a dependency
        missing from the rootfs fails here, saying so, rather than being fetched
        where there happens to be a network. (`--no-download` cannot enforce this:
        apt then rejects the local .deb with "Pathname to install is not absolute".
        dpkg -i, the fallback, was not needed.)"""
        shutil.copy2(deb, self.root / "var/tmp" / deb.name)
        command = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
                   "-q", "-o", "Dpkg::Use-Pty=0"]
        if reinstall:
            command.append("--reinstall")
        result = self.run("sh", "-c", 'cd /var/tmp && exec "$@"', "sh", *command,
                          f"./{deb.name}", timeout=300)
        output = result.stdout + result.stderr
        alone = ("0 upgraded, 0 newly installed, 1 reinstalled, 0 to remove" if reinstall
                 else "0 upgraded, 1 newly installed, 0 to remove")
        assert alone in output, ("apt installed more than the package (a dependency "
                                 f"missing from container.sh's PACKAGES?):\n{output}")
        return output


def svstat(box: Container, name: str) -> str:
    return box.run("svstat", f"/etc/service/{name}").stdout.strip()


def journal(box: Container, *match: str) -> list[str]:
    return box.run("journalctl", "--no-pager", "-o", "cat", *match).stdout.splitlines()


def up_pid(box: Container, name: str) -> int:
    """The pid svstat shows for /etc/service/NAME when it is up, else 0."""
    found = re.search(r": up \(pid (\d+)\)", svstat(box, name))
    return int(found.group(1)) if found else 0


def assert_one_whole_counter_run(box: Container, service: str = "/srv/counter") -> int:
    """After a stop: the counter ran once, every line from 1 on is in its log, and so
    are its last words (`last N`), which only a logger that outlived it could take.
    Returns N."""
    runs = counter_runs(box, service)
    assert len(runs) == 1, [run[:2] + run[-2:] for run in runs]
    lines = runs[0]
    last = re.fullmatch(r"last (\d+)", lines[-1])
    assert last, lines[-3:]
    count = int(last.group(1))
    assert lines[:-1] == [f"line {n}" for n in range(1, count + 1)]
    return count


def counter_runs(box: Container, service: str = "/srv/counter") -> list[list[str]]:
    """The counter's log, archives first, split into one list per run of the service."""
    main = box.root / service.lstrip("/") / "log/main"
    text = "".join(p.read_text() for p in sorted(main.glob("@*.s")))
    text += (main / "current").read_text()
    runs: list[list[str]] = []
    for line in text.splitlines():
        if line == "line 1" or not runs:
            runs.append([])
        runs[-1].append(line)
    return runs
