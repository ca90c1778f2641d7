"""multilog under SIGKILL: lines lost, duplicated and garbled, C against pysvscan.

    .venv/bin/python bench/log_faults.py [--kills 50] [--seconds 30] [--impl py|c|both]
                                         [--seed N] [--pause SECONDS] [--num 100]
                                         [--keep DIR]

The set-up is what svscan builds for a service and its log: a pipe whose two ends are
held by a third process (here this harness, as svscan holds them), the service writing
into it and `multilog t s99999 n100 DIR` reading from it (--num N for many kills: each
kill leaves a .u archive, and trimmed archives would count as lost). The service is a
child process writing `line %08d <filler>\\n` every millisecond (one write(2) per line,
scheduled on absolute times so that it does not drift). During the run multilog is
killed with SIGKILL at --kills moments drawn uniformly from [0, --seconds) and
restarted at once on the same read end of the pipe (--pause 1 waits a second first, as
supervise does; the default restarts immediately, which gives the most kills per
second of input; with --pause a kill falling due during a pause hits the next multilog
as soon as it has started, often before its crash recovery). s99999 makes it rotate about once a second, so kills also land in
rotations and in crash recovery.

At the end the service exits, the harness closes its write end, the last multilog
drains the pipe to end of input and exits 0, and the log (archives in name order, that
is archival order, then `current`) is read back:

* lost: line numbers never logged;
* duplicated: log lines whose number was already logged;
* garbled: log lines not exactly `@<24 hex> line <8 digits> <filler>` (a line cut by a
  kill, two lines run together...);
* reordered: first appearances of a number after a higher number.

Goal for pysvscan (at-least-once delivery): 0 lost, 0 garbled, 0 reordered, at most one
duplicated line per kill. The C multilog is at-most-once: a kill can lose what it had
read and not yet written. Exit status: 1 if pysvscan missed the goal (or a run went
wrong), else 0. Every process started here is killed by pid when the run ends.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

if str(Path(__file__).resolve().parent) not in sys.path:  # imported by path (tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from logcheck import INTERVAL, LINE, Analysis, analyse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMPLS = {"c": Path("/usr/bin/multilog"), "py": ROOT / ".venv" / "bin" / "multilog"}
NAMES = {"c": "C", "py": "pysvscan"}
SIZE = 99999
NUM = 100  # n100: at most 99 archives survive; more would trim (and look like loss)

Spawn = Callable[..., "subprocess.Popen[bytes]"]


def script(num: int) -> tuple[str, ...]:
    return ("t", f"s{SIZE}", f"n{num}")


def default_spawn(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a process in a session of its own (so that it never gets our terminal's
    signals); the caller kills it by pid."""
    return subprocess.Popen(argv, start_new_session=True, **kwargs)  # type: ignore[call-overload]


# -- the service ------------------------------------------------------------------------

def writer_main(fd: int, count: int, interval: float) -> int:
    """`count` numbered lines into fd, line n at start + n * interval."""
    start = time.monotonic()
    for n in range(count):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        data = LINE % n
        while data:  # one write: a line is far below PIPE_BUF, so it is atomic
            data = data[os.write(fd, data):]
    return 0


# -- one experiment ----------------------------------------------------------------------

@dataclass
class Result:
    impl: str
    seed: int
    kills_planned: int
    seconds: float
    pause: float
    num: int = NUM
    written: int = 0
    kills: int = 0               # SIGKILLs delivered to a running multilog
    restarts: int = 0            # multilogs started after the first
    early_exits: list[int] = field(default_factory=list)  # statuses of runs that ended alone
    killed_statuses: list[int] = field(default_factory=list)
    final_status: int | str = "not run"
    writer_seconds: float = 0.0
    stderr: bytes = b""
    log: Analysis = field(default_factory=Analysis)

    @property
    def trimmed(self) -> bool:
        """As many archives as n (default n100) keeps: older ones may have been deleted."""
        return self.log.trimmed(self.num)

    def problems(self) -> list[str]:
        """Why this run misses the at-least-once goal (empty: it meets it)."""
        out = self.log.damage()
        if self.log.duplicated > self.kills:
            out.append(f"{self.log.duplicated} duplicated lines for {self.kills} kills")
        if self.final_status != 0:
            out.append(f"the last multilog ended with {self.final_status}, not exit 0 at EOF")
        if self.early_exits:
            out.append(f"multilog exited by itself: {self.early_exits}")
        if self.trimmed:
            out.append(f"archives reached n{self.num}: older ones may have been trimmed "
                       "(raise --num)")
        if self.log.stray:
            out.append(f"leftover files {self.log.stray}")
        return out


