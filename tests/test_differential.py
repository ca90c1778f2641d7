"""Differential tests: pysvscan's supervise, svc, svok and svstat against daemontools 0.76.

Every scenario runs with the C programs (C supervise driven by C svc/svstat/svok) and with
ours (our supervise driven by our svc/svstat/svok), usually side by side inside one test so
that both pay the C-timed waits once (supervise pauses 1 s after every start, §2). What is
compared: exit codes, stdout and stderr (pids and seconds masked, seconds also compared with
a 1-s tolerance), the files under supervise/ with their types and modes, and the decoded
status (pid zero or not, paused byte, want byte). Scenarios follow daemontools.md
Appendix B items 1-6 and §2-§5.
"""

from __future__ import annotations

import os
import signal
import stat
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import (C, PY, client, Decoded, Tree, alive, decode_status, make_service, normalize,
                      ok_reader, outcome, read_status, require_c_reference, seconds_of,
                      start_supervise, status_pid, status_version, stopped_state,
                      supervise_once, supervise_ready, wait_status, wait_until)

TREES = (C, PY)
U, D = ord("u"), ord("d")
SLEEP_RUN = "#!/bin/sh\nexec sleep 1000\n"
START_PAUSE = 1.2   # supervise handles nothing for 1 s after each start (§2, Appendix B 3)
SVC_OPTIONS = (b"svc options: u up, d down, o once, x exit, p pause, c continue, "
               b"h hup, a alarm, i interrupt, t term, k kill\n")
TAI_OFFSET = 2**62 + 10


@pytest.fixture(autouse=True)
def _need_c() -> None:
    require_c_reference()




def observe(tree: Tree, service: Path, svc_result: subprocess.CompletedProcess[bytes] | None,
            proc: bool = True) -> tuple[str, list[int]]:
    """One transcript line (masked) plus the svstat seconds figures."""
    st = client(tree, "svstat", service)
    ok = client(tree, "svok", service)
    pid = status_pid(service)
    status = decode_status(service)
    stopped = stopped_state(pid, bool(status and status.paused == 1)) if (pid and proc) else "-"
    line = (f"svc={outcome(svc_result) if svc_result else '-'} "
            f"svstat={outcome(st)} svok={outcome(ok)} status={status} stopped={stopped}")
    return line, seconds_of(st.stdout)


def compare_lanes(scenario: str, transcripts: dict[str, list[str]],
                  seconds: dict[str, list[list[int]]]) -> None:
    """The C lane is the oracle: our transcript must be identical, seconds within 1."""
    assert transcripts["py"] == transcripts["c"], f"{scenario}: py differs from C"
    for i, (cs, ps) in enumerate(zip(seconds["c"], seconds["py"])):
        assert len(cs) == len(ps) and all(abs(a - b) <= 1 for a, b in zip(cs, ps)), (
            f"{scenario} step {i}: seconds C={cs} py={ps}")


# ---------------------------------------------------------------------------------------
# Appendix B 1: usage, bad arguments, missing directories, supervise not running


def no_setup(root: Path) -> None:
    pass


def plain_service_dir(root: Path) -> None:
    """sv/ without supervise/: nothing has ever supervised it."""
    (root / "sv").mkdir()


def fifos_without_reader(root: Path) -> None:
    """sv/supervise/{control,ok} FIFOs left behind by a supervise that is gone."""
    (root / "sv" / "supervise").mkdir(parents=True)
    os.mkfifo(root / "sv" / "supervise" / "control", 0o600)
    os.mkfifo(root / "sv" / "supervise" / "ok", 0o600)


def regular_control(root: Path) -> None:
    """supervise/control as a regular file: svc just writes its letters into it."""
    (root / "sv" / "supervise").mkdir(parents=True)
    (root / "sv" / "supervise" / "control").write_bytes(b"0123456789")


def mixed(root: Path) -> None:
    fifos_without_reader(root)
    (root / "f").write_bytes(b"x")


def control_contents(root: Path) -> bytes:
    return (root / "sv" / "supervise" / "control").read_bytes()


