"""`pysvscan add` and `pysvscan remove` against a real svscan."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from conftest import (C, PY, Processes, alive, make_service, require_c_reference, status_pid,
                      supervise_ready, wait_until)
from test_cli import pysvscan, start_svscan

BIN = PY.bindir


def layout(tmp_path: Path) -> tuple[Path, Path]:
    scandir, svdir = tmp_path / "service", tmp_path / "sv"
    scandir.mkdir()
    return scandir, svdir


def test_add_writes_the_service_links_it_and_svscan_starts_it_at_once(
        tmp_path: Path, procs: Processes) -> None:
    scandir, svdir = layout(tmp_path)
    svscan = start_svscan(procs, scandir)
    started = time.monotonic()
    r = pysvscan("add", "web", "--svdir", svdir, "--scandir", scandir, "--user", "nobody",
                 "--env", "PORT=8080", "--env", "GREETING=hello world", "--",
                 "sh", "-c", 'echo "port=$PORT $GREETING uid=$(id -u)"; exec sleep 1000')
    assert r.returncode == 0, r.stderr
    web = svdir / "web"
    assert r.stdout.splitlines() == [
        f"created {web}/run", f"created {web}/env/PORT", f"created {web}/env/GREETING",
        f"created {web}/log/run", f"linked {scandir}/web -> {web}",
        f"svscan (pid {svscan.pid}) rescans now: web starts at once"]
    assert (web / "run").read_text() == (
        "#!/bin/sh\n# web: written by pysvscan add\nexec 2>&1\n"
        f"exec {BIN}/envdir ./env {BIN}/setuidgid nobody sh -c "
        "'echo \"port=$PORT $GREETING uid=$(id -u)\"; exec sleep 1000'\n")
    assert (web / "log" / "run").read_text() == f"#!/bin/sh\nexec {BIN}/multilog t ./main\n"
    assert (web / "env" / "PORT").read_text() == "8080\n"
    assert stat.S_IMODE((web / "env").stat().st_mode) == 0o700
    assert stat.S_IMODE((web / "env" / "PORT").stat().st_mode) == 0o600
    assert stat.S_IMODE((web / "run").stat().st_mode) == 0o755
    assert os.readlink(scandir / "web") == str(web)
    assert [p.name for p in scandir.iterdir()] == ["web"]  # no temporary names left
    assert [p.name for p in svdir.iterdir()] == ["web"]

    # SIGALRM: up well before svscan's next periodic scan (5 s after its first)
    wait_until(lambda: status_pid(web) and status_pid(web / "log"), timeout=10)
    assert time.monotonic() - started < 3.5
    current = web / "log" / "main" / "current"
    nobody = os.popen("id -u nobody").read().strip()
    wait_until(lambda: current.exists() and b"port=8080" in current.read_bytes(),
               message="the service's line in its log")
    assert f"port=8080 hello world uid={nobody}".encode() in current.read_bytes()


def test_add_log_choices_and_down(tmp_path: Path, procs: Processes) -> None:
    scandir, svdir = layout(tmp_path)
    start_svscan(procs, scandir)
    r = pysvscan("add", "j", "--svdir", svdir, "--scandir", scandir, "--log", "journal",
                 "--", "sleep", "1000")
    assert r.returncode == 0, r.stderr
    assert (svdir / "j" / "log" / "run").read_text() == f"#!/bin/sh\nexec {BIN}/multilog J\n"
    r = pysvscan("add", "quiet", "--svdir", svdir, "--scandir", scandir, "--log", "none",
                 "--down", "--", "sleep", "1000")
    assert r.returncode == 0, r.stderr
    assert not (svdir / "quiet" / "log").exists() and (svdir / "quiet" / "down").exists()
    assert (svdir / "quiet" / "run").read_text() == (
        "#!/bin/sh\n# quiet: written by pysvscan add\nexec sleep 1000\n")  # no 2>&1
    quiet = scandir / "quiet"
    wait_until(lambda: supervise_ready(quiet) and status_pid(scandir / "j"), timeout=10)
    r = pysvscan("status", "--scandir", scandir, "--json", "quiet")
    assert '"state": "down"' in r.stdout and '"normally": "down"' in r.stdout


def test_add_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    scandir, svdir = layout(tmp_path)
    make_service(scandir, "taken", "#!/bin/sh\nexec sleep 1000\n")
    where = ("--svdir", svdir, "--scandir", scandir)
    cases = [
        (["a/b", "--", "true"], "Error: bad service name 'a/b'"),
        ([".x", "--", "true"], "Error: bad service name '.x'"),
        (["", "--", "true"], "Error: bad service name ''"),
        (["taken", "--", "true"], f"Error: {scandir}/taken already exists"),
        (["u", "--user", "no-such-user-here", "--", "true"],
         "Error: no such user 'no-such-user-here'"),
        (["e", "--env", "NOEQUALS", "--", "true"], "Error: bad --env 'NOEQUALS'"),
        (["e", "--env", "A/B=1", "--", "true"], "Error: bad --env 'A/B=1'"),
        (["e", "--env", "A=1", "--env", "A=2", "--", "true"], "Error: --env A given twice"),
    ]
    for args, message in cases:
        r = pysvscan("add", *where, *args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith(message) and r.stderr.count("\n") == 1, (args, r.stderr)
    r = pysvscan("add", "x", "--svdir", scandir, "--scandir", scandir, "--", "true")
    assert r.returncode == 1 and "outside the scan directory" in r.stderr
    r = pysvscan("add", *where, "x")  # no command
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert not svdir.exists() or list(svdir.iterdir()) == []
    assert [p.name for p in scandir.iterdir()] == ["taken"]


def test_add_without_svscan_says_when_it_will_start(tmp_path: Path) -> None:
    scandir, svdir = layout(tmp_path)
    r = pysvscan("add", "later", "--svdir", svdir, "--scandir", scandir, "--", "true")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == (f"no svscan is running on {scandir}: later starts "
                                         "when one does (systemctl start pysvscan)")


def test_add_never_signals_the_c_svscan(tmp_path: Path, procs: Processes) -> None:
    """daemontools' svscan has no SIGALRM handler: the signal would kill it."""
    require_c_reference()
    scandir, svdir = layout(tmp_path)
    svscan = procs.start([C.bin("svscan"), str(scandir)], env={"PATH": "/usr/bin:/bin"})
    wait_until(lambda: os.readlink(f"/proc/{svscan.pid}/cwd") == str(scandir))
    r = pysvscan("add", "c", "--svdir", svdir, "--scandir", scandir, "--", "sleep", "1000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == (f"svscan (pid {svscan.pid}) starts c at its next "
                                         "scan, within 5 seconds")
    wait_until(lambda: status_pid(scandir / "c"), timeout=10)
    assert svscan.poll() is None


