"""Process plumbing shared by the benchmarks: build service trees, start one svscan per
implementation in its own session, read supervise/status and /proc, and always clean up.

Everything the harness starts lives in one process group (svscan's, created with
start_new_session), so cleanup is a single killpg of a pid we own: other svscan and
supervise processes on this machine are never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from pysvscan.execenv import reap_exited

ROOT = Path(__file__).resolve().parent.parent
PATH_ENV = "/usr/bin:/bin"  # the C svscan execs `supervise` through PATH: the C one
TAI_OFFSET = 4611686018427387914  # 2^62 + 10: TAI64 label of the Unix epoch
PR_SET_CHILD_SUBREAPER = 36
SLEEP_RUN = "#!/bin/sh\nexec sleep 1000000\n"


@dataclass(frozen=True)
class Impl:
    """One implementation under test: where its programs are."""

    name: str
    bindir: Path

    def tool(self, prog: str) -> str:
        return str(self.bindir / prog)


C_IMPL = Impl("C", Path("/usr/bin"))
PY_IMPL = Impl("pysvscan", ROOT / ".venv" / "bin")
IMPLS = (C_IMPL, PY_IMPL)


def log(msg: str) -> None:
    """Progress on stderr, so stdout carries only the report."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def clean_env() -> dict[str, str]:
    """The same small environment for both trees, so services see identical conditions."""
    return {"PATH": PATH_ENV, "LANG": "C.UTF-8"}


def become_subreaper() -> None:
    """Orphans of our trees (supervise, services after killpg) come back to us to reap,
    so a benchmark never starts while the previous tree is still dying."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


# -- /proc ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    cpu_ticks: int  # utime + stime + cutime + cstime: reaped children stay counted


def read_stat(pid: int) -> ProcStat | None:
    """Fields of /proc/PID/stat; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    head, _, rest = data.rpartition(b")")
    comm = head.partition(b"(")[2].decode(errors="replace")
    f = rest.split()
    ticks = sum(int(x) for x in f[11:15])
    return ProcStat(pid, comm, f[0].decode(), int(f[1]), int(f[2]), int(f[3]), ticks)


def all_procs() -> list[ProcStat]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := read_stat(int(entry))) is not None:
            out.append(st)
    return out


def session_procs(sid: int) -> list[ProcStat]:
    """Every live (non-zombie) process in session `sid`: the whole tree we started."""
    return [p for p in all_procs() if p.session == sid and p.state != "Z"]


def runtime_ns(pid: int) -> int:
    """On-CPU time from /proc/PID/schedstat, in ns: finer than the 10 ms ticks of stat."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def smaps_rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in kB by key ('Pss', 'Private_Dirty', ...); {} if gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0])
    except OSError:
        pass
    return out


# -- running the tools under test ------------------------------------------------------

@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Bound a blocking wait with SIGALRM (raises TimeoutError)."""
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer within {seconds:g} s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_tool(argv: list[str], capture: bool = False, limit: float = 30.0,
             cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """(wall seconds, result) of one program run in the clean environment.

    Never subprocess.run(timeout=...): its wait polls waitpid with sleeps of 0.5, 1, 2,
    4, 8 ms..., which rounds a 10 ms process up to ~15.5 ms and a 0.5 ms one to ~1.2 ms.
    An alarm bounds the wait instead, and run() kills the child if it fires.
    """
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    with alarm(limit):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=clean_env(), stdout=out, stderr=out, cwd=cwd)
        return time.perf_counter() - t0, done


GNU_TIME = "/usr/bin/time"
# Fallback when GNU time is not installed: a bare interpreter that fork()s the program
# and writes its rusage. Its own ~5 MB image is copied into the child before exec and
# so becomes a floor under the figure (exact for anything bigger, e.g. a Python tool).
_PEAK_FALLBACK = """\
import os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(f"{ru.ru_maxrss} {os.waitstatus_to_exitcode(status)}\\n")
"""


@dataclass(frozen=True)
class PeakRun:
    seconds: float   # wall time, spawn to exit (the wrapper's ~1 ms included, both trees)
    code: int        # the program's exit status
    maxrss_kb: int   # the program's peak resident set
    stderr: bytes


def peak_method() -> str:
    return "GNU time" if os.access(GNU_TIME, os.X_OK) else "python fork wrapper (~5 MB floor)"


