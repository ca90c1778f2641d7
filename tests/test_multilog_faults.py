"""multilog under faults (daemontools.md §11: Writing and rotation, Error handling while
running, Directory setup at startup).

(a) kill -9 while a service writes a line every millisecond through a pipe held by a
    third process: pysvscan's multilog delivers at least once (nothing lost, nothing
    garbled, at most one line repeated per kill). The full experiment, C against
    pysvscan, is bench/log_faults.py; this is its short CI form.
(b) a full file system: the warning, the pause, input left in the pipe, and once space
    is freed everything written in order, exactly once.
(c) a crash in the middle of a rotation: recovery leaves the same directory as the C
    reference, both for a crash timed during a slow processor and for the states each
    step of a rotation leaves, prepared by hand.

Every process is started through the `procs` fixture and killed by pid; every mount
is undone in a `finally`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.util
import os
import re
import signal
import stat
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import PY, Processes, Tree, alive, wait_until

ROOT = Path(__file__).resolve().parent.parent
MOUNT = "/usr/bin/mount" if os.path.exists("/usr/bin/mount") else "/bin/mount"
UMOUNT = "/usr/bin/umount" if os.path.exists("/usr/bin/umount") else "/bin/umount"
STAMP = re.compile(r"@[0-9a-f]{24}")


def load_bench() -> object:
    """bench/log_faults.py, imported as a module (it is a standalone script)."""
    path = ROOT / "bench" / "log_faults.py"
    spec = importlib.util.spec_from_file_location("log_faults", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["log_faults"] = module
    spec.loader.exec_module(module)
    return module


log_faults = load_bench()


# -- helpers -------------------------------------------------------------------------------

def kill_and_reap(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a process we started (its group: it leads a session of its own)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid`, from /proc/*/stat."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def pipe_pending(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


def holds_for(check: Callable[[], bool], seconds: float, interval: float = 0.05) -> bool:
    """Poll `check` for `seconds`; False at the first failure. (Asserting that
    something does *not* happen needs a window; this is the only fixed wait here.)"""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            return False
        time.sleep(interval)
    return check()


Entry = tuple[str, str, int, bytes]


def listing(logdir: Path) -> list[Entry]:
    """(name with its timestamp masked, mode, size, contents) of every entry, in the
    order of the real names (for archives: the order they were made in)."""
    out = []
    for name in sorted(os.listdir(logdir)):
        st = os.lstat(logdir / name)
        out.append((STAMP.sub("@T", name), oct(stat.S_IMODE(st.st_mode)), st.st_size,
                    (logdir / name).read_bytes()))
    return out


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path` (the tests run as root); unmounted on exit.
    Not being able to mount is a failure, not a skip: the test exists to run."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.fail(f"mounting a tmpfs on {path} needs root (euid {os.geteuid()}): the full "
                    "file system test cannot run")
    cp = subprocess.run([MOUNT, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                         str(path)], capture_output=True)
    if cp.returncode != 0:
        pytest.fail(f"cannot mount a {size} tmpfs on {path} (mount exit {cp.returncode}: "
                    f"{cp.stderr.decode(errors='replace').strip()}): the full file system "
                    "test needs root and mount(8)")
    try:
        yield path
    finally:
        cp = subprocess.run([UMOUNT, str(path)], capture_output=True)
        if cp.returncode != 0:
            subprocess.run([UMOUNT, "-l", str(path)], capture_output=True)
            raise AssertionError(f"umount {path} failed: {cp.stderr.decode(errors='replace')}")


def fill(path: Path) -> int:
    """Write zeros to `path` until the file system is full; the bytes written."""
    total = 0
    chunk = b"\0" * 4096
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written = f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return total
            if not written:
                return total
            total += written


def feed(fd: int, lines: list[bytes], timeout: float) -> None:
    """Write `lines` to the non-blocking pipe `fd` as it drains, within `timeout`."""
    deadline = time.monotonic() + timeout
    for line in lines:
        while True:
            try:
                os.write(fd, line)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the pipe did not drain within {timeout} s")
                time.sleep(0.01)


# -- (a) kill -9 while a service writes through a held pipe ----------------------------------

KILLS = 15
SECONDS = 6.0
SEED = 76


def test_kill9_delivers_at_least_once(tmp_path: Path, procs: Processes) -> None:
    """15 kill -9 at random moments in 6 s of a line per millisecond: nothing lost or
    garbled or out of order, at most one repeated line per kill."""
    result = log_faults.run_experiment("py", tmp_path, kills=KILLS, seconds=SECONDS,
                                       seed=SEED, spawn=procs.start,
                                       multilog=PY.bin("multilog"))
    log = result.log
    summary = (f"seed {SEED}: {result.kills} kills, {log.logged} lines logged of "
               f"{result.written}, lost {log.lost} {log.lost_examples}, duplicated "
               f"{log.duplicated}, garbled {log.garbled} {log.garbled_examples}, "
               f"reordered {log.reordered}, stderr {result.stderr[-500:]!r}")
    # The machinery itself, checked independently of the script's own counters: every
    # multilog it started went through procs.start; all but the last died of SIGKILL,
    # the last drained the pipe and exited 0; crash recovery left .u archives.
    multilogs = [p for p in procs.started if p.args[0] == PY.bin("multilog")]
    assert len(multilogs) == KILLS + 1 == result.restarts + 1, summary
    assert [p.returncode for p in multilogs] == [-signal.SIGKILL] * KILLS + [0], summary
    assert result.kills == KILLS and not result.early_exits, summary
    assert log.archives_u >= 1, summary
    assert not result.trimmed and not log.stray, summary
    # At least once.
    assert log.lost == 0, summary
    assert log.garbled == 0, summary
    assert log.reordered == 0, summary
    assert log.duplicated <= result.kills, summary
    assert b"multilog:" not in result.stderr, summary


# -- (b) a full file system --------------------------------------------------------------------

def test_full_disk_pauses_then_writes_everything(tree: Tree, tmp_path: Path,
                                                 procs: Processes) -> None:
    """Writes to a full tmpfs fail: multilog warns `unable to write to DIR/current,
    pausing: out of disk space`, reads no more input (the writer blocks), and once
    space is freed writes every line, in order, once. Same text for the C and ours."""
    fs = tmp_path / "fs"
    warning = b"multilog: warning: unable to write to ./fs/log/current, pausing: out of disk space"
    lines = [b"line %06d\n" % n for n in range(2000)]
    with tmpfs(fs, "64k"):
        read_end, write_end = os.pipe()  # both held here, as svscan holds a log pipe
        proc = None
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
            os.set_blocking(write_end, False)
            errpath = tmp_path / "stderr"
            with open(errpath, "wb") as err:
                proc = procs.start([tree.bin("multilog"), "./fs/log"], cwd=tmp_path,
                                   stdin=read_end, stderr=err.fileno())
            current = fs / "log" / "current"
            wait_until(current.exists, timeout=10, message="multilog to set up ./fs/log")
            fill(fs / "filler")

            fed = 0
            for line in lines[:20]:
                os.write(write_end, line)
                fed += 1
            wait_until(lambda: warning in errpath.read_bytes(), timeout=10,
                       message=f"{warning!r} on stderr")
            warned = time.monotonic()
            # The writer now fills the pipe and would block: nothing is being read.
            while fed < len(lines):
                try:
                    os.write(write_end, lines[fed])
                except BlockingIOError:
                    break
                fed += 1
            assert fed < len(lines), "the pipe never filled up: multilog kept reading"
            pending = pipe_pending(read_end)
            if tree is PY:
                # ours consumes input only once it is written: all of it is still there
                assert pending == 12 * fed, (pending, fed)

            def unchanged() -> bool:
                if pipe_pending(read_end) != pending or current.stat().st_size != 0:
                    return False
                try:
                    os.write(write_end, lines[fed])
                except BlockingIOError:
                    return True
                return False
            assert holds_for(unchanged, 1.5), (
                f"while paused, input was consumed or written: pipe {pipe_pending(read_end)} "
                f"bytes (was {pending}), current {current.stat().st_size} bytes")

            os.unlink(fs / "filler")
            freed = time.monotonic()
            wait_until(lambda: current.stat().st_size > 0, timeout=12,
                       message="the retry after the space was freed")
            paused = time.monotonic() - warned
            expected = b"".join(lines)
            feed(write_end, lines[fed:], timeout=15)  # as the pipe drains
            wait_until(lambda: current.stat().st_size >= len(expected), timeout=15,
                       message="every line in current after the space was freed")
            os.close(write_end)
            write_end = -1
            assert proc.wait(timeout=10) == 0
            assert current.read_bytes() == expected
            assert stat.S_IMODE(current.stat().st_mode) == 0o744
            # One warning per failed attempt, attempts 5 s apart; the first attempt
            # after the space was freed succeeded (normally: one warning, 5 s).
            messages = errpath.read_bytes().splitlines()
            assert messages and set(messages) == {warning}, messages[:5]
            assert len(messages) <= 2 + (freed - warned) / 5, (len(messages), freed - warned)
            assert abs(paused - 5 * len(messages)) < 1.5, (
                f"{len(messages)} warnings, yet the write succeeded {paused:.1f} s after "
                "the first: the pause is not 5 s")
            assert sorted(os.listdir(fs / "log")) == ["current", "lock", "state"]
        finally:
            kill_and_reap(proc)  # before the umount: it holds files in the tmpfs
            for fd in (read_end, write_end):
                if fd >= 0:
                    os.close(fd)


# -- (c) a crash between the steps of a rotation -------------------------------------------------

FIRST = b"".join(b"line %04d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" % n for n in range(100))
SECOND = b"after 1\nafter 2\n"
SLOW = "!sleep 30; cat"


def start_and_wait_for_processor(tree: Tree, workdir: Path, procs: Processes, stdin: int,
                                 ) -> tuple[subprocess.Popen[bytes], list[int]]:
    """multilog s4096 with a processor that sleeps, until the processor runs (the sh
    child of multilog has started `sleep`). Returns multilog and the processor's pids."""
    proc = procs.start([tree.bin("multilog"), "s4096", SLOW, "./log"], cwd=workdir,
                       stdin=stdin, stderr=subprocess.DEVNULL)

    def processor() -> list[int] | None:
        kids = children(proc.pid)
        grandkids = [g for k in kids for g in children(k)]
        return kids + grandkids if kids and grandkids else None
    return proc, wait_until(processor, timeout=10, message="the processor to run")


