"""pysvscan.service on systemd booted in a container (systemd.md §6.4, issue 5 layer c).

One Debian 12 container per module: pysvscan installed from the working tree, the
shipped unit with one drop-in (a 3-second watchdog, so a test can wait it out), and
four services in /etc/service. The tests run in file order on that one container,
the way an operator would meet them: start, read the journal, readiness, a service's
watchdog, a clean stop with its logs intact, then svscan itself wedged.

Cost: the rootfs is built once by tests/container.sh (debootstrap, about a minute;
then cached in /var/tmp/pysvscan-rootfs); each run copies it and boots in about a
second, and the whole module takes about 30 s.
"""

from __future__ import annotations

import json
import re
import time
from typing import Iterator

import pytest

from conftest import wait_until
from containerlib import (COUNTER_LOG_RUN, COUNTER_RUN, Container, assert_one_whole_counter_run,
                          journal, require_container, svstat, up_pid)

UNIT = "pysvscan.service"

HELLO_RUN = """#!/bin/sh
i=0
while :; do i=$((i + 1)); echo "hello $i"; sleep 0.2; done
"""
# Ready half a second after start, through the notify socket supervise gives it.
READY_RUN = """#!/usr/bin/python3
import os, time, sdnotify
time.sleep(0.5)
sdnotify.SystemdNotifier().notify("READY=1")
while True:
    time.sleep(60)
"""
# Pings its 1-second watchdog for 2 seconds, then wedges (never exits by itself).
WEDGE_RUN = """#!/usr/bin/python3
import time, sdnotify
n = sdnotify.SystemdNotifier()
n.notify("READY=1")
for _ in range(8):
    n.notify("WATCHDOG=1")
    time.sleep(0.25)
print("wedged", flush=True)
while True:
    time.sleep(60)
"""
WATCHDOG_DROPIN = """[Service]
WatchdogSec=3s
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    require_container()
    started = time.monotonic()
    box = Container.boot(tmp_path_factory.mktemp("container"))
    try:
        box.install_pysvscan()
        box.write("/etc/systemd/system/pysvscan.service.d/test.conf", WATCHDOG_DROPIN)
        box.run("systemctl", "daemon-reload")
        for name, run in (("hello", HELLO_RUN), ("ready", READY_RUN),
                          ("counter", COUNTER_RUN)):
            box.write(f"/srv/{name}/run", run, 0o755)
        box.write("/srv/ready/sd-notify", "main\n")
        box.write("/srv/counter/log/run", COUNTER_LOG_RUN, 0o755)
        box.write("/srv/wedge/run", WEDGE_RUN, 0o755)
        box.write("/srv/wedge/sd-notify", "main\n")
        box.write("/srv/wedge/watchdog", "1\n")
        box.sh("for s in hello ready counter; do ln -s /srv/$s /etc/service/$s; done")
        print(f"\ncontainer booted and pysvscan installed in {time.monotonic() - started:.1f} s")
        yield box
    finally:
        box.halt()


def new_up_pid(box: Container, name: str, old: int) -> int:
    """The service's pid once it is up under a pid other than `old`, else 0."""
    pid = up_pid(box, name)
    return pid if pid != old else 0


def new_main_pid(box: Container, old: str) -> str:
    pid = box.show(UNIT, "MainPID")
    return pid if pid not in ("0", old) else ""


def test_start_returns_on_ready_after_every_supervise_started(box: Container) -> None:
    started = time.monotonic()
    box.run("systemctl", "start", UNIT)
    elapsed = time.monotonic() - started
    # READY=1 came after the first scan started every supervise, so each one is
    # already there the moment `systemctl start` returns (svok exits 0).
    for name in ("hello", "ready", "counter", "counter/log"):
        assert box.run("svok", f"/etc/service/{name}", check=False).returncode == 0, name
    assert box.show(UNIT, "ActiveState") == "active"
    assert box.show(UNIT, "Type") == "notify"
    assert elapsed < 10
    wait_until(lambda: box.show(UNIT, "StatusText").startswith("3 services"),
               timeout=10, message="svscan's STATUS=")
    status = box.show(UNIT, "StatusText")
    assert re.fullmatch(r"3 services: [0-3] up( \([01] ready\))?, [0-3] down", status), status
    wait_until(lambda: box.show(UNIT, "StatusText").startswith("3 services: 3 up (1 ready)"),
               timeout=10, message="STATUS= counting every service up and ready")


def test_service_lines_reach_the_journal_under_the_service_name(box: Container) -> None:
    wait_until(lambda: "hello 3" in journal(box, "-t", "hello"), timeout=10,
               message="hello's lines under journalctl -t hello")
    lines = journal(box, "-u", UNIT, "SERVICE=hello")
    assert "hello 1" in lines and "hello 2" in lines
    # The counter's stdout goes to its logger, never to the journal.
    assert not [line for line in journal(box, "-t", "counter") if line.startswith("line ")]


