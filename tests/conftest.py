"""Shared fixtures: both trees of programs, processes that are always cleaned up, polling.

Every program is called by absolute path: pysvscan's from the interpreter's own bin
directory (the venv, or /usr/bin inside a package build), the C reference from
Debian's daemontools package in /usr/bin. Nothing is ever looked up by name on PATH,
and nothing is ever killed by name: each test kills the process groups it started.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

OUR_BIN = Path(os.environ.get("PYSVSCAN_BIN", os.path.dirname(sys.executable)))
C_BIN = Path(os.environ.get("DAEMONTOOLS_BIN", "/usr/bin"))
T = TypeVar("T")


def is_c_program(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


@dataclass(frozen=True)
class Tree:
    """One implementation of the daemontools programs."""

    name: str
    bindir: Path

    def bin(self, program: str) -> str:
        return str(self.bindir / program)

    def run(self, program: str, *args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
            timeout: float = 10, env: dict[str, str] | None = None,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run a program to completion; output captured as bytes."""
        return subprocess.run([self.bin(program), *map(str, args)], cwd=cwd, env=env,
                              input=stdin, capture_output=True, timeout=timeout)


PY = Tree("py", OUR_BIN)
C = Tree("c", C_BIN)


def require_c_reference() -> None:
    """The differential tests need the C programs; `make test` installs them."""
    if not is_c_program(C_BIN / "svstat"):
        pytest.fail(f"the C daemontools reference is not installed in {C_BIN} "
                    "(run `make test`, which installs Debian's daemontools package)")


@pytest.fixture(params=[PY, C], ids=lambda t: t.name)
def tree(request: pytest.FixtureRequest) -> Tree:
    """Run the test once with pysvscan's programs and once with the C reference."""
    if request.param is C:
        require_c_reference()
    return request.param


@pytest.fixture
def c_tree() -> Tree:
    require_c_reference()
    return C


@pytest.fixture
def py_tree() -> Tree:
    return PY


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class Processes:
    """Starts processes in new sessions and kills each whole group at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], cwd: str | os.PathLike[str] | None = None,
              stdin: int | None = subprocess.DEVNULL, stdout: int | None = None,
              stderr: int | None = None, env: dict[str, str] | None = None,
              pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
                                env=env, start_new_session=True, pass_fds=pass_fds)
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        p.cleanup()


def make_service(root: Path, name: str, script: str, *, down: bool = False,
                 log: str | None = None) -> Path:
    """A service directory with an executable `run` (and optionally `down`, log/run)."""
    d = root / name
    d.mkdir(parents=True)
    write_script(d / "run", script)
    if down:
        (d / "down").write_bytes(b"")
    if log is not None:
        (d / "log").mkdir()
        write_script(d / "log" / "run", log)
    return d


def write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def read_status(service: Path) -> bytes:
    return (service / "supervise" / "status").read_bytes()


def status_pid(service: Path) -> int:
    """The pid in supervise/status (bytes 12-15, little-endian), 0 if unreadable."""
    try:
        data = read_status(service)
    except OSError:
        return 0
    return int.from_bytes(data[12:16], "little") if len(data) >= 18 else 0


def supervise_ready(service: Path) -> bool:
    """svok's test: someone holds supervise/ok open for reading."""
    try:
        os.close(os.open(service / "supervise" / "ok", os.O_WRONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False
