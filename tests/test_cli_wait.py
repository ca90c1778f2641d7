"""`pysvscan wait`: woken by the service's state changing, never polling."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from conftest import PY, Processes, alive, make_service, status_pid, supervise_ready, wait_until
from test_cli import notifying_service, pysvscan, release, start_svscan, status_json


def start_wait(procs: Processes, scandir: Path, *args: str) -> subprocess.Popen[bytes]:
    return procs.start([PY.bin("pysvscan"), "wait", "--scandir", str(scandir), *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def waiting_in_kernel(pid: int) -> bool:
    """pysvscan wait has reached its sleep: state S, and its inotify descriptor open."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return False
    return state == "S" and "anon_inode:inotify" in fds


def switches(pid: int) -> int:
    """Voluntary context switches: every sleep of a polling loop adds one."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def test_wait_up_for_a_service_svscan_has_not_started_yet(tmp_path: Path,
                                                          procs: Processes) -> None:
    scandir = tmp_path / "service"
    web = make_service(scandir, "web", "#!/bin/sh\nexec sleep 1000\n",
                       log="#!/bin/sh\nexec cat > /dev/null\n")
    waiter = start_wait(procs, scandir, "--up", "web", "web/log", "--timeout", "30")
    wait_until(lambda: waiting_in_kernel(waiter.pid), message="wait asleep")

    # idle: nothing changes, and it does not wake up while other programs read the state
    before = switches(waiter.pid)
    for _ in range(3):
        assert pysvscan("status", "--scandir", scandir).returncode == 3
    assert switches(waiter.pid) - before <= 1
    assert waiter.poll() is None

    start_svscan(procs, scandir)  # supervise/ does not exist yet: the service dir is watched
    assert waiter.wait(timeout=15) == 0
    assert status_pid(web) and status_pid(web / "log")


def test_wait_down_and_ready(tmp_path: Path, procs: Processes) -> None:
    scandir = tmp_path / "service"
    api = notifying_service(scandir)
    start_svscan(procs, scandir)
    wait_until(lambda: status_pid(api))
    assert pysvscan("wait", "--scandir", scandir, "--up", "api").returncode == 0

    waiter = start_wait(procs, scandir, "--ready", "api")
    wait_until(lambda: waiting_in_kernel(waiter.pid), message="wait asleep")
    assert waiter.poll() is None  # up, but not ready
    release(scandir / "go")
    assert waiter.wait(timeout=15) == 0
    assert status_json(scandir, "api")[1]["api"]["ready"] is True

    waiter = start_wait(procs, scandir, "--down", "api", "--timeout", "20")
    wait_until(lambda: waiting_in_kernel(waiter.pid), message="wait asleep")
    PY.run("svc", "-d", api)
    assert waiter.wait(timeout=15) == 0
    assert status_json(scandir, "api")[1]["api"]["state"] == "down"


def test_wait_down_sees_a_leftover_process_end(tmp_path: Path, procs: Processes) -> None:
    """No supervise to record it: the process's own end (its pidfd) wakes wait."""
    web = make_service(tmp_path, "web", "#!/bin/sh\nexec sleep 1000\n")
    supervise = procs.start([PY.bin("supervise"), str(web)])
    pid = wait_until(lambda: status_pid(web))
    os.kill(supervise.pid, signal.SIGKILL)
    wait_until(lambda: not supervise_ready(web), message="supervise gone")
    assert alive(pid)
    waiter = start_wait(procs, tmp_path, "--down", "web", "--timeout", "20")
    wait_until(lambda: waiting_in_kernel(waiter.pid), message="wait asleep")
    assert waiter.poll() is None
    os.kill(pid, signal.SIGKILL)
    assert waiter.wait(timeout=15) == 0


def test_wait_times_out_saying_why(tmp_path: Path, procs: Processes) -> None:
    scandir = tmp_path / "service"
    make_service(scandir, "still", "#!/bin/sh\nexec sleep 1000\n", down=True)
    make_service(scandir, "orphan", "#!/bin/sh\nexec sleep 1000\n")
    r = pysvscan("wait", "--scandir", scandir, "--up", "orphan", "--timeout", "0")
    assert r.returncode == 1
    assert r.stderr == ("Error: timed out after 0 s waiting for orphan (not supervised) "
                        "to be up\n")
    start_svscan(procs, scandir)
    wait_until(lambda: supervise_ready(scandir / "still"))
    r = pysvscan("wait", "--scandir", scandir, "--up", "still", "--timeout", "0.5")
    assert r.returncode == 1
    assert r.stderr == ("Error: timed out after 0.5 s waiting for still (down, wanted down) "
                        "to be up\n")


def test_wait_errors(tmp_path: Path) -> None:
    make_service(tmp_path, "web", "#!/bin/sh\nexec sleep 1000\n")
    r = pysvscan("wait", "--scandir", tmp_path, "--up", "web", "nope")
    assert r.returncode == 2 and r.stderr == f"Error: no service 'nope' in {tmp_path}\n"
    r = pysvscan("wait", "--scandir", tmp_path, "web")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error: say what to wait for: --up, --ready or --down")
