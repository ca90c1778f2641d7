"""svscan's journal mode against a real systemd-journald (systemd.md §3.4, §6.1).

journald runs standalone in a private mount namespace (tests/journald_ns.sh): tmpfs on
/run and /var/log/journal, so the host's journal and sockets are neither seen nor
touched. svscan runs inside that namespace (`nsenter --mount`), scanning a directory
under pytest's tmp_path, which the namespace shares; `journalctl -o json` read back
what it sent. One journald serves the module; every test uses service names of its own.

Needs root and the Debian packages systemd (systemd-journald, journalctl, systemd-cat)
and util-linux (unshare, nsenter). Without them the tests fail, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import (alive, JOURNALD, make_service, OUR_BIN, Processes, require_journald,
                      status_pid, SYSTEM_BIN as BIN, wait_until)

HERE = Path(__file__).resolve().parent
JOURNALD_NS = HERE / "journald_ns.sh"
PATH = "/usr/bin:/bin"


def require_tools() -> None:
    require_journald("svscan's journal tests")


class Journald:
    def __init__(self, holder_pid: int, journald_pid: int) -> None:
        self.holder_pid = holder_pid    # a process inside the namespace (cat)
        self.journald_pid = journald_pid

    def argv(self, argv: list[str], cwd: Path | str = "/") -> list[str]:
        return [BIN["nsenter"], f"--target={self.holder_pid}", "--mount", f"--wd={cwd}",
                "--", *argv]

    def entries(self, *matches: str) -> list[dict]:
        """`journalctl --all -o json MATCHES`, decoded, oldest first."""
        cp = subprocess.run(self.argv([BIN["journalctl"], "--no-pager", "--all", "-o", "json",
                                       *matches]), capture_output=True, timeout=20)
        assert cp.returncode in (0, 1), cp  # 1: no entries at all yet
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]

    def wait_entries(self, count: int, *matches: str, timeout: float = 10) -> list[dict]:
        found: list[dict] = []

        def enough() -> bool:
            found[:] = self.entries(*matches)
            return len(found) >= count
        try:
            wait_until(enough, timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(f"journalctl {' '.join(matches)}: {len(found)} entries "
                                 f"after {timeout} s, expected {count}: "
                                 f"{[e.get('MESSAGE') for e in found]}") from None
        return found


@pytest.fixture(scope="module")
def jd() -> Iterator[Journald]:
    require_tools()
    holder = subprocess.Popen(
        [str(JOURNALD_NS), "--", "/bin/sh", "-c", 'echo "$$ $JOURNALD_PID"; exec cat >/dev/null'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    journald_pid = 0
    try:
        assert holder.stdout is not None
        first = holder.stdout.readline()
        if not first:
            err = holder.stderr.read() if holder.stderr else b""
            holder.wait(timeout=10)
            pytest.fail(f"journald_ns.sh did not start journald (exit {holder.returncode}): "
                        f"{err.decode(errors='replace').strip()}", pytrace=False)
        holder_pid, journald_pid = map(int, first.split())
        yield Journald(holder_pid, journald_pid)
    finally:
        if holder.stdin:
            holder.stdin.close()  # cat ends, journald_ns.sh stops journald by its pid
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)
        for stream in (holder.stdout, holder.stderr):
            if stream:
                stream.close()
        if journald_pid:
            wait_until(lambda: not alive(journald_pid), timeout=5,
                       message=f"journald (pid {journald_pid}) to be gone")


def value(entry: dict, name: str) -> str | bytes | None:
    """A field: text, or bytes when journalctl gives an array (binary data)."""
    v = entry.get(name)
    return bytes(v) if isinstance(v, list) else v


def fields(entries: list[dict], *names: str) -> list[tuple]:
    return [tuple(value(e, n) for n in names) for e in entries]


@contextlib.contextmanager
def stderr_file(path: Path) -> Iterator[int]:
    with open(path, "wb") as f:
        yield f.fileno()


# -- services -----------------------------------------------------------------------------

def hello(name: str) -> str:
    return f"""#!/bin/sh
