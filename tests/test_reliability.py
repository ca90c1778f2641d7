"""Crash loops stay cheap and leave nothing behind (issue 8, requirement 3)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import PY, Processes, make_service, wait_until

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def history(service: Path) -> dict[str, str]:
    try:
        text = (service / "supervise" / "history").read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines())


def lock_holder(service: Path) -> int:
    lock = os.path.realpath(service / "supervise" / "lock")
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == lock
                   for fd in os.listdir(f"/proc/{entry}/fd")):
                return int(entry)
        except OSError:
            continue
    return 0


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is `pid`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0].decode()))
    return found


def test_a_crash_loop_starts_once_a_second_and_costs_supervise_little(
        procs: Processes, tmp_path: Path) -> None:
    scan = tmp_path / "service"
    service = make_service(scan, "crash", "#!/bin/sh\nexit 1\n")
    procs.start([PY.bin("svscan"), str(scan)], env={"PATH": "/usr/bin:/bin"})
    wait_until(lambda: int(history(service).get("exits", 0)) >= 2, timeout=10,
               message="the crash loop under way")
    supervise = lock_holder(service)
    starts, cpu, began = int(history(service)["starts"]), cpu_seconds(supervise), time.monotonic()
    time.sleep(10)  # measuring a rate
    elapsed = time.monotonic() - began
    started = int(history(service)["starts"]) - starts
    used = cpu_seconds(supervise) - cpu
    assert started <= elapsed + 1, (started, elapsed)  # at most once a second
    assert started >= elapsed - 2, (started, elapsed)  # and it does keep trying
    assert used / elapsed < 0.02, f"supervise used {100 * used / elapsed:.1f}% of a core"


FORKER = """#!/bin/sh
i=0
while [ $i -lt 1000 ]; do sleep 2 & i=$((i + 1)); done
exec sleep 1000
"""


def test_a_thousand_orphans_are_reaped(procs: Processes, tmp_path: Path) -> None:
    """A run that forks a thousand children and is then killed: they end later as
    orphans, and svscan, the subreaper they go to, reaps every one."""
    scan = tmp_path / "service"
    service = make_service(scan, "forker", FORKER)
    svscan = procs.start([PY.bin("svscan"), str(scan)], env={"PATH": "/usr/bin:/bin"})
    wait_until(lambda: len(children(svscan.pid)) >= 1, timeout=10, message="supervise")
    wait_until(lambda: (service / "supervise" / "status").exists(), timeout=10,
               message="status")
    PY.run("svc", "-dk", service)  # the shell goes; its sleeps are orphans now
    wait_until(lambda: len(children(svscan.pid)) > 100, timeout=10,
               message="the orphans reparented to svscan")
    wait_until(lambda: [c for c in children(svscan.pid) if c[0] != lock_holder(service)] == [],
               timeout=20, message="every orphan ended and reaped")
    zombies = [c for c in children(svscan.pid) if c[1] == "Z"]
    assert zombies == []
