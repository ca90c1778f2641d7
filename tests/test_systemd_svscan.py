"""svscan under systemd, without systemd: the unprivileged layer (systemd.md §6.5 item 1).

A fake NOTIFY_SOCKET (an AF_UNIX datagram socket bound by the test) receives svscan's
sd_notify messages (§2.7): READY=1 once every supervise of the first scan is up,
STATUS=, WATCHDOG=1 at a third of a small WATCHDOG_USEC, RELOADING=1/READY=1 around
SIGHUP, STOPPING=1 and EXTEND_TIMEOUT_USEC on SIGTERM. A fake journal socket (another
datagram socket, named to svscan by PYSVSCAN_JOURNAL_SOCKET) receives journal mode's
native entries (§3.4), which are parsed as journald would. Services show what they
inherit: no systemd variable (§2.3), no ignored or blocked signal. The relay's line
splitting and `<N>` parsing are unit-tested against the fake journal, and svscanboot's
choice of boot (§4.2) with recording stand-ins and for real.

Sockets live in a short directory under /tmp (sun_path holds 108 bytes). Every svscan
runs in its own session, killed as a group at teardown by the `procs` fixture.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import (PY, Processes, make_service, status_pid, supervise_ready, wait_until,
                      write_script)
from pysvscan import relay, tai64
from pysvscan.execenv import SYSTEMD_VARIABLES

PATH = "/usr/bin:/bin"
DEFAULT_SIGNALS = "/usr/bin/env"
SLEEP = "#!/bin/sh\nexec sleep 1000\n"
WATCHDOG_USEC = 400_000
FORBIDDEN = set(SYSTEMD_VARIABLES)


# -- fake sockets -----------------------------------------------------------------------

@pytest.fixture
def sockdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pysvscan-sd-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Datagrams:
    """A bound AF_UNIX datagram socket, read by a thread of its own as fast as
    datagrams come (the kernel queues only net.unix.max_dgram_qlen of them, 10 by
    default outside systemd); everything received is kept with its arrival time."""

    def __init__(self, path: Path, parse: Callable[[bytes], dict], reading: bool = True) -> None:
        self.path = path
        self.parse = parse
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.got: list[tuple[float, dict]] = []
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self.read, daemon=True)
        if reading:
            self.reader.start()

    def read(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            self.got.append((time.monotonic(), self.parse(data)))

    def pull(self, timeout: float) -> None:
        """Let `timeout` seconds pass: what arrives meanwhile is in `got`."""
        time.sleep(timeout)

    def wait(self, predicate: Callable[[dict], bool], timeout: float = 10.0,
             what: str = "a message", start: int = 0) -> tuple[int, float, dict]:
        """(index, arrival, message) of the first message from index `start` on that
        satisfies `predicate`, waiting until it arrives."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            got = len(self.got)
            for i in range(seen, got):
                if predicate(self.got[i][1]):
                    return i, self.got[i][0], self.got[i][1]
            seen = got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; got "
                                     f"{[m for _, m in self.got[start:]][-8:]}")
            time.sleep(0.01)

    def messages(self, start: int = 0) -> list[dict]:
        return [m for _, m in self.got[start:]]

    def close(self) -> None:
        self.stop.set()
        if self.reader.is_alive():
            self.reader.join(timeout=5)
        self.sock.close()


def parse_notify(data: bytes) -> dict:
    """KEY=VALUE lines; `_raw` keeps the datagram."""
    text = data.decode("utf-8")
    message = {"_raw": text}
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            message[key] = value
    return message