CaseResult = tuple[int, bytes, bytes]
STATIC_CASES: list[tuple[str, str, list[str], Callable[[Path], None],
                         CaseResult, Callable[[Path], bytes] | None, bytes | None]] = [
    # id, program, args, setup, expected (rc, stdout, stderr), post-check, expected post
    ("supervise-no-args", "supervise", [], no_setup,
     (100, b"", b"supervise: usage: supervise dir\n"), None, None),
    ("supervise-two-args", "supervise", ["a", "b"], no_setup,
     (100, b"", b"supervise: usage: supervise dir\n"), None, None),
    ("supervise-missing-dir", "supervise", ["nosuch"], no_setup,
     (111, b"", b"supervise: fatal: unable to chdir to nosuch: file does not exist\n"), None, None),
    ("svok-no-args", "svok", [], no_setup, (100, b"", b"svok: usage: svok dir\n"), None, None),
    ("svok-missing-dir", "svok", ["nosuch"], no_setup,
     (111, b"", b"svok: fatal: unable to chdir to nosuch: file does not exist\n"), None, None),
    ("svok-no-supervise-dir", "svok", ["sv"], plain_service_dir, (100, b"", b""), None, None),
    ("svok-fifo-no-reader", "svok", ["sv"], fifos_without_reader, (100, b"", b""), None, None),
    ("svok-extra-args-ignored", "svok", ["sv", "nosuch"], fifos_without_reader,
     (100, b"", b""), None, None),
    ("svc-illegal-option", "svc", ["-z", "sv"], regular_control,
     (100, b"", b"svc: illegal option -- z\n" + SVC_OPTIONS), control_contents, b"0123456789"),
    ("svc-illegal-in-cluster", "svc", ["-dZu", "sv"], regular_control,
     (100, b"", b"svc: illegal option -- Z\n" + SVC_OPTIONS), control_contents, b"0123456789"),
    ("svc-illegal-after-good", "svc", ["-d", "-q", "sv"], regular_control,
     (100, b"", b"svc: illegal option -- q\n" + SVC_OPTIONS), control_contents, b"0123456789"),
    ("svc-no-args", "svc", [], no_setup, (0, b"", b""), None, None),
    ("svc-option-no-dir", "svc", ["-d"], no_setup, (0, b"", b""), None, None),
    ("svc-no-option", "svc", ["sv"], regular_control, (0, b"", b""),
     control_contents, b"0123456789"),
    ("svc-missing-dir", "svc", ["-u", "nosuch"], no_setup,
     (0, b"", b"svc: warning: unable to chdir to nosuch: file does not exist\n"), None, None),
    ("svc-fifo-no-reader", "svc", ["-u", "sv"], fifos_without_reader,
     (0, b"", b"svc: warning: unable to control sv: supervise not running\n"), None, None),
    ("svc-no-supervise-dir", "svc", ["-u", "sv"], plain_service_dir,
     (0, b"", b"svc: warning: unable to control sv: file does not exist\n"), None, None),
    ("svc-several-dirs", "svc", ["-u", "nosuch", "sv", "f"], mixed,
     (0, b"", b"svc: warning: unable to chdir to nosuch: file does not exist\n"
              b"svc: warning: unable to control sv: supervise not running\n"
              b"svc: warning: unable to chdir to f: not a directory\n"), None, None),
    ("svstat-no-args", "svstat", [], no_setup, (0, b"", b""), None, None),
    ("svstat-missing-dir", "svstat", ["nosuch"], no_setup,
     (0, b"nosuch: unable to chdir: file does not exist\n", b""), None, None),
    ("svstat-fifo-no-reader", "svstat", ["sv"], fifos_without_reader,
     (0, b"sv: supervise not running\n", b""), None, None),
    ("svstat-no-supervise-dir", "svstat", ["sv"], plain_service_dir,
     (0, b"sv: unable to open supervise/ok: file does not exist\n", b""), None, None),
    ("svstat-several-no-options", "svstat", ["nosuch", "-x", "sv", "f"], mixed,
     (0, b"nosuch: unable to chdir: file does not exist\n"
         b"-x: unable to chdir: file does not exist\n"
         b"sv: supervise not running\n"
         b"f: unable to chdir: not a directory\n", b""), None, None),
]


@pytest.mark.parametrize("case", STATIC_CASES, ids=[c[0] for c in STATIC_CASES])
def test_static_outputs(case, tmp_path: Path) -> None:
    """Appendix B 1 and the no-supervise paths of §3-§5: same bytes and exit code as C."""
    name, program, args, setup, expected, post, expected_post = case
    results = {}
    for tree in TREES:
        root = tmp_path / tree.name
        root.mkdir()
        setup(root)
        cp = tree.run(program, *args, cwd=root)
        results[tree.name] = (cp.returncode, cp.stdout, cp.stderr,
                              post(root) if post else None)
    assert b"Traceback" not in results["py"][2]
    assert results["c"][:3] == expected, f"C reference deviates from the spec in {name}"
    assert results["py"] == results["c"], f"{name}: py {results['py']} != C {results['c']}"
    if post:
        assert results["c"][3] == expected_post


def test_svc_usage_names_the_program_as_run(tmp_path: Path) -> None:
    """The getopt complaint uses argv[0]'s basename; the options line is fixed (§1.3)."""
    got = {}
    for tree in TREES:
        link = tmp_path / f"{tree.name}-mysvc"
        link.symlink_to(tree.bin("svc"))
        cp = subprocess.run([str(link), "-y", "x"], capture_output=True, timeout=10)
        got[tree.name] = (cp.returncode, cp.stdout,
                          cp.stderr.replace(link.name.encode(), b"NAME"))
    assert got["c"] == (100, b"", b"NAME: illegal option -- y\n" + SVC_OPTIONS)
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# svc's command string: order of first appearance, duplicates dropped, one write


SVC_ORDER_CASES = [
    ("uduxk-t-a-u", ["-uduxk", "-t", "-a", "-u"], b"udxkta"),
    ("dx", ["-dx"], b"dx"),
    ("xd", ["-xd"], b"xd"),
    ("all-letters", ["-udopchaitkx"], b"udopchaitkx"),
    ("separate-words", ["-k", "-k", "-p", "-c", "-p"], b"kpc"),
    ("double-dash", ["-h", "--"], b"h"),
]


@pytest.mark.parametrize("case", SVC_ORDER_CASES, ids=[c[0] for c in SVC_ORDER_CASES])
def test_svc_command_string_through_fifo(case, tmp_path: Path) -> None:
    """We hold supervise/control's read end ourselves and see exactly what svc writes."""
    name, args, expected = case
    got = {}
    for tree in TREES:
        sv = tmp_path / tree.name / "sv"
        (sv / "supervise").mkdir(parents=True)
        os.mkfifo(sv / "supervise" / "control", 0o600)
        fd = os.open(sv / "supervise" / "control", os.O_RDONLY | os.O_NONBLOCK)
        try:
            cp = client(tree, "svc", sv, *args)
            try:
                data = os.read(fd, 100)
            except BlockingIOError:
                data = b""
        finally:
            os.close(fd)
        got[tree.name] = (cp.returncode, cp.stdout, cp.stderr, data)
    assert got["c"] == (0, b"", b"", expected), "C reference"
    assert got["py"] == got["c"]


