"""What setting the process title costs each supervise that svscan forks (issue req. 7).

svscan forks every supervise without exec, so any memory a title method touches is
copied once per service. Each method gets a fresh parent interpreter that imports
pysvscan.commands.svscan (a heap like svscan's) plus what the method needs, calls
gc.freeze() as svscan does, and forks N children; each child sets its title, reports
how long the call took and sleeps. We read the children's smaps_rollup (USS =
Private_Clean + Private_Dirty, and Pss) and check with `ps -o args=` that the title is
really what ps shows. A fresh parent per method matters: a module with an at-fork hook
(threading, random, logging, imported e.g. by setproctitle or subprocess) makes every
later child run Python code after fork and copy hundreds of kB.

Methods: none (baseline); pysvscan.proctitle.set_title in the child (/proc/self/mem);
prctl PR_SET_MM_ARG_START/ARG_END to a fresh buffer (root with CAP_SYS_RESOURCE, else
PR_SET_MM_MAP); the setproctitle package, if importable (never a project dependency).
Two more for comparison: the title svscan lends (written over the parent's argv before
each fork, restored after) when pysvscan.proctitle has it, and a floor for a child-side
/proc/self/mem write with everything prepared in the parent.

Run: .venv/bin/python bench/proctitle_cost.py [-n 50] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import gc
import json
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

NL = b"\n"
TITLE = ["supervise", "name"]
EXPECTED = "supervise name"
BASELINE = "none (baseline)"
# Modules whose os.register_at_fork hooks run Python code in every child (threading:
# ~450 kB per child, random: ~100 kB). svscan imports neither; neither may this parent.
AT_FORK_MODULES = ("threading", "random", "logging", "concurrent.futures")
PR_SET_NAME = 15
PR_SET_MM = 35
PR_SET_MM_ARG_START = 8
PR_SET_MM_ARG_END = 9
PR_SET_MM_MAP = 14

# ctypes and libc are set up before forking, as svscan would do it.
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                   ctypes.c_ulong]
_prctl.restype = ctypes.c_int
_sbrk = _libc.sbrk
_sbrk.argtypes = [ctypes.c_long]
_sbrk.restype = ctypes.c_void_p
_keep: list[object] = []  # a prctl argv buffer must outlive the call


@dataclass
class Method:
    """A way to title a forked child: `child` runs in the fork; the optional parent
    hooks run around each fork, for titles the parent lends (svscan's current way)."""

    child: Callable[[], bool] = lambda: True
    before_fork: Callable[[], None] | None = None
    after_fork: Callable[[], None] | None = None
    via: str = ""


class MmMap(ctypes.Structure):
    """struct prctl_mm_map (linux/prctl.h)."""

    _fields_ = [(n, ctypes.c_uint64) for n in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
        "start_stack", "arg_start", "arg_end", "env_start", "env_end", "auxv")] + [
        ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


def self_stat() -> list[int]:
    """/proc/self/stat from field 3 on; field N (1-based) is at index N - 3."""
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    return [int(x) if x.lstrip(b"-").isdigit() else 0
            for x in data[data.rindex(b")") + 2:].split()]


def title_argv() -> tuple[ctypes.Array[ctypes.c_char], int, int]:
    """A fresh NUL-separated argv buffer in the child: (buffer, start, end)."""
    argv = b"\0".join(w.encode() for w in TITLE) + b"\0"
    buf = ctypes.create_string_buffer(argv, len(argv))
    _keep.append(buf)
    start = ctypes.addressof(buf)
    return buf, start, start + len(argv)


def set_comm() -> bool:
    """The short name `ps -e` shows, written as pysvscan does (no ctypes objects)."""
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, TITLE[0].encode())
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def setup_none() -> Method:
    return Method()


def setup_set_title() -> Method | str:
    """The child renames itself with pysvscan's own code."""
    from pysvscan import proctitle  # imported by svscan before it forks
    if not hasattr(proctitle, "set_title"):
        return "pysvscan.proctitle.set_title not found"
    return Method(lambda: proctitle.set_title(TITLE))


