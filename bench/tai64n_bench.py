"""Throughput of tai64n and tai64nlocal against the C, on 1,000,000 lines of ~100 bytes.

    .venv/bin/python bench/tai64n_bench.py [--reps N]

Input is read from a file and output goes to /dev/null, so the figure is the programs'
own work, not the disk's. C and pysvscan runs alternate (N each, median) because only
the ratio is meaningful on a shared, noisy machine. ratio = C seconds / pysvscan
seconds (a throughput ratio: above 1 pysvscan is faster); target: ratio >= 1.0.

tai64nlocal is measured twice: with TZ set (glibc then reads the zone once: the C at
its fastest) and with TZ unset (glibc re-checks /etc/localtime at every localtime()).
Exit status: 0 every target met, 1 a target missed.
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


def make_input(path: Path, lines: int = LINES, seed: int = 76) -> None:
    """`lines` lines of ~100 bytes: a counter, then random words (fixed seed)."""
    rng = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyz     "
    pool = [bytes(rng.choice(alphabet) for _ in range(86)) for _ in range(1024)]
    with open(path, "wb") as f:
        batch = []
        for i in range(lines):
            batch.append(b"line %07d %s\n" % (i, pool[i % 1024]))
            if len(batch) == 10_000:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch))


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


def run_tai64n_bench(reps: int = 3) -> list[dict]:
    """The rows {name, c_seconds, py_seconds, ratio, target, ok} (+ raw samples)."""
    base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    with tempfile.TemporaryDirectory(prefix="tai64n-bench.") as tmp:
        plain = Path(tmp) / "plain"
        stamped = Path(tmp) / "stamped"
        make_input(plain)
        with open(plain, "rb") as src, open(stamped, "wb") as dst:  # real C labels
            subprocess.run([str(C_BIN / "tai64n")], stdin=src, stdout=dst, check=True)
        for path in (plain, stamped):  # both in the page cache before the first timing
            path.read_bytes()
        return [
            compare("tai64n", "tai64n", plain, base, reps),
            compare("tai64nlocal, TZ=UTC", "tai64nlocal", stamped, {**base, "TZ": "UTC"}, reps),
            compare("tai64nlocal, TZ unset", "tai64nlocal", stamped, base, reps),
        ]


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