def test_svc_writes_into_regular_control_file(tmp_path: Path) -> None:
    """A regular supervise/control is opened without O_APPEND or O_TRUNC: the letters
    overwrite its first bytes; svc with no letter writes nothing (§3)."""
    got = {}
    for tree in TREES:
        root = tmp_path / tree.name
        root.mkdir()
        regular_control(root)
        sv = root / "sv"
        steps = []
        for args in (["-uduxk", "-t", "-a", "-u"], [], ["-c"]):
            cp = client(tree, "svc", sv, *args)
            steps.append((cp.returncode, cp.stdout, cp.stderr, control_contents(root)))
        got[tree.name] = steps
    assert got["c"] == [(0, b"", b"", b"udxkta6789"), (0, b"", b"", b"udxkta6789"),
                        (0, b"", b"", b"cdxkta6789")], "C reference"
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# Appendix B 2: a fresh service


RECORDING_RUN = '#!/bin/sh\necho "$0 $#" > argv.txt\nexec sleep 1000\n'


def supervise_listing(service: Path) -> list[tuple]:
    """Type, mode and (for regular files) size of everything under supervise/."""
    out: list[tuple] = []
    top = os.lstat(service / "supervise")
    out.append(("supervise/", stat.S_IFMT(top.st_mode), oct(stat.S_IMODE(top.st_mode))))
    for name in sorted(os.listdir(service / "supervise")):
        st = os.lstat(service / "supervise" / name)
        kind = ("fifo" if stat.S_ISFIFO(st.st_mode) else "file" if stat.S_ISREG(st.st_mode)
                else oct(stat.S_IFMT(st.st_mode)))
        out.append((name, kind, oct(stat.S_IMODE(st.st_mode)),
                    st.st_size if kind == "file" else None))
    return out


def proc_fields(pid: int) -> tuple[int, int, int]:
    """(ppid, pgrp, session) from /proc/PID/stat."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[1]), int(fields[2]), int(fields[3])


def test_fresh_service(tmp_path: Path, procs) -> None:
    """Appendix B 2: supervise/ contents and modes (umask 022 and 077), the 18-byte status,
    the service's argv, parent, process group and cwd, svstat and svok."""
    lanes = {}
    for tree in TREES:
        for umask in (0o022, 0o077):
            sv = make_service(tmp_path / f"{tree.name}-{umask:03o}", "sv", RECORDING_RUN)
            lanes[(tree.name, umask)] = (tree, sv, start_supervise(procs, tree, sv, umask=umask))
    for key, (tree, sv, sup) in lanes.items():
        wait_until(lambda: supervise_ready(sv) and status_pid(sv)
                   and Path(f"/proc/{status_pid(sv)}/comm").read_text() == "sleep\n",
                   message=f"{key}: supervise ready with the service up (exec'd sleep)")
    time.sleep(START_PAUSE)
    now = time.time()
    seen = {}
    for key, (tree, sv, sup) in lanes.items():
        data = read_status(sv)
        pid = int.from_bytes(data[12:16], "little")
        ppid, pgrp, session = proc_fields(pid)
        when, nsec = struct.unpack(">QI", data[:12])
        assert abs(when - TAI_OFFSET - now) < 5 and nsec < 10**9, (key, data.hex())
        svstat = client(tree, "svstat", sv)
        seen[key] = {
            "listing": supervise_listing(sv),
            "status": decode_status(sv),
            "argv": (sv / "argv.txt").read_text(),
            "service parent is supervise": ppid == sup.pid,
            "service in supervise's group and session": (pgrp, session) == (sup.pid, sup.pid),
            "service cwd": os.readlink(f"/proc/{pid}/cwd") == str(sv),
            "service comm": Path(f"/proc/{pid}/comm").read_text(),
            "svstat": outcome(svstat),
            "svstat seconds": seconds_of(svstat.stdout),
            "svok": outcome(client(tree, "svok", sv)),
            "svstat two dirs": outcome(tree.run("svstat", "sv", "nosuch", cwd=sv.parent)),
        }
    for umask, status_mode in ((0o022, "0o644"), (0o077, "0o600")):
        c, py = seen[("c", umask)], seen[("py", umask)]
        assert c["listing"] == [("supervise/", stat.S_IFDIR, "0o700"),
                                ("control", "fifo", "0o600", None),
                                ("lock", "file", "0o600", 0),
                                ("ok", "fifo", "0o600", None),
                                ("status", "file", status_mode, 18)], "C reference"
        assert c["svstat"] == (0, b"sv: up (pid P) S seconds\n", b""), "C reference"
        assert c["status"] == Decoded(18, True, 0, U)
        assert c["argv"] == "./run 0\n"
        for key in c:
            if key == "svstat seconds":
                assert abs(c[key][0] - py[key][0]) <= 1, f"umask {umask:03o}: {key}"
            else:
                assert py[key] == c[key], f"umask {umask:03o}: {key}: py {py[key]!r} C {c[key]!r}"


def test_run_gets_argv0_dot_slash_run(tmp_path: Path, procs) -> None:
    """execve("./run", ["./run"]): a binary sees argv[0] == "./run" (a script cannot tell,
    the kernel hands it the path). `run` is a symlink to sleep, which names itself by
    argv[0] when it complains about the missing operand."""
    got = {}
    for tree in TREES:
        sv = tmp_path / tree.name / "sv"
        sv.mkdir(parents=True)
        (sv / "run").symlink_to("/usr/bin/sleep")
        err = tmp_path / f"{tree.name}.err"
        start_supervise(procs, tree, sv, stderr_file=err)
        got[tree.name] = err
    lines = {}
    for name, err in got.items():
        wait_until(lambda: err.read_bytes().count(b"\n") >= 2, message=f"{name}: sleep's complaint")
        lines[name] = err.read_bytes().splitlines()[:2]
    assert lines["c"] == [b"./run: missing operand",
                          b"Try './run --help' for more information."], "C reference"
    assert lines["py"] == lines["c"]