def kill_pid(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_experiment(impl: str, workdir: Path, *, kills: int, seconds: float, seed: int,
                   pause: float = 0.0, num: int = NUM, spawn: Spawn = default_spawn,
                   multilog: str | os.PathLike[str] | None = None) -> Result:
    """One run against one implementation ("c" or "py"), in the empty dir `workdir`."""
    program = str(multilog or IMPLS[impl])
    rng = random.Random(seed)
    moments = sorted(rng.uniform(0, seconds) for _ in range(kills))
    count = int(round(seconds / INTERVAL))
    result = Result(impl, seed, kills, seconds, pause, num, written=count)
    logdir = workdir / "log"
    errpath = workdir / "stderr"
    argv = [program, *script(num), "./log"]
    read_end, write_end = os.pipe()  # both held here, as svscan holds a log pipe
    err = os.open(errpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    current: subprocess.Popen[bytes] | None = None
    writer: subprocess.Popen[bytes] | None = None

    def start() -> subprocess.Popen[bytes]:
        return spawn(argv, cwd=workdir, stdin=read_end, stdout=subprocess.DEVNULL, stderr=err)

    try:
        current = start()
        writer = spawn([sys.executable, str(Path(__file__).resolve()), "--writer",
                        str(write_end), str(count)],
                       stdin=subprocess.DEVNULL, pass_fds=(write_end,))
        began = time.monotonic()
        for moment in moments:
            delay = began + moment - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            status = current.poll()
            if status is None:
                os.kill(current.pid, signal.SIGKILL)
                status = current.wait()
                result.kills += 1
                result.killed_statuses.append(status)
            else:
                result.early_exits.append(status)
            if pause:
                time.sleep(pause)
            current = start()
            result.restarts += 1
        writer_status = writer.wait(timeout=seconds + 60)
        result.writer_seconds = time.monotonic() - began
        if writer_status != 0:
            raise RuntimeError(f"the writer failed with status {writer_status}")
        os.close(write_end)  # end of input once the pipe is drained
        write_end = -1
        try:
            result.final_status = current.wait(timeout=60)
        except subprocess.TimeoutExpired:
            result.final_status = "still running 60 s after end of input"
    finally:
        kill_pid(writer)
        kill_pid(current)
        for fd in (read_end, write_end, err):
            if fd >= 0:
                os.close(fd)
    result.stderr = errpath.read_bytes()
    result.log = analyse(logdir, count)
    return result


# -- the report --------------------------------------------------------------------------

COLUMNS = ("impl", "kills", "restarts", "written", "logged", "lost", "duplicated",
           "dup runs", "max run", "garbled", "reordered", ".s", ".u", "seconds")


def row(r: Result) -> tuple[str, ...]:
    a = r.log
    return (NAMES[r.impl], str(r.kills), str(r.restarts), str(r.written), str(a.logged),
            str(a.lost), str(a.duplicated), str(a.dup_runs), str(a.max_dup_run),
            str(a.garbled), str(a.reordered), str(a.archives_s), str(a.archives_u),
            f"{r.writer_seconds:.1f}")


def table(results: list[Result]) -> str:
    rows = [COLUMNS] + [row(r) for r in results]
    widths = [max(len(x[i]) for x in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(x, widths)) for x in rows)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--writer"]:
        return writer_main(int(argv[1]), int(argv[2]), INTERVAL)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--impl", choices=("py", "c", "both"), default="both")
    parser.add_argument("--seed", type=int, default=None,
                        help="kill moments (default: random, printed)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds between a kill and the restart (supervise: 1)")
    parser.add_argument("--num", type=int, default=NUM,
                        help="multilog's n: archives kept (raise it for many kills)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the log directories under this directory")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    impls = ["c", "py"] if args.impl == "both" else [args.impl]
    for impl in impls:
        if not os.access(IMPLS[impl], os.X_OK):
            print(f"log_faults: {IMPLS[impl]} is missing", file=sys.stderr)
            return 2
    print(f"multilog {' '.join(script(args.num))} DIR, a line every {INTERVAL * 1000:g} ms for "
          f"{args.seconds:g} s, {args.kills} kill -9 at random moments (seed {seed}), "
          f"restart {'after %g s' % args.pause if args.pause else 'immediately'}")
    results = []
    base = Path(tempfile.mkdtemp(prefix="log_faults."))
    try:
        for impl in impls:  # one after the other: they must not compete for the CPUs
            workdir = base / impl
            workdir.mkdir()
            results.append(run_experiment(impl, workdir, kills=args.kills,
                                          seconds=args.seconds, seed=seed, pause=args.pause,
                                          num=args.num))
    finally:
        if args.keep:
            shutil.copytree(base, args.keep / base.name)
            print(f"log directories kept in {args.keep / base.name}")
        shutil.rmtree(base)
    print(table(results))
    failed = False
    for r in results:
        warnings = sorted(set(re.findall(rb"multilog: [^\n]*", r.stderr)))
        if warnings:
            print(f"{NAMES[r.impl]} stderr: " + "; ".join(w.decode(errors="replace")
                                                         for w in warnings))
        problems = r.problems()
        if r.impl == "c":
            if problems:
                print("C (at-most-once, for reference): " + "; ".join(problems))
            continue
        if problems:
            failed = True
            print("pysvscan FAILS at-least-once: " + "; ".join(problems))
        else:
            print(f"pysvscan meets at-least-once: 0 lost, 0 garbled, "
                  f"{r.log.duplicated} duplicated for {r.kills} kills")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
