"""Interoperability: the C svc/svok/svstat driving pysvscan's supervise, and pysvscan's
svc/svok/svstat driving the C supervise (architecture.md decision 1: supervise/ is the
contract). Every answer must equal what the C tools give against the C supervise, which
runs alongside as the baseline lane; pids and seconds are masked.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from conftest import (C, PY, alive, client, decode_status, make_service, normalize,
                      outcome,
                      require_c_reference, seconds_of, start_supervise, status_pid,
                      status_version, stopped_state, supervise_once, supervise_ready,
                      wait_status, wait_until)

U, D = ord("u"), ord("d")
SLEEP_RUN = "#!/bin/sh\nexec sleep 1000\n"
START_PAUSE = 1.2

# (lane, tools tree, supervise tree); the first lane is the baseline
LANES = (("C svc/svstat/svok -> C supervise", C, C),
         ("C svc/svstat/svok -> py supervise", C, PY),
         ("py svc/svstat/svok -> C supervise", PY, C))


@pytest.fixture(autouse=True)
def _need_c() -> None:
    require_c_reference()




# (label, svc args, expected (running, paused, want), single status rewrite,
#  new service pid expected, supervise still running afterwards, expected svstat line)
STEPS = [
    ("-p", ["-p"], (True, 1, U), True, False, True, b"sv: up (pid P) S seconds, paused\n"),
    ("-c", ["-c"], (True, 0, U), True, False, True, b"sv: up (pid P) S seconds\n"),
    ("-t", ["-t"], (True, 0, U), False, True, True, b"sv: up (pid P) S seconds\n"),
    ("-d", ["-d"], (False, 0, D), False, False, True, b"sv: down S seconds, normally up\n"),
    ("-u", ["-u"], (True, 0, U), False, True, True, b"sv: up (pid P) S seconds\n"),
    ("-o", ["-o"], (True, 0, 0), True, False, True, b"sv: up (pid P) S seconds\n"),
    ("-a", ["-a"], (False, 0, 0), False, False, True, b"sv: down S seconds, normally up\n"),
    ("-o again", ["-o"], (True, 0, 0), False, True, True, b"sv: up (pid P) S seconds\n"),
    ("-x", ["-x"], (True, 0, 0), True, False, True, b"sv: up (pid P) S seconds\n"),
    ("-k", ["-k"], (False, 0, 0), False, False, False, b"sv: supervise not running\n"),
]


def test_clients_drive_the_other_supervise(tmp_path: Path, procs) -> None:
    """svc -p -c -t -d -u -o -a -o -x -k through each lane; svstat, svok, the status bytes
    and the service's stopped state after each step equal the all-C baseline."""
    lanes = {}
    for i, (label, tools, sup_tree) in enumerate(LANES):
        sv = make_service(tmp_path / f"lane{i}", "sv", SLEEP_RUN)
        lanes[label] = (tools, sv, start_supervise(procs, sup_tree, sv))
    for label, (tools, sv, sup) in lanes.items():
        wait_until(lambda: supervise_ready(sv) and status_pid(sv), message=f"{label}: up")
    time.sleep(START_PAUSE)
    transcripts: dict[str, list[str]] = {label: [] for label in lanes}
    seconds: dict[str, list[list[int]]] = {label: [] for label in lanes}

    def record(step: str, results: dict, expect_line: bytes, supervise_running: bool) -> None:
        for label, (tools, sv, sup) in lanes.items():
            st = client(tools, "svstat", sv)
            ok = client(tools, "svok", sv)
            pid = status_pid(sv)
            status = decode_status(sv)
            stopped = stopped_state(pid, bool(status and status.paused == 1)) if pid else "-"
            transcripts[label].append(
                f"{step}: svc={outcome(results[label]) if label in results else '-'} "
                f"svstat={outcome(st)} svok={outcome(ok)} status={status} "
                f"stopped={stopped} supervise running={sup.poll() is None}")
            seconds[label].append(seconds_of(st.stdout))
            assert normalize(st.stdout) == expect_line, f"{label} after {step}: {st.stdout!r}"

    record("start", {}, b"sv: up (pid P) S seconds\n", True)
    for step, args, (running, paused, want), rewrite, new_pid, still, expect in STEPS:
        before = {label: (status_version(sv), status_pid(sv))
                  for label, (_, sv, _) in lanes.items()}
        results = {label: client(tools, "svc", sv, *args)
                   for label, (tools, sv, _) in lanes.items()}
        for label, (tools, sv, sup) in lanes.items():
            if new_pid:
                wait_until(lambda: status_pid(sv) not in (0, before[label][1]),
                           message=f"{label}: a new service pid after {step}")
            wait_status(sv, running=running, paused=paused, want=want,
                        after=before[label][0] if rewrite else None, label=f"{label} {step}")
            if new_pid:
                assert status_pid(sv) not in (0, before[label][1]), f"{label}: {step}: no new pid"
                assert not alive(before[label][1]), f"{label}: old service survived {step}"
            if not still:
                assert sup.wait(timeout=10) == 0, f"{label}: supervise exit code after {step}"
        if new_pid:
            time.sleep(START_PAUSE)
        record(step, results, expect, still)
    baseline = LANES[0][0]
    for label in lanes:
        assert transcripts[label] == transcripts[baseline], f"{label} differs from {baseline}"
        for i, (a, b) in enumerate(zip(seconds[label], seconds[baseline])):
            assert len(a) == len(b) and all(abs(x - y) <= 1 for x, y in zip(a, b)), (
                f"{label} step {i}: seconds {a} vs baseline {b}")