def test_service_signal_state(tmp_path: Path, procs) -> None:
    """A deliberate departure, pinned on both sides. The C supervise passes on the
    signals it was started with ignored (§1.6: an ignored SIGINT stays ignored in the
    service). pysvscan follows the issue's and systemd.md §2.3's contract instead:
    every signal back to default and an empty mask, so that systemd's IgnoreSIGPIPE=yes
    (or anything else ignored above us) never reaches a service. Nothing of Python's
    own (SIGPIPE, SIGXFSZ ignored, SIGINT caught) may leak through either way."""
    # The service itself is read, from the test: a shell reading its own /proc entry
    # catches dash with every signal blocked around its fork of the reader.
    script = "#!/bin/sh\nexec sleep 1000\n"
    ignoring = ("/bin/sh", "-c", 'trap "" INT QUIT PIPE; exec "$@"', "sh")
    lanes = {}
    for tree in TREES:
        for label, prefix in (("as started", ()), ("INT QUIT PIPE ignored", ignoring)):
            sv = make_service(tmp_path / tree.name / label.replace(" ", "-"), "sv", script)
            start_supervise(procs, tree, sv, prefix=prefix)
            lanes[(tree.name, label)] = sv

    def sleeping_service(sv: Path) -> dict[str, str] | None:
        pid = status_pid(sv)
        try:
            text = Path(f"/proc/{pid}/status").read_text() if pid else ""
        except OSError:
            return None
        fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        if fields.get("Name") != "sleep":
            return None
        return {"SigBlk": fields["SigBlk"], "SigIgn": fields["SigIgn"]}

    got = {key: wait_until(lambda: sleeping_service(sv), message=f"{key}: service running")
           for key, sv in lanes.items()}
    inherited = ((1 << (signal.SIGINT - 1)) | (1 << (signal.SIGQUIT - 1))
                 | (1 << (signal.SIGPIPE - 1)))
    clean = {"SigBlk": "0" * 16, "SigIgn": "0" * 16}
    assert got[("c", "as started")] == clean, "C reference, nothing inherited"
    assert int(got[("c", "INT QUIT PIPE ignored")]["SigIgn"], 16) & inherited == inherited, \
        "C reference passes inherited ignores on"
    assert got[("py", "as started")] == clean
    assert got[("py", "INT QUIT PIPE ignored")] == clean, "pysvscan resets every signal"


# ---------------------------------------------------------------------------------------
# Appendix B 3 and 4: command sequences, stepped on both trees side by side


Step = tuple[str, list[str], tuple[bool, int, int], bool, bool, bytes]
# (label, svc args, expected (running, paused, want), single status rewrite to wait for,
#  starts the service (then wait out the 1-s pause), expected svstat line)


def run_sequence(scenario: str, tmp_path: Path, procs, script: str, steps: list[Step], *,
                 down: bool = False, initial: tuple[tuple[bool, int, int], bytes],
                 extra: Callable[[Path], None] | None = None,
                 extra_expect: bytes | None = None) -> None:
    lanes = {}
    for tree in TREES:
        sv = make_service(tmp_path / tree.name, "sv", script, down=down)
        lanes[tree.name] = (tree, sv, start_supervise(procs, tree, sv))
    for name, (tree, sv, sup) in lanes.items():
        wait_until(lambda: supervise_ready(sv), message=f"{scenario}/{name}: supervise ready")
        running, paused, want = initial[0]
        wait_status(sv, running=running, paused=paused, want=want, label=f"{scenario}/{name} start")
    if initial[0][0]:
        time.sleep(START_PAUSE)
    transcripts: dict[str, list[str]] = {"c": [], "py": []}
    seconds: dict[str, list[list[int]]] = {"c": [], "py": []}

    def record(label: str, results: dict, expect_line: bytes) -> None:
        for name, (tree, sv, sup) in lanes.items():
            line, secs = observe(tree, sv, results.get(name))
            transcripts[name].append(f"{label}: {line}")
            seconds[name].append(secs)
            st = normalize(client(tree, "svstat", sv).stdout)
            assert st == expect_line, f"{scenario}/{name} after {label}: svstat {st!r}"
            assert sup.poll() is None, f"{scenario}/{name}: supervise exited after {label}"

    record("start", {}, initial[1])
    for label, args, (running, paused, want), rewrite, starts, expect_line in steps:
        before = {name: (status_version(sv), status_pid(sv)) for name, (_, sv, _) in lanes.items()}
        results = {name: client(tree, "svc", sv, *args) for name, (tree, sv, _) in lanes.items()}
        for name, (tree, sv, sup) in lanes.items():
            if starts:
                wait_until(lambda: status_pid(sv) not in (0, before[name][1]),
                           message=f"{scenario}/{name}: {label} started the service")
            wait_status(sv, running=running, paused=paused, want=want,
                        after=before[name][0] if rewrite else None,
                        label=f"{scenario}/{name} after {label}")
        if starts:
            time.sleep(START_PAUSE)
        record(label, results, expect_line)
    if extra:
        for name, (tree, sv, sup) in lanes.items():
            extra(sv)
        record("extra", {}, extra_expect)
    compare_lanes(scenario, transcripts, seconds)


