"""A whole svscan tree under SIGKILL: log lines lost, duplicated and garbled per fault.

    .venv/bin/python bench/tree_faults.py [--kills 25] [--impl py|c|both] [--seed N]
                                          [--kinds logger,log-supervise,supervise,service]
                                          [--load-seconds 5] [--num 100] [--keep DIR]

The tree is what a host runs: `svscan` on a scan directory holding one service,
`writer`, and its `log/` running `multilog t s99999 n100 ./main`. The service writes
`line %08d <filler>\\n` every millisecond to standard output (bench/logcheck.py: one
write(2) per line, on an absolute-time schedule so that it does not drift); on SIGTERM
it writes nothing more and exits 0. Its numbering goes on across restarts: each run of
the service keeps (first number, number being written, last number written) in a file
of its own under `state/`, in a shared mapping that survives SIGKILL, and starts after
the highest number any earlier run began to write. A number whose writer was killed
around its write(2) may or may not have been written; its absence is not a loss (the
`uncertain` column).

For each fault kind, on a fresh tree, SIGKILL goes --kills times, at moments drawn
from a seeded generator, to:

* logger: multilog, the pid in log/supervise/status;
* log-supervise: the process holding log/supervise/lock open (found in /proc/*/fd);
* supervise: the process holding supervise/lock open;
* service: the pid in supervise/status.

Between two kills the harness waits until the tree is whole again: svstat shows both
`writer` and `writer/log` up, with a supervise running, and not as the killed pid.
svscan starts a dead supervise again at its next scan; pysvscan's svscan is sent
SIGALRM to rescan at once, the C one (which SIGALRM would kill) scans every 5 s.

At the end pysvscan's svscan gets SIGTERM: its ordered shutdown takes the service down,
then the logger drains the pipe to end of input. The C svscan dies on SIGTERM, so its
tree is stopped by hand in the same order (svscan, then `svc -dx` the service, SIGTERM
to any copy of the service left without a supervise, the logger reading to end of input,
then `svc -dx` the log). Then the log is read back (bench/logcheck.py).

"sigterm under load" is a tree with no kill that is stopped the way systemd stops it
while the service writes: pysvscan.service has KillMode=mixed (SIGTERM to svscan
alone); Debian's daemontools-run.service has the default KillMode=control-group
(SIGTERM to every process at once), done here as SIGTERM to the tree's process group.

Goal for pysvscan, each kind: 0 lost, 0 garbled, 0 reordered; duplicates only after
logger kills (at most one line per kill); one copy of the service and of the logger at
every check; the tree whole again after each kill; svscan exits 0 on SIGTERM and leaves
no process behind. Exit status 1 if pysvscan misses it (the C tree is for reference).
Every process started here is killed by process group when a run ends.
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import re
import shutil
import signal
import struct
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

from pysvscan.procinfo import alive, stat_fields  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BINDIRS = {"py": ROOT / ".venv" / "bin", "c": Path("/usr/bin")}
NAMES = {"py": "pysvscan", "c": "C"}
KINDS = ("logger", "log-supervise", "supervise", "service")
LOAD = "sigterm under load"
SIZE = 99999
NUM = 100
C_NUM = 4000  # the C tree's extra copies of the service write much more: keep it all
RECORD = struct.Struct("<qqq")  # first number, number being written, last written
WHOLE_TIMEOUT = 15.0
STOP_TIMEOUT = 60.0

Spawn = Callable[..., "subprocess.Popen[bytes]"]


def default_spawn(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a process in a session of its own: the whole tree is then one process
    group, killed by its id when the run ends."""
    return subprocess.Popen(argv, start_new_session=True, **kwargs)  # type: ignore[call-overload]


# -- the service -------------------------------------------------------------------------

def records(state: Path) -> list[tuple[int, int, int]]:
    """(first, writing, written) of every run of the service so far."""
    found = []
    for entry in os.listdir(state):
        if not entry.startswith("."):
            data = (state / entry).read_bytes()
            if len(data) == RECORD.size:
                found.append(RECORD.unpack(data))
    return found


