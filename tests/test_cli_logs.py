"""`pysvscan logs`: from a multilog directory (tail and follow across rotations) and from
a real journald (tests/journald_ns.sh, as in test_systemd_journald.py)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from conftest import C, PY, Processes, make_service, status_pid, wait_until
from test_cli import pysvscan, release, start_svscan
from journaldlib import Journald, jd  # noqa: F401  the module's journald

LOCAL = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9}"
# numbered lines, fast: s4096 rotates about every 100 of them
COUNTER = "#!/bin/sh\nexec 2>&1\nn=0\nwhile [ $n -lt {count} ]; do n=$((n+1)); " \
          "echo \"line $n {pad}\"; {pause}done\nexec sleep 1000\n"


def numbers(text: str) -> list[int]:
    found = []
    for line in text.splitlines():
        m = re.fullmatch(rf"{LOCAL} line (\d+) x+", line)
        assert m, line
        found.append(int(m.group(1)))
    return found


def logged(logdir: Path, text: bytes) -> bool:
    """Some file of the log directory holds `text` (current or an archive: multilog
    may rotate right after a line; `current` is briefly missing while it does)."""
    for path in logdir.glob("*"):
        try:
            if text in path.read_bytes():
                return True
        except OSError:
            pass
    return False


def counter(scandir: Path, count: int, pause: str = "") -> Path:
    return make_service(scandir, "count", COUNTER.format(count=count, pad="x" * 30,
                                                         pause=pause),
                        log=f"#!/bin/sh\nexec {PY.bin('multilog')} t s4096 n100 ./main\n")


def test_logs_tail_spans_archives_in_local_time(tmp_path: Path, procs: Processes) -> None:
    scandir = tmp_path / "service"
    svc = counter(scandir, 500)
    start_svscan(procs, scandir)
    main = svc / "log" / "main"
    wait_until(lambda: logged(main, b"line 500 "), timeout=20)
    assert len(list(main.glob("@*.s"))) >= 3

    r = pysvscan("logs", "count", "--scandir", scandir)  # default: 10 lines
    assert r.returncode == 0, r.stderr
    assert numbers(r.stdout) == list(range(491, 501))
    r = pysvscan("logs", "-n", "321", "count", "--scandir", scandir)
    assert numbers(r.stdout) == list(range(180, 501))
    # the same text as tai64nlocal makes of the files
    raw = b"".join(p.read_bytes() for p in sorted(main.glob("@*.s")))
    raw += (main / "current").read_bytes()
    local = subprocess.run([C.bin("tai64nlocal")], input=raw, capture_output=True).stdout
    assert r.stdout.encode() == b"".join(local.splitlines(keepends=True)[-321:])


def read_lines(proc: subprocess.Popen[bytes], want: int, timeout: float) -> str:
    """What `proc` prints until `want` lines have come (or the time is up)."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    while out.count(b"\n") < want and (left := deadline - time.monotonic()) > 0:
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    return out.decode()


BURSTS = """#!/bin/sh
exec 2>&1
n=0
burst() {{ i=0; while [ $i -lt $1 ]; do i=$((i+1)); n=$((n+1)); echo "line $n {pad}"; done; }}
burst 50
read go < ../go1
burst 600
read go < ../go2
burst 100
exec sleep 1000
"""


def test_logs_follow_across_rotations(tmp_path: Path, procs: Processes) -> None:
    """Lines 51-650 are written while the follower is stopped (SIGSTOP): several
    rotations happen between two of its reads, and none of their lines is lost."""
    scandir = tmp_path / "service"
    svc = make_service(scandir, "count", BURSTS.format(pad="x" * 30),
                       log=f"#!/bin/sh\nexec {PY.bin('multilog')} t s4096 n100 ./main\n")
    os.mkfifo(scandir / "go1")
    os.mkfifo(scandir / "go2")
    start_svscan(procs, scandir)
    main = svc / "log" / "main"
    wait_until(lambda: logged(main, b"line 50 "), timeout=10)
    follower = procs.start([PY.bin("pysvscan"), "logs", "-f", "-n", "5", "count",
                            "--scandir", str(scandir)], stdout=subprocess.PIPE)
    text = read_lines(follower, 5, 20)
    assert numbers(text) == list(range(46, 51))

    follower.send_signal(signal.SIGSTOP)
    release(scandir / "go1")
    wait_until(lambda: logged(main, b"line 650 "), timeout=20)
    assert len(list(main.glob("@*.s"))) >= 5  # rotations while it was stopped
    follower.send_signal(signal.SIGCONT)
    text += read_lines(follower, 600, 30)
    release(scandir / "go2")  # and while it runs
    text += read_lines(follower, 100, 30)
    assert numbers(text) == list(range(46, 751))
    assert follower.poll() is None


def test_logs_errors(tmp_path: Path, procs: Processes) -> None:
    scandir = tmp_path / "service"
    make_service(scandir, "bare", "#!/bin/sh\nexec sleep 1000\n")
    make_service(scandir, "catty", "#!/bin/sh\nexec sleep 1000\n",
                 log="#!/bin/sh\nexec cat > out\n")
    r = pysvscan("logs", "nope", "--scandir", scandir)
    assert r.returncode == 1 and r.stderr == f"Error: no service 'nope' in {scandir}\n"
    r = pysvscan("logs", "catty", "--scandir", scandir)
    assert r.returncode == 1
    assert r.stderr == (f"Error: {scandir}/catty/log/run does not run multilog: its lines "
                        "are wherever it puts them\n")
    svscan = start_svscan(procs, scandir, PYSVSCAN_JOURNAL="0")
    r = pysvscan("logs", "bare", "--scandir", scandir)
    assert r.returncode == 1
    assert r.stderr == (f"Error: bare has no log/ and svscan (pid {svscan.pid}) is not in "
                        "journal mode: its output goes to svscan's own standard error\n")


def test_logs_from_the_journal(jd: Journald, procs: Processes, tmp_path: Path) -> None:  # noqa: F811
    scandir = tmp_path / "service"
    make_service(scandir, "jhello", "#!/bin/sh\necho jhello one\necho jhello two >&2\n"
                 "exec sleep 1000\n")
    make_service(scandir, "jweb", "#!/bin/sh\nexec 2>&1\necho jweb through multilog\n"
                 "exec sleep 1000\n", log=f"#!/bin/sh\nexec {PY.bin('multilog')} J\n")
    env = {"PATH": "/usr/bin:/bin", "PYSVSCAN_JOURNAL": "1"}
    with open(tmp_path / "svscan.stderr", "wb") as err:
        procs.start(jd.argv([PY.bin("svscan"), str(scandir)]), env=env, stderr=err.fileno())
    jd.wait_entries(2, "SERVICE=jhello")
    jd.wait_entries(1, "SERVICE=jweb")
    wait_until(lambda: status_pid(scandir / "jhello"))

    def logs(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(jd.argv([PY.bin("pysvscan"), "logs", "--scandir", str(scandir),
                                    *args]), env=env, capture_output=True, text=True,
                           timeout=30)
        assert "Traceback" not in r.stderr
        return r

    r = logs("jhello")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split(": ", 1)[1] for line in lines[-2:]] == ["jhello one", "jhello two"]
    assert " jhello[" in lines[-1]  # SYSLOG_IDENTIFIER: journalctl's usual lines
    r = logs("-n", "1", "jweb")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].endswith(": jweb through multilog")