def test_command_sequence(tmp_path: Path, procs) -> None:
    """Appendix B 3: svc -p -c -d -p(down) -u -o -k -o -d on `exec sleep`, svstat and bytes
    16/17 after each, the service stopped (state T) exactly while paused; then -u -p -d
    (a paused service taken down gets TERM and CONT)."""
    up = b"sv: up (pid P) S seconds\n"
    down = b"sv: down S seconds, normally up\n"
    steps: list[Step] = [
        ("-p", ["-p"], (True, 1, U), True, False, b"sv: up (pid P) S seconds, paused\n"),
        ("-c", ["-c"], (True, 0, U), True, False, up),
        ("-d", ["-d"], (False, 0, D), False, False, down),
        ("-p while down", ["-p"], (False, 0, D), True, False, down),
        ("-u", ["-u"], (True, 0, U), False, True, up),
        ("-o", ["-o"], (True, 0, 0), True, False, up),
        ("-k", ["-k"], (False, 0, 0), False, False, down),
        ("-o while down", ["-o"], (True, 0, 0), False, True, up),
        ("-d", ["-d"], (False, 0, D), False, False, down),
        # beyond Appendix B 3: -d on a paused service must also send CONT to end it
        ("-u again", ["-u"], (True, 0, U), False, True, up),
        ("-p again", ["-p"], (True, 1, U), True, False, b"sv: up (pid P) S seconds, paused\n"),
        ("-d while paused", ["-d"], (False, 0, D), False, False, down),
    ]
    run_sequence("B3", tmp_path, procs, SLEEP_RUN, steps, initial=((True, 0, U), up))


def test_down_file_and_term_ignoring_run(tmp_path: Path, procs) -> None:
    """Appendix B 4: `down` file and a run that ignores TERM: want down while it lives on,
    paused, want byte 0 after -o, `down 0 seconds` after -k, no restart; `normally` follows
    the down file as it is now."""
    script = "#!/bin/sh\ntrap '' TERM\nexec sleep 1000\n"
    nd = b"sv: up (pid P) S seconds, normally down"
    steps: list[Step] = [
        ("-u", ["-u"], (True, 0, U), False, True, nd + b"\n"),
        ("-d", ["-d"], (True, 0, D), True, False, nd + b", want down\n"),
        ("-p", ["-p"], (True, 1, D), True, False, nd + b", paused, want down\n"),
        ("-o", ["-o"], (True, 1, 0), True, False, nd + b", paused\n"),
        ("-k", ["-k"], (False, 0, 0), False, False, b"sv: down S seconds\n"),
    ]

    def remove_down(sv: Path) -> None:
        (sv / "down").unlink()

    run_sequence("B4", tmp_path, procs, script, steps, down=True,
                 initial=((False, 0, D), b"sv: down S seconds\n"),
                 extra=remove_down, extra_expect=b"sv: down S seconds, normally up\n")


def test_down_after_kill_reads_zero_seconds(tmp_path: Path, procs) -> None:
    """Appendix B 4's last line: `svc -k` on a once-service → `down 0 seconds`: the label
    is renewed when the service dies, and svstat counts from it."""
    lanes = {}
    for tree in TREES:
        sv = make_service(tmp_path / tree.name, "sv", SLEEP_RUN, down=True)
        lanes[tree.name] = (tree, sv, start_supervise(procs, tree, sv))
    for name, (tree, sv, _) in lanes.items():
        wait_until(lambda: supervise_ready(sv), message=f"{name}: ready")
        client(tree, "svc", sv, "-o")
    for name, (tree, sv, _) in lanes.items():
        wait_status(sv, running=True, paused=0, want=0, label=f"{name} -o")
    time.sleep(START_PAUSE)
    got = {}
    for name, (tree, sv, _) in lanes.items():
        sent = time.time()
        client(tree, "svc", sv, "-k")
        wait_status(sv, running=False, paused=0, want=0, label=f"{name} -k")
        seen = time.time()
        when, nsec = struct.unpack(">QI", read_status(sv)[:12])
        died = when - TAI_OFFSET + nsec / 1e9
        assert sent - 0.05 <= died <= seen + 0.05, f"{name}: label {died} not renewed at death"
        first = int(time.time())
        line = client(tree, "svstat", sv).stdout
        last = int(time.time())
        age = seconds_of(line)
        label_unix = when - TAI_OFFSET
        assert len(age) == 1 and first - label_unix <= age[0] <= last - label_unix, (
            name, line, first, last, label_unix)
        got[name] = normalize(line)
        if first == int(died):
            assert line == b"sv: down 0 seconds\n", name
    assert got["c"] == b"sv: down S seconds\n", "C reference"
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# Control bytes: signals and ignored bytes (§2 table)


SIGNAL_LOGGER = """#!/usr/bin/python3 -S
import os, signal
log = os.open("sig.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
def note(sig, frame):
    os.write(log, signal.Signals(sig).name.encode() + b"\\n")
for s in ("SIGHUP", "SIGALRM", "SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGQUIT",
          "SIGWINCH", "SIGCONT"):
    signal.signal(getattr(signal, s), note)
open("ready", "w").close()
while True:
    signal.pause()
"""