def test_sd_notify_service_shows_ready_in_svstat(box: Container) -> None:
    wait_until(lambda: ", ready " in svstat(box, "ready"), timeout=10,
               message="svstat ... ready N seconds")
    line = svstat(box, "ready")
    assert re.fullmatch(r"/etc/service/ready: up \(pid \d+\) \d+ seconds, ready \d+ seconds",
                        line), line
    # Services that did not opt in keep the C's line exactly.
    assert re.fullmatch(r"/etc/service/hello: up \(pid \d+\) \d+ seconds", svstat(box, "hello"))


def test_pysvscan_status_and_doctor_under_systemd(box: Container) -> None:
    """The `pysvscan` command on a real unit: the table and its exit status, and
    doctor's chain including the unit's state as systemctl reports it."""
    status = box.run("pysvscan", "status", "--json", check=False)
    assert status.returncode == 0, status.stdout + status.stderr  # all up as wanted
    rows = {row["name"]: row for row in json.loads(status.stdout)["services"]}
    assert rows["hello"]["state"] == "up" and rows["ready"]["ready"] is True
    assert rows["hello"]["log"]["journal"] is True  # journal mode: hello has no log/
    assert rows["counter/log"]["state"] == "up"
    doctor = box.run("pysvscan", "doctor", check=False)
    assert "systemd unit pysvscan.service: active (running)" in doctor.stdout, doctor.stdout
    assert doctor.returncode == 0, doctor.stdout


def test_reload_picks_up_a_service_whose_watchdog_then_kills_and_restarts_it(
        box: Container) -> None:
    box.run("ln", "-s", "/srv/wedge", "/etc/service/wedge")
    box.run("systemctl", "reload", UNIT)
    # At once: well before the next 5-second scan could have found it.
    first = wait_until(lambda: up_pid(box, "wedge"), timeout=2.5,
                       message="the new service up after systemctl reload")
    # 2 s of pings, then silence: SIGABRT after 1 s more, and supervise starts it again.
    second = wait_until(lambda: new_up_pid(box, "wedge", first), timeout=15,
                        message="the wedged service killed and restarted")
    assert second != first
    messages = journal(box, "-u", UNIT, "SERVICE=wedge")
    assert any(f"supervise: warning: watchdog timeout for wedge (1 seconds), sending SIGABRT to pid {first}"
               in m for m in messages), messages
    assert box.show(UNIT, "ActiveState") == "active"
    box.run("rm", "/etc/service/wedge")
    box.run("svc", "-dx", "/srv/wedge")


def test_stop_takes_services_down_before_their_loggers_and_loses_no_line(
        box: Container) -> None:
    main_pid = box.show(UNIT, "MainPID")
    time.sleep(1)  # a second of lines at 1000 a second
    started = time.monotonic()
    box.run("systemctl", "stop", UNIT, timeout=120)
    elapsed = time.monotonic() - started
    assert box.show(UNIT, "ActiveState") == "inactive"
    assert box.show(UNIT, "Result") == "success"
    assert assert_one_whole_counter_run(box) > 500  # a second's lines at least
    # Nothing of the tree is left in the unit's cgroup.
    assert box.show(UNIT, "MainPID") == "0"
    assert main_pid != "0"
    assert elapsed < 30
    left = [args for args in box.run("ps", "-eo", "args=").stdout.splitlines()
            if re.search(r"supervise|svscan|multilog|/srv/", args)]
    assert not left


def test_stopped_svscan_ends_in_result_watchdog_and_a_restart(box: Container) -> None:
    box.run("systemctl", "start", UNIT)
    main_pid = box.show(UNIT, "MainPID")
    hello = wait_until(lambda: up_pid(box, "hello"), timeout=5, message="hello up")
    box.run("systemctl", "kill", "--kill-whom=main", "-s", "SIGSTOP", UNIT)
    wait_until(lambda: any("Failed with result 'watchdog'" in line
                           for line in journal(box, "-u", UNIT)),
               timeout=20, message="systemd's watchdog to fire")
    new_pid = wait_until(lambda: new_main_pid(box, main_pid), timeout=20, message="pysvscan restarted")
    assert int(box.show(UNIT, "NRestarts")) >= 1
    wait_until(lambda: box.show(UNIT, "ActiveState") == "active", timeout=10,
               message="the restarted unit active")
    messages = journal(box, "-u", UNIT)
    assert any("Watchdog timeout" in line for line in messages), messages[-20:]
    # faulthandler: the SIGABRT left svscan's Python stack in the journal.
    assert any("Fatal Python error: Aborted" in line for line in messages), messages[-20:]
    new_hello = wait_until(lambda: new_up_pid(box, "hello", hello), timeout=10, message="hello up again under the new svscan")
    assert new_pid != main_pid and new_hello != hello
    box.run("systemctl", "stop", UNIT, timeout=120)
