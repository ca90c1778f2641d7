"""The `pysvscan` command: the status table and the demo that `make run` starts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import PY, Processes, make_service, status_pid, supervise_ready, wait_until


def session_pids(sid: int) -> list[int]:
    """Every live process in session `sid` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry))
    return found


def svscan_child_of(pid: int) -> int:
    """The svscan the demo runs (its only child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else 0


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_demo_runs_hello_and_stops_in_order(tmp_path: Path, procs: Processes,
                                            stop_signal: signal.Signals) -> None:
    scandir = tmp_path / "service"
    demo = procs.start([PY.bin("pysvscan"), "demo", str(scandir)], stderr=subprocess.PIPE)
    hello, log = scandir / "hello", scandir / "hello" / "log"
    svscan = wait_until(lambda: svscan_child_of(demo.pid), message="svscan started")
    procs.adopt(svscan)  # its own session: killed at teardown even if this test fails
    wait_until(lambda: status_pid(hello) and status_pid(log), message="hello and its log up")
    assert Path(f"/proc/{svscan}/cmdline").read_bytes().split(b"\0")[1].endswith(b"/svscan")
    mainlog = log / "main" / "current"
    wait_until(lambda: mainlog.exists() and b" hello 2\n" in mainlog.read_bytes(), timeout=15,
               message="two numbered lines in main/current")
    status = subprocess.run([PY.bin("svstat"), str(hello)], capture_output=True, text=True)
    assert re.fullmatch(rf"{hello}: up \(pid \d+\) \d+ seconds\n", status.stdout)

    demo.send_signal(stop_signal)  # Ctrl-C reaches the demo's process group only
    assert demo.wait(timeout=30) == 0
    assert b"svscan is supervising" in demo.stderr.read()
    assert not session_pids(svscan), "svscan's session still has processes"
    assert mainlog.stat().st_mode & 0o777 == 0o744, "multilog did not stop cleanly"
    lines = mainlog.read_bytes().decode().splitlines()
    assert all(re.fullmatch(r"@[0-9a-f]{24} hello \d+", line) for line in lines), lines
    assert [line.split()[-1] for line in lines] == [str(n) for n in range(1, len(lines) + 1)]
    assert not supervise_ready(hello) and not supervise_ready(log)


def test_status_table_reads_every_service(tmp_path: Path, procs: Processes) -> None:
    up = make_service(tmp_path, "up", "#!/bin/sh\nexec sleep 1000\n",
                      log="#!/bin/sh\nexec cat > /dev/null\n")
    down = make_service(tmp_path, "still", "#!/bin/sh\nexec sleep 1000\n", down=True)
    make_service(tmp_path, "orphan", "#!/bin/sh\nexec sleep 1000\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "file").write_text("not a service")
    for d in (up, up / "log", down):
        procs.start([PY.bin("supervise"), str(d)])
    wait_until(lambda: status_pid(up) and status_pid(up / "log") and supervise_ready(down))
    pid = status_pid(up)
    r = subprocess.run([PY.bin("pysvscan"), "status", str(tmp_path)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0] == ["NAME", "STATE", "PID", "SECONDS", "NORMALLY", "PAUSED", "WANT"]
    table = {row[0]: row[1:] for row in rows[1:]}
    assert list(table) == ["orphan", "still", "up", "up/log"]
    assert table["orphan"] == ["not", "supervised", "-", "-", "up", "-", "-"]
    assert table["still"][0] == "down" and table["still"][3:] == ["down", "no", "down"]
    assert table["up"][:2] == ["up", str(pid)] and table["up"][3:] == ["up", "no", "up"]
    assert table["up/log"][0] == "up"


def test_status_of_a_missing_scandir_is_a_clear_error(tmp_path: Path) -> None:
    r = subprocess.run([PY.bin("pysvscan"), "status", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert r.stderr == f"Error: unable to read {tmp_path}/nope: No such file or directory\n"
    assert "Traceback" not in r.stderr
