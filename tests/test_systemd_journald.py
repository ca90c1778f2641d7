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
import signal
from pathlib import Path
from typing import Iterator

from conftest import make_service, OUR_BIN, Processes, status_pid, SYSTEM_BIN as BIN
from journaldlib import Journald, jd  # noqa: F401  the module's journald (a fixture)

PATH = "/usr/bin:/bin"


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