def test_signal_letters_and_ignored_bytes(tmp_path: Path, procs) -> None:
    """Bytes `1 2 q w ⏎` (and other unknown ones) are ignored: no signal, no status write;
    h a i t send HUP ALRM INT TERM to the service without writing status; c sends CONT
    even when not paused (and writes status); k kills and the service is restarted."""
    lanes = {}
    for tree in TREES:
        sv = make_service(tmp_path / tree.name, "sv", SIGNAL_LOGGER)
        lanes[tree.name] = (tree, sv, start_supervise(procs, tree, sv))
    for name, (tree, sv, _) in lanes.items():
        wait_until(lambda: supervise_ready(sv) and (sv / "ready").exists(),
                   message=f"{name}: logger service ready")
    time.sleep(START_PAUSE)
    log = lambda sv: (sv / "sig.log").read_bytes() if (sv / "sig.log").exists() else b""
    got: dict[str, list] = {"c": [], "py": []}
    first = {name: (status_version(sv), status_pid(sv)) for name, (_, sv, _) in lanes.items()}
    for name, (tree, sv, _) in lanes.items():
        # ignored bytes, written straight into the FIFO, then h as a marker
        fd = os.open(sv / "supervise" / "control", os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"12qw\n\x00ZUvy")
        os.close(fd)
        client(tree, "svc", sv, "-h")
    for name, (tree, sv, _) in lanes.items():
        wait_until(lambda: log(sv).endswith(b"SIGHUP\n"), timeout=5, message=f"{name}: HUP")
    for letter, sig in (("a", "SIGALRM"), ("i", "SIGINT"), ("t", "SIGTERM")):
        for name, (tree, sv, _) in lanes.items():
            got[name].append(("svc", letter, outcome(client(tree, "svc", sv, f"-{letter}"))))
        for name, (tree, sv, _) in lanes.items():
            wait_until(lambda: log(sv).endswith(sig.encode() + b"\n"), timeout=5,
                       message=f"{name}: {sig} after svc -{letter}")
    for name, (tree, sv, _) in lanes.items():
        got[name].append(("log", log(sv)))
        got[name].append(("status not rewritten, same pid",
                          (status_version(sv), status_pid(sv)) == first[name]))
    # c: CONT although not paused, and a status write
    for name, (tree, sv, _) in lanes.items():
        client(tree, "svc", sv, "-c")
    for name, (tree, sv, _) in lanes.items():
        wait_status(sv, running=True, paused=0, want=U, after=first[name][0], label=f"{name} -c")
        wait_until(lambda: log(sv).endswith(b"SIGCONT\n"), timeout=5, message=f"{name}: CONT")
        got[name].append(("log after -c", log(sv)))
    # k: killed, restarted because want is up
    for name, (tree, sv, _) in lanes.items():
        client(tree, "svc", sv, "-k")
    for name, (tree, sv, _) in lanes.items():
        wait_until(lambda: status_pid(sv) not in (0, first[name][1]), timeout=5,
                   message=f"{name}: restarted after -k")
        got[name].append(("after -k", decode_status(sv), alive(first[name][1])))
    assert got["c"][3][1] == b"SIGHUP\nSIGALRM\nSIGINT\nSIGTERM\n", "C reference"
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# Appendix B 5: restart timing


def start_labels(service: Path) -> float | None:
    """The TAI64N label of supervise/status as Unix time, if it shows a running service:
    supervise takes it right after fork(), so successive labels time the starts as
    supervise itself sees them (no shell or exec latency in the figures)."""
    try:
        data = read_status(service)
    except OSError:
        return None
    if len(data) < 18 or not int.from_bytes(data[12:16], "little"):
        return None
    when, nsec = struct.unpack(">QI", data[:12])
    return when - TAI_OFFSET + nsec / 1e9


def test_restart_timing(tmp_path: Path, procs) -> None:
    """An immediately exiting run restarts ≈1 s apart (the pause after each start); a run
    living 1.5 s restarts right after it dies (≈1.5 s apart, no extra second); svc -d sent
    right after svc -u waits out the start pause (≈1 s). With a run that exits at once,
    that queued -d comes after one more restart: a death is handled before the next
    control byte, so the run starts exactly twice."""
    services = {"fast": "#!/bin/sh\nexit 0\n", "slow": "#!/bin/sh\nexec sleep 1.5\n"}
    wanted = {"fast": 4, "slow": 3}
    lanes = {}
    for tree in TREES:
        root = tmp_path / tree.name
        lanes[tree.name] = {name: make_service(root, name, script)
                            for name, script in services.items()}
        lanes[tree.name]["queued"] = make_service(root, "queued", SLEEP_RUN, down=True)
        lanes[tree.name]["queued-fast"] = make_service(root, "queued-fast",
                                                       "#!/bin/sh\necho x >> starts\n", down=True)
    for tree in TREES:
        for sv in lanes[tree.name].values():
            start_supervise(procs, tree, sv)
    for name, svs in lanes.items():
        wait_until(lambda: supervise_ready(svs["queued"]) and supervise_ready(svs["queued-fast"]),
                   message=f"{name}: queued services ready")
    # svc -u then at once svc -d: the d waits in the FIFO for the end of the start pause
    sent = {}
    for tree in TREES:
        client(tree, "svc", lanes[tree.name]["queued"], "-u")
        client(tree, "svc", lanes[tree.name]["queued"], "-d")
        sent[tree.name] = time.monotonic()
        client(tree, "svc", lanes[tree.name]["queued-fast"], "-u")
        client(tree, "svc", lanes[tree.name]["queued-fast"], "-d")
    went_down: dict[str, float] = {}
    starts: dict[str, dict[str, list[float]]] = {n: {"fast": [], "slow": []} for n in lanes}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for n, svs in lanes.items():
            if n not in went_down and decode_status(svs["queued"]) == Decoded(18, False, 0, D):
                went_down[n] = time.monotonic() - sent[n]
            for kind in ("fast", "slow"):
                label = start_labels(svs[kind])
                seen = starts[n][kind]
                if label is not None and (not seen or label != seen[-1]):
                    seen.append(label)
        if len(went_down) == 2 and all(len(starts[n][k]) >= wanted[k]
                                       for n in lanes for k in wanted):
            break
        time.sleep(0.01)
    gaps = {}
    for n in lanes:
        assert n in went_down, f"{n}: queued service never went down"
        for kind in ("fast", "slow"):
            seen = starts[n][kind][:wanted[kind]]
            assert len(seen) == wanted[kind], f"{n}: {kind} started only {len(seen)} times in 15 s"
            gaps[(n, kind)] = [round(b - a, 3) for a, b in zip(seen, seen[1:])]
    for n in lanes:
        assert all(0.95 <= g <= 1.7 for g in gaps[(n, "fast")]), f"{n}: fast restarts {gaps}"
        assert all(1.45 <= g <= 2.3 for g in gaps[(n, "slow")]), f"{n}: slow restarts {gaps}"
        assert 0.9 <= went_down[n] <= 2.5, f"{n}: -d right after -u took {went_down[n]:.2f} s"
    for n, svs in lanes.items():
        wait_status(svs["queued-fast"], running=False, paused=0, want=D, label=f"{n}: queued-fast")
        time.sleep(0.3)
        runs = (svs["queued-fast"] / "starts").read_text().count("x")
        assert (runs, decode_status(svs["queued-fast"])) == (2, Decoded(18, False, 0, D)), (
            f"{n}: queued-fast ran {runs} times")
    mean = lambda xs: sum(xs) / len(xs)
    for kind in ("fast", "slow"):
        assert abs(mean(gaps[("py", kind)]) - mean(gaps[("c", kind)])) < 0.35, gaps


