"""supervise as a systemd unit's main process (issue 9), against a test notify server
standing in for systemd: NOTIFY_SOCKET in supervise's environment, no svscan."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import (PY, Processes, alive, make_service, status_pid, wait_until,
                      write_script)
from test_systemd_svscan import Datagrams, notify, sockdir  # noqa: F401 (fixtures)

PATH = "/usr/bin:/bin"
SLEEP = "#!/bin/sh\nexec sleep 1000\n"
ENVDUMP = "#!/bin/sh\n/usr/bin/env > env.out\nexec sleep 1000\n"


def unit_supervise(procs: Processes, service: Path, notify: Datagrams,
                   watchdog: float = 0.0, **extra: str) -> subprocess.Popen[bytes]:
    """supervise DIR as systemd starts a Type=notify unit's main process."""
    env = {"PATH": PATH, "NOTIFY_SOCKET": str(notify.path), "INVOCATION_ID": "0123",
           "JOURNAL_STREAM": "8:9", **extra}
    if watchdog:
        env["WATCHDOG_USEC"] = str(round(watchdog * 1e6))
    return procs.start([PY.bin("supervise"), str(service)], env=env)


def environment(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_ready_once_up_status_line_and_a_clean_environment(
        procs: Processes, tmp_path: Path, notify: Datagrams) -> None:
    service = make_service(tmp_path, "hello", ENVDUMP)
    unit_supervise(procs, service, notify)
    index, _, ready = notify.wait(lambda m: "READY" in m, what="READY=1")
    pid = status_pid(service)
    assert pid and ready["READY"] == "1"
    assert re.fullmatch(rf"up \(pid {pid}\) \d+ seconds", ready["STATUS"]), ready
    # Nothing before READY=1 claimed the service was up.
    assert all("READY" not in m for m in notify.messages()[:-1])
    env = wait_until(lambda: (service / "env.out").exists() and environment(service / "env.out"),
                     timeout=10, message="the service's environment")
    for name in ("NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM", "WATCHDOG_USEC"):
        assert name not in env
    assert env["PATH"] == PATH

    PY.run("svc", "-d", service)
    notify.wait(lambda m: m.get("STATUS", "").startswith("down "), what="STATUS= down",
                start=index + 1)
    assert not any("READY" in m for m in notify.messages(index + 1))  # said once


READY_LATER = """#!/usr/bin/python3
import os, socket, time
with open("env.out", "w") as f:
    f.writelines(f"{k}={v}\\n" for k, v in os.environ.items())
time.sleep(1)
open("said", "w").close()
address = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", "\\0" + address[1:] if address[0] == "@" else address)
time.sleep(1000)
"""


def test_a_notifying_service_is_ready_when_it_says_so(
        procs: Processes, tmp_path: Path, notify: Datagrams) -> None:
    service = make_service(tmp_path, "slow", READY_LATER)
    (service / "sd-notify").write_text("main\n")
    unit_supervise(procs, service, notify, PYSVSCAN_NOTIFY_DIR=str(tmp_path / "none"))
    _, arrived, ready = notify.wait(lambda m: "READY" in m, what="READY=1")
    said = (service / "said").stat().st_mtime
    assert time.time() - (time.monotonic() - arrived) >= said - 0.05  # not before the service
    assert re.fullmatch(r"up \(pid \d+\) \d+ seconds, ready \d+ seconds", ready["STATUS"]), ready
    assert any(re.fullmatch(r"up \(pid \d+\) \d+ seconds, not ready", m.get("STATUS", ""))
               for m in notify.messages()), "STATUS= while starting"
    env = environment(service / "env.out")
    # its own socket, supervise's, never systemd's
    assert env["NOTIFY_SOCKET"] == (service / "supervise" / "notify-socket").read_text().strip()
    assert env["NOTIFY_SOCKET"] != str(notify.path)
    assert "INVOCATION_ID" not in env


def test_down_by_design_is_ready_at_once(procs: Processes, tmp_path: Path,
                                         notify: Datagrams) -> None:
    service = make_service(tmp_path, "idle", SLEEP, down=True)
    unit_supervise(procs, service, notify)
    _, _, ready = notify.wait(lambda m: "READY" in m, what="READY=1")
    assert re.fullmatch(r"down \d+ seconds", ready["STATUS"]), ready
    assert not status_pid(service)


def pings_between(notify: Datagrams, start: float, end: float) -> int:
    return sum(1 for t, m in notify.got if start <= t < end and m.get("WATCHDOG") == "1")


def test_pings_while_healthy_and_none_in_a_crash_loop(procs: Processes, tmp_path: Path,
                                                     notify: Datagrams) -> None:
    service = make_service(tmp_path, "flaky", SLEEP)
    unit_supervise(procs, service, notify, watchdog=1.5)
    notify.wait(lambda m: "READY" in m, what="READY=1")
    started = time.monotonic()
    wait_until(lambda: pings_between(notify, started, time.monotonic()) >= 3, timeout=5,
               message="three pings from a healthy supervise")
    _, _, ping = notify.wait(lambda m: m.get("WATCHDOG") == "1", what="a ping")
    assert ping["STATUS"].startswith("up (pid ")  # the status line rides with each ping

    write_script(service / "run", "#!/bin/sh\nexit 1\n")
    PY.run("svc", "-t", service)  # an intended end: the next ones are not
    wait_until(lambda: (service / "supervise" / "history").exists()
               and int(dict(line.split("=", 1) for line in
                            (service / "supervise" / "history").read_text().splitlines())
                       ["exits"]) >= 3,
               timeout=10, message="the crash loop")
    looping = time.monotonic()
    time.sleep(2.0)  # more than a watchdog period: systemd would act
    assert pings_between(notify, looping, time.monotonic()) == 0

    write_script(service / "run", SLEEP)  # mended: pings come back within a period
    mended = time.monotonic()
    notify.wait(lambda m: m.get("WATCHDOG") == "1", timeout=8, what="pings again",
                start=len(notify.got))
    assert time.monotonic() - mended < 6


def test_sigterm_stops_the_service_and_exits_0(procs: Processes, tmp_path: Path,
                                               notify: Datagrams) -> None:
    service = make_service(tmp_path, "hello", SLEEP)
    sv = unit_supervise(procs, service, notify)
    notify.wait(lambda m: "READY" in m, what="READY=1")
    pid = status_pid(service)
    sv.send_signal(signal.SIGTERM)
    assert sv.wait(timeout=10) == 0
    assert not alive(pid)
    stopping = [m for m in notify.messages() if m.get("STOPPING") == "1"]
    assert len(stopping) == 1 and stopping[0]["STATUS"].startswith("stopping: ")
    assert notify.messages()[-1].get("STATUS", "").startswith("down ")


def test_sigterm_without_notify_socket_is_0_76s(procs: Processes, tmp_path: Path) -> None:
    service = make_service(tmp_path, "hello", SLEEP)
    sv = procs.start([PY.bin("supervise"), str(service)], env={"PATH": PATH})
    pid = wait_until(lambda: status_pid(service), timeout=10, message="up")
    sv.send_signal(signal.SIGTERM)
    assert sv.wait(timeout=10) == -signal.SIGTERM  # killed, the service left running
    assert alive(pid)
    os.kill(pid, signal.SIGKILL)


COUNTER = """#!/usr/bin/python3
import signal, sys, time
n = 0
def term(*_):
    print(f"last {n}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    n += 1
    print(f"line {n}", flush=True)
    time.sleep(0.001)
"""


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_a_log_service_runs_alongside_and_comes_back(
        procs: Processes, tmp_path: Path, notify: Datagrams) -> None:
    service = make_service(tmp_path, "counter", COUNTER, log="#!/bin/sh\nexec cat >> out\n")
    sv = unit_supervise(procs, service, notify)
    notify.wait(lambda m: "READY" in m, what="READY=1")
    log_pid = wait_until(lambda: status_pid(service / "log"), timeout=10, message="log up")
    wait_until(lambda: (service / "log" / "out").exists()
               and (service / "log" / "out").stat().st_size > 2000,
               timeout=10, message="lines through the pipe")
    # The log supervise is supervise's child; killed (with its service), it is
    # started again on the same pipe.
    log_supervise = parent(log_pid)
    assert parent(log_supervise) == sv.pid
    os.kill(log_supervise, signal.SIGKILL)
    os.kill(log_pid, signal.SIGKILL)
    new_pid = wait_until(lambda: (p := status_pid(service / "log")) != log_pid and p,
                         timeout=10, message="the log service under a new log supervise")
    assert parent(parent(new_pid)) == sv.pid
    size = (service / "log" / "out").stat().st_size
    wait_until(lambda: (service / "log" / "out").stat().st_size > size + 2000, timeout=10,
               message="lines through the same pipe again")


def test_stop_takes_the_service_down_then_its_logger_with_no_line_lost(
        procs: Processes, tmp_path: Path, notify: Datagrams) -> None:
    service = make_service(tmp_path, "counter", COUNTER, log="#!/bin/sh\nexec cat > out\n")
    sv = unit_supervise(procs, service, notify)
    notify.wait(lambda m: "READY" in m, what="READY=1")
    pid = status_pid(service)
    log_pid = wait_until(lambda: status_pid(service / "log"), timeout=10, message="log up")
    log_supervise = parent(log_pid)
    wait_until(lambda: (service / "log" / "out").exists()
               and (service / "log" / "out").stat().st_size > 5000,
               timeout=10, message="lines through the pipe")
    sv.send_signal(signal.SIGTERM)
    assert sv.wait(timeout=20) == 0
    assert not any(alive(p) for p in (pid, log_pid, log_supervise))
    lines = (service / "log" / "out").read_text().splitlines()
    last = re.fullmatch(r"last (\d+)", lines[-1])  # the logger outlived the service
    assert last, lines[-3:]
    assert lines[:-1] == [f"line {n}" for n in range(1, int(last.group(1)) + 1)]