trap 'echo {name} says bye; exit 0' TERM
echo {name} out
echo '<3>{name} err' >&2
while :; do sleep 0.1; done
"""


WEB = """#!/bin/sh
echo '<4>{name} warn' >&2
i=0
while [ $i -lt 60 ]; do i=$((i+1)); echo "{name} line $i: {pad}"; done
exec sleep 1000
"""
# 60 lines of 100 bytes: s4096 makes multilog rotate, and its processor fails once,
# which multilog reports on stderr (then it pauses 5 s, and the processor succeeds)
WEB_LOG = ("#!/bin/sh\nexec {multilog} s4096 "
           "'!if [ -e {once} ]; then cat; else touch {once}; exit 1; fi' ./main\n")


def build(scan: Path, tag: str, web: bool = True) -> None:
    make_service(scan, f"hello{tag}", hello(f"hello{tag}"))
    if web:
        make_service(scan, f"web{tag}", WEB.format(name=f"web{tag}", pad="x" * 80),
                     log=WEB_LOG.format(multilog=OUR_BIN / "multilog", once=scan / "once"))
    (scan / f"norun{tag}").mkdir()
    (scan / f"dangling{tag}").symlink_to("../nowhere")


def test_journal_mode_fields_as_journalctl_shows_them(jd: Journald, procs: Processes,
                                                      tmp_path: Path) -> None:
    scan = tmp_path / "service"
    build(scan, "")
    with stderr_file(tmp_path / "stderr") as err:
        svscan = procs.start(jd.argv(["/usr/bin/env", "--default-signal",
                                      str(OUR_BIN / "svscan"), "service"], cwd=tmp_path),
                             stdout=err, stderr=err,
                             env={"PATH": PATH, "PYSVSCAN_JOURNAL": "1"})

    # journalctl -t hello: the service's stdout and stderr, with its pid and priorities
    got = jd.wait_entries(2, "-t", "hello")
    pid = status_pid(scan / "hello")
    assert fields(got, "MESSAGE", "PRIORITY", "SERVICE", "SYSLOG_PID", "SYSLOG_FACILITY") == [
        ("hello out", "6", "hello", str(pid), "3"),
        ("hello err", "3", "hello", str(pid), "3")]
    assert {e["_TRANSPORT"] for e in got} == {"journal"}
    assert {e["_PID"] for e in got} == {str(svscan.pid)}  # relayed by svscan
    assert fields(jd.entries("SERVICE=hello"), "MESSAGE") == fields(got, "MESSAGE")

    # web has a log/: its stdout goes to multilog, its stderr to the journal ...
    [warn] = jd.wait_entries(1, "SERVICE=web")
    assert fields([warn], "SYSLOG_IDENTIFIER", "MESSAGE", "PRIORITY") == [
        ("web", "web warn", "4")]
    # ... and multilog's own stderr too, as web/log
    [failed] = jd.wait_entries(1, "SERVICE=web/log")
    assert fields([failed], "SYSLOG_IDENTIFIER", "MESSAGE") == [
        ("web/log", "multilog: warning: processor failed in ./main, pausing")]
    assert failed["SYSLOG_PID"] == str(status_pid(scan / "web" / "log"))
    logged = b"".join(f.read_bytes() for f in (scan / "web" / "log" / "main").iterdir()
                      if f.is_file())
    assert b"web line 1: " in logged and b"web warn" not in logged

    # supervise's own message, with the service's name
    got = jd.wait_entries(1, "SERVICE=norun", "SYSLOG_IDENTIFIER=supervise")
    assert fields(got[:1], "MESSAGE", "PRIORITY") == [
        ("supervise: fatal: unable to start norun/run: file does not exist", "3")]
    # and svscan's
    own = [e for e in jd.wait_entries(1, "-t", "svscan")
           if e["MESSAGE"] == "svscan: warning: unable to stat dangling: file does not exist"]
    assert fields(own, "MESSAGE", "PRIORITY", "SERVICE") == [
        ("svscan: warning: unable to stat dangling: file does not exist", "4", None)]

    # SIGTERM: services stop, their last words still reach the journal, svscan exits 0
    svscan.send_signal(signal.SIGTERM)
    assert svscan.wait(timeout=30) == 0
    bye = jd.wait_entries(1, "-t", "hello", "MESSAGE=hello says bye")
    assert bye[0]["SYSLOG_PID"] == str(pid)
    assert (tmp_path / "stderr").read_bytes() == b""


def test_stderr_on_the_journal_stream_turns_journal_mode_on(jd: Journald, procs: Processes,
                                                            tmp_path: Path) -> None:
    """As under systemd: stdout and stderr on a journald stream, JOURNAL_STREAM naming it;
    no PYSVSCAN_JOURNAL."""
    scan = tmp_path / "service"
    build(scan, "2", web=False)
    shell = ('JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) '
             f'exec /usr/bin/env --default-signal {OUR_BIN / "svscan"} service')
    svscan = procs.start(jd.argv([BIN["systemd-cat"], "-t", "svscan2", "/bin/sh", "-c", shell],
                                 cwd=tmp_path), env={"PATH": PATH})
    got = jd.wait_entries(2, "SERVICE=hello2")
    assert fields(got, "SYSLOG_IDENTIFIER", "MESSAGE", "_TRANSPORT") == [
        ("hello2", "hello2 out", "journal"), ("hello2", "hello2 err", "journal")]
    own = [e for e in jd.wait_entries(1, "-t", "svscan")
           if e["MESSAGE"] == "svscan: warning: unable to stat dangling2: file does not exist"]
    assert fields(own, "MESSAGE", "_TRANSPORT") == [
        ("svscan: warning: unable to stat dangling2: file does not exist", "journal")]
    assert jd.entries("-t", "svscan2") == []  # nothing went through the stream
    svscan.send_signal(signal.SIGTERM)
    assert svscan.wait(timeout=30) == 0
