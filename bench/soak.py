"""Soak: svscan with many services under random commands, kills and directory changes.

    .venv/bin/python bench/soak.py [--seconds 600] [--services 100] [--seed N]
                                   [--check-every 10] [--rate 5] [--keep DIR]

pysvscan's svscan runs on a scan directory of --services services: shell loops printing
a line a second (every tenth a Python loop), every fourth with a `log/` running
`multilog t s20000 n3 ./main-MARK`. Each service and each logger carries a marker of
its own in its argv, so that its copies can be counted in /proc. Until --seconds have
passed, one of these happens at random moments (on average 0.2 s apart, seeded):

* `svc` -u -d -t -k -p -c or -o to a service (one time in ten, to its log);
* SIGKILL to a service's supervise (the process holding supervise/lock), to a service
  (the pid in supervise/status) or to a logger;
* a new service directory is made and symlinked into the scan directory;
* a service is retired in the documented order: unlink it from the scan directory,
  `svc -dx` the service and then its log, wait until both supervise are gone and no
  copy is left; then its directory is deleted.

Every --check-every seconds the commands pause, and these invariants must hold
(each within 10 s, since svscan starts a dead supervise again at its next scan, every
5 s, and a supervise pauses a second after each start):

* svstat agrees with /proc: a service (or logger) shown up has that pid alive, and it
  is that service's process (its marker in argv); shown paused, it is stopped (state
  T), and not stopped otherwise; shown down, no copy of it runs; no service in the scan
  directory is left without a supervise;
* exactly one copy of each service and logger, at every sample;
* no zombie among svscan's descendants outlives a second (a stopped service's own
  children excepted: it cannot reap them);
* svscan's and each supervise's descriptors (/proc/PID/fd; svscan's pipes counted
  apart, two per logged service it still knows) and memory (RSS and anonymous memory
  from /proc/PID/smaps_rollup; PSS is printed too) stay flat: no growth past the
  bounds of SLACK over the run, from the first check (svscan) or the first sight of a
  supervise.

A summary line is printed at each check, and a table at the end. Then svscan gets
SIGTERM and must exit 0 and leave no process behind. Exit status 1 if any invariant
failed. Every process started here is killed by process group at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

if str(Path(__file__).resolve().parent) not in sys.path:  # imported by path (tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from tree_faults import default_spawn, status_pid, wait_for, write_script  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
SETTLE = 10.0            # seconds for the invariants to hold after the commands pause
# What a process may gain over the run. A forked supervise's RSS grows by about 1 MB
# once, as it first runs code svscan's pages did not map in for it (file pages, shared);
# a leak shows in its anonymous memory (heap), which it shares with svscan from the fork.
SLACK = {"svscan": {"fds": 3, "rss": 4 << 20, "anon": 2 << 20},
         "supervise": {"fds": 3, "rss": 2 << 20, "anon": 512 << 10}}
SVC_FLAGS = ("-u", "-d", "-t", "-k", "-p", "-c", "-o")
ACTIONS = (("svc", 0.55), ("kill-supervise", 0.12), ("kill-service", 0.12),
           ("kill-logger", 0.07), ("add", 0.07), ("remove", 0.07))

Spawn = Callable[..., "subprocess.Popen[bytes]"]

SHELL_LOOP = """#!/bin/sh
exec /bin/sh -c 'i=0; while :; do echo "$0 $i"; i=$((i + 1)); sleep 1; done' {mark}
"""
PYTHON_LOOP = """#!/bin/sh
exec /usr/bin/python3 -c '
import sys, time
n = 0
while True:
    print(sys.argv[1], n, flush=True)
    n += 1
    time.sleep(1)