def run_peak(argv: list[str], stdin: Path, cwd: Path, limit: float = 600.0) -> PeakRun:
    """Run `argv` in `cwd` reading `stdin`, stdout to /dev/null: wall time, exit status
    and peak RSS of the program alone.

    Not the harness's own wait4(): the child of a vfork (which subprocess uses) records
    its parent's RSS high-water mark at exec, so ru_maxrss would report this harness's
    size (tens of MB) instead of a 1 MB C multilog. The program is forked instead from
    a small process that reports the rusage of it alone: GNU time when installed."""
    fd, report = tempfile.mkstemp(prefix="pysvscan-bench-rss-")
    os.close(fd)
    if os.access(GNU_TIME, os.X_OK):
        wrapped = [GNU_TIME, "-o", report, "-f", "%M %x", *argv]
    else:
        wrapped = [sys.executable, "-I", "-S", "-c", _PEAK_FALLBACK, report, *argv]
    try:
        with open(stdin, "rb") as src, alarm(limit):
            t0 = time.perf_counter()
            done = subprocess.run(wrapped, env=clean_env(), cwd=cwd, stdin=src,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            seconds = time.perf_counter() - t0
        last = Path(report).read_text().strip().splitlines()[-1:]
    finally:
        os.unlink(report)
    try:
        rss, code = (int(x) for x in last[0].split())
    except (IndexError, ValueError):
        raise RuntimeError(f"{argv[0]}: no rusage report (wrapper exit {done.returncode}, "
                           f"{done.stderr[-300:]!r})") from None
    return PeakRun(seconds, code, rss, done.stderr)


# -- supervise/status -------------------------------------------------------------------

def read_status(service: Path) -> tuple[int, float] | None:
    """(pid, wall time of the last pid change) from the 18-byte status; None if absent."""
    try:
        with open(service / "supervise" / "status", "rb") as f:
            data = f.read(18)
    except OSError:
        return None
    if len(data) < 18:
        return None
    when = int.from_bytes(data[0:8], "big") - TAI_OFFSET + int.from_bytes(data[8:12], "big") / 1e9
    return int.from_bytes(data[12:16], "little"), when


def status_pid(service: Path) -> int:
    st = read_status(service)
    return st[0] if st else 0


def wait_all_up(services: list[Path], timeout: float, pause: float = 0.0) -> float:
    """Poll every status file until each shows a pid (tightly unless `pause` seconds
    between sweeps); perf_counter() when the last one was seen up."""
    left = list(services)
    deadline = time.perf_counter() + timeout
    while left:
        left = [s for s in left if not status_pid(s)]
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{len(left)} of {len(services)} services not up "
                               f"after {timeout:.0f} s")
        if pause and left:
            time.sleep(pause)
    return time.perf_counter()


def wait_up_for(service: Path, seconds: float, timeout: float = 15.0) -> int:
    """Sleep until the service has been up `seconds` (supervise pauses 1 s after each
    start and would delay a restart inside it); returns its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = read_status(service)
        if st and st[0]:
            age = time.time() - st[1]
            if age >= seconds:
                return st[0]
            time.sleep(seconds - age + 0.001)
        else:
            time.sleep(0.01)
    raise TimeoutError(f"{service} not up for {seconds} s within {timeout} s")


# -- trees ------------------------------------------------------------------------------

def make_services(scandir: Path, names: list[str], run: str | dict[str, str] = SLEEP_RUN) -> list[Path]:
    """One directory per name with an executable ./run (no log/)."""
    out = []
    for name in names:
        d = scandir / name
        d.mkdir(parents=True)
        script = run[name] if isinstance(run, dict) else run
        (d / "run").write_text(script)
        (d / "run").chmod(0o755)
        out.append(d)
    return out


@dataclass
class Tree:
    """A temp dir with a service directory and one svscan on it, in its own session."""

    impl: Impl
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pysvscan-bench-")))
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @property
    def scandir(self) -> Path:
        return self.tmp / "service"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Start svscan; returns perf_counter() taken just before the spawn."""
        self.scandir.mkdir(exist_ok=True)
        with open(self.tmp / "svscan.stderr", "wb") as err:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                [self.impl.tool("svscan"), str(self.scandir)], cwd=self.tmp,
                env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err, start_new_session=True)
        return self.started

    def stderr(self) -> str:
        try:
            return (self.tmp / "svscan.stderr").read_text(errors="replace")
        except OSError:
            return ""

    def wait_all_up(self, services: list[Path], timeout: float, pause: float = 0.0) -> float:
        """wait_all_up, with what went wrong in this tree when it times out."""
        try:
            return wait_all_up(services, timeout, pause)
        except TimeoutError as e:
            raise TimeoutError(f"{self.impl.name}: {e}; {self.describe()}") from None

    def describe(self) -> str:
        """svscan's state, its supervise count and the end of its stderr."""
        assert self.proc is not None
        rc = self.proc.poll()
        state = "running" if rc is None else f"exited {rc}"
        err = self.stderr().strip().splitlines()[-3:]
        return (f"svscan {state}, {len(self.supervise_children())} supervise children, "
                f"stderr: {' | '.join(err) or '(empty)'}")

    def supervise_children(self) -> list[ProcStat]:
        """svscan's direct children named supervise (the services are grandchildren)."""
        return [p for p in all_procs()
                if p.ppid == self.pid and p.comm == "supervise" and p.state != "Z"]

    def stop(self) -> None:
        """SIGKILL the whole process group, reap what comes back to us, remove the dir."""
        try:
            if self.proc is not None:
                kill_group(self.proc)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Tree":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kill_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """killpg our own group, then wait (bounded) until none of its processes is left."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap_orphans()
        if not [p for p in all_procs()
                if p.pgrp == proc.pid and (p.state != "Z" or p.ppid == me)]:
            return
        time.sleep(0.02)


def reap_orphans() -> None:
    """Reap whatever came back to us as subreaper (only called between benchmarks)."""
    for _ in reap_exited():
        pass