def setup_lend() -> Method:
    """An alternative pysvscan tried and dropped: the parent writes the title over its
    own argv and comm before the fork and restores them after; the child runs nothing.
    The cheapest in memory, but svscan itself then shows as `supervise NAME` while it
    forks, which `pkill -x supervise` or `pidof svscan` would get wrong."""
    f = self_stat()
    arg_start, arg_end = f[48 - 3], f[49 - 3]
    title = b"\0".join(w.encode() for w in TITLE)
    image = title + bytes(arg_end - arg_start - len(title))
    mem = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
    original = os.pread(mem, len(image), arg_start)
    with open("/proc/self/comm", "rb") as fh:
        comm = fh.read().rstrip(b"\n")

    def write_comm(name: bytes) -> None:
        fd = os.open("/proc/self/comm", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, name)
        finally:
            os.close(fd)

    def before() -> None:
        write_comm(TITLE[0].encode())
        os.pwrite(mem, image, arg_start)

    def after() -> None:
        os.pwrite(mem, original, arg_start)
        write_comm(comm)
    return Method(before_fork=before, after_fork=after)


def setup_precomputed() -> Method | str:
    """What svscan does: the image is computed by the parent (pysvscan's Title.image),
    and the child only writes it, and its comm, through /proc/self."""
    from pysvscan import proctitle
    if not hasattr(proctitle.Title, "show"):
        return "pysvscan.proctitle.Title.show not found"
    title = proctitle.Title()
    image = title.image(TITLE)
    comm = TITLE[0].encode()

    def child() -> bool:
        try:
            title.show(image, comm)
        except OSError:
            return False
        return True
    return Method(child)


def setup_prctl() -> Method | str:
    """PR_SET_MM ARG_START/ARG_END needs CAP_SYS_RESOURCE, which a container may drop
    even for root; PR_SET_MM_MAP (checkpoint/restore) does the same without it."""
    f = self_stat()
    if _prctl(PR_SET_MM, PR_SET_MM_ARG_START, f[48 - 3], 0, 0) == 0:  # a no-op probe
        def child() -> bool:
            _, start, end = title_argv()
            return (_prctl(PR_SET_MM, PR_SET_MM_ARG_START, start, 0, 0) == 0
                    and _prctl(PR_SET_MM, PR_SET_MM_ARG_END, end, 0, 0) == 0
                    and set_comm())
        return Method(child)
    if ctypes.get_errno() != errno.EPERM:
        return f"PR_SET_MM: {os.strerror(ctypes.get_errno())}"
    mm = MmMap(start_code=f[26 - 3], end_code=f[27 - 3], start_stack=f[28 - 3],
               start_data=f[45 - 3], end_data=f[46 - 3], start_brk=f[47 - 3],
               env_start=f[50 - 3], env_end=f[51 - 3], auxv=0, auxv_size=0,
               exe_fd=0xFFFFFFFF)
    mm_size = ctypes.sizeof(mm)

    def child_map() -> bool:
        _, mm.arg_start, mm.arg_end = title_argv()
        mm.brk = _sbrk(0)
        return (_prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.addressof(mm), mm_size, 0) == 0
                and set_comm())
    return Method(child_map, via="PR_SET_MM_MAP: no CAP_SYS_RESOURCE here")


def setup_setproctitle() -> Method | str:
    try:
        import setproctitle  # imported in the parent, as svscan would
    except ImportError:
        return "not installed"
    return Method(lambda: setproctitle.setproctitle(EXPECTED) or True)


SETUPS: dict[str, Callable[[], Method | str]] = {
    BASELINE: setup_none,
    "pysvscan set_title": setup_set_title,
    "prctl PR_SET_MM": setup_prctl,
    "setproctitle package": setup_setproctitle,
    "lent by the parent (dropped)": setup_lend,
    "pysvscan: child writes svscan's image": setup_precomputed,
}


