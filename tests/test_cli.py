"""The `pysvscan` command: the demo that `make run` starts, and `pysvscan status`.

Also the helpers the other tests of the command (tests/test_cli_*.py) import: running
`pysvscan` as a process, and a real svscan on a scan directory of the test's own."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import (PY, Processes, make_service, ok_reader, status_pid, supervise_ready,
                      wait_until)

SVSCAN_PATH = f"{PY.bindir}:/usr/bin:/bin"


def pysvscan(*args: str | os.PathLike[str], timeout: float = 30,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `pysvscan ARGS`; whatever happens, never a Python traceback."""
    r = subprocess.run([PY.bin("pysvscan"), *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=env)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


def catches_alarm(pid: int) -> bool:
    """svscan has set up its signal handlers (SigCgt has SIGALRM)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in text.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (signal.SIGALRM - 1) & 1)


def start_svscan(procs: Processes, scandir: Path, **env: str) -> subprocess.Popen[bytes]:
    """pysvscan's svscan on `scandir`, its stderr in scandir/../svscan.stderr; returned
    once it handles SIGALRM (a rescan), which would kill it before."""
    with open(scandir.parent / "svscan.stderr", "ab") as err:
        svscan = procs.start([PY.bin("svscan"), str(scandir)], stderr=err.fileno(),
                             env={"PATH": SVSCAN_PATH, **env})
    wait_until(lambda: catches_alarm(svscan.pid), message="svscan's signal handlers")
    return svscan


def release(fifo: Path, data: bytes = b"go\n") -> None:
    """Write to a FIFO a service blocks on, once it is reading (never blocking here)."""
    def writer() -> int | None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            return None
    fd = wait_until(writer, message=f"a reader of {fifo}")
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def notifying_service(scandir: Path) -> Path:
    """Service `api`: up at once, ready (s6's notification-fd) once release(SCANDIR/go)."""
    api = make_service(scandir, "api", "#!/bin/sh\nread go < ../go\necho >&3\n"
                       "exec sleep 1000\n")
    (api / "notification-fd").write_text("3\n")
    os.mkfifo(scandir / "go")
    return api


def status_json(scandir: Path, *names: str) -> tuple[int, dict[str, Any]]:
    """(exit status, services by name) of `pysvscan status --json`."""
    r = pysvscan("status", "--scandir", scandir, "--json", *names)
    assert r.returncode in (0, 3), r.stderr
    doc = json.loads(r.stdout)
    return r.returncode, {s["name"]: s for s in doc["services"]}


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


def table(text: str) -> dict[str, list[str]]:
    """The rows of the status table by NAME; cells are two or more spaces apart."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    assert rows[0] == ["NAME", "STATE", "PID", "TIME", "NORMALLY", "WANT", "READY",
                       "RESTARTS", "LAST-EXIT", "LOG"]
    return {row[0]: row[1:] for row in rows[1:]}


def test_status_table_reads_every_service(tmp_path: Path, procs: Processes) -> None:
    up = make_service(tmp_path, "up", "#!/bin/sh\nexec sleep 1000\n",
                      log="#!/bin/sh\nexec multilog t ./main\n")
    down = make_service(tmp_path, "still", "#!/bin/sh\nexec sleep 1000\n", down=True)
    make_service(tmp_path, "orphan", "#!/bin/sh\nexec sleep 1000\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "file").write_text("not a service")
    for d in (up, up / "log", down):  # the logger reads a pipe that stays open
        procs.start([PY.bin("supervise"), str(d)], env={"PATH": SVSCAN_PATH},
                    stdin=subprocess.PIPE if d.name == "log" else subprocess.DEVNULL)
    wait_until(lambda: status_pid(up) and status_pid(up / "log") and supervise_ready(down))
    pid = status_pid(up)
    r = pysvscan("status", tmp_path)  # a single path: the scan directory (issue 2)
    assert r.returncode == 3, r.stderr  # orphan is not supervised
    rows = table(r.stdout)
    assert list(rows) == ["orphan", "still", "up", "up/log"]
    assert rows["orphan"] == ["not supervised", "-", "-", "up", "-", "-", "-", "-", "svscan"]
    assert rows["still"][0:2] == ["down", "-"] and rows["still"][3:] == [
        "down", "down", "-", "0", "-", "svscan"]
    assert rows["up"][:2] == ["up", str(pid)] and rows["up"][3:] == [
        "up", "up", "-", "0", "-", "log/main"]
    assert re.fullmatch(r"\d+s", rows["up"][2])
    assert rows["up/log"][0] == "up" and rows["up/log"][-1] == "-"
    assert "\x1b[" not in r.stdout  # no colour into a pipe

    r = pysvscan("status", "--scandir", tmp_path, "up", "still")  # NAME: also NAME/log
    assert r.returncode == 0, r.stderr
    assert list(table(r.stdout)) == ["up", "up/log", "still"]
    r = pysvscan("status", "up/log", env={"PYSVSCAN_SCANDIR": str(tmp_path),
                                          "PATH": SVSCAN_PATH})
    assert r.returncode == 0 and list(table(r.stdout)) == ["up/log"]


def test_status_json_follows_restarts_pauses_and_exits(tmp_path: Path, procs: Processes) -> None:
    scandir = tmp_path / "service"
    web = make_service(scandir, "web", "#!/bin/sh\nexec sleep 1000\n",
                       log="#!/bin/sh\nexec multilog t ./main J\n")
    start_svscan(procs, scandir)
    first = wait_until(lambda: status_pid(web) and status_pid(web / "log") and status_pid(web))
    code, got = status_json(scandir)
    assert code == 0
    assert got["web"]["state"] == "up" and got["web"]["pid"] == first
    assert got["web"]["restarts"] == 0 and got["web"]["last_exit"] is None
    assert got["web"]["log"] == {"logger": True, "dirs": [str(web / "log" / "main")],
                                 "journal": True}
    assert got["web/log"]["log"] is None and got["web"]["as_wanted"] is True
    assert set(got["web"]) == {
        "name", "dir", "state", "error", "supervised", "pid", "seconds", "since",
        "normally", "want", "paused", "ready", "ready_seconds", "restarts", "exits",
        "recent_exits", "last_exit", "watchdog_kills", "log", "as_wanted"}

    PY.run("svc", "-k", web)
    second = wait_until(lambda: (p := status_pid(web)) != first and p, message="restart")
    wait_until(lambda: status_json(scandir, "web")[1]["web"]["restarts"] == 1, timeout=5,
               message="history written")
    code, got = status_json(scandir, "web")
    assert code == 0 and got["web"]["pid"] == second
    assert got["web"]["last_exit"]["how"] == "signal"
    assert got["web"]["last_exit"]["code"] == signal.SIGKILL
    assert got["web"]["last_exit"]["pid"] == first and got["web"]["recent_exits"] == 1

    PY.run("svc", "-p", web)
    wait_until(lambda: status_json(scandir, "web")[1]["web"]["state"] == "paused", timeout=5)
    code, got = status_json(scandir, "web")
    assert code == 3 and got["web"]["as_wanted"] is False and got["web"]["paused"] is True
    PY.run("svc", "-dc", web)
    wait_until(lambda: status_json(scandir, "web")[1]["web"]["state"] == "down", timeout=5)
    code, got = status_json(scandir, "web")
    assert code == 0 and got["web"]["want"] == "down"  # down, as wanted
    assert got["web"]["last_exit"]["code"] == signal.SIGTERM


def test_status_ready_column_for_a_service_that_notifies(tmp_path: Path,
                                                        procs: Processes) -> None:
    scandir = tmp_path / "service"
    api = notifying_service(scandir)
    start_svscan(procs, scandir)
    wait_until(lambda: status_pid(api))
    r = pysvscan("status", "--scandir", scandir)
    assert r.returncode == 0, r.stderr
    assert table(r.stdout)["api"][:6] == ["up", str(status_pid(api)),
                                          table(r.stdout)["api"][2], "up", "up", "no"]
    release(scandir / "go")
    wait_until(lambda: status_json(scandir)[1]["api"]["ready"] is True, timeout=10)
    assert table(pysvscan("status", "--scandir", scandir).stdout)["api"][5] == "yes"


WEDGED = """#!/usr/bin/python3
import os, socket, time
address = os.environ["NOTIFY_SOCKET"]
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(
    b"READY=1", "\\0" + address[1:] if address[0] == "@" else address)
time.sleep(1000)
"""


def test_a_notifying_service_down_is_not_ready_and_keeps_its_watchdog_kills(
        tmp_path: Path, procs: Processes) -> None:
    """notify-state goes with the run; what it said is not lost with it: a down
    service that opts in is `ready: false`, and its watchdog kills come from history."""
    scandir = tmp_path / "service"
    wedge = make_service(scandir, "wedge", WEDGED)
    (wedge / "watchdog").write_text("0.5\n")  # ready, then never pings: killed after 0.5 s
    start_svscan(procs, scandir)
    wait_until(lambda: status_json(scandir)[1]["wedge"]["watchdog_kills"] == 0, timeout=10)
    wait_until(lambda: (wedge / "supervise" / "history").exists(), timeout=10,
               message="the first watchdog kill")
    PY.run("svc", "-d", wedge)
    wait_until(lambda: not status_pid(wedge), timeout=10, message="down")
    _, rows = status_json(scandir)
    assert rows["wedge"]["ready"] is False and rows["wedge"]["pid"] in (None, 0)
    assert rows["wedge"]["watchdog_kills"] >= 1


def test_status_colours_only_on_a_terminal(tmp_path: Path) -> None:
    make_service(tmp_path, "orphan", "#!/bin/sh\nexec sleep 1000\n")

    def on_terminal(env: dict[str, str]) -> bytes:
        master, slave = pty.openpty()
        proc = subprocess.Popen([PY.bin("pysvscan"), "status", str(tmp_path)], stdout=slave,
                                stderr=subprocess.DEVNULL, env=env)
        os.close(slave)
        out = b""
        while select.select([master], [], [], 20)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        assert proc.wait(timeout=20) == 3
        return out

    env = {"PATH": SVSCAN_PATH, "TERM": "xterm"}
    assert b"\x1b[31m" in on_terminal(env)  # not supervised: red
    assert b"\x1b[" not in on_terminal({**env, "NO_COLOR": "1"})


def test_status_errors_are_one_line(tmp_path: Path) -> None:
    r = pysvscan("status", tmp_path / "nope")
    assert r.returncode == 1
    assert r.stderr == f"Error: unable to read {tmp_path}/nope: No such file or directory\n"
    r = pysvscan("status", "--scandir", tmp_path / "nope", "web")
    assert r.returncode == 1
    assert r.stderr == f"Error: unable to read {tmp_path}/nope: No such file or directory\n"
    make_service(tmp_path, "web", "#!/bin/sh\nexec sleep 1000\n")
    for name, text in [("nope", f"no service 'nope' in {tmp_path}"),
                       ("web/x", "bad service name 'web/x': give NAME or NAME/log, where "
                                 "NAME is an entry of the scan directory"),
                       (".hidden", "bad service name '.hidden'")]:
        r = pysvscan("status", "--scandir", tmp_path, name)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.startswith(f"Error: {text}") and r.stderr.count("\n") == 1, r.stderr

    # a supervise that runs (ok held) but a status that cannot be read
    (tmp_path / "web" / "supervise").mkdir()
    (tmp_path / "web" / "supervise" / "status").mkdir()
    with ok_reader(tmp_path / "web"):
        r = pysvscan("status", "--scandir", tmp_path)
    assert r.returncode == 1
    assert r.stderr == "Error: web: unable to read supervise/status: is a directory\n"
    assert table(r.stdout)["web"][0] == "unknown"

    r = pysvscan("status", "--bogus")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error: No such option") and "--bogus" in r.stderr
    assert r.stderr.endswith("(see 'pysvscan status --help')\n")  # click's words vary
