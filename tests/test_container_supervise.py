"""pysvscan-supervise@.service on systemd booted in a container (issue 9, req. 4).

One service directory per unit, no svscan: supervise is the unit's main process and
talks to systemd itself. One container for the module (tests/container.sh, about a
second to boot once its rootfs is cached); pysvscan installed from the working tree;
the template gets a 3-second watchdog through a drop-in so that tests can wait it out.
"""

from __future__ import annotations

import re
import time
from typing import Iterator

import pytest

from conftest import wait_until
from containerlib import (COUNTER_LOG_RUN, COUNTER_RUN, Container, assert_one_whole_counter_run,
                          counter_runs, journal, require_container, svstat, up_pid)

HELLO_RUN = """#!/bin/sh
i=0
while :; do i=$((i + 1)); echo "hello $i"; sleep 0.2; done
"""
BROKEN_RUN = """#!/bin/sh
echo "broken: giving up"
exit 1
"""
DROPIN = """[Service]
WatchdogSec=3s
"""


def unit(name: str) -> str:
    return f"pysvscan-supervise@{name}.service"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    require_container()
    box = Container.boot(tmp_path_factory.mktemp("container"))
    try:
        box.install_pysvscan()
        box.write("/etc/systemd/system/pysvscan-supervise@.service.d/test.conf", DROPIN)
        box.write("/etc/service/hello/run", HELLO_RUN, 0o755)
        box.write("/etc/service/counter/run", COUNTER_RUN, 0o755)
        box.write("/etc/service/counter/log/run", COUNTER_LOG_RUN, 0o755)
        box.write("/etc/service/broken/run", BROKEN_RUN, 0o755)
        box.run("systemctl", "daemon-reload")
        yield box
    finally:
        box.halt()


def leftovers(box: Container, path: str) -> list[str]:
    """Processes whose command line or working directory is under `path`."""
    script = ("for p in /proc/[0-9]*; do c=$(readlink $p/cwd 2>/dev/null) || continue; "
              f"case $c in {path}*) tr '\\0' ' ' < $p/cmdline; echo;; esac; done")
    return [line for line in box.sh(script).splitlines() if line.strip()]


def test_start_returns_once_the_service_is_up(box: Container) -> None:
    started = time.monotonic()
    box.run("systemctl", "start", unit("hello"))
    elapsed = time.monotonic() - started
    pid = up_pid(box, "hello")  # at once: READY=1 came after the service started
    assert pid, svstat(box, "hello")
    assert box.show(unit("hello"), "ActiveState") == "active"
    assert elapsed < 10
    main = box.show(unit("hello"), "MainPID")
    assert "supervise" in box.run("cat", f"/proc/{main}/cmdline").stdout
    # svstat and systemctl status tell the same story.
    wait_until(lambda: box.show(unit("hello"), "StatusText").startswith(f"up (pid {pid}) "),
               timeout=5, message="STATUS= with svstat's line")
    status = box.run("systemctl", "status", "--no-pager", unit("hello")).stdout
    assert f'Status: "up (pid {pid}) ' in status
    # The service's output is the unit's, under the service's name.
    wait_until(lambda: "hello 3" in journal(box, "-t", "hello"), timeout=10,
               message="hello's lines in journalctl -t hello")
    assert "hello 2" in journal(box, "-u", unit("hello"))


def test_svc_works_under_the_unit(box: Container) -> None:
    first = up_pid(box, "hello")
    box.run("svc", "-t", "/etc/service/hello")
    second = wait_until(lambda: (p := up_pid(box, "hello")) != first and p, timeout=10,
                        message="hello restarted by supervise")
    assert second != first
    assert box.show(unit("hello"), "NRestarts") == "0"  # supervise restarted it, not systemd
    assert box.run("svok", "/etc/service/hello", check=False).returncode == 0


def test_a_wedged_supervise_ends_in_result_watchdog_and_a_restart(box: Container) -> None:
    main = box.show(unit("hello"), "MainPID")
    hello = up_pid(box, "hello")
    box.run("systemctl", "kill", "--kill-whom=main", "-s", "SIGSTOP", unit("hello"))
    wait_until(lambda: any("Failed with result 'watchdog'" in line
                           for line in journal(box, "-u", unit("hello"))),
               timeout=20, message="systemd's watchdog to fire")
    wait_until(lambda: box.show(unit("hello"), "MainPID") not in ("0", main), timeout=20,
               message="the unit restarted")
    wait_until(lambda: up_pid(box, "hello") not in (0, hello), timeout=10,
               message="hello up under the new supervise")
    assert int(box.show(unit("hello"), "NRestarts")) >= 1
    # exactly one copy of the service: the old one went with the old supervise
    copies = [line for line in leftovers(box, "/etc/service/hello") if "./run" in line]
    assert len(copies) == 1, copies


def test_stop_leaves_nothing_behind(box: Container) -> None:
    box.run("systemctl", "stop", unit("hello"), timeout=120)
    assert box.show(unit("hello"), "ActiveState") == "inactive"
    assert not leftovers(box, "/etc/service/hello")
    assert re.fullmatch(r"/etc/service/hello: supervise not running", svstat(box, "hello"))


def test_logged_service_stops_before_its_logger_with_no_line_lost(box: Container) -> None:
    box.run("systemctl", "start", unit("counter"))
    wait_until(lambda: up_pid(box, "counter/log"), timeout=10, message="the logger up")
    wait_until((box.root / "etc/service/counter/log/main/current").exists, timeout=10,
               message="multilog's current")
    wait_until(lambda: len(counter_runs(box, "/etc/service/counter")[-1]) > 1000, timeout=10,
               message="a thousand lines logged")
    box.run("systemctl", "stop", unit("counter"), timeout=120)
    assert box.show(unit("counter"), "Result") == "success"
    assert_one_whole_counter_run(box, "/etc/service/counter")
    assert not leftovers(box, "/etc/service/counter")


def test_a_crash_loop_stops_the_pings_and_systemd_acts(box: Container) -> None:
    box.run("systemctl", "start", unit("broken"), check=False)  # READY=1 never comes
    wait_until(lambda: any("Failed with result 'watchdog'" in line
                           for line in journal(box, "-u", unit("broken"))),
               timeout=30, message="the watchdog to fire for a crash loop")
    assert "broken: giving up" in journal(box, "-t", "broken")
    box.run("systemctl", "stop", unit("broken"), timeout=120)
