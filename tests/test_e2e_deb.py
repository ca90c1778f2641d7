"""The Debian package end to end on systemd booted in a container (issue 6, `make e2e`;
systemd.md §5.1, §6.4).

The .deb is built once per module by packaging/build.sh, as `make deb` builds it
(test_packaging.build), and installed inside one Debian 12 container with
`apt-get install ./pysvscan_*.deb`, never on this machine (it conflicts with the
daemontools package the rest of the suite uses as its reference). The tests then run
in file order on that container, the way an operator meets the package: installed,
enabled and running; stop and start; a service dropped into /etc/service; its output
in the journal; reload; a clean stop with every log line kept; an upgrade that
leaves svscan running; purge.

Cost: the deb builds in about 4 s; the rootfs is built once by tests/container.sh
(debootstrap, about a minute; then cached in /var/tmp/pysvscan-rootfs), each run
copies it and boots; see README "Packaging" for the measured times.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import wait_until
from containerlib import (COUNTER_LOG_RUN, COUNTER_RUN, PROGRAMS, Container,
                          assert_one_whole_counter_run, journal, require_container, svstat,
                          up_pid)
from test_packaging import build, deb_listing

UNIT = "pysvscan.service"
WANTS = "/etc/systemd/system/multi-user.target.wants/pysvscan.service"

# A service that does nothing, slowly; `sleep 86399` also marks its processes.
IDLE_RUN = """#!/bin/sh
exec sleep 86399
"""
# The operator's example service: a numbered greeting every half second.
GREETER_RUN = """#!/bin/sh
i=0
while :; do i=$((i + 1)); echo "greeting $i"; sleep 0.5; done
"""
# Anything that belongs to pysvscan or to a service it started.
OURS = re.compile(r"svscan|supervise|multilog|python3|/srv/|sleep 86399")


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build("deb", tmp_path_factory.mktemp("e2e-deb"))
    print(f"\n.deb built in {built.seconds:.1f} s")
    return built.one("pysvscan_*_all.deb")


@pytest.fixture(scope="module")
def box(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    require_container()
    started = time.monotonic()
    box = Container.boot(tmp_path_factory.mktemp("e2e-container"))
    try:
        booted = time.monotonic()
        box.install_deb(deb)
        print(f"container booted in {booted - started:.1f} s, "
              f"package installed in {time.monotonic() - booted:.1f} s")
        yield box
    finally:
        box.halt()


def ours(box: Container) -> list[str]:
    """The container's processes that are pysvscan's or its services'."""
    return [args for args in box.run("ps", "-eo", "args=").stdout.splitlines()
            if OURS.search(args) and not args.startswith("ps ")]


def up_within(box: Container, name: str, seconds: float, message: str) -> float:
    """Wait until svstat shows /etc/service/NAME up; return how long that took."""
    started = time.monotonic()
    wait_until(lambda: up_pid(box, name), timeout=seconds, message=message)
    return time.monotonic() - started


def test_install_enables_and_starts_the_unit(box: Container) -> None:
    assert box.run("systemctl", "is-enabled", UNIT).stdout.strip() == "enabled"
    assert box.run("systemctl", "is-active", UNIT).stdout.strip() == "active"
    assert box.root.joinpath(WANTS.lstrip("/")).is_symlink()
    # The package's unit and programs, not copies from anywhere else.
    assert box.show(UNIT, "FragmentPath") == "/lib/systemd/system/pysvscan.service"
    main_pid = box.show(UNIT, "MainPID")
    assert main_pid != "0"
    cmdline = box.run("cat", f"/proc/{main_pid}/cmdline").stdout.split("\0")
    assert "/usr/bin/svscan" in cmdline and "/etc/service" in cmdline, cmdline
    assert box.run("dpkg-query", "-S", "/usr/bin/svscan").stdout.strip() == \
        "pysvscan: /usr/bin/svscan"
    for program in PROGRAMS:
        section = "1" if program == "pysvscan" else "8"
        assert box.run("test", "-x", f"/usr/bin/{program}", check=False).returncode == 0, \
            program
        assert box.run("test", "-f", f"/usr/share/man/man{section}/{program}.{section}.gz",
                       check=False).returncode == 0, program
    # /etc/service: there, and empty until the operator adds a service.
    assert box.sh("test -d /etc/service && ls -A /etc/service") == ""
    assert box.show(UNIT, "StatusText") == "0 services: 0 up, 0 down"


def test_start_returns_only_after_ready(box: Container) -> None:
    box.run("systemctl", "stop", UNIT, timeout=120)
    assert box.show(UNIT, "ActiveState") == "inactive"
    box.write("/srv/idle/run", IDLE_RUN, 0o755)
    box.write("/srv/counter/run", COUNTER_RUN, 0o755)
    box.write("/srv/counter/log/run", COUNTER_LOG_RUN, 0o755)
    box.sh("ln -s /srv/idle /etc/service/idle && ln -s /srv/counter /etc/service/counter")
    started = time.monotonic()
    box.run("systemctl", "start", UNIT)
    elapsed = time.monotonic() - started
    # READY=1 came only after the first scan started every supervise: the moment
    # `systemctl start` returns, the unit is active and svok exits 0 on each.
    assert box.show(UNIT, "ActiveState") == "active"
    report = box.sh('for d in /etc/service/* /etc/service/*/log; do '
                    '[ -d "$d" ] || continue; svok "$d"; echo "$d $?"; done')
    assert report.splitlines() == ["/etc/service/counter 0", "/etc/service/idle 0",
                                   "/etc/service/counter/log 0"]
    assert elapsed < 10


