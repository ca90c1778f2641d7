"""No duplicate services after a supervise crash (issue 8, requirement 1).

svscan is a child subreaper, so a service whose supervise is killed stays in its tree;
the next supervise of that directory adopts the still-running service instead of
starting a second copy, and restarts it normally once it ends.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

from conftest import PY, Processes, alive, lock_holder, make_service, status_pid, wait_until
from pysvscan import tai64
from pysvscan.status import Status

MARK = "987651"  # `sleep MARK` is the service: counted in /proc, never killed by name


def copies(mark: str = MARK) -> int:
    found = 0
    want = f"sleep\0{mark}\0".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found += f.read() == want
            except OSError:
                pass
    return found


class Census(threading.Thread):
    """Counts the copies of the service, again and again, while the test runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.counts: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.counts.append(copies())
            time.sleep(0.002)




def svstat(service: Path) -> str:
    return PY.run("svstat", service).stdout.decode().strip()


def supervised_as(service: Path, pid: int) -> str:
    """svstat's line once a supervise runs again and shows the service up as `pid`."""
    line = svstat(service)
    if re.search(rf": up \(pid {pid}\) \d+ seconds(, .*)?$", line) and lock_holder(service):
        return line
    return ""


def test_killed_supervise_50_times_one_copy_at_every_moment(procs: Processes,
                                                            tmp_path: Path) -> None:
    scan = tmp_path / "service"
    service = make_service(scan, "worker", f"#!/bin/sh\nexec sleep {MARK}\n")
    svscan = procs.start([PY.bin("svscan"), str(scan)], env={"PATH": "/usr/bin:/bin"})
    pid = wait_until(lambda: status_pid(service), timeout=10, message="worker up")
    census = Census()
    census.start()
    try:
        for round in range(50):
            supervise = wait_until(lambda: lock_holder(service), timeout=10,
                                   message="the supervise of worker")
            os.kill(supervise, signal.SIGKILL)
            killed = time.monotonic()
            wait_until(lambda: not alive(supervise), timeout=5, message="supervise gone")
            if round:  # the first time, the scan every 5 s finds it; then, at once
                os.kill(svscan.pid, signal.SIGALRM)
            line = wait_until(lambda: supervised_as(service, pid), timeout=6.5,
                              message=f"round {round}: svstat right again")
            assert time.monotonic() - killed < 6.5, line
            assert alive(pid)
    finally:
        census.done.set()
        census.join(timeout=5)
    seen = census.counts[1:]
    assert seen and max(seen) == 1 and min(seen) == 1, sorted(set(seen))
    # The adopted service obeys svc, and is restarted normally once it ends.
    PY.run("svc", "-t", service)
    new = wait_until(lambda: (p := status_pid(service)) != pid and p, timeout=10,
                     message="worker restarted after svc -t")
    assert not alive(pid) and alive(new)
    wait_until(lambda: copies() == 1, timeout=5, message="the new run exec'd")
    history = service / "supervise" / "history"
    wait_until(history.exists, timeout=5, message="supervise/history")
    assert "last_exit=unknown pid" in history.read_text()  # svscan reaped the adopted one
    PY.run("svc", "-d", service)
    wait_until(lambda: copies() == 0, timeout=10, message="worker down")


def test_a_stranger_with_the_pid_is_not_adopted(procs: Processes, tmp_path: Path) -> None:
    """A live process named in an old status file that is not a child of this svscan
    (here: the test's own child) is left alone, and the service starts afresh."""
    scan = tmp_path / "service"
    service = make_service(scan, "worker", f"#!/bin/sh\nexec sleep {MARK}\n")
    stranger = procs.start(["sleep", "1000"])
    (service / "supervise").mkdir(mode=0o700)
    (service / "supervise" / "status").write_bytes(Status(*tai64.now(), stranger.pid).pack())
    procs.start([PY.bin("svscan"), str(scan)], env={"PATH": "/usr/bin:/bin"})
    pid = wait_until(lambda: (p := status_pid(service)) != stranger.pid and p, timeout=10,
                     message="worker started afresh")
    assert pid != stranger.pid and alive(stranger.pid) and copies() == 1


READY_SERVICE = f"""#!/usr/bin/python3
import os, socket, time
address = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", "\\0" + address[1:] if address[0] == "@" else address)
os.execvp("sleep", ["sleep", "{MARK}"])
"""


def test_an_adopted_notifying_service_stays_ready(procs: Processes, tmp_path: Path) -> None:
    scan = tmp_path / "service"
    service = make_service(scan, "ready", READY_SERVICE)
    (service / "sd-notify").write_text("main\n")
    svscan = procs.start([PY.bin("svscan"), str(scan)],
                         env={"PATH": "/usr/bin:/bin",
                              "PYSVSCAN_NOTIFY_DIR": str(tmp_path / "none")})
    wait_until(lambda: ", ready " in svstat(service), timeout=10, message="ready")
    pid = status_pid(service)
    os.kill(lock_holder(service), signal.SIGKILL)
    wait_until(lambda: not lock_holder(service), timeout=5, message="supervise gone")
    os.kill(svscan.pid, signal.SIGALRM)
    line = wait_until(lambda: supervised_as(service, pid), timeout=6.5, message="adopted")
    assert re.search(r", ready \d+ seconds$", line), line
    assert copies() == 1