def service_main(state: Path) -> int:
    """Lines to fd 1 from after the highest number any earlier run began, one a ms."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    first = max((writing for _, writing, _ in records(state)), default=-1) + 1
    mine = state / f"{os.getpid()}.{time.monotonic_ns()}"  # a pid may come again
    tmp = state / f".{mine.name}"
    tmp.write_bytes(RECORD.pack(first, first - 1, first - 1))
    os.rename(tmp, mine)  # whole or absent, whenever SIGKILL comes
    fd = os.open(mine, os.O_RDWR)
    record = mmap.mmap(fd, RECORD.size)  # shared: what is stored survives SIGKILL
    os.close(fd)
    began = time.monotonic()
    n = first
    while not stopping:
        delay = began + (n - first) * INTERVAL - time.monotonic()
        if delay > 0:
            time.sleep(delay)
            if stopping:
                break
        RECORD.pack_into(record, 0, first, n, n - 1)
        data = LINE % n
        if os.write(1, data) != len(data):  # below PIPE_BUF: all or nothing
            return 111
        RECORD.pack_into(record, 0, first, n, n)
        n += 1
    return 0


def written(state: Path) -> tuple[int, set[int]]:
    """(count, uncertain): numbers 0 .. count-1 were written except perhaps the
    uncertain ones, which no run is known to have finished writing."""
    runs = records(state)
    count = max((writing for _, writing, _ in runs), default=-1) + 1
    done = bytearray(count)
    for first, _, last in runs:
        done[first:last + 1] = b"\1" * max(0, last + 1 - first)
    return count, {n for n in range(count) if not done[n]}


# -- the tree -----------------------------------------------------------------------------

@dataclass
class Tree:
    impl: str
    base: Path
    num: int

    @property
    def scan(self) -> Path:
        return self.base / "service"

    @property
    def service(self) -> Path:
        return self.scan / "writer"

    @property
    def log(self) -> Path:
        return self.service / "log"

    @property
    def logdir(self) -> Path:
        return self.log / "main"

    @property
    def state(self) -> Path:
        return self.base / "state"

    def bin(self, program: str) -> str:
        return str(BINDIRS[self.impl] / program)

    def lay_out(self) -> None:
        self.log.mkdir(parents=True)
        self.state.mkdir()
        write_script(self.service / "run",
                     f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} "
                     f"--service {self.state}\n")
        write_script(self.log / "run",
                     f"#!/bin/sh\nexec {self.bin('multilog')} t s{SIZE} n{self.num} ./main\n")

    def svstat(self) -> list[str]:
        cp = subprocess.run([self.bin("svstat"), str(self.service), str(self.log)],
                            capture_output=True, timeout=10)
        return cp.stdout.decode(errors="replace").splitlines()


def write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def status_pid(directory: Path) -> int:
    """The pid in supervise/status (bytes 12-15, little-endian); 0 if none."""
    try:
        data = (directory / "supervise" / "status").read_bytes()
    except OSError:
        return 0
    return int.from_bytes(data[12:16], "little") if len(data) >= 18 else 0


def pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def lock_holders(directory: Path, exclude: int = 0) -> list[int]:
    """Processes holding DIR/supervise/lock open: its supervise (svscan also holds it
    for a moment while it prepares a supervise, so it is excluded)."""
    lock = os.path.realpath(directory / "supervise" / "lock")
    found = []
    for pid in pids():
        if pid == exclude:
            continue
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == lock
                   for fd in os.listdir(f"/proc/{pid}/fd")):
                found.append(pid)
        except OSError:
            continue
    return found


def gone(pid: int) -> bool:
    """Dead and reaped: not even a zombie left."""
    return stat_fields(pid) is None


def service_copies(tree: Tree) -> int:
    """Live processes running this tree's service (its state directory is in argv)."""
    want = f"--service\0{tree.state}\0".encode()
    found = 0
    for pid in pids():
        try:
            found += want in Path(f"/proc/{pid}/cmdline").read_bytes() and alive(pid)
        except OSError:
            pass
    return found


def logger_copies(tree: Tree) -> int:
    """Live processes working in log/ (or, the C multilog, in log/main) other than its
    supervise: the multilogs."""
    where = {os.path.realpath(tree.log), os.path.realpath(tree.logdir)}
    supervisors = set(lock_holders(tree.log))
    found = 0
    for pid in pids():
        try:
            found += (os.readlink(f"/proc/{pid}/cwd") in where and pid not in supervisors
                      and alive(pid))
        except OSError:
            pass
    return found


def tree_pids(pgid: int) -> list[int]:
    """Live processes of the tree's process group."""
    found = []
    for pid in pids():
        try:
            data = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found.append(pid)
    return found


UP = re.compile(r": up \(pid (\d+)\)")


def whole(tree: Tree, not_pid: int = 0) -> bool:
    """svstat shows the service and its log up, with a supervise running, and neither
    as `not_pid` (the process just killed)."""
    lines = tree.svstat()
    if len(lines) != 2:
        return False
    shown = [UP.search(line) for line in lines]
    return all(m and int(m.group(1)) != not_pid for m in shown)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# -- one run ------------------------------------------------------------------------------