def parse_entry(data: bytes) -> dict:
    """journald's native protocol (§3.1), both field forms; values as bytes."""
    entry: dict[str, bytes] = {}
    i = 0
    while i < len(data):
        end = data.index(b"\n", i)
        line = data[i:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            i = end + 1
        else:
            name = line
            size = int.from_bytes(data[end + 1:end + 9], "little")
            value = data[end + 9:end + 9 + size]
            assert data[end + 9 + size:end + 10 + size] == b"\n"
            i = end + 10 + size
        assert name.decode() not in entry, f"field {name!r} twice"
        entry[name.decode()] = value
    return entry


@pytest.fixture
def notify(sockdir: Path) -> Iterator[Datagrams]:
    server = Datagrams(sockdir / "notify", parse_notify)
    yield server
    server.close()


@pytest.fixture
def journald(sockdir: Path) -> Iterator[Datagrams]:
    server = Datagrams(sockdir / "journal", parse_entry)
    yield server
    server.close()


# -- svscan -------------------------------------------------------------------------------

def start_svscan(procs: Processes, root: Path, env: dict[str, str], *,
                 watchdog_pid: bool = False, stderr: Path | None = None,
                 prefix: tuple[str, ...] = (DEFAULT_SIGNALS, "--default-signal")
                 ) -> subprocess.Popen[bytes]:
    """svscan ROOT/service, run from ROOT, stderr to ROOT/stderr; with `watchdog_pid`
    WATCHDOG_PID is its own pid, set by a shell that execs it (the pid stays)."""
    argv = [*prefix, PY.bin("svscan"), "service"]
    if watchdog_pid:
        argv = ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", *argv]
    with open(stderr or root / "stderr", "wb") as err:
        return procs.start(argv, cwd=root, stderr=err.fileno(), stdout=err.fileno(),
                           env={"PATH": PATH, **env})


# -- sd_notify: READY, STATUS, WATCHDOG --------------------------------------------------

def test_ready_after_the_first_scan_then_status_and_watchdog(
        procs: Processes, tmp_path: Path, notify: Datagrams) -> None:
    scan = tmp_path / "service"
    names = [f"s{i}" for i in range(12)]
    for name in names:
        make_service(scan, name, SLEEP, log=SLEEP if name == "s3" else None)
    make_service(scan, "resting", SLEEP, down=True)
    svscan = start_svscan(procs, tmp_path, {"NOTIFY_SOCKET": str(notify.path),
                                            "WATCHDOG_USEC": str(WATCHDOG_USEC)},
                          watchdog_pid=True)

    i, ready_at, ready = notify.wait(lambda m: "READY" in m, what="READY=1")
    assert i == 0 and ready["READY"] == "1", notify.messages()
    # every supervise of the first scan answers on supervise/ok once READY=1 is out
    dirs = [scan / n for n in [*names, "resting"]] + [scan / "s3" / "log"]
    assert [d for d in dirs if not supervise_ready(d)] == []
    assert ready["STATUS"].startswith("13 services: ")
    assert ready["STATUS"].endswith(" down")  # no error, no service that notifies

    # WATCHDOG=1 from the loop, about every third of WATCHDOG_USEC, never half of it late
    notify.pull(2.0)
    pings = [t for t, m in notify.got if m.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 6, notify.messages()
    assert min(gaps) > 0.05, gaps      # not every iteration: the loop sleeps between
    assert sorted(gaps)[len(gaps) // 2] <= WATCHDOG_USEC / 2e6, gaps
    assert max(gaps) < WATCHDOG_USEC / 1e6, gaps
    assert all(set(m) == {"_raw", "WATCHDOG"} for m in notify.messages(1)
               if "WATCHDOG" in m)

    # every scan says STATUS= again (SIGALRM: a scan, not a reload: no READY=1)
    start = len(notify.got)
    wait_until(lambda: all(status_pid(scan / n) for n in names), timeout=10)
    svscan.send_signal(signal.SIGALRM)
    _, _, status = notify.wait(lambda m: "STATUS" in m, start=start, what="STATUS=")
    assert status["STATUS"] == "13 services: 12 up, 1 down"
    assert "READY" not in status and "RELOADING" not in status
    assert (tmp_path / "stderr").read_bytes() == b""


def test_reload_is_reloading_rescan_ready(procs: Processes, tmp_path: Path,
                                          notify: Datagrams) -> None:
    scan = tmp_path / "service"
    make_service(scan, "one", SLEEP)
    make_service(tmp_path / "spare", "two", SLEEP, log=SLEEP)
    svscan = start_svscan(procs, tmp_path, {"NOTIFY_SOCKET": str(notify.path)})
    notify.wait(lambda m: "READY" in m, what="READY=1")

    (tmp_path / "spare" / "two").rename(scan / "two")
    before = time.monotonic_ns() // 1000
    svscan.send_signal(signal.SIGHUP)
    i, _, reloading = notify.wait(lambda m: "RELOADING" in m, what="RELOADING=1")
    after = time.monotonic_ns() // 1000
    assert reloading["RELOADING"] == "1"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    _, _, ready = notify.wait(lambda m: "READY" in m, start=i + 1, what="READY=1 again")
    # the rescan happened in between: the new service and its log are supervised
    assert supervise_ready(scan / "two") and supervise_ready(scan / "two" / "log")
    assert ready["STATUS"].startswith("2 services: ")
    assert "WATCHDOG" not in "".join(m["_raw"] for m in notify.messages())  # no WATCHDOG_USEC


def test_stopping_with_more_time_while_services_stop(procs: Processes, tmp_path: Path,
                                                     notify: Datagrams) -> None:
    scan = tmp_path / "service"
    make_service(scan, "quick", SLEEP)
    # takes 3.5 s to stop: svscan asks systemd for more time meanwhile
    make_service(scan, "slow", "#!/bin/sh\ntrap 'sleep 3.5; exit 0' TERM\n"
                               "while :; do sleep 0.1; done\n",
                 log="#!/bin/sh\nexec cat >/dev/null\n")
    svscan = start_svscan(procs, tmp_path, {"NOTIFY_SOCKET": str(notify.path)})
    notify.wait(lambda m: "READY" in m, what="READY=1")
    wait_until(lambda: status_pid(scan / "slow") and status_pid(scan / "quick"), timeout=10)

    svscan.send_signal(signal.SIGTERM)
    i, stop_at, stopping = notify.wait(lambda m: "STOPPING" in m, what="STOPPING=1")
    assert stopping["STOPPING"] == "1"
    assert stopping["STATUS"] == "stopping 2 services"
    _, extend_at, extend = notify.wait(lambda m: "EXTEND_TIMEOUT_USEC" in m, start=i,
                                       what="EXTEND_TIMEOUT_USEC")
    assert int(extend["EXTEND_TIMEOUT_USEC"]) >= 10_000_000
    assert 2.0 < extend_at - stop_at < 4.0
    assert svscan.wait(timeout=20) == 0
    assert "READY" not in "".join(m["_raw"] for m in notify.messages(i))


def test_fatal_start_up_error_in_status_and_errno(procs: Processes, tmp_path: Path,
                                                  notify: Datagrams) -> None:
    svscan = start_svscan(procs, tmp_path, {"NOTIFY_SOCKET": str(notify.path)})
    assert svscan.wait(timeout=10) == 111
    _, _, message = notify.wait(lambda m: "STATUS" in m, what="STATUS=")
    text = "svscan: fatal: unable to chdir to service: file does not exist"
    assert message == {"_raw": f"STATUS={text}\nERRNO=2", "STATUS": text, "ERRNO": "2"}
    assert (tmp_path / "stderr").read_text() == text + "\n"


def test_no_socket_and_nothing_said_without_systemd(procs: Processes, tmp_path: Path) -> None:
    """Classic svscan: no notifier, no journal socket, not a descriptor more."""
    make_service(tmp_path / "service", "hello", "#!/bin/sh\necho hello\nexec sleep 1000\n")
    svscan = start_svscan(procs, tmp_path, {})
    wait_until(lambda: status_pid(tmp_path / "service" / "hello"), timeout=10)
    wait_until(lambda: (tmp_path / "stderr").read_bytes() == b"hello\n", timeout=5)
    targets = [os.readlink(f"/proc/{svscan.pid}/fd/{fd}")
               for fd in os.listdir(f"/proc/{svscan.pid}/fd")]
    assert not [t for t in targets if t.startswith("socket:")], targets
    assert len([t for t in targets if t.startswith("pipe:")]) == 2  # the wake-up pipe only


# -- what services inherit -------------------------------------------------------------------

RECORD = "#!/bin/sh\n/usr/bin/env > env.out\ngrep -E '^Sig(Ign|Blk):' /proc/self/status > sig.out\n"


def test_services_get_no_systemd_variable_and_a_clean_signal_state(
        procs: Processes, tmp_path: Path, notify: Datagrams, journald: Datagrams) -> None:
    scan = tmp_path / "service"
    make_service(scan, "hello", RECORD + "exec sleep 1000\n")
    make_service(scan, "web", RECORD + "exec sleep 1000\n", log=RECORD + "exec cat >/dev/null\n")
    systemd_env = {
        "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "WATCHDOG_PID": "1",  # another process's watchdog: svscan must not ping it
        "JOURNAL_STREAM": "8:12345", "INVOCATION_ID": "0123456789abcdef0123456789abcdef",
        "LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x", "FDSTORE": "1",
        "MEMORY_PRESSURE_WATCH": "/x", "MEMORY_PRESSURE_WRITE": "eA==", "MAINPID": "1",
        "MANAGERPID": "1", "SYSTEMD_EXEC_PID": "1", "CREDENTIALS_DIRECTORY": "/run/c",
        "RUNTIME_DIRECTORY": "/run/r", "PYSVSCAN_JOURNAL": "1",
        "PYSVSCAN_JOURNAL_SOCKET": str(journald.path), "KEEP_ME": "yes"}
    assert FORBIDDEN <= set(systemd_env)
    # as systemd would start it (IgnoreSIGPIPE=yes), plus more to undo
    start_svscan(procs, tmp_path, systemd_env, prefix=(
        DEFAULT_SIGNALS, "--default-signal", "--ignore-signal=PIPE", "--ignore-signal=USR1",
        "--ignore-signal=XFSZ", "--block-signal=USR2"))
    notify.wait(lambda m: "READY" in m, what="READY=1")
    for d in (scan / "hello", scan / "web", scan / "web" / "log"):
        wait_until(lambda d=d: (d / "sig.out").exists() and (d / "sig.out").read_text()
                   .count("\n") == 2, timeout=10, message=f"{d} to record its state")
        env = dict(line.split("=", 1) for line in (d / "env.out").read_text().splitlines())
        assert not FORBIDDEN & set(env), (d, sorted(FORBIDDEN & set(env)))
        assert env["KEEP_ME"] == "yes" and env["PATH"] == PATH
        assert (d / "sig.out").read_text() == ("SigBlk:\t0000000000000000\n"
                                               "SigIgn:\t0000000000000000\n"), d
    notify.pull(1.0)
    assert not [m for m in notify.messages() if "WATCHDOG" in m]
    assert (tmp_path / "stderr").read_bytes() == b""


# -- journal mode, against a fake journal -----------------------------------------------------

HELLO = """#!/bin/sh
echo hello out
echo '<3>hello err' >&2
printf 'no newline yet'
exec sleep 1000
"""
WEB = """#!/bin/sh
echo web line
echo '<4>web warn' >&2
exec sleep 1000
"""
WEB_LOG = """#!/bin/sh
echo '<5>logger note' >&2
exec cat > out
"""


def by(entries: list[dict], **match: str) -> list[dict]:
    return [e for e in entries
            if all(e.get(k) == v.encode() for k, v in match.items())]


def test_journal_mode_sends_each_line_natively(procs: Processes, tmp_path: Path,
                                               journald: Datagrams) -> None:
    scan = tmp_path / "service"
    make_service(scan, "hello", HELLO)
    make_service(scan, "web", WEB, log=WEB_LOG)
    (scan / "norun").mkdir()  # supervise: fatal: unable to start norun/run ...
    (scan / "dangling").symlink_to("../nowhere")  # svscan: warning: unable to stat ...
    start_svscan(procs, tmp_path, {"PYSVSCAN_JOURNAL": "1",
                                   "PYSVSCAN_JOURNAL_SOCKET": str(journald.path)})
    journald.wait(lambda e: e.get("MESSAGE") == b"no newline yet", what="the partial line")
    journald.wait(lambda e: e.get("SERVICE") == b"web/log", what="the logger's stderr")
    journald.wait(lambda e: e.get("SERVICE") == b"norun", what="supervise's message")
    journald.pull(0.3)
    entries = journald.messages()

    hello_pid = status_pid(scan / "hello")
    common = {"SYSLOG_IDENTIFIER": b"hello", "SERVICE": b"hello", "SYSLOG_FACILITY": b"3",
              "SYSLOG_PID": str(hello_pid).encode()}
    assert by(entries, SERVICE="hello") == [
        {**common, "PRIORITY": b"6", "MESSAGE": b"hello out"},
        {**common, "PRIORITY": b"3", "MESSAGE": b"hello err"},
        {**common, "PRIORITY": b"6", "MESSAGE": b"no newline yet"}]  # after the idle time
    # web has a log/: stdout goes there, stderr to the journal
    [web] = by(entries, SERVICE="web")
    assert (web["SYSLOG_IDENTIFIER"], web["PRIORITY"], web["MESSAGE"]) == (
        b"web", b"4", b"web warn")
    assert web["SYSLOG_PID"] == str(status_pid(scan / "web")).encode()
    assert (scan / "web" / "log" / "out").read_bytes() == b"web line\n"
    [note] = by(entries, SERVICE="web/log")
    assert (note["SYSLOG_IDENTIFIER"], note["PRIORITY"], note["MESSAGE"]) == (
        b"web/log", b"5", b"logger note")
    # supervise's and svscan's own diagnostics
    failed = by(entries, SERVICE="norun")
    assert failed and all(e["SYSLOG_IDENTIFIER"] == b"supervise" and e["PRIORITY"] == b"3"
                          and e["MESSAGE"] == b"supervise: fatal: unable to start norun/run: "
                                              b"file does not exist" for e in failed)
    [own] = by(entries, SYSLOG_IDENTIFIER="svscan")
    assert own["MESSAGE"] == b"svscan: warning: unable to stat dangling: file does not exist"
    assert own["PRIORITY"] == b"4" and "SERVICE" not in own
    assert (tmp_path / "stderr").read_bytes() == b""


def test_journal_gone_lines_go_to_stderr_until_it_is_back(procs: Processes, tmp_path: Path,
                                                           sockdir: Path) -> None:
    scan = tmp_path / "service"
    make_service(scan, "tick", "#!/bin/sh\ni=0\nwhile :; do i=$((i+1)); echo tick $i; "
                               "sleep 0.1; done\n")
    (scan / "norun").mkdir()
    path = sockdir / "journal"  # nothing listens there yet
    start_svscan(procs, tmp_path, {"PYSVSCAN_JOURNAL": "1", "PYSVSCAN_JOURNAL_SOCKET": str(path)})

    def stderr_lines() -> list[str]:
        return (tmp_path / "stderr").read_text().splitlines()
    wait_until(lambda: "tick: tick 3" in stderr_lines(), timeout=10)
    wait_until(lambda: "norun: supervise: fatal: unable to start norun/run: file does not "
                       "exist" in stderr_lines(), timeout=10)
    warning = ("svscan: warning: unable to send to the journal, writing service output to "
               "stderr until it is back: file does not exist")
    assert stderr_lines().count(warning) == 1

    server = Datagrams(path, parse_entry)  # journald is back
    try:
        _, _, entry = server.wait(lambda e: e.get("SERVICE") == b"tick", what="a tick line")
        assert entry["MESSAGE"].startswith(b"tick ")
        time.sleep(0.3)
        told = len(stderr_lines())
        server.pull(0.5)
        assert len(stderr_lines()) == told  # nothing more on stderr
    finally:
        server.close()


@pytest.mark.parametrize("case", ["stream", "other-stream", "forced-off"])
def test_journal_mode_when_stderr_is_the_journal_stream(procs: Processes, tmp_path: Path,
                                                        journald: Datagrams, case: str) -> None:
    """JOURNAL_STREAM naming svscan's stderr turns journal mode on (a file stands in for
    journald's stream socket); another dev:ino, or PYSVSCAN_JOURNAL=0, leaves it off."""
    make_service(tmp_path / "service", "hello", "#!/bin/sh\necho hello out\nexec sleep 1000\n")
    stderr = tmp_path / "stderr"
    stderr.write_bytes(b"")
    st = stderr.stat()
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + (case == 'other-stream')}",
           "PYSVSCAN_JOURNAL_SOCKET": str(journald.path)}
    if case == "forced-off":
        env["PYSVSCAN_JOURNAL"] = "0"
    start_svscan(procs, tmp_path, env)
    wait_until(lambda: status_pid(tmp_path / "service" / "hello"), timeout=10)
    if case == "stream":
        _, _, entry = journald.wait(lambda e: e.get("SERVICE") == b"hello")
        assert entry["MESSAGE"] == b"hello out"
        journald.pull(0.3)
        assert stderr.read_bytes() == b""
    else:
        wait_until(lambda: stderr.read_bytes() == b"hello out\n", timeout=5)
        journald.pull(0.5)
        assert journald.got == []


# -- the relay, unit by unit ---------------------------------------------------------------------

def fake_status(root: Path, label: str, pid: int, when: float = 0.0) -> None:
    """LABEL/supervise/status as supervise writes it (replaced by rename); `when`: unix
    time of the last pid change (0: long ago)."""
    d = root / label / "supervise"
    d.mkdir(parents=True, exist_ok=True)
    stamp = tai64.pack(int(when) + tai64.OFFSET, 0) if when else bytes(12)
    (d / "status.new").write_bytes(stamp + pid.to_bytes(4, "little") + b"\0u")
    (d / "status.new").rename(d / "status")


@pytest.fixture
def relays(journald: Datagrams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[relay.Relays]:
    """Relays run in tmp_path, as svscan in its scan directory; services svc and s0-s9
    have a status showing pid 4242."""
    monkeypatch.chdir(tmp_path)
    for label in ["svc", *(f"s{i}" for i in range(10))]:
        fake_status(tmp_path, label, 4242)
    r = relay.Relays(select.poll(), str(journald.path))
    yield r
    for one in list(r.by_fd.values()):
        r.close(one)
    r.journal.close()


def feed(relays: relay.Relays, one: relay.Relay, data: bytes) -> None:
    os.write(one.write_fd, data)
    relays.pump([(one.fd, select.POLLIN)])


def sent(journald: Datagrams, start: int = 0) -> list[tuple[bytes, bytes]]:
    journald.pull(0.2)
    return [(e["PRIORITY"], e["MESSAGE"]) for e in journald.messages(start)]


def test_relay_splits_lines_across_reads(relays: relay.Relays, journald: Datagrams) -> None:
    one = relays.open("svc")
    feed(relays, one, b"first\nsec")
    feed(relays, one, b"ond\n\nthird\nfour")
    assert sent(journald) == [(b"6", b"first"), (b"6", b"second"), (b"6", b""),
                              (b"6", b"third")]
    assert one.pending == b"four" and relays.next_flush() <= relay.IDLE_FLUSH
    feed(relays, one, b"th\n")
    assert sent(journald, 4) == [(b"6", b"fourth")]
    assert relays.next_flush() == float("inf")
    entry = journald.messages()[0]
    assert entry["SYSLOG_IDENTIFIER"] == entry["SERVICE"] == b"svc"
    assert entry["SYSLOG_PID"] == b"4242"


def test_relay_waits_a_moment_for_the_pid(relays: relay.Relays, journald: Datagrams,
                                          tmp_path: Path) -> None:
    """A service that writes before supervise recorded its pid: its lines wait up to
    PID_WAIT for it, and go without SYSLOG_PID after that."""
    one = relays.open("new")
    feed(relays, one, b"early\n")
    assert sent(journald) == [] and relays.next_flush() <= relay.PID_WAIT
    fake_status(tmp_path, "new", 777)
    feed(relays, one, b"still early\n")
    journald.pull(0.2)
    assert [(e["MESSAGE"], e["SYSLOG_PID"]) for e in journald.messages()] == [
        (b"early", b"777"), (b"still early", b"777")]
    # the service has just died: what is still in the pipe were its last words
    fake_status(tmp_path, "new", 0, when=time.time())
    feed(relays, one, b"bye\n")
    journald.pull(0.2)
    assert [(e["MESSAGE"], e["SYSLOG_PID"]) for e in journald.messages(2)] == [(b"bye", b"777")]
    fake_status(tmp_path, "new", 0)  # down for long; something still writes
    feed(relays, one, b"late\n")
    time.sleep(relay.PID_WAIT + 0.02)
    relays.pump([])
    journald.pull(0.2)
    assert journald.messages(3) == [{"SYSLOG_IDENTIFIER": b"new", "SERVICE": b"new",
                                     "SYSLOG_FACILITY": b"3", "PRIORITY": b"6",
                                     "MESSAGE": b"late"}]


@pytest.mark.parametrize("line, priority, message", [
    (b"<0>emerg", b"0", b"emerg"), (b"<7>debug", b"7", b"debug"),
    (b"<3>", b"3", b""), (b"<007>x", b"7", b"x"), (b"<000>x", b"0", b"x"),
    (b"<8>x", b"6", b"<8>x"), (b"<11>x", b"6", b"<11>x"), (b"<0007>x", b"6", b"<0007>x"),
    (b"<>x", b"6", b"<>x"), (b"<3x", b"6", b"<3x"), (b"<-1>x", b"6", b"<-1>x"),
    (b" <3>x", b"6", b" <3>x"), (b"x<3>", b"6", b"x<3>"),
    (b"<4>not \xff utf-8", b"4", b"not \xff utf-8"),
])
def test_relay_priority_prefix(relays: relay.Relays, journald: Datagrams, line: bytes,
                               priority: bytes, message: bytes) -> None:
    """§3.2's rules: one to three digits, value at most 7, at the start of the line."""
    one = relays.open("svc")
    feed(relays, one, line + b"\n")
    assert sent(journald) == [(priority, message)]


def test_relay_long_lines_in_pieces_and_idle_flush(relays: relay.Relays,
                                                   journald: Datagrams) -> None:
    one = relays.open("svc")
    long = b"<2>" + b"x" * (relay.LINE_MAX * 2 + 100)
    os.write(one.write_fd, long[:60000])  # the pipe holds 64 KiB
    relays.pump([(one.fd, select.POLLIN)])
    os.write(one.write_fd, long[60000:] + b"\n<5>after\n")
    for _ in range(3):
        relays.pump([(one.fd, select.POLLIN)])
    got = sent(journald)
    # the prefix is read once; every piece of that line keeps its priority
    assert [p for p, _ in got] == [b"2", b"2", b"2", b"5"]
    assert [len(m) for _, m in got[:3]] == [relay.LINE_MAX - 3, relay.LINE_MAX, 103]
    assert b"".join(m for _, m in got[:3]) == long[3:] and got[3][1] == b"after"

    feed(relays, one, b"<1>half a line")
    relays.pump([])
    assert sent(journald, 4) == []               # not yet idle long enough
    time.sleep(relay.IDLE_FLUSH + 0.05)
    relays.pump([])
    feed(relays, one, b" and the rest\n")        # continues the line sent in part
    assert sent(journald, 4) == [(b"1", b"half a line"), (b"1", b" and the rest")]


def test_relay_bounded_work_per_iteration(relays: relay.Relays,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """At most READ_SIZE per pipe and BUDGET in all per pump, starting one pipe further
    each time, so that no busy pipe starves the others."""
    pipes = [relays.open(f"s{i}") for i in range(6)]
    for p in pipes:
        os.write(p.write_fd, b"y" * 60000)
    taken: list[list[tuple[str, int]]] = []

    def take(relay: relay.Relay, data: bytes, now: float, hold: bool = True) -> None:
        taken[-1].append((relay.label, len(data)))
    monkeypatch.setattr(relays, "take", take)
    events = [(p.fd, select.POLLIN) for p in pipes]
    for _ in range(3):
        taken.append([])
        relays.pump(events)
    for reads in taken:
        assert sum(n for _, n in reads) <= relay.BUDGET
        assert all(n <= relay.READ_SIZE for _, n in reads)
    assert [label for label, _ in taken[0]] != [label for label, _ in taken[1]]
    assert {label for reads in taken[:2] for label, _ in reads} == {f"s{i}" for i in range(6)}
    assert sum(n for reads in taken for _, n in reads) == 6 * 60000


def test_relay_waits_while_journald_is_full(sockdir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """journald's queue full: svscan neither blocks nor drops; the split lines wait,
    the pipes are left unread (poll no longer reports them), and all goes out in
    order once there is room."""
    monkeypatch.chdir(tmp_path)
    fake_status(tmp_path, "svc", 4242)
    slow = Datagrams(sockdir / "slow", parse_entry, reading=False)
    poller = select.poll()
    relays = relay.Relays(poller, str(slow.path))
    one = relays.open("svc")
    try:
        feed(relays, one, b"".join(b"line %d\n" % i for i in range(30)))
        assert relays.backlogged == [one] and 0 < len(one.backlog) <= 30 - 10
        assert 0 < relays.next_flush() <= relay.RETRY
        os.write(one.write_fd, b"after\n")
        assert poller.poll(0) == []                  # unread, and not reported
        time.sleep(relay.RETRY)
        relays.pump([])                              # still no room
        assert relays.backlogged == [one]
        slow.reader.start()                          # journald catches up
        deadline = time.monotonic() + 5
        while relays.backlogged and time.monotonic() < deadline:
            time.sleep(relay.RETRY)
            relays.pump(poller.poll(0))
        assert not relays.backlogged and one.backlog == []
        relays.pump(poller.poll(1000))               # watched again: `after` is read
        slow.pull(0.2)
        assert [e["MESSAGE"] for e in slow.messages()] == [
            *(b"line %d" % i for i in range(30)), b"after"]
    finally:
        relays.close(one)
        relays.journal.close()
        slow.close()


def test_relay_falls_back_to_stderr(sockdir: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capfd: pytest.CaptureFixture[bytes]) -> None:
    monkeypatch.chdir(tmp_path)
    fake_status(tmp_path, "svc", 4242)
    errors = []
    relays = relay.Relays(select.poll(), str(sockdir / "nobody"))
    relays.on_error = errors.append
    one = relays.open("svc")
    try:
        feed(relays, one, b"<3>bad\nfine\n")
        feed(relays, one, b"more\n")
    finally:
        relays.close(one)
    out, err = capfd.readouterr()
    assert err == ("svscan: warning: unable to send to the journal, writing service output "
                   "to stderr until it is back: file does not exist\n"
                   "svc: bad\nsvc: fine\nsvc: more\n")
    assert errors == ["svc: bad"]


def test_native_sink(journald: Datagrams, sockdir: Path,
                     capfd: pytest.CaptureFixture[bytes]) -> None:
    sink = relay.native_sink("supervise", "hello", str(journald.path), lambda t: None)
    sink("supervise: warning: unable to open hello/supervise/status.new: disk full")
    sink("supervise: fatal: unable to start hello/run: file does not exist")
    sink("unable to readlink ./supervise: access denied")
    journald.pull(0.2)
    assert [(e["PRIORITY"], e["SERVICE"], e["SYSLOG_IDENTIFIER"], e["SYSLOG_PID"])
            for e in journald.messages()] == [(p, b"hello", b"supervise", str(os.getpid()).encode())
                                              for p in (b"4", b"3", b"3")]
    fallen = []
    missing = relay.native_sink("svscan", None, str(sockdir / "nobody"), fallen.append)
    missing("svscan: warning: x")
    assert fallen == ["svscan: warning: x"]


# -- svscanboot under systemd -----------------------------------------------------------------

def test_choose_boot(tmp_path: Path) -> None:
    from pysvscan.commands import svscanboot as boot
    st = os.fstat(2)
    here = f"{st.st_dev}:{st.st_ino}"
    assert boot.choose_boot({"NOTIFY_SOCKET": "/run/systemd/notify"}) is boot.systemd_boot
    assert boot.choose_boot({"JOURNAL_STREAM": here}) is boot.systemd_boot
    assert boot.choose_boot({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}) is boot.classic_boot
    assert boot.choose_boot({"JOURNAL_STREAM": "junk"}) is boot.classic_boot
    assert boot.choose_boot({"INVOCATION_ID": "0123"}) is boot.classic_boot
    assert boot.choose_boot({"NOTIFY_SOCKET": ""}) is boot.classic_boot
    assert boot.choose_boot({}) is boot.classic_boot


STAND_IN = """#!/bin/sh
d={log}/$(basename "$0")
printf '%s\\0' "$@" > "$d.args"
cat /proc/$$/environ > "$d.env"
echo $$ > "$d.pid"
fds=$(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2)
echo "$fds" > "$d.fds"
"""


def test_svscanboot_under_systemd_stops_leftovers_then_becomes_svscan(
        procs: Processes, tmp_path: Path) -> None:
    bindir, log = tmp_path / "bin", tmp_path / "log"
    bindir.mkdir()
    log.mkdir()
    shutil.copy(PY.bin("svscanboot"), bindir / "svscanboot")
    for program in ("svc", "svscan", "readproctitle"):
        write_script(bindir / program, STAND_IN.format(log=log)
                     + ("echo svc-says >&2\n" if program == "svc" else ""))
    service = tmp_path / "service"
    for d in ("a", "a/log", "b"):
        (service / d).mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": "/run/systemd/notify",
           "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242", "INVOCATION_ID": "abc",
           "LISTEN_FDS": "1", "OTHER": "x"}
    with open(tmp_path / "stderr", "wb") as err:
        boot = procs.start([str(bindir / "svscanboot"), str(service)], env=env,
                           stdout=err.fileno(), stderr=err.fileno())
        assert boot.wait(timeout=10) == 0
    # svc -dx on the leftovers, silently
    assert (log / "svc.args").read_bytes().split(b"\0")[:-1] == [
        b"-dx", *(os.fsencode(service / n) for n in ("a", "b", "a/log"))]
    assert (log / "svc.fds").read_text().split() == ["/dev/null"] * 3
    # then svscan DIR in place of svscanboot (same pid), no readproctitle
    assert (log / "svscan.pid").read_text() == f"{boot.pid}\n"
    assert (log / "svscan.args").read_bytes() == os.fsencode(service) + b"\0"
    svscan_env = dict(e.split(b"=", 1) for e in (log / "svscan.env").read_bytes().split(b"\0")
                      if e)
    assert svscan_env == {
        b"PATH": b"/command:/usr/local/bin:/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin:"
                 b"/usr/X11R6/bin",
        b"NOTIFY_SOCKET": b"/run/systemd/notify", b"WATCHDOG_USEC": b"30000000",
        b"WATCHDOG_PID": b"4242", b"PYSVSCAN_JOURNAL": b"1"}
    fds = (log / "svscan.fds").read_text().split()
    assert fds[1] == fds[2] == str(tmp_path / "stderr")  # what systemd gave, kept
    assert not (log / "readproctitle.args").exists()
    assert (tmp_path / "stderr").read_bytes() == b""


def test_svscanboot_under_systemd_for_real(procs: Processes, tmp_path: Path,
                                           notify: Datagrams, journald: Datagrams) -> None:
    scan = tmp_path / "service"
    hello = make_service(scan, "hello", "#!/bin/sh\necho hello out\n/usr/bin/env > env.out\n"
                                        "exec sleep 1000\n")
    boot = procs.start([PY.bin("svscanboot"), str(scan)], stderr=subprocess.DEVNULL,
                       env={"PATH": PATH, "NOTIFY_SOCKET": str(notify.path),
                            "PYSVSCAN_JOURNAL_SOCKET": str(journald.path),
                            "INVOCATION_ID": "abc"})
    notify.wait(lambda m: "READY" in m, what="READY=1 from svscan, as svscanboot's pid")
    assert Path(f"/proc/{boot.pid}/cmdline").read_bytes().split(b"\0")[1].endswith(b"/svscan")
    _, _, entry = journald.wait(lambda e: e.get("SERVICE") == b"hello", what="hello's line")
    assert entry["MESSAGE"] == b"hello out"
    wait_until(lambda: (hello / "env.out").exists() and b"PWD" in (hello / "env.out").read_bytes(),
               timeout=10)
    names = {line.split("=", 1)[0] for line in (hello / "env.out").read_text().splitlines()}
    assert not names & FORBIDDEN, names
    boot.send_signal(signal.SIGTERM)
    notify.wait(lambda m: "STOPPING" in m, what="STOPPING=1")
    assert boot.wait(timeout=20) == 0


def test_status_summary_counts_readiness_of_the_current_run_only(tmp_path: Path) -> None:
    """STATUS='s ready count reads supervise/notify-state as svstat does: a state left
    by an earlier run (another pid) is not readiness; no state file: not notifying."""
    from pysvscan import notifier
    from pysvscan.status import Status
    (tmp_path / "a" / "supervise").mkdir(parents=True)
    (tmp_path / "b" / "supervise").mkdir(parents=True)
    (tmp_path / "c" / "supervise").mkdir(parents=True)
    for name, pid in (("a", 101), ("b", 202), ("c", 0)):
        status = Status(4611686018427387914 + 1_700_000_000, 0)
        status.pid = pid
        (tmp_path / name / "supervise" / "status").write_bytes(status.pack())
    ready = b"ready=@4000000065a0000000000000\n"
    (tmp_path / "a" / "supervise" / "notify-state").write_bytes(b"pid=101\n" + ready)
    (tmp_path / "b" / "supervise" / "notify-state").write_bytes(b"pid=999\n" + ready)
    assert notifier.service_state(str(tmp_path / "a")) == (True, True)
    assert notifier.service_state(str(tmp_path / "b")) == (True, False)
    assert notifier.service_state(str(tmp_path / "c")) == (False, None)
