"""The measurements (a)-(f), the start-up cost of the exec-chain tools (tools) and the
logging throughput (log, in log_bench.py). Each group measures C and pysvscan in the
same run and returns table rows; trees and temp dirs are always removed on the way out.

Groups share trees where the conditions match (100 idle services serve (a), (e) and (f);
the 500-service start-up of (b) is the tree (a) then measures) to keep a full run short.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import (IMPLS, Impl, Tree, log, make_services, run_tool, runtime_ns,
                     session_procs, smaps_rollup, status_pid, wait_up_for)
from report import Row, error_row, ratio_row, summary

UP_BEFORE_KILL = 1.2     # supervise pauses 1 s after each start: stay clear of it
SETTLE = 2.0             # after all services are up, before memory/CPU are read
SVSTAT_LIMIT_MS = 15.0   # requirement: one pysvscan svstat call, absolute
TOOL_LIMIT_MS = 15.0     # requirement: each exec-chain tool's start-up, absolute
IDLE_EXTRA_CORE = 0.001  # (f): py may use 0.1% of one core more than C
POLL_PAUSE = 0.0001      # (d): a spinning harness would take one of the 2 cores from
                         # supervise; 0.1 ms pauses cost ~0.1 ms of resolution instead


@dataclass(frozen=True)
class Plan:
    """How long to measure: --quick trades samples for time, never the method."""

    quick: bool

    @property
    def restarts(self) -> int:
        return 9 if self.quick else 15

    @property
    def svstat_runs(self) -> int:
        return 15 if self.quick else 30

    @property
    def idle_seconds(self) -> float:
        return 10.0 if self.quick else 30.0

    @property
    def startup_reps(self) -> int:
        return 2 if self.quick else 6  # even: each tree goes first as often (turn)

    @property
    def scale_reps(self) -> int:
        return 2 if self.quick else 4

    @property
    def tool_runs(self) -> int:
        return 20 if self.quick else 50

    @property
    def log_reps(self) -> int:
        return 2 if self.quick else 3


def turn(rep: int) -> tuple[Impl, ...]:
    """Both trees, C first on even repetitions and pysvscan first on odd ones.

    Removing a tree frees some thousands of inodes, and on ext4 without a journal
    (this machine's root) every inode created in the next minutes is slower for them
    (the allocator skips recently deleted ones): whichever tree always ran second was
    always measured on the more churned file system."""
    return IMPLS if rep % 2 == 0 else IMPLS[::-1]


def warm_up(services: int, loggers: bool = False) -> None:
    """One untimed start of a tree as large, removed at once (see turn): the first timed
    start would otherwise meet a file system left quiet for minutes, which no later one
    does, and always in the same tree's turn."""
    with Tree(IMPLS[0]) as tree:
        dirs = make_services(tree.scandir, names("s", services))
        if loggers:
            for d in list(dirs):
                dirs += make_services(d, ["log"], LOGGER_RUN)
        log(f"warm-up: {len(dirs)} services, untimed")
        tree.start()
        tree.wait_all_up(dirs, 120, 0.005)


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


# -- (a) memory -------------------------------------------------------------------------

def tree_pss(tree: Tree, n: int) -> dict[str, float]:
    """Pss of svscan plus its supervise children, in kB, and the same per service."""
    children = tree.supervise_children()
    if len(children) != n:
        raise RuntimeError(f"{tree.impl.name}: {len(children)} supervise children, "
                           f"expected {n}")
    svscan = smaps_rollup(tree.pid).get("Pss", 0)
    maps = [smaps_rollup(p.pid) for p in children]
    sup = sum(m.get("Pss", 0) for m in maps)
    uss = sum(m.get("Private_Clean", 0) + m.get("Private_Dirty", 0) for m in maps)
    return {"per_service_kb": (svscan + sup) / n, "svscan_pss_kb": svscan,
            "supervise_pss_total_kb": sup, "supervise_uss_avg_kb": uss / n,
            "supervise_count": len(children)}


def pss_row(n: int, got: dict[str, dict[str, float]]) -> Row:
    c, py = got["C"], got["pysvscan"]
    return ratio_row(f"a{n}", f"(a) PSS per service, {n} services", "kB",
                     c["per_service_kb"], py["per_service_kb"], 5, {"C": c, "pysvscan": py})


# -- (e) svstat -------------------------------------------------------------------------

def svstat_ms(impl: Impl, dirs: list[Path], runs: int) -> dict[str, object]:
    """Wall time of one svstat process over `runs` calls (after a checked warm-up)."""
    argv = [impl.tool("svstat"), *map(str, dirs)]
    _, out = run_tool(argv, capture=True)
    lines = out.stdout.decode().splitlines()
    if out.returncode or len(lines) != len(dirs) or not all(": up (pid " in x for x in lines):
        raise RuntimeError(f"{impl.name} svstat: rc={out.returncode} {out.stdout[:200]!r} "
                           f"{out.stderr[:200]!r}")
    run_tool(argv)
    return summary([run_tool(argv)[0] * 1000 for _ in range(runs)])


def svstat_rows(got: dict[str, dict[int, dict[str, object]]]) -> list[Row]:
    rows = []
    for n in (1, 100):
        c, py = got["C"][n], got["pysvscan"][n]
        ok = py["median"] <= SVSTAT_LIMIT_MS
        rows.append(Row(f"e{n}", f"(e) svstat wall time, {n} dir{'s' * (n > 1)}", "ms",
                        c["median"], py["median"], f"py <= {SVSTAT_LIMIT_MS:g} ms", ok,
                        {"C": c, "pysvscan": py}))
    return rows


# -- (f) idle CPU -----------------------------------------------------------------------

def idle_cpu(tree: Tree, seconds: float) -> dict[str, float]:
    """CPU of every process in svscan's session over `seconds`: /proc/PID/stat ticks
    (utime+stime, plus cutime+cstime so a child reaped meanwhile still counts) and,
    for resolution, schedstat run time of the same processes."""
    before = {p.pid: p.cpu_ticks for p in session_procs(tree.pid)}
    rt_before = {pid: runtime_ns(pid) for pid in before}
    time.sleep(seconds)
    after = session_procs(tree.pid)
    ticks = sum(p.cpu_ticks - before.get(p.pid, 0) for p in after)
    rt = sum(runtime_ns(p.pid) - rt_before.get(p.pid, 0) for p in after)
    hz = os.sysconf("SC_CLK_TCK")
    return {"cpu_ms": ticks * 1000 / hz, "schedstat_ms": rt / 1e6, "seconds": seconds,
            "processes": len(after), "processes_before": len(before)}


def cpu_rows(got: dict[str, dict[str, float]], seconds: float) -> list[Row]:
    c, py = got["C"], got["pysvscan"]
    allowance = IDLE_EXTRA_CORE * seconds * 1000
    main = Row("f", f"(f) idle CPU, 100 services, {seconds:g} s", "ms", c["cpu_ms"],
               py["cpu_ms"], f"py <= C + {allowance:g} ms", py["cpu_ms"] <= c["cpu_ms"] + allowance,
               {"C": c, "pysvscan": py})
    fine = Row("f-rt", "    same, schedstat run time (info)", "ms", c["schedstat_ms"],
               py["schedstat_ms"], "", None)
    return [main, fine]


# -- group: 100 idle services: (a) at 100, (e), (f) -------------------------------------

def group_100(plan: Plan, want: set[str]) -> list[Row]:
    pss: dict[str, dict[str, float]] = {}
    svstat: dict[str, dict[int, dict[str, object]]] = {}
    cpu: dict[str, dict[str, float]] = {}
    for impl in IMPLS:
        with Tree(impl) as tree:
            services = make_services(tree.scandir, names("s", 100))
            log(f"{impl.name}: 100 services")
            tree.start()
            tree.wait_all_up(services, 60)
            time.sleep(SETTLE)
            if "a" in want:
                pss[impl.name] = tree_pss(tree, 100)
            if "e" in want:
                svstat[impl.name] = {1: svstat_ms(impl, services[:1], plan.svstat_runs),
                                     100: svstat_ms(impl, services, plan.svstat_runs)}
                time.sleep(1)
            if "f" in want:
                log(f"{impl.name}: idle CPU over {plan.idle_seconds:g} s")
                cpu[impl.name] = idle_cpu(tree, plan.idle_seconds)
    rows = []
    if pss:
        rows.append(pss_row(100, pss))
    if svstat:
        rows += svstat_rows(svstat)
    if cpu:
        rows += cpu_rows(cpu, plan.idle_seconds)
    return rows


# -- group: 500 services: (b) start-up, (a) at 500 --------------------------------------

STARTUP_POLLS = {"b": 0.0, "b-relaxed": 0.005}  # tight, as specified; and every 5 ms


def group_500(plan: Plan, want: set[str]) -> list[Row]:
    """C and pysvscan alternate, repetition by repetition, so drifting machine load
    hits both alike; memory is read on the first repetition once settled.

    Tight polling of 500 status files keeps one of the 2 cores busy in the harness,
    which slows the tree that needs more CPU; the row polled every 5 ms (information)
    shows how much of the difference that is."""
    polls = STARTUP_POLLS if "b" in want else {"b": 0.0}
    startup: dict[str, dict[str, list[float]]] = {k: {i.name: [] for i in IMPLS} for k in polls}
    pss: dict[str, dict[str, float]] = {}
    reps = plan.startup_reps if "b" in want else 1
    if "b" in want:
        warm_up(500)
    for rep in range(reps):
        for key, pause in polls.items():
            for impl in turn(rep):
                with Tree(impl) as tree:
                    services = make_services(tree.scandir, names("s", 500))
                    log(f"{impl.name}: 500 services, start {rep + 1}/{reps} ({key})")
                    t0 = tree.start()
                    startup[key][impl.name].append(tree.wait_all_up(services, 60, pause) - t0)
                    if "a" in want and rep == 0 and key == "b":
                        time.sleep(SETTLE)
                        pss[impl.name] = tree_pss(tree, 500)
    rows = []
    if pss:
        rows.append(pss_row(500, pss))
    if "b" in want:
        for key, per in startup.items():
            c, py = summary(per["C"]), summary(per["pysvscan"])
            detail = {"C": c, "pysvscan": py}
            if key == "b":
                rows.append(ratio_row("b", "(b) start-up until 500 services up", "s",
                                      c["median"], py["median"], 1.0, detail))
            else:
                rows.append(Row(key, "    same, harness polling every 5 ms (info)", "s",
                                c["median"], py["median"], "", None, detail))
    return rows


# -- group: scale: 1000 services and their 1000 loggers ---------------------------------

SCALE = 1000  # the C svscan's table holds at most 1000 services
LOGGER_RUN = "#!/bin/sh\nexec cat > /dev/null\n"  # the same logger in both trees


def group_scale(plan: Plan, want: set[str]) -> list[Row]:
    """Issue 8 (4): every service and every logger up, C and pysvscan in turn; the
    memory of the whole tree once settled, on the first repetition."""
    times: dict[str, list[float]] = {i.name: [] for i in IMPLS}
    pss: dict[str, dict[str, float]] = {}
    warm_up(SCALE, loggers=True)
    for rep in range(plan.scale_reps):
        for impl in turn(rep):
            with Tree(impl) as tree:
                services = make_services(tree.scandir, names("s", SCALE))
                loggers = []
                for d in services:
                    loggers += make_services(d, ["log"], LOGGER_RUN)
                log(f"{impl.name}: {SCALE} services + {SCALE} loggers, start "
                    f"{rep + 1}/{plan.scale_reps}")
                t0 = tree.start()
                times[impl.name].append(tree.wait_all_up(services + loggers, 120, 0.005) - t0)
                if rep == 0:
                    time.sleep(SETTLE)
                    pss[impl.name] = tree_pss(tree, 2 * SCALE)
    c, py = summary(times["C"]), summary(times["pysvscan"])
    rows = [ratio_row("scale", f"start-up until {SCALE} services and {SCALE} loggers up",
                      "s", c["median"], py["median"], 1.0, {"C": c, "pysvscan": py})]
    rows.append(Row("scale-pss", f"    PSS per supervise, {2 * SCALE} of them (info)", "kB",
                    pss["C"]["per_service_kb"], pss["pysvscan"]["per_service_kb"], "", None,
                    {"C": pss["C"], "pysvscan": pss["pysvscan"]}))
    return rows


# -- group: restarts: (c) kill -9, (d) svc -t -------------------------------------------

RESTART_SERVICES = 8  # measured in rotation: each one ages > 1.2 s while the others run


class StartFifo:
    """The FIFO every ./run writes its name into as its first act. Held O_RDWR by the
    harness, so the service's `echo >` never blocks and the read end never sees EOF."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 4096):
                pass

    def next_line(self, timeout: float) -> bytes:
        deadline = time.perf_counter() + timeout
        while (left := deadline - time.perf_counter()) > 0:
            if select.select([self.fd], [], [], left)[0]:
                with contextlib.suppress(BlockingIOError):
                    return os.read(self.fd, 4096)
        raise TimeoutError(f"no start reported on {self.path} within {timeout} s")

    def close(self) -> None:
        os.close(self.fd)


def run_script(fifo: Path, name: str) -> str:
    return f"#!/bin/sh\necho {name} > {fifo}\nexec sleep 1000000\n"


def kill_restart(service: Path, fifo: StartFifo) -> float:
    """(c): SIGKILL the service, stop the clock when its successor's ./run reports."""
    pid = wait_up_for(service, UP_BEFORE_KILL)
    fifo.drain()
    t0 = time.perf_counter()
    os.kill(pid, 9)
    line = fifo.next_line(10)
    t1 = time.perf_counter()
    if line.strip() != service.name.encode():
        raise RuntimeError(f"unexpected start line {line!r} after killing {service}")
    return (t1 - t0) * 1000


def term_restart(service: Path) -> float:
    """(d): write `t` to supervise/control as svc does (O_WRONLY|O_NONBLOCK, one write),
    stop the clock when supervise/status shows a new pid."""
    old = wait_up_for(service, UP_BEFORE_KILL)
    control = str(service / "supervise" / "control")
    deadline = time.perf_counter() + 10
    t0 = time.perf_counter()
    fd = os.open(control, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, b"t")
    finally:
        os.close(fd)
    while status_pid(service) in (0, old):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{service}: no new pid 10 s after svc -t")
        time.sleep(POLL_PAUSE)
    t1 = time.perf_counter()
    return (t1 - t0) * 1000


_UP_PID = re.compile(rb": up \(pid (\d+)\)")


def term_restart_tools(impl: Impl, service: Path) -> float:
    """(d, info): the same through each tree's own `svc -t` and `svstat` processes."""
    old = wait_up_for(service, UP_BEFORE_KILL)
    deadline = time.perf_counter() + 10
    t0 = time.perf_counter()
    _, done = run_tool([impl.tool("svc"), "-t", str(service)], limit=10)
    if done.returncode:
        raise RuntimeError(f"{impl.name} svc -t {service}: exit {done.returncode}")
    while True:
        _, done = run_tool([impl.tool("svstat"), str(service)], capture=True, limit=10)
        m = _UP_PID.search(done.stdout)
        if m and int(m.group(1)) != old:
            return (time.perf_counter() - t0) * 1000
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{service}: {impl.name} svstat shows no new pid after svc -t")


def group_restart(plan: Plan, want: set[str]) -> list[Row]:
    """Both trees run at once and are measured alternately, so load changes on this
    shared machine hit C and pysvscan alike. Every measurement waits until the chosen
    service has been up > 1.2 s, outside supervise's 1-second pause after a start.

    The target row of (d) drives the control FIFO and reads the status file from
    here, because `svc` and `svstat` as processes would add each tool's own start-up
    (a Python interpreter, ~10 ms, against ~0.5 ms for C) to what is meant to measure
    supervise's reaction; that start-up is measured on its own in (e), and the
    end-to-end figure with the real tools is printed as information."""
    with contextlib.ExitStack() as stack:
        trees: dict[str, tuple[list[Path], StartFifo]] = {}
        started: list[Tree] = []
        for impl in IMPLS:
            tree = stack.enter_context(Tree(impl))
            fifo = StartFifo(tree.tmp / "starts.fifo")
            stack.callback(fifo.close)
            svc_names = names("r", RESTART_SERVICES)
            scripts = {n: run_script(fifo.path, n) for n in svc_names}
            services = make_services(tree.scandir, svc_names, scripts)
            tree.start()
            trees[impl.name] = (services, fifo)
            started.append(tree)
        for tree in started:
            tree.wait_all_up(trees[tree.impl.name][0], 30)
        tests = []
        if "c" in want:
            tests.append(("c", lambda impl, s, f: kill_restart(s, f)))
        if "d" in want:
            tests.append(("d", lambda impl, s, f: term_restart(s)))
            tests.append(("d-tools", lambda impl, s, f: term_restart_tools(impl, s)))
        got: dict[str, dict[str, list[float]]] = {}
        for key, measure in tests:
            log(f"restart {key}: {plan.restarts} x 2 trees")
            got[key] = {i.name: [] for i in IMPLS}
            for rep in range(plan.restarts):
                for impl in IMPLS:
                    services, fifo = trees[impl.name]
                    service = services[rep % len(services)]
                    got[key][impl.name].append(measure(impl, service, fifo))
    return restart_rows(got)


def restart_rows(got: dict[str, dict[str, list[float]]]) -> list[Row]:
    rows = []
    labels = {"c": ("(c) kill -9 until new ./run runs", 1.5),
              "d": ("(d) svc -t until new pid in status", 1.5),
              "d-tools": ("    same, with svc + svstat processes (info)", None)}
    for key, per in got.items():
        c, py = summary(per["C"]), summary(per["pysvscan"])
        label, limit = labels[key]
        detail = {"C": c, "pysvscan": py}
        if limit is None:
            rows.append(Row(key, label, "ms", c["median"], py["median"], "", None, detail))
        else:
            rows.append(ratio_row(key, label, "ms", c["median"], py["median"], limit, detail))
    return rows


# -- group: tools: start-up of the exec-chain programs -------------------------------------

# Each sits in front of a service's real program, so its whole life (interpreter start,
# imports, the work, exec) is added to every service start. `true` is found through
# PATH=/usr/bin:/bin, as in a run script.
TOOLS = (("envdir", ("./env", "true")),
         ("setuidgid", ("nobody", "true")),
         ("softlimit", ("-m", "100000000", "true")),
         ("setlock", ("-n", "lockfile", "true")))


def make_envdir(path: Path) -> None:
    """An env dir like a service's: two variables set, one removed (empty file)."""
    path.mkdir()
    (path / "DATABASE_URL").write_text("postgres://app@localhost/app\n")
    (path / "LOG_LEVEL").write_text("info\n")
    (path / "HOME").write_text("")


def tool_ms(impl: Impl, prog: str, args: tuple[str, ...], cwd: Path) -> float:
    """Wall time of one call, spawn to exit; it must exit 0."""
    seconds, done = run_tool([impl.tool(prog), *args], capture=True, limit=10, cwd=cwd)
    if done.returncode:
        raise RuntimeError(f"{impl.name} {prog} {' '.join(args)}: exit {done.returncode} "
                           f"{done.stderr[-200:]!r}")
    return seconds * 1000


def group_tools(plan: Plan, want: set[str]) -> list[Row]:
    """C and pysvscan alternate call by call (which goes first alternates too), after
    one checked warm-up call each; the target is absolute, the C figure information."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="pysvscan-bench-tools-") as tmp:
        cwd = Path(tmp)
        make_envdir(cwd / "env")
        for prog, args in TOOLS:
            label = f"(tools) {prog} {' '.join(args)}"
            try:
                log(f"tools: {prog}, {plan.tool_runs} calls x 2")
                got: dict[str, list[float]] = {i.name: [] for i in IMPLS}
                for impl in IMPLS:
                    tool_ms(impl, prog, args, cwd)
                for n in range(plan.tool_runs):
                    for impl in (IMPLS if n % 2 == 0 else IMPLS[::-1]):
                        got[impl.name].append(tool_ms(impl, prog, args, cwd))
            except (OSError, RuntimeError, TimeoutError) as e:
                rows.append(error_row(f"tools-{prog}", label, e))
                continue
            c, py = summary(got["C"]), summary(got["pysvscan"])
            rows.append(Row(f"tools-{prog}", label, "ms", c["median"], py["median"],
                            f"py <= {TOOL_LIMIT_MS:g} ms", py["median"] <= TOOL_LIMIT_MS,
                            {"C": c, "pysvscan": py}))
    return rows


def group_log(plan: Plan, want: set[str]) -> list[Row]:
    from log_bench import log_rows  # imports tai64n_bench: only when asked for
    return log_rows(plan.log_reps)


def group_cli(plan: Plan, want: set[str]) -> list[Row]:
    from cli_bench import cli_rows  # only when asked for
    return cli_rows(plan.svstat_runs)


GROUPS = {"restart": (group_restart, {"c", "d"}),
          "500": (group_500, {"a", "b"}),
          "100": (group_100, {"a", "e", "f"}),
          "tools": (group_tools, {"tools"}),
          "log": (group_log, {"log"}),
          "scale": (group_scale, {"scale"}),
          "cli": (group_cli, {"cli"})}


def run_group(name: str, plan: Plan, want: set[str]) -> list[Row]:
    """One group, or one error row if it broke: the others still run."""
    func, keys = GROUPS[name]
    try:
        return func(plan, want & keys)
    except Exception as e:  # noqa: BLE001  report it and go on; Ctrl-C still stops all
        log(f"group {name} failed: {type(e).__name__}: {e}")
        return [error_row(name, f"group {name}", e)]