# ---------------------------------------------------------------------------------------
# Appendix B 6: lock, supervise killed by TERM


def test_second_supervise_and_term(tmp_path: Path, procs) -> None:
    """A second supervise on a supervised directory fails on the lock (111); TERM kills
    supervise but not the service; then svstat says `supervise not running`."""
    lanes = {}
    for tree in TREES:
        sv = make_service(tmp_path / tree.name, "sv", SLEEP_RUN)
        lanes[tree.name] = (tree, sv, start_supervise(procs, tree, sv))
    for name, (tree, sv, _) in lanes.items():
        wait_until(lambda: supervise_ready(sv) and status_pid(sv), message=f"{name}: up")
    got: dict[str, dict] = {}
    for name, (tree, sv, sup) in lanes.items():
        pid = status_pid(sv)
        second = supervise_once(procs, [tree.bin("supervise"), "sv"], sv.parent)
        got[name] = {"second supervise": second,
                     "same service after": status_pid(sv) == pid and alive(pid)}
        sup.send_signal(signal.SIGTERM)
        got[name]["supervise killed by TERM"] = sup.wait(timeout=10)
        time.sleep(0.1)
        got[name]["service survives"] = alive(pid)
        got[name]["status kept"] = decode_status(sv)
        got[name]["svstat"] = outcome(client(tree, "svstat", sv))
        got[name]["svok"] = outcome(client(tree, "svok", sv))
        got[name]["svc -d"] = outcome(client(tree, "svc", sv, "-d"))
        got[name]["service still survives"] = alive(pid)
    assert got["c"] == {
        "second supervise": (111, b"", b"supervise: fatal: unable to acquire sv/supervise/lock: "
                                       b"temporary failure\n"),
        "same service after": True,
        "supervise killed by TERM": -signal.SIGTERM,
        "service survives": True,
        "status kept": Decoded(18, True, 0, U),
        "svstat": (0, b"sv: supervise not running\n", b""),
        "svok": (100, b"", b""),
        "svc -d": (0, b"", b"svc: warning: unable to control sv: supervise not running\n"),
        "service still survives": True,
    }, "C reference"
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# svc -x and in-order processing


def test_exit_commands(tmp_path: Path, procs) -> None:
    """`svc -x` on an up service: supervise stays; after -k no restart, supervise exits 0,
    last status `down, want up`. `svc -dx`: down, then exit. `svc -x` on a down service:
    exits at once, want down kept."""
    lanes = {}
    for tree in TREES:
        root = tmp_path / tree.name
        svs = {"x-then-k": make_service(root, "xk", SLEEP_RUN),
               "dx": make_service(root, "dx", SLEEP_RUN),
               "x-down": make_service(root, "xdown", SLEEP_RUN, down=True)}
        lanes[tree.name] = (tree, {k: (sv, start_supervise(procs, tree, sv))
                                   for k, sv in svs.items()})
    for name, (tree, svs) in lanes.items():
        for k, (sv, _) in svs.items():
            wait_until(lambda: supervise_ready(sv) and (status_pid(sv) or k == "x-down"),
                       message=f"{name}/{k}: ready")
    time.sleep(START_PAUSE)
    got: dict[str, dict] = {"c": {}, "py": {}}
    versions = {name: status_version(svs["x-then-k"][0]) for name, (_, svs) in lanes.items()}
    for name, (tree, svs) in lanes.items():
        got[name]["-x"] = outcome(client(tree, "svc", svs["x-then-k"][0], "-x"))
        got[name]["-dx"] = outcome(client(tree, "svc", svs["dx"][0], "-dx"))
        got[name]["-x down"] = outcome(client(tree, "svc", svs["x-down"][0], "-x"))
    for name, (tree, svs) in lanes.items():
        sv, sup = svs["x-then-k"]
        wait_status(sv, running=True, paused=0, want=U, after=versions[name], label=f"{name} -x")
        time.sleep(0.2)
        got[name]["after -x: supervise running"] = sup.poll() is None
        got[name]["after -x: svstat"] = outcome(client(tree, "svstat", sv))
        got[name]["after -x: svok"] = client(tree, "svok", sv).returncode
        for k in ("dx", "x-down"):
            got[name][f"{k}: exit code"] = svs[k][1].wait(timeout=10)
            got[name][f"{k}: status"] = decode_status(svs[k][0])
            with ok_reader(svs[k][0]):
                got[name][f"{k}: svstat (ok held)"] = outcome(client(tree, "svstat", svs[k][0]))
        client(tree, "svc", sv, "-k")
    for name, (tree, svs) in lanes.items():
        sv, sup = svs["x-then-k"]
        got[name]["after -k: exit code"] = sup.wait(timeout=10)
        got[name]["after -k: status"] = decode_status(sv)
        got[name]["after -k: svstat"] = outcome(client(tree, "svstat", sv))
        got[name]["after -k: svok"] = client(tree, "svok", sv).returncode
        with ok_reader(sv):
            got[name]["after -k: svstat (ok held)"] = outcome(client(tree, "svstat", sv))
    assert got["c"] == {
        "-x": (0, b"", b""), "-dx": (0, b"", b""), "-x down": (0, b"", b""),
        "after -x: supervise running": True,
        "after -x: svstat": (0, b"xk: up (pid P) S seconds\n", b""),
        "after -x: svok": 0,
        "dx: exit code": 0, "dx: status": Decoded(18, False, 0, D),
        "dx: svstat (ok held)": (0, b"dx: down S seconds, normally up\n", b""),
        "x-down: exit code": 0, "x-down: status": Decoded(18, False, 0, D),
        "x-down: svstat (ok held)": (0, b"xdown: down S seconds\n", b""),
        "after -k: exit code": 0, "after -k: status": Decoded(18, False, 0, U),
        "after -k: svstat": (0, b"xk: supervise not running\n", b""),
        "after -k: svok": 100,
        "after -k: svstat (ok held)": (0, b"xk: down S seconds, normally up, want up\n", b""),
    }, "C reference"
    assert got["py"] == got["c"]


