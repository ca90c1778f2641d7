"""`pysvscan doctor`: each link of the troubleshooting chain, healthy and broken, with
real svscan and supervise processes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from conftest import PY, Processes, make_service, status_pid, supervise_ready, wait_until
from pysvscan.procinfo import unit_of_cgroup
from test_cli import SVSCAN_PATH, pysvscan, start_svscan

LOGGER = f"#!/bin/sh\nexec {PY.bin('multilog')} t ./main\n"


def sections(text: str) -> dict[str, list[tuple[str, str, str]]]:
    """Checks by section ('' for svscan's): (mark, text, fix)."""
    out: dict[str, list[tuple[str, str, str]]] = {"": []}
    current = ""
    for line in text.splitlines():
        if not line.startswith(" "):
            current = line
            out[current] = []
        elif line.startswith("        fix: "):
            mark, what, _ = out[current][-1]
            out[current][-1] = (mark, what, line[len("        fix: "):])
        else:
            m = re.fullmatch(r"  (ok|FAIL|--)\s+(.*)", line)
            assert m, line
            out[current].append((m.group(1), m.group(2), ""))
    return out


def marks(checks: list[tuple[str, str, str]]) -> list[str]:
    return [mark for mark, _, _ in checks]


def find(checks: list[tuple[str, str, str]], start: str) -> tuple[str, str, str]:
    found = [c for c in checks if c[1].startswith(start)]
    assert found, (start, checks)
    return found[0]


def test_doctor_on_a_healthy_tree(tmp_path: Path, procs: Processes) -> None:
    scandir = tmp_path / "service"
    web = make_service(scandir, "web", "#!/bin/sh\nexec 2>&1\necho hi\nexec sleep 1000\n",
                       log=LOGGER)
    make_service(scandir, "idle", "#!/bin/sh\nexec sleep 1000\n", down=True)
    svscan = start_svscan(procs, scandir)
    wait_until(lambda: status_pid(web) and status_pid(web / "log")
               and supervise_ready(scandir / "idle"))
    r = pysvscan("doctor", "--scandir", scandir)
    assert r.returncode == 0, r.stdout
    got = sections(r.stdout)
    assert list(got) == ["", "idle", "web", "web/log"]
    assert got[""] == [("ok", f"scan directory {scandir}: 2 services", ""),
                       ("ok", f"svscan running (pid {svscan.pid}, pysvscan)", "")]
    assert marks(got["web"]) == ["ok"] * 6
    pipe = find(got["web"], "log pipe:")[1]
    assert re.fullmatch(r"log pipe: stdout goes to web/log \(pipe:\[\d+\]\)", pipe)
    assert find(got["web"], "up (pid ")[1].startswith(f"up (pid {status_pid(web)}) ")
    assert find(got["idle"], "down, as wanted")[0] == "ok"

    r = pysvscan("doctor", "web/log", "--scandir", scandir)
    assert r.returncode == 0 and list(sections(r.stdout)) == ["", "web/log"]
    r = pysvscan("doctor", "nope", "--scandir", scandir)
    assert r.returncode == 1 and r.stderr == f"Error: no service 'nope' in {scandir}\n"


def test_doctor_finds_what_is_broken(tmp_path: Path, procs: Processes) -> None:
    scandir = tmp_path / "service"
    crash = make_service(scandir, "crash", "#!/bin/sh\necho no config >&2\nexit 1\n")
    noexec = make_service(scandir, "noexec", "#!/bin/sh\nexec sleep 1000\n")
    noexec.joinpath("run").chmod(0o644)
    make_service(scandir, "nobang", "exec sleep 1000\n")
    make_service(scandir, "badinterp", "#!/no/such/sh\nexec sleep 1000\n")
    (scandir / "gone").symlink_to(tmp_path / "nowhere")

    r = pysvscan("doctor", "--scandir", scandir)  # no svscan yet
    assert r.returncode == 1
    got = sections(r.stdout)
    assert got[""][1:] == [
        ("FAIL", f"{scandir}/gone -> {tmp_path}/nowhere: no such directory",
         f"rm {scandir}/gone, or restore its target"),
        ("FAIL", f"no svscan is running on {scandir}",
         f"start it: svscanboot {scandir} (or svscan {scandir})")]
    assert find(got["crash"], "no supervise running") == (
        "FAIL", "no supervise running", "start svscan first (see above)")

    start_svscan(procs, scandir)

    def history_exits() -> int:
        try:
            text = (crash / "supervise" / "history").read_text()
        except FileNotFoundError:
            return 0
        return len(dict(line.split("=", 1) for line in text.splitlines())
                   ["recent_exits"].split())
    wait_until(lambda: history_exits() >= 3, timeout=15, message="three exits")
    r = pysvscan("doctor", "--scandir", scandir)
    assert r.returncode == 1
    got = sections(r.stdout)
    loop = find(got["crash"], "restarting in a loop")
    assert loop[0] == "FAIL" and re.search(r": \d+ exits in the last minute, the last "
                                           r"'exit 1' \d+s ago$", loop[1])
    assert loop[2] == (f"pysvscan logs crash shows why; cd {crash} && ./run reproduces it")
    assert find(got["noexec"], f"{noexec}/run is not executable") == (
        "FAIL", f"{noexec}/run is not executable", f"chmod +x {noexec}/run")
    assert find(got["nobang"], f"{scandir}/nobang/run has no #! line")[0] == "FAIL"
    assert find(got["badinterp"], "run: its interpreter /no/such/sh")[0] == "FAIL"
    down = find(got["noexec"], "down, wanted up")
    assert down[0] == "FAIL" and down[2] == f"run it by hand to see why: cd {noexec} && ./run"

    (crash / "supervise").chmod(0o777)
    r = pysvscan("doctor", "crash", "--scandir", scandir)
    assert find(sections(r.stdout)["crash"], f"{crash}/supervise is writable by others") == (
        "FAIL", f"{crash}/supervise is writable by others (mode 0777): anyone can control "
        "the service", f"chmod 700 {crash}/supervise")


def test_doctor_sees_a_log_pipe_that_is_not_wired(tmp_path: Path, procs: Processes) -> None:
    """supervise started by hand for both: the service's stdout is not its logger's pipe."""
    web = make_service(tmp_path, "web", "#!/bin/sh\nexec sleep 1000\n", log=LOGGER)
    procs.start([PY.bin("supervise"), str(web)], stdout=subprocess.DEVNULL,
                env={"PATH": SVSCAN_PATH})
    procs.start([PY.bin("supervise"), str(web / "log")], stdin=subprocess.PIPE,
                env={"PATH": SVSCAN_PATH})
    wait_until(lambda: status_pid(web) and status_pid(web / "log"))
    r = pysvscan("doctor", "web", "--scandir", tmp_path)
    assert r.returncode == 1
    mark, text, fix = find(sections(r.stdout)["web"], "log pipe:")
    assert mark == "FAIL"
    assert re.fullmatch(r"log pipe: web's stdout is /dev/null, web/log reads pipe:\[\d+\]",
                        text)
    assert fix.startswith("svscan joins the two when it starts them")
    assert os.path.isdir(web / "supervise")


def test_the_unit_svscan_runs_in_is_read_from_its_cgroup() -> None:
    assert unit_of_cgroup("0::/system.slice/pysvscan.service\n") == "pysvscan.service"
    assert unit_of_cgroup("12:pids:/x\n1:name=systemd:/system.slice/web.service\n"
                          "0::/\n") == "web.service"
    assert unit_of_cgroup("0::/user.slice/user-0.slice/session-3.scope\n") == "session-3.scope"
    assert unit_of_cgroup("0::/\n") is None and unit_of_cgroup("") is None