BYE = """#!/bin/sh
trap 'echo bye; exit 0' TERM
echo hello
while :; do sleep 0.1; done
"""


def test_remove_stops_service_then_log_then_deletes(tmp_path: Path, procs: Processes) -> None:
    scandir, svdir = layout(tmp_path)
    svscan = start_svscan(procs, scandir)
    web = make_service(svdir, "web", BYE, log=f"#!/bin/sh\nexec {BIN}/multilog t ./main\n")
    (scandir / "web").symlink_to(web)
    os.kill(svscan.pid, 14)
    pid = wait_until(lambda: status_pid(web) and status_pid(web / "log") and status_pid(web))
    current = web / "log" / "main" / "current"
    wait_until(lambda: current.exists() and b"hello" in current.read_bytes())

    r = pysvscan("remove", "web", "--keep", "--scandir", scandir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"unlinked {scandir}/web (-> {web})", "web: stopped, supervise exited",
        "web/log: stopped, supervise exited", f"kept {web}"]
    assert not os.path.lexists(scandir / "web")
    assert not supervise_ready(web) and not supervise_ready(web / "log")
    assert not alive(pid)
    # the logger was stopped after the service: its last line is in the log
    assert current.read_bytes().endswith(b" bye\n")

    (scandir / "web").symlink_to(web)  # back in, then out for good
    os.kill(svscan.pid, 14)
    wait_until(lambda: status_pid(web) and supervise_ready(web / "log"))
    r = pysvscan("remove", "web", "--scandir", scandir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"deleted {web}"
    assert not web.exists()


def test_remove_hides_a_directory_of_the_scan_directory(tmp_path: Path,
                                                         procs: Processes) -> None:
    scandir, _ = layout(tmp_path)
    plain = make_service(scandir, "plain", "#!/bin/sh\nexec sleep 1000\n")
    start_svscan(procs, scandir)
    wait_until(lambda: status_pid(plain), timeout=10)
    r = pysvscan("remove", "plain", "--scandir", scandir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"moved {plain} to {scandir}/.plain (svscan ignores it)",
        "plain: stopped, supervise exited", f"deleted {scandir}/.plain"]
    assert list(scandir.iterdir()) == []


def test_remove_errors(tmp_path: Path, procs: Processes) -> None:
    scandir, svdir = layout(tmp_path)
    r = pysvscan("remove", "nope", "--scandir", scandir)
    assert r.returncode == 1 and r.stderr == f"Error: no service 'nope' in {scandir}\n"
    r = pysvscan("remove", "web/log", "--scandir", scandir)
    assert r.returncode == 1 and r.stderr == "Error: web/log: remove the service it belongs to\n"

    stubborn = make_service(svdir, "stubborn", "#!/bin/sh\ntrap '' TERM\n"
                            "while :; do sleep 0.1; done\n")
    (scandir / "stubborn").symlink_to(stubborn)
    start_svscan(procs, scandir)
    wait_until(lambda: status_pid(stubborn), timeout=10)
    # SIGTERM ignored: SIGKILL after --timeout, as svscan's shutdown does, then on
    r = pysvscan("remove", "stubborn", "--timeout", "1", "--scandir", scandir)
    assert r.returncode == 0, r.stderr
    assert "stubborn: killed after 1 s (svc -k), supervise exited" in r.stdout
    assert not stubborn.exists() and not os.path.lexists(scandir / "stubborn")
