"""Full disks and read-only file systems (issue 8, requirement 5).

The service directory lives on a 256 KiB tmpfs mounted in a private mount namespace
(`unshare --mount`), where supervise and multilog run; the test reaches that mount
through /proc/PID/root. Filled up, status writes and log writes fail with the
reference's warnings, supervision goes on, the status file is never half written, and
everything resumes once there is room again: the status write is retried every second
(the C only warns, and its status stays stale until the next change).
"""

from __future__ import annotations

import os
import re
import signal
import struct
import threading
import time
from pathlib import Path

import pytest

from conftest import PY, Processes, alive, require_journald, wait_until
from pysvscan.commands.supervise import start_pause_left

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
COUNTER = """#!/bin/sh
i=0
while :; do i=$((i + 1)); echo "line $i"; sleep 0.01; done
"""
INNER = """mount --make-rprivate / && mount -t tmpfs -o size=256k,mode=0755 tmpfs "$1" &&
cp -a "$2" "$1/svc" && cd "$1" && exec "$3" svc"""


class Box:
    """supervise DIR/svc (and its multilog) on a small tmpfs in a namespace of its own."""

    def __init__(self, procs: Processes, tmp_path: Path) -> None:
        require_journald("the full-disk tests")  # root and util-linux's unshare
        template = tmp_path / "template"
        (template / "log").mkdir(parents=True)
        for path, text in ((template / "run", COUNTER),
                           (template / "log" / "run", "#!/bin/sh\nexec multilog ./main\n")):
            path.write_text(text)
            path.chmod(0o755)
        self.mnt = tmp_path / "mnt"
        self.mnt.mkdir()
        self.stderr = tmp_path / "stderr"
        # supervise svc's stdout goes into `supervise log`'s stdin, as svscan wires them
        read_end, write_end = os.pipe()
        with open(self.stderr, "wb") as err:
            self.main = procs.start(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", INNER, "sh",
                 str(self.mnt), str(template), PY.bin("supervise")],
                env={"PATH": SYSTEM_PATH}, stdout=write_end, stderr=err.fileno())
            self.root = Path(f"/proc/{self.main.pid}/root")
            wait_until(lambda: (self.svc / "supervise" / "ok").exists(), timeout=10,
                       message="supervise in its namespace")
            self.log = procs.start(
                ["nsenter", "-t", str(self.main.pid), "-m", "--", "sh", "-c",
                 'cd "$1" && exec "$2" log', "sh", f"{self.mnt}/svc", PY.bin("supervise")],
                env={"PATH": SYSTEM_PATH}, stdin=read_end, stderr=err.fileno())
        os.close(read_end)
        os.close(write_end)

    @property
    def svc(self) -> Path:
        return Path(f"{self.root}{self.mnt}") / "svc"

    def status(self) -> bytes:
        return (self.svc / "supervise" / "status").read_bytes()

    def control(self, data: bytes) -> None:
        fd = os.open(self.svc / "supervise" / "control", os.O_WRONLY)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def fill(self) -> Path:
        """Take every free block of the tmpfs."""
        filler = self.svc.parent / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        return filler

    def warnings(self) -> str:
        return self.stderr.read_text()

    def logged(self) -> list[str]:
        return (self.svc / "log" / "main" / "current").read_text().splitlines()


def second_run_logged(box: Box) -> list[str]:
    """The log once it shows a few lines of the service's second run (multilog retries
    every 5 s after a failed write)."""
    lines = box.logged()
    starts = [i for i, line in enumerate(lines) if line == "line 1"]
    return lines if len(starts) >= 2 and len(lines) - starts[1] > 5 else []


def pid_of(status: bytes) -> int:
    return struct.unpack_from("<I", status, 12)[0]


