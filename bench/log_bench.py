"""(log) multilog, tai64n and tai64nlocal against the C, on 1,000,000 lines of ~100 bytes.

One input file is generated per run (tai64n_bench.make_input: log lines with DEBUG,
INFO, WARN and ERROR in realistic shares) and fed to each program from the file, C and
pysvscan alternating, median of N runs each. Every multilog run starts on a fresh,
empty log directory in the same temp dir (so on the same file system as a real log);
its output is checked (last line of `current`, and for `s16777215 n10`, where nothing
is deleted, the byte count of the whole log), so both trees are timed doing the same
work.

Throughput rows show klines/s, so py/C is a throughput ratio (C time / pysvscan time;
higher is better). Peak memory is the largest RSS of one multilog process over the
runs, taken for the program alone (harness.run_peak), in MB of 10^6 bytes. Everything
is removed afterwards.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path
from statistics import median

import tai64n_bench
from harness import IMPLS, Impl, PeakRun, log, peak_method, run_peak
from report import Row, error_row, summary, throughput_row

RSS_LIMIT_MB = 30.0
LABEL_BYTES = 26  # "@" + 24 hex digits + " " in front of each line with `t`
STATE_FILES = {"lock", "state", "newstate", "previous", "processed"}

# (key, script after `multilog`, target: at least this x C's throughput, peak RSS row?)
SCRIPTS: tuple[tuple[str, tuple[str, ...], float, bool], ...] = (
    ("t", ("t", "s16777215", "n10", "./dir"), 1.5, True),
    ("plain", ("./dir",), 1.5, False),
    ("pattern", ("-*DEBUG*", "+*ERROR*", "+*WARN*", "./dir"), 0.5, True),
)
TAI_KEYS = {"tai64n": "tai64n", "tai64nlocal, TZ=UTC": "tai64nlocal-utc",
            "tai64nlocal, TZ unset": "tai64nlocal"}


def last_line(path: Path, without: bytes | None = None) -> bytes:
    """The last line of `path`, or the last one not containing `without`."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - 65536))
        tail = f.read().splitlines()
    if without is not None:
        tail = [x for x in tail if without not in x]
    if not tail:
        raise RuntimeError(f"{path}: no line to compare with")
    return tail[-1]


class Expect:
    """What each script must leave in the log directory."""

    def __init__(self, plain: Path, stats: dict[str, int]) -> None:
        self.stats = stats
        self.lines = stats["lines"]
        self.bytes = stats["bytes"] + LABEL_BYTES * stats["lines"]
        self.last = last_line(plain)
        self.last_selected = last_line(plain, without=b"DEBUG")

    def check(self, impl: Impl, key: str, logdir: Path) -> None:
        want = self.last_selected if key == "pattern" else self.last
        got = last_line(logdir / "current")
        if key == "t":
            got = got[LABEL_BYTES:]
        if got != want:
            raise RuntimeError(f"{impl.name} multilog ({key}): last line of current is "
                               f"{got[:60]!r}, expected {want[:60]!r}")
        if key == "t":
            total = sum(p.stat().st_size for p in logdir.iterdir()
                        if p.name not in STATE_FILES)
            if total != self.bytes:
                raise RuntimeError(f"{impl.name} multilog ({key}): {total} bytes logged, "
                                   f"expected {self.bytes}")


def multilog_once(impl: Impl, key: str, script: tuple[str, ...], work: Path,
                  plain: Path, expect: Expect) -> PeakRun:
    """One run on a fresh, empty ./dir; checked, then the directory is removed."""
    logdir = work / "dir"
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir()
    try:
        run = run_peak([impl.tool("multilog"), *script], plain, work)
        if run.code:
            raise RuntimeError(f"{impl.name} multilog ({key}): exit {run.code} "
                               f"{run.stderr[-200:]!r}")
        expect.check(impl, key, logdir)
        return run
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def multilog_rows(work: Path, plain: Path, expect: Expect, reps: int) -> list[Row]:
    """Every script, repetition by repetition, C and pysvscan alternating (and which
    goes first alternating too), so drifting load hits both alike."""
    runs: dict[str, dict[str, list[PeakRun]]] = {k: {i.name: [] for i in IMPLS}
                                                 for k, *_ in SCRIPTS}
    failed: dict[str, BaseException] = {}
    for rep in range(reps):
        for n, (key, script, _, _) in enumerate(SCRIPTS):
            if key in failed:
                continue
            log(f"log: multilog {shlex.join(script)}, run {rep + 1}/{reps}")
            for impl in (IMPLS if (rep + n) % 2 == 0 else IMPLS[::-1]):
                try:
                    runs[key][impl.name].append(
                        multilog_once(impl, key, script, work, plain, expect))
                except (OSError, RuntimeError, TimeoutError) as e:
                    failed[key] = e
                    break
    rows: list[Row] = []
    for key, script, limit, rss in SCRIPTS:
        label = f"(log) multilog {shlex.join(script)}"
        if key in failed:
            rows.append(error_row(f"log-{key}", label, failed[key]))
            continue
        c, py = runs[key]["C"], runs[key]["pysvscan"]
        rows.append(throughput_row(
            f"log-{key}", label, median([r.seconds for r in c]),
            median([r.seconds for r in py]), expect.lines, limit,
            {"C_seconds": summary([r.seconds for r in c]),
             "pysvscan_seconds": summary([r.seconds for r in py]), "input": expect.stats}))
        if rss:
            c_kb = summary([r.maxrss_kb for r in c])
            py_kb = summary([r.maxrss_kb for r in py])
            peak = mb(py_kb["max"])
            rows.append(Row(f"log-rss-{key}", "    same, peak RSS of multilog", "MB",
                            mb(c_kb["max"]), peak, f"py < {RSS_LIMIT_MB:g} MB",
                            peak < RSS_LIMIT_MB,
                            {"C_kb": c_kb, "pysvscan_kb": py_kb, "method": peak_method()}))
    return rows


def mb(kib: float) -> float:
    """ru_maxrss (KiB) in MB of 10^6 bytes: the stricter reading of "30 MB"."""
    return kib * 1024 / 1e6


def tai_rows(plain: Path, stamped: Path, reps: int) -> list[Row]:
    """tai64n_bench's measurement, as rows of this table."""
    rows = []
    for r in tai64n_bench.tai64n_rows(plain, stamped, reps):
        detail = {"C_seconds": summary(r["c_samples"]),
                  "pysvscan_seconds": summary(r["py_samples"])}
        rows.append(throughput_row(f"log-{TAI_KEYS[r['name']]}", f"(log) {r['name']}",
                                   r["c_seconds"], r["py_seconds"], tai64n_bench.LINES,
                                   r["target"], detail))
    return rows


def log_rows(reps: int) -> list[Row]:
    """The whole log group: input made once, multilog rows, then tai64n rows."""
    with tempfile.TemporaryDirectory(prefix="pysvscan-bench-log-") as tmp:
        work = Path(tmp)
        plain, stamped = work / "input", work / "input.stamped"
        log(f"log: writing {tai64n_bench.LINES:,} lines")
        stats = tai64n_bench.make_input(plain)
        tai64n_bench.stamp(plain, stamped)
        tai64n_bench.warm(plain)
        expect = Expect(plain, stats)
        rows = multilog_rows(work, plain, expect, reps)
        log(f"log: tai64n and tai64nlocal, {reps} runs x 2 each")
        try:
            rows += tai_rows(plain, stamped, reps)
        except (OSError, RuntimeError, TimeoutError) as e:
            rows.append(error_row("log-tai64n", "(log) tai64n, tai64nlocal", e))
        return rows