' {mark}
"""
LOGGER = "#!/bin/sh\nexec {multilog} t s20000 n3 ./main-{mark}\n"


# -- /proc ------------------------------------------------------------------------------

@dataclass
class Proc:
    pid: int
    ppid: int
    pgrp: int
    state: str
    comm: str
    argv: list[bytes]


def snapshot() -> dict[int, Proc]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
        fields = stat[stat.rindex(b")") + 2:].split()
        found[int(entry)] = Proc(int(entry), int(fields[1]), int(fields[2]),
                                 fields[0].decode(), comm, argv)
    return found


def live(p: Proc | None) -> bool:
    return p is not None and p.state not in ("Z", "X")


def descendants(procs: dict[int, Proc], root: int) -> list[Proc]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(procs[child])
            todo.append(child)
    return out


def fd_targets(pid: int) -> list[str]:
    out = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                pass
    except OSError:
        pass
    return out


@dataclass
class Usage:
    """What a process holds: descriptors (svscan's pipes apart) and memory, in bytes."""

    fds: int = 0
    pipes: int = 0
    rss: int = 0
    pss: int = 0
    anon: int = 0


def usage(pid: int, fds: list[str] | None = None) -> Usage | None:
    """/proc/PID/fd and /proc/PID/smaps_rollup; None if the process is gone."""
    targets = fd_targets(pid) if fds is None else fds
    pipes = sum(t.startswith("pipe:") for t in targets)
    found = Usage(len(targets) - pipes, pipes)
    keys = {"Rss:": "rss", "Pss:": "pss", "Anonymous:": "anon"}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, value, *_ = line.split()
            if name in keys:
                setattr(found, keys[name], int(value) << 10)
    except (OSError, ValueError):
        return None
    return found if found.rss else None


def lock_holders(directories: list[Path]) -> dict[Path, list[int]]:
    """For each directory, the processes holding its supervise/lock open."""
    wanted = {os.path.realpath(d / "supervise" / "lock"): d for d in directories}
    found: dict[Path, list[int]] = {d: [] for d in directories}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            for target in fd_targets(int(entry)):
                if target in wanted:
                    found[wanted[target]].append(int(entry))
    return found


# -- the services ----------------------------------------------------------------------

@dataclass
class Service:
    name: str
    path: Path          # the real directory, outside the scan directory
    mark: str
    logged: bool
    added: float = 0.0  # time.monotonic() when it was linked into the scan directory

    @property
    def log(self) -> Path:
        return self.path / "log"

    @property
    def log_mark(self) -> str:
        return f"./main-{self.mark}"

    def dirs(self) -> list[Path]:
        return [self.path, self.log] if self.logged else [self.path]


def copies(procs: dict[int, Proc], mark: str) -> list[int]:
    """Live processes with `mark` as an argument (the service's or logger's marker),
    not counting a shell's child between its fork and its exec of `sleep`: a process
    whose parent carries the same mark is part of that copy."""
    want = mark.encode()
    marked = {p.pid for p in procs.values() if live(p) and want in p.argv}
    return [pid for pid in marked if procs[pid].ppid not in marked]


UP = re.compile(r": up \(pid (\d+)\) \d+ seconds(.*)$")
DOWN = re.compile(r": down \d+ seconds")


# -- the soak -----------------------------------------------------------------------------

@dataclass
class Counts:
    svc: int = 0
    kill_supervise: int = 0
    kill_service: int = 0
    kill_logger: int = 0
    added: int = 0
    removed: int = 0


@dataclass
class Check:
    at: float
    services: int
    up: int
    down: int
    paused: int
    loggers: int
    supervise: int
    svscan: Usage
    supervise_max: Usage  # each figure the largest of any supervise
    supervise_pss_sum: int
    zombies: int
    settle: float
    counts: Counts
    violations: int


@dataclass
class Soak:
    base: Path
    rng: random.Random
    multilog: str
    run_id: str
    services: dict[str, Service] = field(default_factory=dict)
    serial: int = 0
    counts: Counts = field(default_factory=Counts)
    violations: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    svscan: subprocess.Popen[bytes] | None = None
    baselines: dict[int, Usage] = field(default_factory=dict)  # first sight, by pid
    grown: set[tuple[int, str]] = field(default_factory=set)   # (pid, figure) reported
    growth: dict[tuple[str, str], int] = field(default_factory=dict)  # (role, figure): most
    removed_logged: int = 0   # logged services removed since the last check
    began: float = 0.0

    @property
    def scan(self) -> Path:
        return self.base / "service"

    def fail(self, text: str) -> None:
        elapsed = time.monotonic() - self.began
        self.violations.append(f"{elapsed:6.1f} s: {text}")
        print(f"VIOLATION at {elapsed:.1f} s: {text}", flush=True)

    # -- directories ----------------------------------------------------------------

    def make_service(self) -> Service:
        self.serial += 1
        name = f"s{self.serial:04d}"
        sv = Service(name, self.base / "dirs" / name, f"soak-{self.run_id}-{name}",
                     self.serial % 4 == 0)
        sv.path.mkdir(parents=True)
        loop = PYTHON_LOOP if self.serial % 10 == 0 else SHELL_LOOP
        write_script(sv.path / "run", loop.format(mark=sv.mark))
        if sv.logged:
            sv.log.mkdir()
            write_script(sv.log / "run", LOGGER.format(multilog=self.multilog, mark=sv.mark))
        return sv

    def add(self) -> None:
        sv = self.make_service()
        os.symlink(sv.path, self.scan / sv.name)  # made elsewhere, then linked in
        sv.added = time.monotonic()
        self.services[sv.name] = sv
        self.counts.added += 1

    def remove(self, sv: Service) -> None:
        """The documented order: unlink, svc -dx the service, then its log, wait.

        It is for a running tree: first its supervise must be there (svscan starts one
        killed by the chaos again within 5 s; without one, svc -dx would find nobody to
        stop the service)."""
        if time.monotonic() - sv.added < 6 or not wait_for(
                lambda: all(lock_holders(sv.dirs()).values()), SETTLE):
            return
        os.unlink(self.scan / sv.name)
        del self.services[sv.name]
        svc("-dx", sv.path)
        if sv.logged:
            svc("-dx", sv.log)
        marks = [sv.mark] + ([sv.log_mark] if sv.logged else [])

        def stopped() -> bool:
            procs = snapshot()
            holders = lock_holders(sv.dirs())
            return not any(holders.values()) and not any(copies(procs, m) for m in marks)

        if not wait_for(stopped, SETTLE):
            procs = snapshot()
            self.fail(f"{sv.name} still running {SETTLE:g} s after svc -dx: supervise "
                      f"{lock_holders(sv.dirs())}, copies "
                      f"{[copies(procs, m) for m in marks]}, svstat {svstat(sv.dirs())}")
        else:
            shutil.rmtree(sv.path)
        self.counts.removed += 1
        self.removed_logged += sv.logged

    # -- chaos ------------------------------------------------------------------------

    def act(self, population: int) -> None:
        names = sorted(self.services)
        sv = self.services[self.rng.choice(names)]
        action = self.rng.choices([a for a, _ in ACTIONS], [w for _, w in ACTIONS])[0]
        if action == "add" and len(self.services) >= population * 1.2:
            action = "remove"
        if action == "remove" and len(self.services) <= population * 0.8:
            action = "add"
        match action:
            case "svc":
                target = sv.log if sv.logged and self.rng.random() < 0.1 else sv.path
                svc(self.rng.choice(SVC_FLAGS), target)
                self.counts.svc += 1
            case "kill-supervise":
                target = sv.log if sv.logged and self.rng.random() < 0.3 else sv.path
                holders = lock_holders([target])[target]
                for pid in holders:
                    if self.svscan and pid != self.svscan.pid:
                        kill(pid)
                        self.counts.kill_supervise += 1
            case "kill-service":
                if kill(status_pid(sv.path)):
                    self.counts.kill_service += 1
            case "kill-logger":
                if sv.logged and kill(status_pid(sv.log)):
                    self.counts.kill_logger += 1
            case "add":
                self.add()
            case "remove":
                self.remove(sv)

    # -- invariants --------------------------------------------------------------------

    def disagreements(self, procs: dict[int, Proc]) -> tuple[list[str], list[str], dict]:
        """(hard violations seen now, states not settled yet, census) for every service."""
        hard, unsettled = [], []
        census = {"up": 0, "down": 0, "paused": 0, "loggers": 0}
        dirs = [d for sv in self.services.values() for d in sv.dirs()]
        lines = svstat(dirs)
        if len(lines) != len(dirs):
            return hard, [f"svstat printed {len(lines)} lines for {len(dirs)} services"], census
        by_dir = dict(zip(dirs, lines))
        for sv in self.services.values():
            for directory, mark in [(sv.path, sv.mark)] + ([(sv.log, sv.log_mark)]
                                                           if sv.logged else []):
                line = by_dir[directory]
                running = copies(procs, mark)
                label = f"{sv.name}{'/log' if directory == sv.log else ''}"
                if len(running) > 1:
                    hard.append(f"{label}: {len(running)} copies at once {running}; "
                                f"svstat: {line}")
                if m := UP.search(line):
                    pid, rest = int(m.group(1)), m.group(2)
                    p = procs.get(pid)
                    if not live(p) or mark.encode() not in p.argv:
                        unsettled.append(f"{label}: svstat shows pid {pid}, which is "
                                         f"{'not alive' if not live(p) else p.argv[:3]}")
                    elif ("paused" in rest) != (p.state == "T"):
                        unsettled.append(f"{label}: svstat says {line.split(': ', 1)[1]!r} "
                                         f"but the process is in state {p.state}")
                    elif running != [pid]:
                        unsettled.append(f"{label}: up as {pid} but copies {running}")
                    census["paused" if "paused" in rest else "up"] += 1
                    census["loggers"] += directory == sv.log
                elif DOWN.search(line):
                    if running:
                        unsettled.append(f"{label}: svstat says down but {running} run")
                    census["down"] += 1
                else:
                    unsettled.append(f"{label}: {line}")
        return hard, unsettled, census

    def zombies(self, procs: dict[int, Proc]) -> set[tuple[int, int]]:
        """(pid, parent) of zombies below svscan whose parent could reap them."""
        assert self.svscan
        return {(p.pid, p.ppid) for p in descendants(procs, self.svscan.pid)
                if p.state == "Z" and procs.get(p.ppid, p).state != "T"}

    def check(self) -> None:
        assert self.svscan
        started = time.monotonic()
        procs = snapshot()
        first_zombies = self.zombies(procs)
        deadline = started + SETTLE
        reported: set[str] = set()
        while True:
            hard, unsettled, census = self.disagreements(procs)
            for text in hard:
                if text not in reported:
                    reported.add(text)
                    self.fail(text)
            if not unsettled and time.monotonic() - started >= 1.0:
                break
            if time.monotonic() > deadline:
                for text in unsettled[:10]:
                    self.fail(f"not settled after {SETTLE:g} s: {text}")
                if len(unsettled) > 10:
                    self.fail(f"... and {len(unsettled) - 10} more")
                break
            time.sleep(0.2)
            procs = snapshot()
        settle = time.monotonic() - started
        lasting = first_zombies & self.zombies(procs)
        if lasting:
            self.fail(f"zombies below svscan for over a second: {sorted(lasting)[:10]}")
        self.measure(procs, census, settle, len(lasting))

    def measure(self, procs: dict[int, Proc], census: dict, settle: float,
                zombies: int) -> None:
        assert self.svscan
        svscan = self.svscan.pid
        # twice: while svscan starts a supervise it holds that one's files for a moment
        targets = min(fd_targets(svscan), (time.sleep(0.2), fd_targets(svscan))[1], key=len)
        mine = usage(svscan, targets) or Usage()
        logged = sum(sv.logged for sv in self.services.values())
        # svscan holds both ends of each logged service's pipe (and its wake-up pipe);
        # a retired service's pair goes at the scan after its supervise are gone
        if mine.pipes > 2 * (logged + self.removed_logged) + 2:
            self.fail(f"svscan holds {mine.pipes} pipe ends for {logged} logged services "
                      f"(+{self.removed_logged} just removed)")
        self.flat(svscan, "svscan", mine)
        supervisors = [p.pid for p in procs.values()
                       if p.ppid == svscan and p.comm == "supervise" and live(p)]
        largest, pss_sum = Usage(), 0
        for pid in supervisors:
            if (now := usage(pid)) is None:
                continue  # gone meanwhile
            for name in ("fds", "rss", "pss", "anon"):
                setattr(largest, name, max(getattr(largest, name), getattr(now, name)))
            pss_sum += now.pss
            self.flat(pid, "supervise", now)
        for pid in [p for p in self.baselines if p != svscan and p not in supervisors]:
            del self.baselines[pid]
        self.removed_logged = 0
        self.checks.append(Check(
            time.monotonic() - self.began, len(self.services), census["up"], census["down"],
            census["paused"], census["loggers"], len(supervisors), mine, largest, pss_sum,
            zombies, settle, Counts(**vars(self.counts)), len(self.violations)))
        print(check_line(self.checks[-1]), flush=True)

    def flat(self, pid: int, role: str, now: Usage) -> None:
        """Each figure within its slack of the first one seen for this process."""
        base = self.baselines.setdefault(pid, now)
        for name, slack in SLACK[role].items():
            grew = getattr(now, name) - getattr(base, name)
            self.growth[role, name] = max(self.growth.get((role, name), 0), grew)
            if grew > slack and (pid, name) not in self.grown:
                self.grown.add((pid, name))
                unit = (lambda n: str(n)) if name == "fds" else (lambda n: f"{n >> 10} kB")
                self.fail(f"{role} {pid}: {name} grew from {unit(getattr(base, name))} "
                          f"to {unit(getattr(now, name))}")


def check_line(c: Check) -> str:
    n = c.counts
    return (f"{c.at:6.0f} s  services {c.services:3d}, with logs: up {c.up} (loggers "
            f"{c.loggers}), paused {c.paused}, down {c.down}  supervise {c.supervise}  "
            f"svscan fds {c.svscan.fds}+{c.svscan.pipes} pipes, RSS {mb(c.svscan.rss)}, "
            f"PSS {mb(c.svscan.pss)}, anon {mb(c.svscan.anon)}  supervise fds max "
            f"{c.supervise_max.fds}, RSS max {mb(c.supervise_max.rss)}, anon max "
            f"{mb(c.supervise_max.anon)}, PSS sum {mb(c.supervise_pss_sum)}  "
            f"zombies {c.zombies}  settled in {c.settle:.1f} s  so far: svc {n.svc}, "
            f"kills {n.kill_supervise}/{n.kill_service}/{n.kill_logger} "
            f"(supervise/service/logger), added {n.added}, removed {n.removed}, "
            f"violations {c.violations}")


def mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


COLUMNS = ("t s", "services", "up", "paused", "down", "svscan fds", "pipes", "svscan RSS",
           "PSS", "anon", "supervise", "sv fds max", "sv RSS max", "sv anon max",
           "sv PSS sum", "zombies", "settle s", "violations")


def table(checks: list[Check]) -> str:
    rows = [COLUMNS] + [(
        f"{c.at:.0f}", str(c.services), str(c.up), str(c.paused), str(c.down),
        str(c.svscan.fds), str(c.svscan.pipes), mb(c.svscan.rss), mb(c.svscan.pss),
        mb(c.svscan.anon), str(c.supervise), str(c.supervise_max.fds),
        mb(c.supervise_max.rss), mb(c.supervise_max.anon), mb(c.supervise_pss_sum),
        str(c.zombies), f"{c.settle:.1f}", str(c.violations))
        for c in checks]
    widths = [max(len(x[i]) for x in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(x, widths)) for x in rows)


# -- helpers --------------------------------------------------------------------------------

def svc(flag: str, directory: Path) -> None:
    subprocess.run([str(BIN / "svc"), flag, str(directory)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=10)


def svstat(dirs: list[Path]) -> list[str]:
    if not dirs:
        return []
    cp = subprocess.run([str(BIN / "svstat"), *map(str, dirs)], capture_output=True,
                        timeout=30)
    return cp.stdout.decode(errors="replace").splitlines()


def kill(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def run_soak(base: Path, *, seconds: float, services: int, seed: int,
             check_every: float = 10.0, rate: float = 5.0,
             spawn: Spawn = default_spawn) -> Soak:
    soak = Soak(base, random.Random(seed), str(BIN / "multilog"), f"{os.getpid()}x{seed}")
    soak.scan.mkdir(parents=True)
    for _ in range(services):
        soak.add()
    soak.counts = Counts()
    errpath = base / "svscan.stderr"
    with open(errpath, "wb") as err:
        soak.svscan = spawn([str(BIN / "svscan"), str(soak.scan)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err,
                            env={"PATH": f"{BIN}:/usr/bin:/bin"})
    print(f"svscan: pid {soak.svscan.pid} (process group {soak.svscan.pid}), "
          f"{services} services, seed {seed}", flush=True)
    soak.began = time.monotonic()
    try:
        if not wait_for(lambda: not soak.disagreements(snapshot())[1], 60, 0.5):
            soak.fail("the services never all came up: "
                      + "; ".join(soak.disagreements(snapshot())[1][:5]))
        end = soak.began + seconds
        next_check = time.monotonic() + check_every
        while time.monotonic() < end:
            time.sleep(soak.rng.expovariate(rate))  # the random moments of the chaos
            soak.act(services)
            if time.monotonic() >= next_check:
                soak.check()
                next_check = time.monotonic() + check_every
        soak.check()
        stop(soak)
    finally:
        try:
            os.killpg(soak.svscan.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        soak.svscan.wait()
    stderr = errpath.read_bytes()
    if b"Traceback" in stderr:
        soak.fail("a Python traceback on svscan's stderr: "
                  + stderr[stderr.index(b"Traceback"):][:600].decode(errors="replace"))
    return soak


def stop(soak: Soak) -> None:
    assert soak.svscan
    began = time.monotonic()
    soak.svscan.send_signal(signal.SIGTERM)
    try:
        status = soak.svscan.wait(timeout=60)
    except subprocess.TimeoutExpired:
        status = None
    took = time.monotonic() - began
    print(f"SIGTERM: svscan exited {status} after {took:.1f} s", flush=True)
    if status != 0:
        soak.fail(f"svscan ended with {status} on SIGTERM, not 0")
    # every supervise, service and logger runs in svscan's process group; a shell
    # loop's `sleep 1` may outlive its shell by a second
    def leftovers() -> list[Proc]:
        assert soak.svscan
        return [p for p in snapshot().values() if p.pgrp == soak.svscan.pid and live(p)]

    if not wait_for(lambda: not leftovers(), 3):
        left = leftovers()
        soak.fail(f"{len(left)} processes left after svscan exited: "
                  f"{[(p.pid, p.comm, p.argv[-1:]) for p in left[:5]]}")


def fifos(directory: str, names: list[str]) -> list[str]:
    """copytree's ignore: the supervise FIFOs, which it cannot copy."""
    return [n for n in names if stat.S_ISFIFO(os.lstat(os.path.join(directory, n)).st_mode)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--check-every", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5.0, help="actions per second")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the directories under this directory")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    # SIGTERM (a test's timeout, a Ctrl-C'd make) ends the run through the clean-up
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="soak."))
    try:
        soak = run_soak(base, seconds=args.seconds, services=args.services, seed=seed,
                        check_every=args.check_every, rate=args.rate)
    finally:
        if args.keep:
            shutil.copytree(base, args.keep / base.name, symlinks=True, ignore=fifos)
            print(f"directories kept in {args.keep / base.name}")
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(table(soak.checks))
    n = soak.counts
    print(f"{args.seconds:g} s, seed {seed}: svc {n.svc}, kills {n.kill_supervise} supervise, "
          f"{n.kill_service} service, {n.kill_logger} logger; {n.added} added, "
          f"{n.removed} removed; {len(soak.checks)} checks")
    if soak.checks:
        first, last = soak.checks[0].svscan, soak.checks[-1].svscan
        g = soak.growth
        print(f"svscan, first check -> last: descriptors {first.fds} -> {last.fds} (pipes "
              f"{first.pipes} -> {last.pipes}), RSS {mb(first.rss)} -> {mb(last.rss)}, PSS "
              f"{mb(first.pss)} -> {mb(last.pss)}, anonymous {mb(first.anon)} -> "
              f"{mb(last.anon)}")
        print(f"any one supervise, most growth from its first check: descriptors "
              f"+{g.get(('supervise', 'fds'), 0)}, RSS +{g.get(('supervise', 'rss'), 0) >> 10}"
              f" kB, anonymous +{g.get(('supervise', 'anon'), 0) >> 10} kB")
    if soak.violations:
        print(f"{len(soak.violations)} VIOLATIONS:")
        for text in soak.violations:
            print("  " + text)
        return 1
    print("every invariant held at every check")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