def crash(proc: subprocess.Popen[bytes], processor: list[int]) -> None:
    """kill -9 multilog, then its processor (by pid: sh and its sleep)."""
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    for pid in reversed(processor):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in processor), timeout=10,
               message="the processor to die")


def restart(tree: Tree, workdir: Path, procs: Processes, script: list[str],
            data: bytes) -> bytes:
    """multilog SCRIPT ./log on `data` from a file, to the end; its stderr."""
    infile = workdir / "input2"
    infile.write_bytes(data)
    with open(infile, "rb") as f:
        proc = procs.start([tree.bin("multilog"), *script, "./log"], cwd=workdir,
                           stdin=f.fileno(), stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, (tree.name, err)
    return err


def crash_during_processor(tree: Tree, workdir: Path, procs: Processes
                           ) -> tuple[list[Entry], list[Entry], bytes]:
    """Rotation under way (processor sleeping), kill -9, restart on new input:
    (listing at the crash, listing after recovery, stderr of the restart)."""
    workdir.mkdir()
    infile = workdir / "input1"
    infile.write_bytes(FIRST)
    with open(infile, "rb") as f:
        proc, processor = start_and_wait_for_processor(tree, workdir, procs, f.fileno())
    try:
        at_crash = listing(workdir / "log")
    finally:
        crash(proc, processor)
    err = restart(tree, workdir, procs, ["s4096", SLOW], SECOND)
    return at_crash, listing(workdir / "log"), err


def test_crash_during_processor_recovers_like_c(c_tree: Tree, tmp_path: Path,
                                                procs: Processes) -> None:
    c_crash, c_after, c_err = crash_during_processor(c_tree, tmp_path / "c", procs)
    py_crash, py_after, py_err = crash_during_processor(PY, tmp_path / "py", procs)
    assert py_crash == c_crash
    assert py_after == c_after
    assert py_err == c_err == b""
    # What that is (§11, Directory setup step 4): `processed` not yet 0744, so it is
    # removed and `previous` (already 0744) archived as .u; the empty `current` as .u.
    names = [entry[:3] for entry in py_after]
    assert names[2:] == [("current", "0o744", len(SECOND)), ("lock", "0o600", 0),
                         ("state", "0o644", 0)], py_after
    (u1, mode1, size1, data1), (u2, mode2, size2, _) = py_after[0], py_after[1]
    assert (u1, mode1, u2, mode2, size2) == ("@T.u", "0o744", "@T.u", "0o644", 0)
    assert 2096 <= size1 <= 4096 and FIRST.startswith(data1) and data1.endswith(b"\n")


# Directory states a crash between the steps of a rotation leaves (§11, Writing and
# rotation), prepared by hand: name -> (mode, contents); "=NAME" links to NAME.
OLD = "@400000006543210000000000.s"
STATES: dict[str, dict[str, tuple[int, bytes] | str]] = {
    # processor running: previous 0744, processed and newstate half written
    "processor-running": {
        "lock": (0o600, b""), "state": (0o644, b"old state\n"),
        "previous": (0o744, b"raw 1\nraw 2\n"), "processed": (0o644, b"half"),
        "newstate": (0o644, b"half state"), "current": (0o644, b"")},
    # processor done, processed made 0744, previous not yet removed: processed -> .s
    "processed-0744": {
        "lock": (0o600, b""), "state": (0o644, b"old state\n"),
        "previous": (0o744, b"raw 1\nraw 2\n"), "processed": (0o744, b"processed 1\n"),
        "newstate": (0o644, b"new state\n"), "current": (0o644, b"after 1\n")},
    # previous removed, newstate renamed to state, processed not yet archived
    "state-renamed": {
        "lock": (0o600, b""), "state": (0o644, b"new state\n"),
        "processed": (0o744, b"processed 1\n"), "current": (0o644, b"after 1\n")},
    # archiving processed: linked to @….s, not yet unlinked (link count 2)
    "processed-linked": {
        "lock": (0o600, b""), "state": (0o644, b"new state\n"),
        OLD: (0o744, b"processed 1\n"), "processed": "=" + OLD,
        "current": (0o644, b"after 1\n")},
    # no processor, archiving previous: linked to @….s, not yet unlinked
    "previous-linked": {
        "lock": (0o600, b""), "state": (0o644, b""),
        OLD: (0o744, b"raw 1\n"), "previous": "=" + OLD, "current": (0o644, b"after 1\n")},
    # current renamed to previous, the new current not yet created
    "renamed-no-current": {
        "lock": (0o600, b""), "state": (0o644, b""), "previous": (0o644, b"raw 1\n")},
    # new current created, previous not yet made 0744
    "new-current": {
        "lock": (0o600, b""), "state": (0o644, b""), "previous": (0o644, b"raw 1\n"),
        "current": (0o644, b"")},
}
NEXT = b"next 1\n"
TAIL = [("current", "0o744", len(NEXT), NEXT), ("lock", "0o600", 0, b""),
        ("state", "0o644", 0, b"")]
PROCESSED_S = ("@T.s", "0o744", 12, b"processed 1\n")
AFTER_U = ("@T.u", "0o644", 8, b"after 1\n")
EXPECTED: dict[str, list[Entry]] = {
    "processor-running": [("@T.u", "0o744", 12, b"raw 1\nraw 2\n"), ("@T.u", "0o644", 0, b"")],
    "processed-0744": [PROCESSED_S, AFTER_U],
    "state-renamed": [PROCESSED_S, AFTER_U],
    "processed-linked": [PROCESSED_S, AFTER_U],
    "previous-linked": [("@T.s", "0o744", 6, b"raw 1\n"), AFTER_U],
    "renamed-no-current": [("@T.u", "0o644", 6, b"raw 1\n")],
    "new-current": [("@T.u", "0o644", 6, b"raw 1\n"), ("@T.u", "0o644", 0, b"")],
}


def prepare(logdir: Path, state: dict[str, tuple[int, bytes] | str]) -> None:
    logdir.mkdir(mode=0o700, parents=True)
    for name, spec in state.items():
        if isinstance(spec, str):
            os.link(logdir / spec[1:], logdir / name)
        else:
            mode, data = spec
            (logdir / name).write_bytes(data)
            os.chmod(logdir / name, mode)


@pytest.mark.parametrize("name", list(STATES))
def test_recovery_from_rotation_step_like_c(name: str, c_tree: Tree, tmp_path: Path,
                                            procs: Processes) -> None:
    """Restarting on each hand-made crash state gives what the C gives: a 0744
    `processed` is archived as .s (and `previous` dropped), a 0644 one is dropped and
    `previous` archived as .u, a file already linked to an archive is not archived
    twice, the processor state is emptied."""
    results = {}
    for tree in (c_tree, PY):
        workdir = tmp_path / tree.name
        prepare(workdir / "log", STATES[name])
        err = restart(tree, workdir, procs, [], NEXT)
        results[tree.name] = (listing(workdir / "log"), err)
    assert results["py"] == results["c"]
    assert results["py"] == (EXPECTED[name] + TAIL, b"")


def test_crash_during_processor_on_a_pipe_loses_nothing(tmp_path: Path,
                                                        procs: Processes) -> None:
    """Ours on a pipe held by a third process: killed while its processor runs, the
    successor finds the unconsumed input still in the pipe. Nothing is lost, nothing
    is out of order, and at most what the interrupted rotation had put in `previous`
    (now a .u archive) is repeated."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, FIRST)
        proc, processor = start_and_wait_for_processor(PY, tmp_path, procs, read_end)
        crash(proc, processor)
        assert pipe_pending(read_end) > 0
        final = procs.start([PY.bin("multilog"), "s4096", "!cat", "./log"], cwd=tmp_path,
                            stdin=read_end, stderr=subprocess.PIPE)
        os.close(write_end)
        write_end = -1
        _, err = final.communicate(timeout=15)
        assert final.returncode == 0 and err == b"", err
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    entries = listing(tmp_path / "log")
    logged = b"".join(data for name, _, _, data in entries if name.startswith("@T")
                      or name == "current")
    got = logged.splitlines(keepends=True)
    sent = FIRST.splitlines(keepends=True)
    assert set(got) == set(sent), "lines lost or garbled"
    first_seen = list(dict.fromkeys(got))
    assert first_seen == sent, "lines out of order"
    interrupted = entries[0]
    assert interrupted[0] == "@T.u" and interrupted[1] == "0o744"
    # Today every line of the interrupted `previous` comes again (61 of 100 here):
    # the read that triggered the rotation is consumed only after the processor.
    # Consuming up to the rotation before running the processor would cut this to
    # nothing; either way no more than that may be repeated.
    repeated = len(got) - len(sent)
    assert repeated <= len(interrupted[3].splitlines()), (repeated, entries)
