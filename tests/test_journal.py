"""multilog's journal action `J`, against a real systemd-journald.

journald runs standalone in a private mount namespace (tests/journald_ns.sh, after
systemd.md §6.1): tmpfs on /run and /var/log/journal, so the host's journal and
sockets are neither seen nor touched. One journald serves the whole module; every
test files its lines under identifiers of its own. multilog and journalctl are run
inside that namespace with `nsenter --target PID --mount`; the log directories live
under pytest's tmp_path, which the namespace shares with the host.

Needs root and the Debian packages systemd (systemd-journald, journalctl,
systemd-cat) and util-linux (unshare, nsenter). Without them the tests fail, saying
so: they are not skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import alive, JOURNALD, OUR_BIN, Processes, SYSTEM_BIN as BIN, wait_until
from journaldlib import (JOURNALD_NS, MULTILOG, Journald, jd, private_journald,  # noqa: F401
                         require_tools)

PYTHON = str(OUR_BIN / "python") if (OUR_BIN / "python").exists() else sys.executable
J_LIMIT = 65536
WARNING = b"multilog: warning: "


# -- reading entries ------------------------------------------------------------------------

def value(entry: dict, name: str) -> bytes | None:
    """A field as bytes: journalctl's json gives text, or an array of byte values for
    binary data (none of these tests repeats a field)."""
    v = entry.get(name)
    if v is None:
        return None
    if isinstance(v, list):
        assert all(isinstance(b, int) for b in v), (name, v[:5])
        return bytes(v)
    return v.encode()


def messages(entries: list[dict]) -> list[bytes]:
    return [value(e, "MESSAGE") for e in entries]  # type: ignore[misc]


def fields(entries: list[dict], *names: str) -> list[tuple]:
    return [tuple(value(e, n) for n in names) for e in entries]


def logged(logdir: Path) -> bytes:
    """Everything a multilog directory holds, rotated files (oldest first) then current."""
    old = sorted(f for f in logdir.iterdir() if f.name.startswith("@"))
    return b"".join(f.read_bytes() for f in [*old, logdir / "current"])


def service_dir(root: Path, name: str) -> Path:
    """ROOT/NAME/log, the directory multilog runs in under supervise."""
    d = root / name / "log"
    d.mkdir(parents=True)
    return d


# -- 1: fields, priorities, names ------------------------------------------------------------

def test_fields_and_priorities(jd: Journald, tmp_path: Path) -> None:
    log = service_dir(tmp_path, "web")
    jd.multilog(log, "J", stdin=b"hello\n<3>bad\n<11>keep\n<007>debug\n")
    got = jd.wait_entries(4, "-t", "web")
    assert fields(got, "MESSAGE", "PRIORITY", "SERVICE", "SYSLOG_IDENTIFIER") == [
        (b"hello", b"6", b"web", b"web"),
        (b"bad", b"3", b"web", b"web"),
        (b"<11>keep", b"6", b"web", b"web"),
        (b"debug", b"7", b"web", b"web"),
    ]
    for entry in got:
        assert entry["SYSLOG_FACILITY"] == "3"
        assert entry["_TRANSPORT"] == "journal"  # native protocol
        # (_COMM and the like are missing when multilog has exited before journald
        # looked it up in /proc: not checked)
    assert fields(jd.entries("SERVICE=web"), "MESSAGE") == fields(got, "MESSAGE")


def test_jname_sets_identifier_not_service(jd: Journald, tmp_path: Path) -> None:
    log = service_dir(tmp_path, "api")
    jd.multilog(log, "Jfrontend", stdin=b"<4>first\nsecond\n")
    got = jd.wait_entries(2, "-t", "frontend")
    assert fields(got, "MESSAGE", "PRIORITY", "SERVICE", "SYSLOG_IDENTIFIER") == [
        (b"first", b"4", b"api", b"frontend"),
        (b"second", b"6", b"api", b"frontend"),
    ]
    assert jd.entries("-t", "api") == []
    assert messages(jd.entries("SERVICE=api")) == [b"first", b"second"]


def test_two_journal_actions_each_send(jd: Journald, tmp_path: Path) -> None:
    log = service_dir(tmp_path, "pair")
    jd.multilog(log, "J", "Jpair-copy", stdin=b"x\ny\n")
    assert messages(jd.wait_entries(2, "-t", "pair-copy")) == [b"x", b"y"]
    assert messages(jd.wait_entries(2, "-t", "pair")) == [b"x", b"y"]
    assert len(jd.entries("SERVICE=pair")) == 4


def test_name_outside_a_log_directory(jd: Journald, tmp_path: Path) -> None:
    plain = tmp_path / "standalone"
    plain.mkdir()
    jd.multilog(plain, "J", stdin=b"here\n")
    got = jd.wait_entries(1, "-t", "standalone")
    assert fields(got, "MESSAGE", "SERVICE", "SYSLOG_IDENTIFIER") == [
        (b"here", b"standalone", b"standalone")]
    # a directory merely named like a service is used as it is
    logs = tmp_path / "cache" / "logs"
    logs.mkdir(parents=True)
    jd.multilog(logs, "J", stdin=b"there\n")
    got = jd.wait_entries(1, "-t", "logs")
    assert fields(got, "MESSAGE", "SERVICE") == [(b"there", b"logs")]


PREFIX_CASES = [b"<0>emerg", b"<1>alert", b"<2>crit", b"<5>notice", b"<7>debug",
                b"<8>eight", b"<07>two digits", b"<007>three digits", b"<0007>four digits",
                b"<010>ten", b"<3", b"<>empty", b"< 3>space", b"<+3>plus", b"<-1>minus",
                b"<3><4>twice", b"x<3>inside", b"<a>letter", b"<3>  leading spaces",
                b"<6>\xff\xfe binary", b"plain"]


def test_priority_prefix_as_journald_parses_streams(jd: Journald, tmp_path: Path) -> None:
    """The same lines through multilog's J and through journald's own stdout-stream
    parser (systemd-cat, level prefix on) give the same MESSAGE and PRIORITY."""
    data = b"\n".join(PREFIX_CASES) + b"\n"
    log = service_dir(tmp_path, "prefixes")
    jd.multilog(log, "J", stdin=data)
    cp = jd.run([BIN["systemd-cat"], "-t", "prefixes-ref", "--level-prefix=true"], stdin=data)
    assert cp.returncode == 0, cp
    ours = jd.wait_entries(len(PREFIX_CASES), "-t", "prefixes")
    reference = jd.wait_entries(len(PREFIX_CASES), "-t", "prefixes-ref")
    assert reference[0]["_TRANSPORT"] == "stdout"
    assert fields(ours, "MESSAGE", "PRIORITY") == fields(reference, "MESSAGE", "PRIORITY")


def test_every_line_is_an_entry_as_it_is(jd: Journald, tmp_path: Path) -> None:
    """Unlike journald's stdout streams, which drop empty messages and strip trailing
    whitespace, each selected line is one entry, exactly as logged."""
    log = service_dir(tmp_path, "exact")
    jd.multilog(log, "J", stdin=b"a\n\n<3>\n  both  \t\nz\n")
    got = jd.wait_entries(5, "-t", "exact")
    assert fields(got, "MESSAGE", "PRIORITY") == [
        (b"a", b"6"), (b"", b"6"), (b"", b"3"), (b"  both  \t", b"6"), (b"z", b"6")]


# -- 2: J beside directory actions -------------------------------------------------------------

def test_stamps_go_to_the_directory_only(jd: Journald, tmp_path: Path) -> None:
    log = service_dir(tmp_path, "stamped")
    lines = [b"one", b"<3>two", b"w" * 3000, b"v" * 80000, b"three"]
    jd.multilog(log, "t", "./main", "J", stdin=b"\n".join(lines) + b"\n")
    got = jd.wait_entries(5, "-t", "stamped")
    assert fields(got, "MESSAGE", "PRIORITY") == [
        (b"one", b"6"), (b"two", b"3"), (b"w" * 3000, b"6"), (b"v" * J_LIMIT, b"6"),
        (b"three", b"6")]
    current = logged(log / "main").splitlines()
    assert len(current) == 5
    for stamped, line in zip(current, lines):
        stamp, _, rest = stamped.partition(b" ")
        assert stamp[:1] == b"@" and len(stamp) == 25, stamped[:40]
        assert rest == line
    for message in messages(got):
        assert b"@" not in message


def test_journal_gets_the_lines_selected_at_its_point(jd: Journald, tmp_path: Path) -> None:
    log = service_dir(tmp_path, "shop")
    data = b"ok 1\nan ERROR here\nok 2\nERROR again\nok 3\n"
    errors_only = [b"an ERROR here", b"ERROR again"]
    jd.multilog(log, "-*", "+*ERROR*", "J", "./main", stdin=data)
    assert messages(jd.wait_entries(2, "-t", "shop")) == errors_only
    assert logged(log / "main") == b"an ERROR here\nERROR again\n"

    # J before the selection, J after it, J after everything is deselected
    jd.multilog(log, "Jshop-all", "-*", "+*ERROR*", "Jshop-errors", "./errors",
                "+*", "./all", "-*", "Jshop-none", "+ok 3", "Jshop-last", stdin=data)
    assert messages(jd.wait_entries(1, "-t", "shop-last")) == [b"ok 3"]
    # journald has all of that run's entries now: they were sent in order, on one socket
    assert messages(jd.entries("-t", "shop-all")) == data.splitlines()
    assert messages(jd.entries("-t", "shop-errors")) == errors_only
    assert jd.entries("-t", "shop-none") == []
    assert logged(log / "errors") == b"an ERROR here\nERROR again\n"
    assert logged(log / "all") == data


# -- 3: long lines, binary lines, entries bigger than a datagram --------------------------------

def test_long_and_binary_lines(jd: Journald, tmp_path: Path) -> None:
    log = service_dir(tmp_path, "bulk")
    huge = b"x" * (100 * 1024)
    medium = b"y" * 5000
    data = (b"short\n" + huge + b"\n<3>" + medium + b"\nbad \xff\xfe\x80 utf8\n"
            + b"nul\x00byte\n" + b"\xc3\xa9t\xc3\xa9 ok\n" + b"<2>" + huge + b"\nend\n")
    jd.multilog(log, "J", "./main", stdin=data)
    got = jd.wait_entries(8, "-t", "bulk")
    assert fields(got, "MESSAGE", "PRIORITY") == [
        (b"short", b"6"),
        (huge[:J_LIMIT], b"6"),            # sent whole up to 64 KiB
        (medium, b"3"),                    # beyond the 1000-byte buffer, still whole
        (b"bad \xff\xfe\x80 utf8", b"6"),  # journalctl shows these as byte arrays
        (b"nul\x00byte", b"6"),
        ("\u00e9t\u00e9 ok".encode(), b"6"),
        (huge[:J_LIMIT - 3], b"2"),        # the first 64 KiB of the line, prefix stripped
        (b"end", b"6"),
    ]
    assert isinstance(got[3]["MESSAGE"], list) and isinstance(got[4]["MESSAGE"], list)
    assert logged(log / "main") == data

    # the raw field, from the export format, agrees
    cp = jd.run([BIN["journalctl"], "--no-pager", "-o", "export", "-t", "bulk",
                 "MESSAGE=end"])
    assert b"\nMESSAGE=end\n" in cp.stdout


def test_long_lines_selected_at_the_journals_point(jd: Journald, tmp_path: Path) -> None:
    log = service_dir(tmp_path, "picky")
    a, x1, x2 = b"a" * 3000, b"x" * 3000, b"x1" + b"z" * 70000
    data = a + b"\n" + x1 + b"\nb\nxs\n" + x2  # the last line has no newline
    proc = subprocess.Popen(jd.argv([MULTILOG, "-*", "+x*", "J", "./main"], log),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdin is not None
        for i in range(0, len(data), 7000):  # the long lines arrive over several reads
            proc.stdin.write(data[i:i + 7000])
            proc.stdin.flush()
            time.sleep(0.005)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert messages(jd.wait_entries(3, "-t", "picky")) == [x1, b"xs", x2[:J_LIMIT]]
    assert logged(log / "main") == x1 + b"\nxs\n" + x2 + b"\n"


def test_big_entry_goes_through_a_memfd(jd: Journald) -> None:
    """journal.Journal.send(): an entry over the datagram limit (the socket's send buffer,
    net.core.wmem_default) fails with EMSGSIZE and travels in a sealed memfd."""
    code = r"""