# ---------------------------------------------------------------------------------------
# svstat: every state text of §5, from status files crafted by hand


def craft(root: Path, name: str, data: bytes | None, *, down: str | None = None) -> Path:
    sv = root / name
    (sv / "supervise").mkdir(parents=True)
    if data is not None:
        (sv / "supervise" / "status").write_bytes(data)
    if down == "file":
        (sv / "down").write_bytes(b"")
    elif down == "dangling":
        (sv / "down").symlink_to("nowhere")
    elif down == "loop":
        (sv / "down").symlink_to("down")
    return sv


def status_bytes(age: int, pid: int, paused: int, want: int, now: int) -> bytes:
    return (struct.pack(">QI", TAI_OFFSET + now - age, 123456500)
            + struct.pack("<IBB", pid, paused, want))


def expected_line(name: str, age: int, pid: int, paused: int, want: int,
                  normally_up: bool) -> bytes:
    """§5, written independently of both implementations."""
    text = f"up (pid {pid}) {age} seconds" if pid else f"down {age} seconds"
    if pid and not normally_up:
        text += ", normally down"
    if not pid and normally_up:
        text += ", normally up"
    if pid and paused:
        text += ", paused"
    if not pid and want == U:
        text += ", want up"
    if pid and want == D:
        text += ", want down"
    return f"{name}: {text}\n".encode()


def test_svstat_every_state(tmp_path: Path) -> None:
    """All combinations of pid / down file / paused / want, plus future labels (0 seconds),
    extra bytes, a dangling `down` symlink (absent), a `down` loop, a missing status, and
    supervise/ok missing; one svstat call for all, with our own readers on supervise/ok."""
    now = int(time.time())
    root = tmp_path
    specs: list[tuple[str, bytes]] = []   # (directory, expected line)
    i = 0
    for pid in (0, 99999):
        for down in (False, True):
            for paused in (0, 1, 7):
                for want in (U, D, 0, ord("x")):
                    age = 5 + i
                    name = f"s{i:02d}"
                    craft(root, name, status_bytes(age, pid, paused, want, now),
                          down="file" if down else None)
                    specs.append((name, expected_line(name, age, pid, paused, want, not down)))
                    i += 1
    craft(root, "future",
          struct.pack(">QI", TAI_OFFSET + now + 1000, 0) + struct.pack("<IBB", 7, 1, D),
          down="file")
    specs.append(("future", b"future: up (pid 7) 0 seconds, normally down, paused, want down\n"))
    craft(root, "extra", status_bytes(100, 0, 0, U, now) + b"garbage after 18 bytes")
    specs.append(("extra", b"extra: down 100 seconds, normally up, want up\n"))
    craft(root, "dangling", status_bytes(3, 42, 0, U, now), down="dangling")
    specs.append(("dangling", b"dangling: up (pid 42) 3 seconds\n"))
    craft(root, "loop", status_bytes(3, 42, 0, U, now), down="loop")
    specs.append(("loop", b"loop: unable to stat down: symbolic link loop\n"))
    craft(root, "nostatus", None)
    specs.append(("nostatus", b"nostatus: unable to open supervise/status: file does not exist\n"))
    (root / "nook" / "supervise").mkdir(parents=True)
    specs.append(("nook", b"nook: unable to open supervise/ok: file does not exist\n"))
    names = [n for n, _ in specs]
    fds = []
    for n in names:
        if n != "nook":
            os.mkfifo(root / n / "supervise" / "ok", 0o600)
            fds.append(os.open(root / n / "supervise" / "ok", os.O_RDONLY | os.O_NONBLOCK))
    try:
        out = {tree.name: tree.run("svstat", *names, cwd=root) for tree in TREES}
    finally:
        for fd in fds:
            os.close(fd)
    slack = int(time.time()) - now   # whole seconds that passed since crafting: usually 0
    c_lines = out["c"].stdout.splitlines(keepends=True)
    py_lines = out["py"].stdout.splitlines(keepends=True)
    assert (out["c"].returncode, out["c"].stderr) == (0, b"")
    assert (out["py"].returncode, out["py"].stderr) == (0, b"")
    assert len(c_lines) == len(py_lines) == len(specs)
    for (name, expect), c_line, py_line in zip(specs, c_lines, py_lines):
        assert normalize(c_line) == normalize(expect), f"C reference on {name}: {c_line!r}"
        assert normalize(py_line) == normalize(c_line), f"{name}: py {py_line!r} C {c_line!r}"
        e_s = seconds_of(expect)
        for tree, line in (("C reference", c_line), ("py", py_line)):
            got_s = seconds_of(line)
            assert len(got_s) == len(e_s) and all(
                e <= a <= e + slack if e else a == 0 for a, e in zip(got_s, e_s)), (
                f"{tree} on {name}: {line!r}, expected {expect!r} (+{slack} s)")
