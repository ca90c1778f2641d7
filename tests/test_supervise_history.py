"""supervise/history: pysvscan's record of starts and exits, next to the 18-byte status
that stays 0.76's (for `pysvscan status` and `pysvscan doctor`)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from conftest import (PY, Processes, make_service, read_history, start_supervise, status_pid,
                      wait_until)

LABEL = r"@[0-9a-f]{24}"




def test_no_history_until_the_service_first_ends(procs: Processes, tmp_path: Path) -> None:
    service = make_service(tmp_path, "calm", "#!/bin/sh\nexec sleep 1000\n")
    (service / "supervise").mkdir(mode=0o700)
    (service / "supervise" / "history").write_text("starts=99\n")  # an earlier supervise's
    start_supervise(procs, PY, service)
    wait_until(lambda: status_pid(service), timeout=10, message="service up")
    assert not (service / "supervise" / "history").exists()


def test_history_counts_exits_and_restarts(procs: Processes, tmp_path: Path) -> None:
    service = make_service(tmp_path, "flaky", "#!/bin/sh\nexec sleep 1000\n")
    start_supervise(procs, PY, service)
    first = wait_until(lambda: status_pid(service), timeout=10, message="service up")
    PY.run("svc", "-k", service)
    second = wait_until(lambda: (p := status_pid(service)) != first and p, timeout=10,
                        message="restart after SIGKILL")
    h = wait_until(lambda: read_history(service), timeout=5, message="history written")
    assert h["starts"] == "2" and h["exits"] == "1"
    assert re.fullmatch(rf"signal {int(signal.SIGKILL)} pid {first} at {LABEL}", h["last_exit"])
    assert re.fullmatch(LABEL, h["recent_exits"])

    (service / "run").write_text("#!/bin/sh\nexit 3\n")
    PY.run("svc", "-d", service)  # TERM: a second exit, and no restart
    wait_until(lambda: read_history(service).get("exits") == "2", timeout=10, message="exit 2")
    h = read_history(service)
    assert h["starts"] == "2"
    assert re.fullmatch(rf"signal {int(signal.SIGTERM)} pid {second} at {LABEL}", h["last_exit"])
    assert len(h["recent_exits"].split()) == 2

    PY.run("svc", "-u", service)  # `exit 3` now: restarted once a second
    wait_until(lambda: int(read_history(service).get("exits", 0)) >= 4, timeout=10,
               message="two more exits")
    h = read_history(service)
    assert re.fullmatch(rf"exit 3 pid \d+ at {LABEL}", h["last_exit"])
    assert int(h["starts"]) >= 4
    assert (service / "supervise" / "status").stat().st_size == 18
