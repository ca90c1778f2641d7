"""Crash loops stay cheap and leave nothing behind (issue 8, requirement 3)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import (PY, Processes, lock_holder, make_service, read_history, status_pid,
                      wait_until)

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime






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
    wait_until(lambda: int(read_history(service).get("exits", 0)) >= 2, timeout=10,
               message="the crash loop under way")
    supervise = lock_holder(service)
    starts, cpu, began = int(read_history(service)["starts"]), cpu_seconds(supervise), time.monotonic()
    time.sleep(10)  # measuring a rate
    elapsed = time.monotonic() - began
    started = int(read_history(service)["starts"]) - starts
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


SLEEPER = "#!/bin/sh\nexec sleep 100000\n"


def retire(service: Path) -> None:
    """The correct order: out of the scan directory, then `svc -dx` service and log."""
    service.rename(service.with_name("." + service.name))
    hidden = service.with_name("." + service.name)
    PY.run("svc", "-dx", hidden)
    if (hidden / "log").exists():
        PY.run("svc", "-dx", hidden / "log")


def test_out_of_descriptors_warns_retries_and_recovers(procs: Processes,
                                                       tmp_path: Path) -> None:
    """Two descriptors per log pipe: 30 logged services cannot all start within 50.
    svscan says so in the reference's words, and once services are retired the rest
    start at the next scans."""
    scan = tmp_path / "service"
    services = [make_service(scan, f"s{i:02d}", SLEEPER, log=SLEEPER) for i in range(30)]
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        svscan = procs.start(["prlimit", "--nofile=50:50", "--", PY.bin("svscan"), str(scan)],
                             env={"PATH": "/usr/bin:/bin"}, stderr=f.fileno())
    wait_until(lambda: b"process cannot open more files" in err.read_bytes(), timeout=15,
               message="svscan to run out of descriptors")
    # as many as the descriptors allow start all the same, as in the C
    wait_until(lambda: sum(1 for s in services if status_pid(s) and status_pid(s / "log"))
               >= 15, timeout=15, message="the services that have pipes up")
    assert not all(status_pid(s) for s in services)
    text = err.read_bytes().decode()
    assert re.search(r"^(svscan: warning: unable to create pipe for s\d\d|"
                     r"supervise: fatal: unable to [a-z ]+ s\d\d[a-z/]*): "
                     r"process cannot open more files$", text, re.M), text
    assert "Traceback" not in text
    keep = services[:12]
    for service in services[12:]:
        retire(service)
    for _ in range(3):  # the next scans find the descriptors back
        os.kill(svscan.pid, signal.SIGALRM)
        time.sleep(0.5)
    wait_until(lambda: all(status_pid(s) and status_pid(s / "log") for s in keep),
               timeout=20, message="every remaining service and logger up")


@pytest.fixture
def nobodys() -> Iterator[Path]:
    """A directory nobody owns and can reach (pytest's tmp_path is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="pysvscan-nobody-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_out_of_processes_warns_retries_and_recovers(procs: Processes,
                                                     nobodys: Path) -> None:
    """As nobody with room for six processes: svscan and five supervise. The other
    forks fail with the reference's text; once five services are retired, the other
    five get theirs."""
    scan = nobodys / "service"
    services = [make_service(scan, f"s{i:02d}", SLEEPER, down=True) for i in range(10)]
    for path in [nobodys, *nobodys.rglob("*")]:
        os.chown(path, 65534, 65534)
    err = nobodys / "stderr"
    with open(err, "wb") as f:
        svscan = procs.start(["prlimit", "--nproc=6:6", "--", PY.bin("setuidgid"), "nobody",
                              PY.bin("svscan"), str(scan)],
                             env={"PATH": "/usr/bin:/bin"}, stderr=f.fileno())
    wait_until(lambda: b"temporary failure" in err.read_bytes(), timeout=15,
               message="svscan to run out of processes")
    text = err.read_bytes().decode()
    assert re.search(r"^svscan: warning: unable to fork for s\d\d: temporary failure$",
                     text, re.M), text
    assert "Traceback" not in text
    running = [s for s in services if (s / "supervise" / "ok").exists()
               and PY.run("svok", s).returncode == 0]
    assert 0 < len(running) <= 5
    for service in running:
        retire(service)
    rest = [s for s in services if s not in running]
    os.kill(svscan.pid, signal.SIGALRM)
    wait_until(lambda: all(PY.run("svok", s).returncode == 0 for s in rest[:5]), timeout=20,
               message="supervise for the services left")