import sys
from pysvscan import journal
j = journal.Journal()
used = []
original = j.send_large
j.send_large = lambda entry: (used.append(len(entry)), original(entry))
limit = j.sock.getsockopt(journal.socket.SOL_SOCKET, journal.socket.SO_SNDBUF)
message = b"m" * (limit + 4096) + b"\nsecond line"
entry = (journal.field(b"SYSLOG_IDENTIFIER", b"memfd-direct") + b"PRIORITY=5\n"
         + journal.field(b"MESSAGE", message))
j.send(entry)
j.send(b"SYSLOG_IDENTIFIER=memfd-direct\nMESSAGE=small\n")
print(limit, *used)
"""
    cp = jd.run([PYTHON, "-c", code])
    assert cp.returncode == 0 and cp.stderr == b"", cp
    limit, *used = map(int, cp.stdout.split())
    assert len(used) == 1, f"send_large used {len(used)} times: {cp.stdout!r}"
    got = jd.wait_entries(2, "-t", "memfd-direct")
    assert fields(got, "MESSAGE", "PRIORITY") == [
        (b"m" * (limit + 4096) + b"\nsecond line", b"5"), (b"small", None)]


# multilog with its journal socket's send buffer shrunk to 8 KiB, as on a host with a
# small net.core.wmem_default: its long lines no longer fit in a datagram.
SMALL_BUFFER_MULTILOG = r"""
import os, socket, sys
from pysvscan import journal
class SmallBuffer(journal.Journal):
    def __init__(self, path=journal.SOCKET_PATH):
        super().__init__(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    def send_large(self, entry):
        os.write(int(os.environ["MEMFD_REPORT"]), b"%d\n" % len(entry))
        super().send_large(entry)
journal.Journal = SmallBuffer
sys.argv[0] = "multilog"
from pysvscan.commands.multilog import run
run()
"""


def test_multilog_long_line_through_a_memfd(jd: Journald, tmp_path: Path) -> None:
    log = service_dir(tmp_path, "memfd")
    long = b"<4>" + b"q" * 40000
    data = b"before\n" + long + b"\nafter\n"
    report_r, report_w = os.pipe()
    try:
        proc = subprocess.run(jd.argv([PYTHON, "-c", SMALL_BUFFER_MULTILOG, "J", "./main"], log),
                              input=data, capture_output=True, timeout=20,
                              env={**os.environ, "MEMFD_REPORT": str(report_w)},
                              pass_fds=(report_w,))
        os.close(report_w)
        report_w = -1
        with os.fdopen(report_r, "rb") as f:
            report_r = -1
            sizes = f.read().split()
    finally:
        for fd in (report_r, report_w):
            if fd >= 0:
                os.close(fd)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b""), proc
    assert len(sizes) == 1 and int(sizes[0]) > 40000, sizes
    got = jd.wait_entries(3, "-t", "memfd")
    assert fields(got, "MESSAGE", "PRIORITY") == [
        (b"before", b"6"), (b"q" * 40000, b"4"), (b"after", b"6")]
    assert logged(log / "main") == data


# -- 4: no journald ------------------------------------------------------------------------

def test_without_journald_warns_once_and_logs(procs: Processes, tmp_path: Path) -> None:
    """A fresh private mount namespace with an empty /run: no journal socket at all."""
    require_tools()
    log = service_dir(tmp_path, "lonely")
    proc = procs.start([str(JOURNALD_NS), "--no-journald", "--", MULTILOG,
                        "J", "./main", "Jother"], cwd=log, stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    sent = b""
    for batch in range(4):  # several reads, each with lines for both J actions
        chunk = b"".join(b"batch %d line %d\n" % (batch, i) for i in range(50))
        if batch == 2:
            chunk += b"<3>" + b"L" * 5000 + b"\n"  # a long line takes its own path
        proc.stdin.write(chunk)
        proc.stdin.flush()
        sent += chunk
        time.sleep(0.05)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out == b""
    assert err.startswith(WARNING) and err.endswith(b"\n") and err.count(b"\n") == 1, err
    assert b"journal" in err
    assert logged(log / "main") == sent


# -- 5: throughput ------------------------------------------------------------------------

def test_ten_thousand_lines(jd: Journald, tmp_path: Path) -> None:
    log = service_dir(tmp_path, "many")
    lines = [b"line %05d %s" % (i, b"." * (i % 97)) for i in range(10000)]
    data = b"\n".join(lines) + b"\n"
    started = time.monotonic()
    jd.multilog(log, "J", "./main", stdin=data)
    cp_lines: list[bytes] = []

    def complete() -> bool:
        cp = jd.run([BIN["journalctl"], "--no-pager", "-o", "cat", "-t", "many"])
        cp_lines[:] = cp.stdout.splitlines()
        return len(cp_lines) >= len(lines)
    jd.sync()
    try:
        wait_until(complete, timeout=20, interval=0.2)
    except AssertionError:
        raise AssertionError(f"{len(cp_lines)} of {len(lines)} entries after 20 s") from None
    elapsed = time.monotonic() - started
    assert cp_lines == lines
    assert logged(log / "main") == data
    assert elapsed < 20, elapsed


# -- journald going away and coming back -----------------------------------------------------

def test_journald_restart_warns_once_per_outage(procs: Processes, tmp_path: Path) -> None:
    """Lines sent while journald is down are dropped with one warning; once a journald
    listens again lines reach it, and a second outage is warned about again."""
    log = service_dir(tmp_path, "phoenix")
    err_path = tmp_path / "stderr"
    with private_journald() as ns, open(err_path, "wb") as err:
        ml = procs.start(ns.argv([MULTILOG, "J", "./main"], log), stdin=subprocess.PIPE,
                         stdout=err.fileno(), stderr=err.fileno())
        assert ml.stdin is not None

        def say(line: bytes) -> None:
            ml.stdin.write(line + b"\n")
            ml.stdin.flush()

        def warnings() -> int:
            return err_path.read_bytes().count(b"\n")

        def stop(pid: int) -> None:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not alive(pid), timeout=5, message=f"journald {pid} to stop")

        def start_journald() -> int:
            """Another journald in the namespace; it takes over the socket paths."""
            old = ns.run([BIN["stat"], "-c", "%i", "/run/systemd/journal/socket"]).stdout
            jpid = procs.start(ns.argv([str(JOURNALD)]), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL).pid
            wait_until(lambda: ns.run([BIN["stat"], "-c", "%i",
                                       "/run/systemd/journal/socket"]).stdout not in (old, b""),
                       timeout=10, message="the new journald's socket")
            return jpid

        say(b"one")
        ns.wait_entries(1, "-t", "phoenix")
        stop(ns.journald_pid)
        say(b"two")
        wait_until(lambda: warnings() == 1, timeout=5, message="the first warning")
        say(b"two-b")
        # multilog sends a batch's lines before writing them to its directories
        wait_until(lambda: logged(log / "main").endswith(b"two-b\n"), timeout=5,
                   message="two-b to be handled")
        second = start_journald()
        say(b"three")
        ns.wait_entries(2, "-t", "phoenix")
        stop(second)
        say(b"four")
        wait_until(lambda: warnings() == 2, timeout=5, message="the second warning")
        say(b"four-b")
        ml.stdin.close()
        assert ml.wait(timeout=10) == 0
        third = start_journald()
        assert messages(ns.wait_entries(2, "-t", "phoenix")) == [b"one", b"three"]
        stop(third)
    lines = err_path.read_bytes().splitlines()
    assert len(lines) == 2 and all(line.startswith(WARNING) for line in lines), lines
    assert logged(log / "main") == b"one\ntwo\ntwo-b\nthree\nfour\nfour-b\n"


def test_wedged_journald_stalls_nothing(procs: Processes, tmp_path: Path) -> None:
    """A journald that stops reading (SIGSTOP) fills the datagram queue: multilog gives
    up on an entry after a second, warns once that the journal timed out, keeps writing
    its directory, and stops promptly on SIGTERM."""
    log = service_dir(tmp_path, "wedged")
    err_path = tmp_path / "stderr"
    with private_journald() as ns, open(err_path, "wb") as err:
        os.kill(ns.journald_pid, signal.SIGSTOP)
        try:
            ml = procs.start(ns.argv([MULTILOG, "J", "./main"], log), stdin=subprocess.PIPE,
                             stdout=err.fileno(), stderr=err.fileno())
            assert ml.stdin is not None
            data = b"".join(b"line %d\n" % i for i in range(200))
            ml.stdin.write(data)
            ml.stdin.flush()
            wait_until(lambda: (log / "main" / "current").exists()
                       and logged(log / "main") == data, timeout=15,
                       message="every line in the directory despite the journal")
            ml.send_signal(signal.SIGTERM)
            assert ml.wait(timeout=10) == 0
        finally:
            os.kill(ns.journald_pid, signal.SIGCONT)
    lines = err_path.read_bytes().splitlines()
    assert lines == [WARNING + b"unable to send to the journal, dropping its lines until "
                               b"it is back: timed out"], lines