def test_a_service_dropped_into_etc_service_is_up_within_6_s(box: Container) -> None:
    # As operators do: the directory made elsewhere, then a symlink to it.
    box.write("/srv/greeter/run", GREETER_RUN, 0o755)
    box.run("ln", "-s", "/srv/greeter", "/etc/service/greeter")
    seconds = up_within(box, "greeter", 6, "the dropped service up in svstat")
    print(f"\ndropped service up after {seconds:.1f} s")
    assert re.fullmatch(r"/etc/service/greeter: up \(pid \d+\) \d+ seconds",
                        svstat(box, "greeter"))


def test_its_output_appears_under_its_name_in_the_journal(box: Container) -> None:
    wait_until(lambda: "greeting 2" in journal(box, "-t", "greeter"), timeout=10,
               message="the greeter's lines under journalctl -t greeter")
    lines = journal(box, "-t", "greeter")
    assert lines[:2] == ["greeting 1", "greeting 2"], lines[:5]
    assert "greeting 1" in journal(box, "-u", UNIT, "SERVICE=greeter")


def test_reload_picks_up_a_new_service_at_once(box: Container) -> None:
    box.write("/srv/probe/run", IDLE_RUN, 0o755)
    box.write("/srv/fresh/run", IDLE_RUN, 0o755)
    # The probe comes up on a periodic scan, so the next one is about 5 s away ...
    box.run("ln", "-s", "/srv/probe", "/etc/service/probe")
    up_within(box, "probe", 7, "the probe up on the next periodic scan")
    scanned = time.monotonic()
    # ... and a service that comes up well before that was started by the reload.
    box.run("ln", "-s", "/srv/fresh", "/etc/service/fresh")
    box.run("systemctl", "reload", UNIT)
    seconds = up_within(box, "fresh", 2, "the new service up after systemctl reload")
    since_scan = time.monotonic() - scanned
    print(f"\nnew service up {seconds:.2f} s after `systemctl reload` returned, "
          f"{since_scan:.2f} s after the probe came up")
    assert since_scan < 3.5
    assert box.show(UNIT, "ActiveState") == "active"


def test_stop_takes_services_down_before_their_loggers_and_loses_no_line(
        box: Container) -> None:
    assert box.show(UNIT, "MainPID") != "0"
    started = time.monotonic()
    box.run("systemctl", "stop", UNIT, timeout=120)
    elapsed = time.monotonic() - started
    assert box.show(UNIT, "ActiveState") == "inactive"
    assert box.show(UNIT, "Result") == "success"
    assert assert_one_whole_counter_run(box) > 500  # a second's lines at least
    assert elapsed < 30
    assert ours(box) == []


def test_upgrade_by_reinstalling_keeps_the_main_pid(box: Container, deb: Path) -> None:
    box.run("systemctl", "start", UNIT)
    greeter = wait_until(lambda: up_pid(box, "greeter"), timeout=5, message="greeter up")
    main_pid = box.show(UNIT, "MainPID")
    since = box.show(UNIT, "ActiveEnterTimestampMonotonic")
    output = box.install_deb(deb, reinstall=True)
    assert re.search(r"Unpacking pysvscan \(\S+\) over \(\S+\)", output), output
    assert "Setting up pysvscan" in output, output
    # Not restarted, not even briefly (--no-restart-on-upgrade): the same svscan, the
    # same active period, and so the same services.
    assert box.show(UNIT, "MainPID") == main_pid
    assert box.show(UNIT, "ActiveEnterTimestampMonotonic") == since
    assert box.show(UNIT, "NRestarts") == "0"
    assert box.show(UNIT, "ActiveState") == "active"
    assert up_pid(box, "greeter") == greeter
    assert box.run("systemctl", "is-enabled", UNIT).stdout.strip() == "enabled"


def test_purge_stops_the_unit_and_removes_everything(box: Container, deb: Path,
                                                      tmp_path: Path) -> None:
    assert ours(box) != []
    box.run("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q",
            "-o", "Dpkg::Use-Pty=0", "pysvscan", timeout=300)
    assert ours(box) == []
    assert box.run("systemctl", "is-active", UNIT, check=False).stdout.strip() == "inactive"
    assert box.show(UNIT, "LoadState") == "not-found"
    assert box.run("dpkg-query", "-W", "pysvscan", check=False).returncode != 0
    # No file of the package is left, nor the bytecode its postinst compiled, nor
    # the enablement symlink and deb-systemd-helper's record of it.
    files = [path for path, entry in deb_listing(deb, tmp_path).items()
             if not entry.mode.startswith("d")]
    assert "/usr/bin/svscan" in files and "/lib/systemd/system/pysvscan.service" in files
    left = box.run("sh", "-c", 'while read -r f; do '
                   'if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi; done',
                   input="\n".join(files + [
                       "/usr/lib/python3/dist-packages/pysvscan", "/usr/share/doc/pysvscan",
                       WANTS, "/var/lib/systemd/deb-systemd-helper-enabled/pysvscan.service",
                       "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants"
                       "/pysvscan.service"]) + "\n").stdout
    assert left == ""
    # What the operator put in /etc/service stays.
    assert sorted(box.sh("ls -A /etc/service").split()) == [
        "counter", "fresh", "greeter", "idle", "probe"]
