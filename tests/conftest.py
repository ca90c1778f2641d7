"""Shared fixtures: both trees of programs, processes that are always cleaned up, polling.

Every program is called by absolute path: pysvscan's from the interpreter's own bin
directory (the venv, or /usr/bin inside a package build), the C reference from
Debian's daemontools package in /usr/bin. Nothing is ever looked up by name on PATH,
and nothing is ever killed by name: each test kills the process groups it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

from pysvscan import fifo, procinfo
from pysvscan.execenv import reset_libc_internal_signals

# Under `make test`, GNU make's posix_spawn leaves signals 32 and 33 ignored in pytest
# and in everything it starts, the C reference included; the tests compare signal
# states, so they start from the clean state a shell or systemd would give.
reset_libc_internal_signals()

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


def client(tree: Tree, program: str, service: Path, *args: str
           ) -> subprocess.CompletedProcess[bytes]:
    """Run svc/svok/svstat on `service` from its parent directory, so that messages
    name it as the operator typed it; never a Python traceback."""
    cp = tree.run(program, *args, service.name, cwd=service.parent)
    assert b"Traceback" not in cp.stdout + cp.stderr, (tree.name, program, cp.stderr)
    return cp


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
        self.adopted: list[int] = []

    def start(self, argv: list[str], cwd: str | os.PathLike[str] | None = None,
              stdin: int | None = subprocess.DEVNULL, stdout: int | None = None,
              stderr: int | None = None, env: dict[str, str] | None = None,
              pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
                                env=env, start_new_session=True, pass_fds=pass_fds)
        self.started.append(proc)
        return proc

    def adopt(self, pgid: int) -> None:
        """Also kill process group `pgid` at teardown: a process the test did not start
        itself, in a session of its own (the demo's svscan)."""
        self.adopted.append(pgid)

    def cleanup(self) -> None:
        for pgid in [proc.pid for proc in self.started] + self.adopted:
            try:
                os.killpg(pgid, signal.SIGKILL)
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
    return fifo.has_reader(str(service / "supervise" / "ok"))


# ---------------------------------------------------------------------------------------
# Helpers shared by test_differential.py, test_interop.py and test_bad_input.py: starting
# supervise for a tree, decoding supervise/status, masking pids and seconds in outputs.

import contextlib
import re

_PID_RE = re.compile(rb"pid \d+")
_SECONDS_RE = re.compile(rb"\d+ seconds")


def normalize(data: bytes) -> bytes:
    """Mask what differs between runs: `pid 123` → `pid P`, `4 seconds` → `S seconds`."""
    return _SECONDS_RE.sub(b"S seconds", _PID_RE.sub(b"pid P", data))


def seconds_of(data: bytes) -> list[int]:
    """Every `N seconds` figure in svstat output, in order."""
    return [int(n) for n in re.findall(rb"(\d+) seconds", data)]


def outcome(cp: subprocess.CompletedProcess[bytes]) -> tuple[int, bytes, bytes]:
    """Exit code, stdout and stderr of a finished program, pids and seconds masked."""
    return cp.returncode, normalize(cp.stdout), normalize(cp.stderr)


@dataclass(frozen=True)
class Decoded:
    """supervise/status as a test compares it: no timestamp, pid reduced to zero/non-zero."""

    length: int
    running: bool
    paused: int
    want: int

    def __str__(self) -> str:
        want = chr(self.want) if self.want else "0"
        return (f"<{self.length} bytes, {'up' if self.running else 'down'}, "
                f"paused={self.paused}, want={want}>")


def decode_status(service: Path) -> Decoded | None:
    """Decoded supervise/status, or None while it cannot be read."""
    try:
        data = read_status(service)
    except OSError:
        return None
    if len(data) < 18:
        return Decoded(len(data), False, -1, -1)
    return Decoded(len(data), int.from_bytes(data[12:16], "little") != 0, data[16], data[17])


def status_version(service: Path) -> tuple[int, int] | None:
    """(inode, ctime) of supervise/status. supervise rewrites it by rename(), so a single
    new write always shows as a new inode; None while there is no status file."""
    try:
        st = (service / "supervise" / "status").stat()
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns


def wait_status(service: Path, *, running: bool, paused: int, want: int,
                after: tuple[int, int] | None = None, timeout: float = 10.0,
                label: str = "") -> Decoded:
    """Poll until supervise/status decodes to (running, paused, want) and, when `after`
    is given, has been rewritten since that status_version()."""
    expected = Decoded(18, running, paused, want)

    def matches() -> Decoded | None:
        got = decode_status(service)
        if got != expected:
            return None
        if after is not None and status_version(service) == after:
            return None
        return got

    try:
        return wait_until(matches, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{label}: status never became {expected}"
                             f"{' (rewritten)' if after else ''}; last seen "
                             f"{decode_status(service)}") from None


def start_supervise(procs: Processes, tree: Tree, service: Path, *,
                    stderr_file: Path | None = None, umask: int | None = None,
                    prefix: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """`supervise NAME` run from the service's parent (messages then say NAME).

    stderr goes to `stderr_file` when given (else it is inherited); `umask` is applied
    by a /bin/sh that execs supervise; `prefix` is prepended (e.g. setpriv ...).
    """
    argv = [*prefix, tree.bin("supervise"), service.name]
    if umask is not None:
        argv = ["/bin/sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *argv]
    if stderr_file is None:
        return procs.start(argv, cwd=service.parent)
    with open(stderr_file, "wb") as err:
        return procs.start(argv, cwd=service.parent, stderr=err.fileno())


@contextlib.contextmanager
def ok_reader(service: Path) -> Iterator[int]:
    """Hold supervise/ok open for reading, as a live supervise would (svok/svstat then
    believe supervise runs); creates the FIFO if needed."""
    path = service / "supervise" / "ok"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.mkfifo(path, 0o600)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield fd
    finally:
        os.close(fd)


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, T, Z ...), None if there is no such pid."""
    fields = procinfo.stat_fields(pid)
    return fields[0] if fields else None


alive = procinfo.alive  # a process that exists and has not died (zombies count as dead)


def stopped_state(pid: int, expect_stopped: bool, timeout: float = 5.0) -> bool | None:
    """Is the service stopped (state T)? supervise writes status *before* it sends
    SIGSTOP/SIGCONT, so give the process up to `timeout` s to reach the state the status
    announces; return what it finally is (None if there is no such process)."""
    try:
        wait_until(lambda: (proc_state(pid) == "T") == expect_stopped, timeout=timeout)
    except AssertionError:
        pass
    state = proc_state(pid)
    return None if state is None else state == "T"


def supervise_once(procs: Processes, argv: list[str], cwd: Path,
                   timeout: float = 5.0) -> tuple[int | str, bytes, bytes]:
    """Run a supervise that is expected to exit at once: (exit code, stdout, stderr).
    Started through `procs`, so if it wrongly keeps running, it and anything it started
    are killed at teardown; the exit code then reads 'still running'."""
    proc = procs.start(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return "still running", out, err
    return proc.returncode, out, err


# -- a real journald (tests/journald_ns.sh): the system programs it takes --------------------

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
JOURNALD = Path("/lib/systemd/systemd-journald")
JOURNAL_TOOLS = {"unshare": "util-linux", "nsenter": "util-linux", "mount": "mount",
                 "stat": "coreutils", "journalctl": "systemd", "systemd-cat": "systemd"}
SYSTEM_BIN: dict[str, str] = {}  # absolute paths, once require_journald() found them


def require_journald(who: str) -> None:
    """Fail (not skip), naming the Debian packages to install, unless a private
    journald can be run: root, systemd-journald, and the tools around it."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root privileges (mount namespaces and tmpfs mounts)")
    for tool, package in JOURNAL_TOOLS.items():
        found = shutil.which(tool, path=SYSTEM_PATH)
        if found is None:
            missing.append(f"{tool} (Debian package {package})")
        else:
            SYSTEM_BIN[tool] = found
    if not os.access(JOURNALD, os.X_OK):
        missing.append(f"{JOURNALD} (Debian package systemd)")
    if missing:
        pytest.fail(f"{who} need a real systemd-journald in a private mount namespace; "
                    "missing: " + ", ".join(missing) + ". Install the Debian packages "
                    "systemd and util-linux, and run as root.", pytrace=False)


def read_history(service: Path) -> dict[str, str]:
    """supervise/history's KEY=VALUE lines ({} before the service first ended)."""
    try:
        text = (service / "supervise" / "history").read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines())


def lock_holder(service: Path) -> int:
    """The supervise of `service`, found by pid: the process holding supervise/lock."""
    lock = os.path.realpath(service / "supervise" / "lock")
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == lock
                   for fd in os.listdir(f"/proc/{entry}/fd")):
                return int(entry)
        except OSError:
            continue
    return 0