def test_locks_exclude_each_other(tmp_path: Path, procs) -> None:
    """flock compatibility: a C supervise cannot take a directory our supervise holds and
    vice versa; the running service is untouched; the same message and 111 as C on C."""
    lanes = {}
    for holder in (C, PY):
        sv = make_service(tmp_path / holder.name, "sv", SLEEP_RUN)
        lanes[holder.name] = (sv, start_supervise(procs, holder, sv))
    for name, (sv, _) in lanes.items():
        wait_until(lambda: supervise_ready(sv) and status_pid(sv), message=f"{name}: up")
    expected = (111, b"",
                b"supervise: fatal: unable to acquire sv/supervise/lock: temporary failure\n")
    for holder, intruder in (("c", C), ("py", C), ("c", PY), ("py", PY)):
        sv, sup = lanes[holder]
        pid = status_pid(sv)
        got = supervise_once(procs, [intruder.bin("supervise"), "sv"], sv.parent)
        assert got == expected, f"{intruder.name} supervise on {holder}'s directory"
        assert status_pid(sv) == pid and alive(pid) and sup.poll() is None


def test_one_call_for_both_supervisors(tmp_path: Path, procs) -> None:
    """One svc call and one svstat call naming a C-supervised and a py-supervised directory
    (plus a missing one): each tree's tools give identical answers."""
    root = tmp_path
    svs = {}
    for tree in (C, PY):
        svs[tree.name] = make_service(root, f"by-{tree.name}", SLEEP_RUN)
        start_supervise(procs, tree, svs[tree.name])
    for sv in svs.values():
        wait_until(lambda: supervise_ready(sv) and status_pid(sv), message=f"{sv.name}: up")
    time.sleep(START_PAUSE)
    names = ["by-c", "by-py", "nosuch"]
    got = {}
    for step, args, paused in (("pause", ["-p"], 1), ("continue", ["-c"], 0)):
        for tools in (C, PY):
            before = {n: status_version(sv) for n, sv in svs.items()}
            cp = tools.run("svc", *args, *names, cwd=root)
            for n, sv in svs.items():
                wait_status(sv, running=True, paused=paused, want=U, after=before[n],
                            label=f"{tools.name} svc {args} on {n}")
                stopped = stopped_state(status_pid(sv), bool(paused))
                assert stopped == bool(paused), (tools.name, n, step)
            st = tools.run("svstat", *names, cwd=root)
            got[(step, tools.name)] = (outcome(cp), outcome(st))
            # undo the pause for the other tree's turn
            if paused:
                for n, sv in svs.items():
                    before_c = status_version(sv)
                    C.run("svc", "-c", sv.name, cwd=root)
                    wait_status(sv, running=True, paused=0, want=U, after=before_c, label=n)
    for step, paused_text in (("pause", b", paused"), ("continue", b"")):
        assert got[(step, "c")] == (
            (0, b"", b"svc: warning: unable to chdir to nosuch: file does not exist\n"),
            (0, b"by-c: up (pid P) S seconds" + paused_text + b"\n"
                b"by-py: up (pid P) S seconds" + paused_text + b"\n"
                b"nosuch: unable to chdir: file does not exist\n", b"")), f"C tools, {step}"
        assert got[(step, "py")] == got[(step, "c")], step


def test_supervise_killed_leaves_service_for_either_svstat(tmp_path: Path, procs) -> None:
    """After TERM kills either supervise, both trees' svstat/svok/svc report the same."""
    svs = {}
    for tree in (C, PY):
        sv = make_service(tmp_path / tree.name, "sv", SLEEP_RUN)
        svs[tree.name] = (sv, start_supervise(procs, tree, sv))
    for name, (sv, sup) in svs.items():
        wait_until(lambda: supervise_ready(sv) and status_pid(sv), message=f"{name}: up")
    for name, (sv, sup) in svs.items():
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=10) == -signal.SIGTERM
        assert alive(status_pid(sv)), f"{name} supervise: service died with it"
    answers = {}
    for sup_name, (sv, _) in svs.items():
        for tools in (C, PY):
            answers[(sup_name, tools.name)] = (
                outcome(client(tools, "svstat", sv)), outcome(client(tools, "svok", sv)),
                outcome(client(tools, "svc", sv, "-u")))
    expected = ((0, b"sv: supervise not running\n", b""), (100, b"", b""),
                (0, b"", b"svc: warning: unable to control sv: supervise not running\n"))
    assert answers[("c", "c")] == expected, "C reference"
    for key, value in answers.items():
        assert value == expected, key