@dataclass
class Run:
    impl: str
    kind: str
    planned: int
    seed: int
    num: int
    kills: int = 0
    same_pid: int = 0            # supervise kills after which the service kept its pid
    max_services: int = 0        # copies of the service seen at once (checked after kills)
    max_loggers: int = 0
    max_recovery: float = 0.0    # seconds from a kill to the tree whole again
    not_whole: list[int] = field(default_factory=list)  # kills after which it never was
    missing_target: int = 0
    count: int = 0
    uncertain: int = 0
    stop_status: int | str = "not run"
    stop_seconds: float = 0.0
    leftovers: int = 0           # processes of the tree still there after the stop
    seconds: float = 0.0
    stderr: bytes = b""
    log: Analysis = field(default_factory=Analysis)

    def problems(self) -> list[str]:
        """Why this run misses pysvscan's goal (empty: it meets it)."""
        a = self.log
        out = a.damage()
        allowed = self.kills if self.kind == "logger" else 0
        if a.duplicated > allowed:
            out.append(f"{a.duplicated} duplicated lines after {self.kills} {self.kind} kills")
        if self.kills != self.planned:
            out.append(f"{self.kills} kills done of {self.planned} "
                       f"({self.missing_target} times no target)")
        if self.not_whole:
            out.append(f"the tree was not whole again {WHOLE_TIMEOUT:g} s after kills "
                       f"{self.not_whole}")
        if self.max_services > 1 or self.max_loggers > 1:
            out.append(f"{self.max_services} copies of the service, {self.max_loggers} "
                       "of the logger at once")
        if self.stop_status != 0 and self.impl == "py":  # the C svscan dies on SIGTERM
            out.append(f"svscan ended with {self.stop_status}, not exit 0 on SIGTERM")
        if self.leftovers:
            out.append(f"{self.leftovers} processes left after svscan exited")
        if a.trimmed(self.num):
            out.append(f"archives reached n{self.num}: older ones may have been trimmed")
        if a.stray:
            out.append(f"leftover files {a.stray}")
        return out


def target(tree: Tree, kind: str, svscan: int) -> int:
    match kind:
        case "logger":
            return status_pid(tree.log)
        case "service":
            return status_pid(tree.service)
        case "log-supervise":
            holders = lock_holders(tree.log, exclude=svscan)
        case _:
            holders = lock_holders(tree.service, exclude=svscan)
    return holders[0] if len(holders) == 1 else 0


def kill_all(tree: Tree, svscan: subprocess.Popen[bytes], run: Run, rng: random.Random,
             alarm: bool) -> None:
    supervise_kind = run.kind in ("log-supervise", "supervise")
    for number in range(run.planned):
        time.sleep(rng.uniform(0.05, 0.75))  # the random moment, within a whole tree
        pid = target(tree, run.kind, svscan.pid)
        if not alive(pid):
            run.missing_target += 1
            wait_for(lambda: whole(tree), WHOLE_TIMEOUT)
            continue
        service_before = status_pid(tree.service if run.kind == "supervise" else tree.log)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        run.kills += 1
        # a process killed is not dead at once: until it is, svstat can still find a
        # killed supervise's ok FIFO open
        wait_for(lambda: not alive(pid), 5, 0.002)
        if supervise_kind and alarm:
            # once svscan has reaped it, a rescan starts the next supervise at once
            wait_for(lambda: gone(pid), 5, 0.002)
            os.kill(svscan.pid, signal.SIGALRM)
        if not wait_for(lambda: whole(tree, pid), WHOLE_TIMEOUT):
            run.not_whole.append(number)
            continue
        run.max_recovery = max(run.max_recovery, time.monotonic() - killed)
        if supervise_kind:
            after = status_pid(tree.service if run.kind == "supervise" else tree.log)
            run.same_pid += after == service_before
        run.max_services = max(run.max_services, service_copies(tree))
        run.max_loggers = max(run.max_loggers, logger_copies(tree))


def stop_py(tree: Tree, svscan: subprocess.Popen[bytes], run: Run) -> None:
    """pysvscan.service's stop (KillMode=mixed): SIGTERM to svscan alone."""
    began = time.monotonic()
    svscan.send_signal(signal.SIGTERM)
    try:
        run.stop_status = svscan.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        run.stop_status = f"still running {STOP_TIMEOUT:g} s after SIGTERM"
    run.stop_seconds = time.monotonic() - began
    run.leftovers = len(tree_pids(svscan.pid))