def child(method: Method, report: int) -> None:
    """In the fork: set the title, tell the parent how long it took, sleep until killed."""
    try:
        t0 = time.perf_counter_ns()
        ok = method.child()
        t1 = time.perf_counter_ns()
        os.write(report, f"{os.getpid()} {int(bool(ok))} {t1 - t0}\n".encode())
        while True:
            signal.pause()
    finally:
        os._exit(0)


def fork_children(method: Method, n: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Fork n children; (pids, [(ok, ns), ...]) once every child has reported. Time
    the parent spends in the hooks counts as that child's time."""
    r, w = os.pipe()
    pids: list[int] = []
    parent_ns: dict[int, int] = {}
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            if method.before_fork:
                method.before_fork()
            t1 = time.perf_counter_ns()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                child(method, w)
            t2 = time.perf_counter_ns()
            if method.after_fork:
                method.after_fork()
            parent_ns[pid] = t1 - t0 + time.perf_counter_ns() - t2
            pids.append(pid)
        reports = read_reports(r, n)
        return pids, [(ok, ns + parent_ns[pid]) for pid, (ok, ns) in reports.items()]
    except BaseException:
        reap(pids)
        raise
    finally:
        os.close(r)
        os.close(w)


def read_reports(fd: int, n: int, timeout: float = 30.0) -> dict[int, tuple[int, int]]:
    """pid -> (ok, ns) from the lines the children wrote."""
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(NL) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"only {buf.count(NL)} of {n} children reported")
        buf += os.read(fd, 65536)
    return {int(pid): (int(ok), int(ns))
            for pid, ok, ns in (line.split() for line in buf.splitlines())}


def reap(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def rollup(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2:
                out[key] = int(parts[0])
    return out


def ps_titles(pids: list[int]) -> list[str]:
    """`ps -o args= -p PIDS`, run with posix_spawn: the subprocess module would import
    threading, whose at-fork hook alone costs every later child ~450 kB."""
    r, w = os.pipe()
    try:
        pid = os.posix_spawnp("ps", ["ps", "-o", "args=", "-p", ",".join(map(str, pids))],
                              os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, w, 1),
                                                        (os.POSIX_SPAWN_CLOSE, r)])
    finally:
        os.close(w)
    chunks = []
    try:
        while data := read_within(r, 30.0):
            chunks.append(data)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return [line.strip() for line in b"".join(chunks).decode().splitlines()]


def read_within(fd: int, seconds: float) -> bytes:
    if not select.select([fd], [], [], seconds)[0]:
        raise TimeoutError(f"no output within {seconds} s")
    return os.read(fd, 65536)


def measure(method: Method, n: int) -> dict[str, Any]:
    pids, reports = fork_children(method, n)
    try:
        time.sleep(0.2)  # let every child reach pause() before its pages are counted
        maps = [rollup(pid) for pid in pids]
        titles = ps_titles(pids)
    finally:
        reap(pids)
    uss = [m.get("Private_Clean", 0) + m.get("Private_Dirty", 0) for m in maps]
    return {"n": n, "uss_kb": sum(uss) / n, "pss_kb": sum(m.get("Pss", 0) for m in maps) / n,
            "call_samples_us": [ns / 1000 for _, ns in reports],
            "calls_ok": sum(ok for ok, _ in reports),
            "ps_ok": sum(t == EXPECTED for t in titles), "ps_sample": titles[0] if titles else ""}