@pytest.fixture
def box(procs: Processes, tmp_path: Path) -> Box:
    b = Box(procs, tmp_path)
    wait_until(lambda: pid_of(b.status()), timeout=10, message="the service up")
    # past supervise's pause after the start, whose end writes the status once more
    wait_until(lambda: start_pause_left(str(b.svc)) < 0, timeout=5, message="the pause over")
    wait_until(lambda: (b.svc / "log" / "main" / "current").exists(), timeout=10,
               message="the log")
    return b


def test_status_is_whole_at_every_moment_of_10000_changes(box: Box) -> None:
    seen: list[bytes] = []
    done = threading.Event()

    def reader() -> None:
        path = box.svc / "supervise" / "status"
        while not done.is_set():
            with open(path, "rb") as f:
                seen.append(f.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    pid = pid_of(box.status())
    try:
        box.control(b"pc" * 5000 + b"d")  # 10,000 changes of the paused flag, then down
        wait_until(lambda: box.status()[17:18] == b"d", timeout=60, message="all done")
    finally:
        done.set()
        thread.join(timeout=5)
    assert len(seen) > 1000
    bad = [s for s in seen if len(s) != 18 or pid_of(s) not in (pid, 0)
           or s[16] not in (0, 1) or s[17:18] not in (b"u", b"d")]
    assert bad == []
    assert {s[16] for s in seen} == {0, 1}  # the reader did see both states


def test_a_full_disk_warns_and_supervision_goes_on(box: Box) -> None:
    filler = box.fill()
    old = box.status()
    box.control(b"p")  # the status write now fails: a warning, the old status stays
    wait_until(lambda: "supervise: warning: unable to write svc/supervise/status.new: "
                       "out of disk space" in box.warnings()
               or "supervise: warning: unable to open svc/supervise/status.new: "
                  "out of disk space" in box.warnings(), timeout=10,
               message="supervise's warning")
    assert box.status() == old
    box.control(b"c")
    # multilog cannot write either: it says so, pauses and retries, losing nothing
    wait_until(lambda: re.search(r"multilog: warning: unable to write to \./main/current, "
                                 r"pausing: out of disk space", box.warnings()),
               timeout=20, message="multilog's warning")
    # supervision goes on: a killed service is started again
    pid = pid_of(old)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), timeout=5, message="the service gone")
    filler.unlink()  # room again: the status catches up, the log resumes
    wait_until(lambda: pid_of(box.status()) not in (0, pid), timeout=15,
               message="the new pid in status once there is room")
    assert box.status()[16] == 0
    lines = wait_until(lambda: second_run_logged(box), timeout=30,
                       message="the new run's lines in the log")
    bad = [line for line in lines if not re.fullmatch(r"line \d+", line)]
    assert not bad, [lines[max(0, lines.index(bad[0]) - 2):lines.index(bad[0]) + 3]]
    numbers = [int(line.split()[1]) for line in lines]
    runs = [n for n in numbers if n == 1]  # each run of the service counts from 1
    assert len(runs) == 2
    second = numbers.index(1, 1)
    for run in (numbers[:second], numbers[second:]):
        assert run == list(range(1, len(run) + 1))  # nothing lost within a run


def test_an_unwritable_status_file_warns_once_and_is_retried(box: Box) -> None:
    """status.new that cannot be opened for writing (here: a directory in its place;
    root ignores file modes): one warning, then retried every second, quietly, until
    it can be written."""
    blocker = box.svc / "supervise" / "status.new"
    blocker.mkdir()
    try:
        box.control(b"p")
        wait_until(lambda: "supervise: warning: unable to open svc/supervise/status.new: "
                           "is a directory" in box.warnings(), timeout=10,
                   message="supervise's warning")
        time.sleep(2.5)  # two retries' worth
        assert box.warnings().count("status.new: is a directory") == 1
        assert box.status()[16] == 0
    finally:
        blocker.rmdir()
    wait_until(lambda: box.status()[16] == 1, timeout=5, message="the retry succeeding")
    box.control(b"c")
