"""Bad input for supervise, svc, svok and svstat (requirement 10).

Each case is compared with the C reference where the C behaves sanely; otherwise it is
checked against the text daemontools.md §21 prescribes. No output of ours may contain a
Python traceback, and services that have nothing to do with the bad input keep running
(a healthy C-supervised and a healthy py-supervised bystander are checked after each test).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import (C, PY, Processes, Tree, alive, make_service, normalize, ok_reader,
                      outcome, require_c_reference, seconds_of, start_supervise, status_pid,
                      status_version, supervise_once, supervise_ready, wait_status,
                      wait_until)

TREES = (C, PY)
U, D = ord("u"), ord("d")
SLEEP_RUN = "#!/bin/sh\nexec sleep 1000\n"
START_PAUSE = 1.2
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def tool(tree: Tree, program: str, service: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    cp = tree.run(program, *args, service.name, cwd=service.parent)
    assert b"Traceback" not in cp.stdout + cp.stderr, (tree.name, program, cp.stderr)
    return cp


def lines_of(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines()
    except OSError:
        return []


# ---------------------------------------------------------------------------------------
# Bystanders: healthy services that must not notice anything


@pytest.fixture(scope="module")
def bystanders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    require_c_reference()
    root = tmp_path_factory.mktemp("bystanders")
    procs = Processes()
    found = {}
    try:
        for tree in TREES:
            sv = make_service(root, f"healthy-{tree.name}", SLEEP_RUN)
            sup = start_supervise(procs, tree, sv)
            wait_until(lambda: supervise_ready(sv) and status_pid(sv),
                       message=f"bystander {tree.name}")
            found[tree.name] = (sv, sup, status_pid(sv))
        yield found
    finally:
        procs.cleanup()


@pytest.fixture(autouse=True)
def _bystanders_unaffected(bystanders: dict) -> Iterator[None]:
    yield
    for name, (sv, sup, pid) in bystanders.items():
        assert sup.poll() is None, f"bystander supervise ({name}) died"
        assert status_pid(sv) == pid and alive(pid), f"bystander service ({name}) was disturbed"
        assert supervise_ready(sv)


# ---------------------------------------------------------------------------------------
# ./run that cannot be started


def run_missing(sv: Path) -> None:
    (sv / "run").unlink()


def run_not_executable(sv: Path) -> None:
    (sv / "run").chmod(0o644)


def run_directory(sv: Path) -> None:
    (sv / "run").unlink()
    (sv / "run").mkdir()


def run_without_shebang(sv: Path) -> None:
    (sv / "run").write_text("exec sleep 1000\n")


RUN_CASES = [
    ("missing", run_missing, "file does not exist"),
    ("not-executable", run_not_executable, "access denied"),
    ("directory", run_directory, "access denied"),
    ("no-shebang", run_without_shebang, "exec format error"),
]


@pytest.mark.parametrize("case", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_cannot_start(case, tmp_path: Path, procs) -> None:
    """`supervise: fatal: unable to start sv/run: ERR` from the child about once a second,
    supervise itself keeps running and answers svok/svstat (§2 "Starting")."""
    name, breaker, err = case
    expected = f"supervise: fatal: unable to start sv/run: {err}".encode()
    lanes = {}
    for tree in TREES:
        sv = make_service(tmp_path / tree.name, "sv", SLEEP_RUN)
        breaker(sv)
        log = tmp_path / f"{tree.name}.err"
        lanes[tree.name] = (tree, sv, log, start_supervise(procs, tree, sv, stderr_file=log))
    times: dict[str, dict[int, float]] = {n: {} for n in lanes}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(3 in t for t in times.values()):
        for n, (tree, sv, log, sup) in lanes.items():
            count = len(lines_of(log))
            for k in (1, 3):
                if count >= k and k not in times[n]:
                    times[n][k] = time.monotonic()
        time.sleep(0.02)
    got = {}
    for n, (tree, sv, log, sup) in lanes.items():
        assert 3 in times[n], f"{n}: fewer than 3 messages in 10 s: {lines_of(log)}"
        lines = lines_of(log)
        assert b"Traceback" not in log.read_bytes()
        assert set(lines) == {expected}, f"{n}: {lines}"
        gap = times[n][3] - times[n][1]
        assert 1.5 <= gap <= 4.5, f"{n}: three attempts took {gap:.2f} s (want about 2)"
        assert sup.poll() is None, f"{n}: supervise gave up"
        svstat = normalize(tool(tree, "svstat", sv).stdout)
        assert svstat in (b"sv: down S seconds, normally up\n",
                          b"sv: up (pid P) S seconds\n"), (n, svstat)
        got[n] = (tool(tree, "svok", sv).returncode, sorted(set(lines)))
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# The service directory disappears under a running supervise


def test_service_directory_removed(tmp_path: Path, procs) -> None:
    """rm -rf of a supervised directory: supervise keeps running; when the service dies
    it warns that status.new cannot be opened and fails to start ./run once a second —
    the same messages as the C, and no traceback."""
    lanes = {}
    for tree in TREES:
        sv = make_service(tmp_path / tree.name, "sv", SLEEP_RUN)
        log = tmp_path / f"{tree.name}.err"
        lanes[tree.name] = (tree, sv, log, start_supervise(procs, tree, sv, stderr_file=log))
    pids = {}
    for n, (tree, sv, log, sup) in lanes.items():
        wait_until(lambda: supervise_ready(sv) and status_pid(sv), message=f"{n}: up")
    time.sleep(START_PAUSE)
    for n, (tree, sv, log, sup) in lanes.items():
        pids[n] = status_pid(sv)
        shutil.rmtree(sv)
    time.sleep(0.2)
    for n, (tree, sv, log, sup) in lanes.items():
        assert sup.poll() is None and alive(pids[n]), f"{n}: supervise or service died on rm -rf"
        assert lines_of(log) == [], f"{n}: {lines_of(log)}"
        os.kill(pids[n], signal.SIGKILL)
    start_failure = b"supervise: fatal: unable to start sv/run: file does not exist"
    for n, (tree, sv, log, sup) in lanes.items():
        wait_until(lambda: lines_of(log).count(start_failure) >= 2, timeout=8,
                   message=f"{n}: two failed restarts")
    got = {}
    for n, (tree, sv, log, sup) in lanes.items():
        assert sup.poll() is None, f"{n}: supervise died"
        data = log.read_bytes()
        assert b"Traceback" not in data
        got[n] = (sorted(set(data.splitlines())),
                  outcome(tool(tree, "svc", sv, "-d")), outcome(tool(tree, "svstat", sv)),
                  outcome(tool(tree, "svok", sv)))
    assert got["c"] == (
        [start_failure,
         b"supervise: warning: unable to open sv/supervise/status.new: file does not exist"],
        (0, b"", b"svc: warning: unable to chdir to sv: file does not exist\n"),
        (0, b"sv: unable to chdir: file does not exist\n", b""),
        (111, b"", b"svok: fatal: unable to chdir to sv: file does not exist\n")), "C reference"
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# supervise start-up failures (all exit at once with 111)


def plain_file(root: Path) -> str:
    (root / "f").write_text("not a directory\n")
    return "f"


def down_loop(root: Path) -> str:
    sv = make_service(root, "sv", SLEEP_RUN)
    (sv / "down").symlink_to("down")
    return "sv"


def lock_is_directory(root: Path) -> str:
    sv = make_service(root, "sv", SLEEP_RUN)
    (sv / "supervise" / "lock").mkdir(parents=True)
    return "sv"


def lock_is_fifo(root: Path) -> str:
    sv = make_service(root, "sv", SLEEP_RUN)
    (sv / "supervise").mkdir()
    os.mkfifo(sv / "supervise" / "lock")
    return "sv"


def control_is_directory(root: Path) -> str:
    sv = make_service(root, "sv", SLEEP_RUN)
    (sv / "supervise" / "control").mkdir(parents=True)
    return "sv"


def supervise_link_too_long(root: Path) -> str:
    sv = make_service(root, "sv", SLEEP_RUN)
    (sv / "supervise").symlink_to("x" * 300)
    return "sv"


def supervise_is_file(root: Path) -> str:
    sv = make_service(root, "sv", SLEEP_RUN)
    (sv / "supervise").write_text("")
    return "sv"


STARTUP_CASES = [
    ("plain-file", plain_file, b"supervise: fatal: unable to chdir to f: not a directory\n"),
    ("down-symlink-loop", down_loop,
     b"supervise: fatal: unable to stat sv/down: symbolic link loop\n"),
    ("lock-is-directory", lock_is_directory,
     b"supervise: fatal: unable to acquire sv/supervise/lock: is a directory\n"),
    ("lock-is-fifo", lock_is_fifo,
     b"supervise: fatal: unable to acquire sv/supervise/lock: device not configured\n"),
    ("control-is-directory", control_is_directory,
     b"supervise: fatal: unable to write sv/supervise/control: is a directory\n"),
    ("supervise-symlink-300-bytes", supervise_link_too_long,
     b"unable to readlink ./supervise: unknown error\n"),
    ("supervise-is-a-file", supervise_is_file,
     b"supervise: fatal: unable to acquire sv/supervise/lock: not a directory\n"),
]


@pytest.mark.parametrize("case", STARTUP_CASES, ids=[c[0] for c in STARTUP_CASES])
def test_supervise_startup_failure(case, tmp_path: Path, procs) -> None:
    name, setup, message = case
    got = {}
    for tree in TREES:
        root = tmp_path / tree.name
        root.mkdir()
        arg = setup(root)
        rc, out, err = supervise_once(procs, [tree.bin("supervise"), arg], root)
        got[tree.name] = (rc, out + err)
    assert got["c"] == (111, message), "C reference"
    assert got["py"] == got["c"]


def test_dangling_supervise_symlink_is_followed(tmp_path: Path, procs) -> None:
    """Debian's patch (§20.2): a dangling `supervise` symlink gets its target created
    (0700, relative to the service directory) and supervision works through it."""
    got = {}
    for tree in TREES:
        sv = make_service(tmp_path / tree.name, "sv", SLEEP_RUN)
        (sv / "supervise").symlink_to("../state")
        err = tmp_path / f"{tree.name}.err"
        start_supervise(procs, tree, sv, stderr_file=err)
        wait_until(lambda: supervise_ready(sv) and status_pid(sv), message=f"{tree.name}: up")
        state = tmp_path / tree.name / "state"
        got[tree.name] = (oct(state.stat().st_mode & 0o7777), sorted(os.listdir(state)),
                          outcome(tool(tree, "svstat", sv)), err.read_bytes())
    assert got["c"] == ("0o700", ["control", "lock", "ok", "status"],
                        (0, b"sv: up (pid P) S seconds\n", b""), b""), "C reference"
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# Directories supervise cannot write (run as nobody: root bypasses permissions)


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A scratch directory nobody can reach (pytest's own tmp dirs are 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="pysvscan-bad-input-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def nobody_plain(root: Path) -> str:
    make_service(root, "sv", SLEEP_RUN)
    return "sv"


def nobody_supervise_root_owned(root: Path) -> str:
    sv = make_service(root, "sv", SLEEP_RUN)
    (sv / "supervise").mkdir(mode=0o700)
    return "sv"


def nobody_lock_root_owned(root: Path) -> str:
    sv = make_service(root, "sv", SLEEP_RUN)
    (sv / "supervise").mkdir()
    os.chown(sv / "supervise", 65534, 65534)
    (sv / "supervise" / "lock").write_bytes(b"")
    (sv / "supervise" / "lock").chmod(0o600)
    return "sv"


def nobody_unreachable(root: Path) -> str:
    (root / "private").mkdir(mode=0o700)
    make_service(root / "private", "sv", SLEEP_RUN)
    return "private/sv"


NOBODY_CASES = [
    ("dir-not-writable", nobody_plain,
     b"supervise: fatal: unable to acquire sv/supervise/lock: file does not exist\n"),
    ("supervise-dir-root-0700", nobody_supervise_root_owned,
     b"supervise: fatal: unable to acquire sv/supervise/lock: access denied\n"),
    ("lock-root-0600", nobody_lock_root_owned,
     b"supervise: fatal: unable to acquire sv/supervise/lock: access denied\n"),
    ("dir-unreachable", nobody_unreachable,
     b"supervise: fatal: unable to chdir to private/sv: access denied\n"),
]


@pytest.mark.parametrize("case", NOBODY_CASES, ids=[c[0] for c in NOBODY_CASES])
def test_unwritable_directory_as_nobody(case, open_root: Path, procs) -> None:
    name, setup, message = case
    got = {}
    for tree in TREES:
        root = open_root / tree.name
        root.mkdir()
        arg = setup(root)
        rc, out, err = supervise_once(procs, [*NOBODY, tree.bin("supervise"), arg], root)
        got[tree.name] = (rc, out + err)
    assert got["c"] == (111, message), "C reference"
    assert got["py"] == got["c"]


OBSTACLES = [
    # id, path made a directory, down file, warning (per status write)
    ("status.new-dir", "status.new/", False,
     b"supervise: warning: unable to open sv/supervise/status.new: is a directory"),
    ("status.new-dir-down-file", "status.new/", True,
     b"supervise: warning: unable to open sv/supervise/status.new: is a directory"),
    ("status-nonempty-dir", "status/x/", False,
     b"supervise: warning: unable to rename sv/supervise/status.new to status: is a directory"),
]


@pytest.mark.parametrize("case", OBSTACLES, ids=[c[0] for c in OBSTACLES])
def test_status_cannot_be_written(case, tmp_path: Path, procs) -> None:
    """Every status write warns and is skipped; the service is still supervised. The
    number of warnings is the number of status writes: the C writes at start-up, at each
    start, and once more when its main loop begins (after the pause of the first start)."""
    name, obstacle, down, warning = case
    lanes = {}
    for tree in TREES:
        sv = make_service(tmp_path / tree.name, "sv", SLEEP_RUN, down=down)
        (sv / "supervise" / obstacle).mkdir(parents=True)
        err = tmp_path / f"{tree.name}.err"
        lanes[tree.name] = (tree, sv, err, start_supervise(procs, tree, sv, stderr_file=err))

    def settle(count: int, stage: str) -> None:
        """Wait for the C to print `count` lines, give ours a moment to catch up, then
        a little longer so that surplus lines show too."""
        c_err, py_err = lanes["c"][2], lanes["py"][2]
        wait_until(lambda: len(lines_of(c_err)) >= count, timeout=8,
                   message=f"C reference: {count} warnings {stage}")
        try:
            wait_until(lambda: len(lines_of(py_err)) >= count, timeout=1.5)
        except AssertionError:
            pass
        time.sleep(0.3)

    for n, (tree, sv, err, sup) in lanes.items():
        wait_until(lambda: supervise_ready(sv), message=f"{n}: ready")
    settle(2 if down else 3, "after start-up")
    got: dict[str, list] = {}
    letter = "-o" if down else "-d"
    for n, (tree, sv, err, sup) in lanes.items():
        got[n] = [("after start-up", lines_of(err)),
                  ("svc " + letter, outcome(tool(tree, "svc", sv, letter)))]
    settle(4 if down else 5, "after svc " + letter)
    if down:
        time.sleep(START_PAUSE)   # nothing more may come after the pause of the start
    for n, (tree, sv, err, sup) in lanes.items():
        assert sup.poll() is None
        assert b"Traceback" not in err.read_bytes()
        got[n].append(("after svc", lines_of(err)))
    assert got["c"] == [("after start-up", [warning] * (2 if down else 3)),
                        ("svc " + letter, (0, b"", b"")),
                        ("after svc", [warning] * (4 if down else 5))], "C reference"
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# Bad status files (svstat), with our own reader on supervise/ok


def status_file(data: bytes) -> Callable[[Path], None]:
    def setup(status: Path) -> None:
        status.write_bytes(data)
    return setup


def status_fifo(status: Path) -> None:
    os.mkfifo(status)


def status_loop(status: Path) -> None:
    status.symlink_to("status")


def status_missing(status: Path) -> None:
    pass


def status_directory(status: Path) -> None:
    status.mkdir()


STATUS_CASES = [
    ("empty", status_file(b""), b"sv: unable to read supervise/status: bad format\n"),
    ("5-bytes", status_file(b"\x40\x00\x00\x00\x6b"),
     b"sv: unable to read supervise/status: bad format\n"),
    ("17-bytes", status_file(bytes(17)), b"sv: unable to read supervise/status: bad format\n"),
    ("all-ff", status_file(b"\xff" * 18), b"sv: up (pid 4294967295) 0 seconds, paused\n"),
    ("corrupted", status_file(bytes.fromhex("400000006b0b755e0e91aaec22410000ff7a")),
     b"sv: up (pid 16674) S seconds, paused\n"),
    # label 0: an absurd age; the C computes it in a double (tai_approx), hence rounding
    ("corrupted-label-zero", status_file(bytes(12) + b"\x00\x00\x00\x00\x00u"),
     b"sv: down S seconds, normally up, want up\n"),
    ("fifo-without-writer", status_fifo, b"sv: unable to read supervise/status: bad format\n"),
    ("symlink-loop", status_loop, b"sv: unable to open supervise/status: symbolic link loop\n"),
    ("missing", status_missing, b"sv: unable to open supervise/status: file does not exist\n"),
]


@pytest.mark.parametrize("case", STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
def test_bad_status_file(case, tmp_path: Path) -> None:
    name, setup, expected = case
    sv = tmp_path / "sv"
    (sv / "supervise").mkdir(parents=True)
    setup(sv / "supervise" / "status")
    with ok_reader(sv):
        got = {tree.name: tool(tree, "svstat", sv) for tree in TREES}
    assert outcome(got["c"]) == (0, normalize(expected), b""), f"C reference: {got['c'].stdout!r}"
    assert outcome(got["py"]) == outcome(got["c"])
    c_s, py_s = seconds_of(got["c"].stdout), seconds_of(got["py"].stdout)
    for a, b in zip(c_s, py_s):
        # a second may tick between the two calls; but ages beyond 2^53 s come out of
        # the C through a double (multiples of 1024), so those must match exactly
        assert (abs(a - b) <= 1) if a < 2**53 else a == b, f"seconds: C {a}, py {b}"


def test_status_is_a_directory(tmp_path: Path) -> None:
    """§21.2: the C prints nonsense here; ours names the read error."""
    sv = tmp_path / "sv"
    (sv / "supervise" / "status").mkdir(parents=True)
    with ok_reader(sv):
        cp = tool(PY, "svstat", sv)
    assert (cp.returncode, cp.stdout, cp.stderr) == (
        0, b"sv: unable to read supervise/status: is a directory\n", b"")


def test_ok_is_a_directory(tmp_path: Path) -> None:
    """supervise/ok that cannot be opened for writing: svok fails with 111, svstat says so."""
    sv = tmp_path / "sv"
    (sv / "supervise" / "ok").mkdir(parents=True)
    got = {tree.name: (outcome(tool(tree, "svok", sv)), outcome(tool(tree, "svstat", sv)))
           for tree in TREES}
    assert got["c"] == (
        (111, b"", b"svok: fatal: unable to open sv/supervise/ok: is a directory\n"),
        (0, b"sv: unable to open supervise/ok: is a directory\n", b"")), "C reference"
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# svc: bad options and bad directories next to a good one


def test_svc_bad_input_next_to_running_service(tmp_path: Path, procs) -> None:
    """An illegal option sends nothing anywhere (the service stays up, status untouched);
    a missing or non-service directory before a good one only warns, the good one is
    still controlled."""
    lanes = {}
    for tree in TREES:
        root = tmp_path / tree.name
        sv = make_service(root, "sv", SLEEP_RUN)
        (root / "empty").mkdir()
        lanes[tree.name] = (tree, root, sv, start_supervise(procs, tree, sv))
    for n, (tree, root, sv, sup) in lanes.items():
        wait_until(lambda: supervise_ready(sv) and status_pid(sv), message=f"{n}: up")
    time.sleep(START_PAUSE)
    got: dict[str, list] = {}
    for n, (tree, root, sv, sup) in lanes.items():
        version, pid = status_version(sv), status_pid(sv)
        bad = [tree.run("svc", *args, cwd=root) for args in
               (["-dZ", "sv"], ["-d", "-1", "sv"], ["-q", "sv"], ["-o10", "sv"])]
        for cp in bad:
            assert b"Traceback" not in cp.stderr
        time.sleep(0.3)
        got[n] = [[outcome(cp) for cp in bad],
                  ("untouched", status_version(sv) == version and status_pid(sv) == pid)]
        cp = tree.run("svc", "-d", "nosuch", "empty", "-", "sv", cwd=root)
        wait_status(sv, running=False, paused=0, want=D, label=f"{n}: svc -d after bad dirs")
        got[n].append(outcome(cp))
        assert sup.poll() is None
    options = (b"svc options: u up, d down, o once, x exit, p pause, c continue, h hup, "
               b"a alarm, i interrupt, t term, k kill\n")
    assert got["c"] == [
        [(100, b"", b"svc: illegal option -- Z\n" + options),
         (100, b"", b"svc: illegal option -- 1\n" + options),
         (100, b"", b"svc: illegal option -- q\n" + options),
         (100, b"", b"svc: illegal option -- 1\n" + options)],
        ("untouched", True),
        (0, b"", b"svc: warning: unable to chdir to nosuch: file does not exist\n"
                 b"svc: warning: unable to control empty: file does not exist\n"
                 b"svc: warning: unable to chdir to -: file does not exist\n"),
    ], "C reference"
    assert got["py"] == got["c"]


def test_a_restart_writes_the_new_pid_only(tmp_path: Path, procs) -> None:
    """A deliberate departure, pinned on both sides (README, differences from 0.76):
    when a service dies and is restarted at once, the C writes a pid-0 record and then
    the new pid; pysvscan writes only the new pid. With status.new a directory every
    status write warns once: three at start-up (start-up, first start, main loop), then
    per restart two for the C and one for pysvscan. The counts are read in the quiet
    part of the 1-second pause after a start."""
    run = "#!/bin/sh\necho x >> starts\nexec sleep 0.3\n"  # dies within the pause
    lanes = {}
    for tree in TREES:
        sv = make_service(tmp_path / tree.name, "sv", run)
        (sv / "supervise" / "status.new").mkdir(parents=True)
        err = tmp_path / f"{tree.name}.err"
        lanes[tree.name] = (sv, err, start_supervise(procs, tree, sv, stderr_file=err))

    def quiet_count(sv: Path, err: Path) -> tuple[int, int] | None:
        """(starts, warnings) once 4+ starts happened and the last one is 0.35-0.8 s old."""
        starts = sv / "starts"
        try:
            age = time.time() - starts.stat().st_mtime
            n = len(starts.read_bytes().splitlines())
        except OSError:
            return None
        if n < 4 or not 0.35 <= age <= 0.8:
            return None
        return n, len(lines_of(err))

    got = {name: wait_until(lambda: quiet_count(sv, err), timeout=15, interval=0.05,
                            message=f"{name}: four starts")
           for name, (sv, err, _) in lanes.items()}
    n, warnings = got["c"]
    assert warnings == 2 * n + 1, f"C reference: {n} starts, {warnings} warnings"
    n, warnings = got["py"]
    assert warnings == n + 2, f"pysvscan: {n} starts, {warnings} warnings"
    for sv, err, sup in lanes.values():
        assert sup.poll() is None and b"Traceback" not in err.read_bytes()