def stop_c_in_order(tree: Tree, svscan: subprocess.Popen[bytes], run: Run) -> None:
    """The C svscan dies on SIGTERM; stop the rest as daemontools-run's postrm does
    (svc -dx the service, then its log), with every writer gone before the logger's
    input can reach its end."""
    began = time.monotonic()
    svscan.send_signal(signal.SIGTERM)
    run.stop_status = svscan.wait(timeout=STOP_TIMEOUT)
    subprocess.run([tree.bin("svc"), "-dx", str(tree.service)], timeout=10)
    wait_for(lambda: not lock_holders(tree.service), 20)
    for pid in service_pids(tree):  # copies left without a supervise
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not service_pids(tree), 20)
    wait_for(lambda: logger_copies(tree) == 0, 30)  # multilog reads to end of input
    subprocess.run([tree.bin("svc"), "-dx", str(tree.log)], timeout=10)
    wait_for(lambda: not lock_holders(tree.log), 20)
    run.stop_seconds = time.monotonic() - began
    run.leftovers = len(tree_pids(svscan.pid))


def stop_c_as_systemd(tree: Tree, svscan: subprocess.Popen[bytes], run: Run) -> None:
    """daemontools-run.service's stop (KillMode=control-group): SIGTERM to every process
    of the tree at once."""
    began = time.monotonic()
    os.killpg(svscan.pid, signal.SIGTERM)
    run.stop_status = svscan.wait(timeout=STOP_TIMEOUT)
    wait_for(lambda: not tree_pids(svscan.pid), 20)
    run.stop_seconds = time.monotonic() - began
    run.leftovers = len(tree_pids(svscan.pid))


def service_pids(tree: Tree) -> list[int]:
    want = f"--service\0{tree.state}\0".encode()
    found = []
    for pid in pids():
        try:
            if want in Path(f"/proc/{pid}/cmdline").read_bytes() and alive(pid):
                found.append(pid)
        except OSError:
            pass
    return found


