"""pysvscan against the C daemontools 0.76, side by side in one run (`make bench`).

    .venv/bin/python bench/run.py [--quick] [--only a,b,c,d,e,f,proctitle,tools,log]

Both trees are measured in the same run, interleaved where that is possible, because
only the ratio is meaningful on a shared, noisy machine. Prints one table (benchmark,
C, pysvscan, py/C, target, PASS/FAIL), then the process-title cost table, and writes
everything to bench/results/latest.json. Exit status: 0 all targets met, 1 a target
missed, 2 a benchmark could not run.

  (a) PSS of svscan + its supervise processes per service, 100 and 500 services
  (b) svscan start until all 500 services are up
  (c) kill -9 of a service until its new ./run runs
  (d) `svc -t` until the new pid is in supervise/status
  (e) wall time of one svstat call, 1 and 100 directories
  (f) CPU of the whole tree over an idle period, 100 services
  proctitle: what setting the title costs each forked supervise (proctitle_cost.py)
  tools: wall time of one `envdir ./env true`, `setuidgid nobody true`,
     `softlimit -m 100000000 true` and `setlock -n lockfile true` (exec-chain start-up;
     target <= 15 ms each, absolute)
  log: 1,000,000 lines of ~100 bytes from a file through `multilog t s16777215 n10
     ./dir`, `multilog ./dir`, `multilog '-*DEBUG*' '+*ERROR*' '+*WARN*' ./dir`,
     tai64n and tai64nlocal (throughput, target as a ratio to C), and multilog's peak
     RSS (target < 30 MB) (log_bench.py)
  cli: wall time of one `pysvscan status` over 500 running services (target < 200 ms,
     absolute; cli_bench.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import GROUPS, Plan, log, run_group
from harness import IMPLS, ROOT, become_subreaper
from report import Row, table, write_json

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "latest.json"
KEYS = ("a", "b", "c", "d", "e", "f", "proctitle", "tools", "log", "scale", "cli")
ALIASES = {"p": "proctitle", "g": "proctitle"}
# The programs each benchmark runs, in both trees (supervise: the C svscan needs it).
TREE_PROGS = ("svscan", "svc", "svstat")
NEEDS = {**{k: TREE_PROGS for k in "abcdef"},
         "tools": ("envdir", "setuidgid", "softlimit", "setlock"),
         "log": ("multilog", "tai64n", "tai64nlocal"),
         "scale": TREE_PROGS,
         "cli": ("svscan",)}  # and pysvscan's own command, which C has no counterpart of


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="fewer samples and a 10 s idle window (about 2 minutes)")
    ap.add_argument("--only", default="", metavar="LIST",
                    help=f"comma-separated subset of {','.join(KEYS)}: (a)-(f) and "
                         "proctitle as above; tools = start-up of envdir, setuidgid, "
                         "softlimit, setlock; log = multilog, tai64n, tai64nlocal "
                         "throughput and multilog peak memory; scale = 1000 services "
                         "with 1000 loggers; cli = pysvscan status on 500 services")
    ap.add_argument("--json", type=Path, default=RESULTS, metavar="PATH",
                    help=f"where to write the results (default {RESULTS.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    args.want = selection(ap, args.only)
    return args


def selection(ap: argparse.ArgumentParser, only: str) -> set[str]:
    if not only:
        return set(KEYS)
    want = {ALIASES.get(k.strip(), k.strip()) for k in only.split(",") if k.strip()}
    if unknown := want - set(KEYS):
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return want


def missing_programs(want: set[str]) -> list[str]:
    names = {p for k in want for p in NEEDS.get(k, ())}
    progs = [impl.tool(p) for impl in IMPLS for p in sorted(names)]
    if set(TREE_PROGS) & names:
        progs.append("/usr/bin/supervise")
    return [p for p in progs if not os.access(p, os.X_OK)]


def interrupted(signum: int, frame: object) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every tree's finally-block kills it."""
    raise KeyboardInterrupt(f"signal {signum}")


def proctitle(quick: bool) -> dict[str, Any]:
    """Run proctitle_cost.py in a fresh interpreter: its parent heap must look like
    svscan's, not like this harness's."""
    argv = [sys.executable, str(BENCH / "proctitle_cost.py"), "--json", "-n", "50",
            "--rounds", "1" if quick else "2"]
    log("proctitle cost")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"proctitle_cost.py failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def git_rev() -> str:
    """The commit measured, marked -dirty when the work tree differs from it."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if missing := missing_programs(args.want):
        print(f"bench: missing programs: {', '.join(missing)}", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    become_subreaper()
    plan = Plan(args.quick)
    meta: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "quick": args.quick, "only": sorted(args.want),
                            "git": git_rev(), "python": platform.python_version(),
                            "kernel": platform.release(), "cpus": os.cpu_count(),
                            "loadavg_before": loadavg()}
    t0 = time.monotonic()
    rows: list[Row] = []
    for name, (_, keys) in GROUPS.items():
        if args.want & keys:
            rows += run_group(name, plan, args.want)
    extra: dict[str, Any] = {}
    if "proctitle" in args.want:
        try:
            extra["proctitle"] = proctitle(args.quick)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
            extra["proctitle"] = {"error": str(e)}
    meta.update(seconds=round(time.monotonic() - t0, 1), loadavg_after=loadavg())
    print_report(meta, rows, extra)
    write_json(args.json, meta, rows, extra)
    print(f"\nresults: {args.json}")
    if any(r.detail.get("error") for r in rows) or "error" in extra.get("proctitle", {}):
        return 2
    return 1 if any(r.ok is False for r in rows) else 0


def print_report(meta: dict[str, Any], rows: list[Row], extra: dict[str, Any]) -> None:
    print(f"pysvscan benchmarks ({'quick' if meta['quick'] else 'full'}), git {meta['git']}, "
          f"{meta['cpus']} CPUs, load {meta['loadavg_before'][0]:.2f} -> "
          f"{meta['loadavg_after'][0]:.2f}, {meta['seconds']:.0f} s")
    print("(figures are medians unless noted; the machine is shared, so compare ratios)\n")
    if rows:
        print(table(rows))
        for r in rows:
            if err := r.detail.get("error"):
                print(f"  {r.label}: {err}")
    if pt := extra.get("proctitle"):
        print("\nprocess title cost per forked child (bench/proctitle_cost.py)\n")
        if "error" in pt:
            print(f"  error: {pt['error']}")
        else:
            from proctitle_cost import table as pt_table
            print(pt_table(pt))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("\nbench: interrupted; every tree started was killed", file=sys.stderr)
        sys.exit(130)
