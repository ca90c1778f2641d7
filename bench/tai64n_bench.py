"""Throughput of tai64n and tai64nlocal against the C, on 1,000,000 lines of ~100 bytes.

    .venv/bin/python bench/tai64n_bench.py [--reps N]

Input is read from a file and output goes to /dev/null, so the figure is the programs'
own work, not the disk's. C and pysvscan runs alternate (N each, median) because only
the ratio is meaningful on a shared, noisy machine. ratio = C seconds / pysvscan
seconds (a throughput ratio: above 1 pysvscan is faster); target: ratio >= 1.0.

tai64nlocal is measured twice: with TZ set (glibc then reads the zone once: the C at
its fastest) and with TZ unset (glibc re-checks /etc/localtime at every localtime()).
Exit status: 0 every target met, 1 a target missed.

The log group of `make bench` (log_bench.py) imports make_input(), stamp() and
tai64n_rows(), so both measure the same way on the same kind of input.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY_BIN = ROOT / ".venv" / "bin"
C_BIN = Path("/usr/bin")
LINES = 1_000_000
TARGET = 1.0


# Log levels and their shares of the lines. Everything else in a line is lowercase or
# digits, so the level is the first D, E or W: multilog's `*` stops at the first
# occurrence of the next character, and `*DEBUG*` and friends then match as meant.
LEVELS = ((b"DEBUG", 45), (b"INFO", 35), (b"WARN", 12), (b"ERROR", 8))
PROGRAMS = (b"api", b"worker", b"scheduler", b"mailer", b"cron", b"auth")
WORDS = (b"request served connection closed user session cache miss hit retry "
         b"timeout queue depth latency bytes sent received upstream backend pool "
         b"token refreshed job started finished failed slow query rows disk space "
         b"checkpoint reload config signal child exited status ok path index").split()
POOL = 4096  # distinct line bodies, cycled


def make_input(path: Path, lines: int = LINES, seed: int = 76) -> dict[str, int]:
    """`lines` log lines of 80-120 bytes (about 100 on average): a counter, a program
    and pid, a level (DEBUG 45%, INFO 35%, WARN 12%, ERROR 8%) and lowercase words,
    from a fixed seed. Returns the number of lines and bytes, and lines per level."""
    rng = random.Random(seed)
    names, weights = zip(*LEVELS)
    pool = []
    for level in rng.choices(names, weights, k=POOL):
        body = b"%s[%d]: %s" % (rng.choice(PROGRAMS), rng.randrange(100, 32768), level)
        size = rng.randrange(80, 121) - 9  # less "%07d " and the newline
        while len(body) < size:
            body += b" " + rng.choice(WORDS)
        pool.append((level, body[:size] + b"\n"))
    stats = {"lines": lines, "bytes": 0, **{name.decode(): 0 for name in names}}
    with open(path, "wb") as f:
        batch = []
        for i in range(lines):
            level, body = pool[i % POOL]
            batch.append(b"%07d %s" % (i, body))
            stats[level.decode()] += 1
            if len(batch) == 10_000:
                data = b"".join(batch)
                stats["bytes"] += len(data)
                f.write(data)
                batch.clear()
        data = b"".join(batch)
        stats["bytes"] += len(data)
        f.write(data)
    return stats


def stamp(plain: Path, stamped: Path) -> None:
    """`plain` with real C tai64n labels: the input of tai64nlocal."""
    with open(plain, "rb") as src, open(stamped, "wb") as dst:
        subprocess.run([str(C_BIN / "tai64n")], stdin=src, stdout=dst, check=True)


def warm(*paths: Path) -> None:
    """Read each file once, so it is in the page cache before the first timing (in
    chunks: the caller's own memory stays small)."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


def timed(argv: list[str], stdin: Path, env: dict[str, str]) -> float:
    """Wall time of one run reading `stdin`, writing to /dev/null; it must exit 0."""
    with open(stdin, "rb") as src, open(os.devnull, "wb") as sink:
        start = time.perf_counter()
        code = subprocess.run(argv, stdin=src, stdout=sink, env=env).returncode
        elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{argv[0]} exited {code}")
    return elapsed


def compare(name: str, program: str, stdin: Path, env: dict[str, str], reps: int) -> dict:
    """Alternate C and pysvscan runs; one result row from the medians."""
    c_times: list[float] = []
    py_times: list[float] = []
    for _ in range(reps):
        c_times.append(timed([str(C_BIN / program)], stdin, env))
        py_times.append(timed([str(PY_BIN / program)], stdin, env))
    c, py = statistics.median(c_times), statistics.median(py_times)
    ratio = c / py
    return {"name": name, "c_seconds": c, "py_seconds": py, "ratio": ratio,
            "target": TARGET, "ok": ratio >= TARGET,
            "c_samples": c_times, "py_samples": py_times}


def tai64n_rows(plain: Path, stamped: Path, reps: int = 3) -> list[dict]:
    """The rows {name, c_seconds, py_seconds, ratio, target, ok} (+ raw samples) for
    tai64n on `plain` and tai64nlocal on `stamped` (see stamp())."""
    base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    warm(plain, stamped)
    return [
        compare("tai64n", "tai64n", plain, base, reps),
        compare("tai64nlocal, TZ=UTC", "tai64nlocal", stamped, {**base, "TZ": "UTC"}, reps),
        compare("tai64nlocal, TZ unset", "tai64nlocal", stamped, base, reps),
    ]


def run_tai64n_bench(reps: int = 3) -> list[dict]:
    """tai64n_rows() on a fresh 1,000,000-line input, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="tai64n-bench.") as tmp:
        plain = Path(tmp) / "plain"
        stamped = Path(tmp) / "stamped"
        make_input(plain)
        stamp(plain, stamped)
        return tai64n_rows(plain, stamped, reps)


def render(rows: list[dict]) -> str:
    head = ("benchmark (1M lines)", "C", "pysvscan", "C/py", "target", "result")
    body = [(r["name"], f"{r['c_seconds']:.3f} s", f"{r['py_seconds']:.3f} s",
             f"{r['ratio']:.2f}x", f">= {r['target']:g}x", "PASS" if r["ok"] else "FAIL")
            for r in rows]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    out = []
    for n, line in enumerate([head, *body]):
        out.append("  ".join(cell.rjust(w) if 0 < i < 4 else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args()
    rows = run_tai64n_bench(args.reps)
    print(render(rows))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