def run_tree(impl: str, kind: str, workdir: Path, *, kills: int, seed: int,
             num: int = NUM, load_seconds: float = 5.0, alarm: bool | None = None,
             spawn: Spawn = default_spawn) -> Run:
    """One tree in the empty directory `workdir`: `kills` SIGKILLs of `kind` (one of
    KINDS), or for LOAD none but `load_seconds` of writing; then the stop, and the log
    read back."""
    if alarm is None:
        alarm = impl == "py"  # SIGALRM would kill the C svscan
    rng = random.Random(f"{seed}-{kind}")
    run = Run(impl, kind, 0 if kind == LOAD else kills, seed, num)
    tree = Tree(impl, workdir, num)
    tree.lay_out()
    errpath = workdir / "stderr"
    path = f"{BINDIRS[impl]}:/usr/bin:/bin" if impl == "py" else "/usr/bin:/bin"
    began = time.monotonic()
    with open(errpath, "wb") as err:
        svscan = spawn([tree.bin("svscan"), str(tree.scan)], stdin=subprocess.DEVNULL,
                       stdout=err, stderr=err, env={"PATH": path})
    try:
        if not wait_for(lambda: whole(tree), WHOLE_TIMEOUT):
            raise RuntimeError(f"{impl} {kind}: the tree never came up: {tree.svstat()}")
        if kind == LOAD:
            time.sleep(load_seconds)  # measuring under a steady load
        else:
            kill_all(tree, svscan, run, rng, alarm)
        if impl == "py":
            stop_py(tree, svscan, run)
        elif kind == LOAD:
            stop_c_as_systemd(tree, svscan, run)
        else:
            stop_c_in_order(tree, svscan, run)
    finally:
        try:
            os.killpg(svscan.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        svscan.wait()
        for pid in service_pids(tree):  # only if one ever left the process group
            os.kill(pid, signal.SIGKILL)
    run.seconds = time.monotonic() - began
    run.stderr = errpath.read_bytes()
    run.count, maybe = written(tree.state)
    run.uncertain = len(maybe)
    run.log = analyse(tree.logdir, run.count, maybe)
    return run


# -- the report ---------------------------------------------------------------------------

COLUMNS = ("impl", "fault", "kills", "written", "uncertain", "lost", "duplicated",
           "garbled", "reordered", "services", "loggers", "kept pid", "recovery", "rescan",
           "stop", "seconds")


def row(r: Run) -> tuple[str, ...]:
    a = r.log
    supervise_kind = r.kind in ("log-supervise", "supervise")
    if r.kind == LOAD:
        rescan = "-"
        stop = "SIGTERM svscan" if r.impl == "py" else "SIGTERM all"
    else:
        rescan = "SIGALRM" if r.impl == "py" else "5 s scan"
        stop = "SIGTERM svscan" if r.impl == "py" else "by hand"
    return (NAMES[r.impl], r.kind, str(r.kills), str(r.count), str(r.uncertain),
            str(a.lost), str(a.duplicated), str(a.garbled), str(a.reordered),
            str(r.max_services) if r.kind != LOAD else "-",
            str(r.max_loggers) if r.kind != LOAD else "-",
            f"{r.same_pid}/{r.kills}" if supervise_kind else "-",
            f"{r.max_recovery:.2f}" if r.kind != LOAD else "-", rescan,
            f"{stop} {r.stop_seconds:.1f} s", f"{r.seconds:.0f}")


def table(runs: list[Run]) -> str:
    rows = [COLUMNS] + [row(r) for r in runs]
    widths = [max(len(x[i]) for x in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(x, widths)) for x in rows)


LEGEND = """\
services, loggers: most copies of the service / of multilog alive at once (checked
after each kill); kept pid: supervise kills after which the service (or logger) kept
its pid, adopted by the next supervise; recovery: longest time from a kill to svstat
showing both up again; uncertain: numbers whose writer was killed around the write."""


def main(argv: list[str]) -> int:
    if argv[:1] == ["--service"]:
        return service_main(Path(argv[1]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=25, help="SIGKILLs per fault kind")
    parser.add_argument("--impl", choices=("py", "c", "both"), default="py")
    parser.add_argument("--seed", type=int, default=None,
                        help="kill moments (default: random, printed)")
    parser.add_argument("--kinds", default=",".join(KINDS + ("load",)),
                        help="comma-separated, of: " + ", ".join(KINDS + ("load",)))
    parser.add_argument("--load-seconds", type=float, default=5.0,
                        help="writing before the SIGTERM of 'sigterm under load'")
    parser.add_argument("--num", type=int, default=NUM,
                        help=f"multilog's n (the C tree gets at least n{C_NUM})")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the trees under this directory")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    impls = ["c", "py"] if args.impl == "both" else [args.impl]
    kinds = [LOAD if k == "load" else k for k in args.kinds.split(",")]
    for kind in kinds:
        if kind not in KINDS + (LOAD,):
            parser.error(f"unknown fault kind {kind}")
    for impl in impls:
        if not os.access(BINDIRS[impl] / "svscan", os.X_OK):
            print(f"tree_faults: {BINDIRS[impl] / 'svscan'} is missing", file=sys.stderr)
            return 2
    print(f"svscan, one service writing a line every {INTERVAL * 1000:g} ms through "
          f"multilog t s{SIZE} nNUM; {args.kills} kill -9 per fault kind at random "
          f"moments (seed {seed})", flush=True)
    runs = []
    base = Path(tempfile.mkdtemp(prefix="tree_faults."))
    try:
        for impl in impls:  # one after the other: they must not compete for the CPUs
            for kind in kinds:
                workdir = base / impl / kind.replace(" ", "-")
                workdir.mkdir(parents=True)
                num = args.num if impl == "py" else max(args.num, C_NUM)
                runs.append(run_tree(impl, kind, workdir, kills=args.kills, seed=seed,
                                     num=num, load_seconds=args.load_seconds))
                r = runs[-1]
                print(f"  {NAMES[impl]}, {kind}: {r.kills} kills, {r.log.lost} lost, "
                      f"{r.log.duplicated} duplicated, {r.log.garbled} garbled "
                      f"({r.seconds:.0f} s)", flush=True)
    finally:
        if args.keep:
            shutil.copytree(base, args.keep / base.name, symlinks=True)
            print(f"trees kept in {args.keep / base.name}")
        shutil.rmtree(base)
    print()
    print(table(runs))
    print(LEGEND)
    failed = False
    for r in runs:
        problems = r.problems()
        label = f"{NAMES[r.impl]} {r.kind}"
        warnings = sorted(set(re.findall(rb"(?:multilog|supervise|svscan): [^\n]*", r.stderr)))
        if warnings:
            print(f"{label} stderr: " + "; ".join(w.decode(errors="replace")
                                                  for w in warnings[:5]))
        if r.impl == "c":
            if problems:
                print(f"{label} (for reference): " + "; ".join(problems))
            continue
        if problems:
            failed = True
            print(f"pysvscan FAILS, {r.kind}: " + "; ".join(problems))
    if "py" in impls and not failed:
        print("pysvscan meets the goal: 0 lost, 0 garbled, 0 reordered for every fault; "
              "duplicates only after logger kills")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
