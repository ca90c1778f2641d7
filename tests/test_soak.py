"""The soak, short (issue 8, requirement 8): bench/soak.py for 60 s, every invariant held.

`make soak` runs it for 10 minutes with 100 services; CI runs this one-minute form with
fewer services, so that it stays near a minute on a 2-core machine: random `svc`
commands, kills of supervise, services and loggers, services added and retired, and
every 10 s svstat against /proc, one copy of each service, no zombie, descriptors and
memory of svscan and each supervise flat.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from conftest import Processes

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "bench" / "soak.py"


def test_sixty_seconds_of_soak_hold_every_invariant(procs: Processes) -> None:
    soak = procs.start([sys.executable, str(SOAK), "--seconds", "60", "--services", "40",
                        "--seed", "8"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = soak.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        soak.send_signal(signal.SIGTERM)  # soak.py cleans up on SIGTERM
        out, _ = soak.communicate(timeout=60)
    text = out.decode(errors="replace")
    if m := re.search(r"svscan: pid \d+ \(process group (\d+)\)", text):
        procs.adopt(int(m.group(1)))  # killed at teardown, should anything be left
    assert soak.returncode == 0, text[-6000:]
    assert "every invariant held at every check" in text, text[-6000:]
    assert len(re.findall(r"^\s+\d+ s  services", text, re.M)) >= 5, text[-6000:]