def median(xs: list[float]) -> float:
    """statistics.median without importing statistics (it imports random, whose at-fork
    reseeding would run in every child and inflate the baseline)."""
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def merge(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one method into one result: means of the per-child figures."""
    if missing := [x["missing"] for x in samples if "missing" in x]:
        return {"missing": missing[0]}
    k = len(samples)
    out: dict[str, Any] = {key: sum(x[key] for x in samples) / k for key in ("uss_kb", "pss_kb")}
    out["call_us"] = median([t for x in samples for t in x["call_samples_us"]])
    out.update({key: sum(x[key] for x in samples) for key in ("n", "calls_ok", "ps_ok")})
    for key in ("ps_sample", "via", "parent_at_fork_modules"):
        out[key] = samples[0][key]
    return out


def measure_here(name: str, n: int) -> dict[str, Any]:
    """One method in this (fresh) interpreter: import what svscan has, set the method up,
    freeze the heap, fork the children."""
    import pysvscan.commands.svscan  # noqa: F401  the heap svscan forks from
    method = SETUPS[name]()
    if isinstance(method, str):
        return {"missing": method}
    hooked = sorted(m for m in AT_FORK_MODULES if m in sys.modules)
    gc.collect()
    gc.freeze()
    result = measure(method, n)
    result.update(via=method.via, parent_at_fork_modules=hooked)
    return result


def measure_apart(name: str, n: int) -> dict[str, Any]:
    """measure_here in a new interpreter, so what one method imports (setproctitle pulls
    in logging and threading) cannot change the children of the others."""
    import subprocess  # here only: this process never forks the measured children
    argv = [sys.executable, os.path.abspath(__file__), "--method", name, "-n", str(n)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise RuntimeError(f"{name}: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout)


def run(n: int, rounds: int = 2) -> dict[str, Any]:
    """Every method, each in its own parent, in forward then reverse order (so a drift
    of the machine favours no method); results by method name."""
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in SETUPS}
    for i in range(rounds):
        for name in list(SETUPS) if i % 2 == 0 else reversed(list(SETUPS)):
            samples[name].append(measure_apart(name, n))
    results = {name: merge(got) for name, got in samples.items()}
    base = results[BASELINE]
    for r in results.values():
        if "uss_kb" in r and "uss_kb" in base:
            r["uss_delta_kb"] = r["uss_kb"] - base["uss_kb"]
            r["pss_delta_kb"] = r["pss_kb"] - base["pss_kb"]
    results["cheapest"] = cheapest(results)
    return results


def cheapest(results: dict[str, Any]) -> dict[str, str]:
    """Among the methods that work (ps shows the title for every child), leaving out
    the baseline and the variant pysvscan does not implement: least memory, then
    fastest call."""
    working = {k: v for k, v in results.items()
               if isinstance(v, dict) and "uss_kb" in v and k != BASELINE
               and "(variant)" not in k and v["ps_ok"] == v["n"]}
    if not working:
        return {"memory": "-", "time": "-"}
    return {"memory": min(working, key=lambda k: (working[k]["uss_kb"], working[k]["call_us"])),
            "time": min(working, key=lambda k: working[k]["call_us"])}


def table(results: dict[str, Any]) -> str:
    from report import render
    head = ("method", "USS/child", "dUSS", "PSS/child", "dPSS", "time/call", "ps shows title")
    lines = [head]
    for name, r in results.items():
        if not isinstance(r, dict) or name == "cheapest":
            continue
        if "missing" in r:
            lines.append((name, "-", "-", "-", "-", "-", r["missing"]))
            continue
        shown = f"{r['ps_ok']}/{r['n']}"
        if name == BASELINE:
            shown = f"n/a (parent's: {r['ps_sample'][:28]})"
        if r.get("via"):
            shown += f" [{r['via']}]"
        if r.get("parent_at_fork_modules"):
            shown += f" [parent imports {', '.join(r['parent_at_fork_modules'])}]"
        lines.append((name, f"{r['uss_kb']:.1f} kB", f"{r['uss_delta_kb']:+.1f} kB",
                      f"{r['pss_kb']:.1f} kB", f"{r['pss_delta_kb']:+.1f} kB",
                      f"{r['call_us']:.1f} us", shown))
    c = results["cheapest"]
    return (render(lines, right=(1, 2, 3, 4, 5))
            + "\n(per forked child: memory the mean, time the median over all rounds;"
            " d = difference to the baseline)"
            + f"\ncheapest in memory: {c['memory']}; fastest call: {c['time']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50, help="children per method")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, alternating order")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--method", choices=list(SETUPS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.method:  # one method in this process, for measure_apart
        print(json.dumps(measure_here(args.method, args.n)))
        return 0
    results = run(args.n, args.rounds)
    if args.json:
        print(json.dumps(results))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
