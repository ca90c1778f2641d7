"""Logs survive every single fault of a svscan tree (issue 8, requirement 2).

A service writes a numbered line every millisecond through its log/ (multilog); kill -9
goes to the logger, the logger's supervise, the service's supervise or the service
itself, a few times at random moments, and the tree is then stopped with SIGTERM to
svscan. Nothing is lost, garbled or reordered; lines repeat only after a logger kill.
The full experiment, C against pysvscan with 25 kills of each kind, is
bench/tree_faults.py; this is its short CI form, on pysvscan's tree only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import Processes

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))  # bench/ holds standalone scripts, not a package
import tree_faults  # noqa: E402

KILLS = 5
SEED = 8


def summary(run: object) -> str:
    return "\n".join([tree_faults.table([run]), f"seed {SEED}", *run.problems(),
                      f"stderr: {run.stderr[-800:]!r}"])


@pytest.mark.parametrize("kind", tree_faults.KINDS)
def test_kill9_loses_no_line(kind: str, tmp_path: Path, procs: Processes) -> None:
    run = tree_faults.run_tree("py", kind, tmp_path, kills=KILLS, seed=SEED,
                               spawn=procs.start)
    log = run.log
    assert run.kills == KILLS and not run.not_whole, summary(run)
    assert run.count > 1000, summary(run)  # the service did write all along
    assert log.lost == 0 and log.garbled == 0 and log.reordered == 0, summary(run)
    if kind == "logger":
        assert log.duplicated <= run.kills, summary(run)
    else:
        assert log.duplicated == 0, summary(run)
    assert run.max_services == 1 and run.max_loggers == 1, summary(run)
    if kind in ("supervise", "log-supervise"):
        assert run.same_pid == run.kills, summary(run)  # adopted, not started again
    assert run.stop_status == 0 and run.leftovers == 0, summary(run)
    assert run.problems() == [], summary(run)


def test_sigterm_under_load_loses_no_line(tmp_path: Path, procs: Processes) -> None:
    run = tree_faults.run_tree("py", tree_faults.LOAD, tmp_path, kills=0, seed=SEED,
                               load_seconds=3, spawn=procs.start)
    assert run.count > 2000, summary(run)
    assert run.log.lost == 0 and run.log.duplicated == 0 and run.log.garbled == 0, summary(run)
    assert run.stop_status == 0 and run.leftovers == 0, summary(run)
    assert run.problems() == [], summary(run)
