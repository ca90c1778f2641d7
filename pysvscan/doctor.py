"""`pysvscan doctor`: the troubleshooting chain, one link at a time, each as ok or as
what is wrong and how to fix it.

The chain, as the seed material's troubleshooting walks it: the scan directory, svscan
running on it (and its systemd unit), then for each service: `run` usable, a supervise
running, the service's process alive and as wanted, not restarting in a loop, its
stdout wired to its logger, and supervise/ with sane permissions.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass

from . import procinfo, services, tai64
from .services import ServiceState

LOOP_EXITS = 3        # exits within supervise's last minute that make a restart loop
READY_GRACE = 30      # seconds a service may take to become ready before it is a fault


@dataclass(frozen=True)
class Check:
    """One link of the chain: ok True/False, or None when it cannot be checked."""

    ok: bool | None
    text: str
    fix: str = ""


def scandir_checks(scandir: str) -> list[Check]:
    count = sum(1 for n in services.service_names(scandir) if "/" not in n)
    checks = [Check(True, f"scan directory {scandir}: {count} services")]
    for entry in sorted(os.listdir(scandir)):
        path = os.path.join(scandir, entry)
        if not entry.startswith(".") and os.path.islink(path) and not os.path.exists(path):
            checks.append(Check(False, f"{path} -> {os.readlink(path)}: no such directory",
                                f"rm {path}, or restore its target"))
    return checks


def svscan_checks(scandir: str, svscan: procinfo.Svscan | None) -> list[Check]:
    under_systemd = os.path.isdir("/run/systemd/system")
    checks = []
    if svscan is None:
        fix = ("systemctl enable --now pysvscan" if under_systemd
               else f"start it: svscanboot {scandir} (or svscan {scandir})")
        checks.append(Check(False, f"no svscan is running on {scandir}", fix))
    else:
        kind = "pysvscan" if svscan.python else "daemontools"
        mode = {True: ", journal mode", False: "", None: ""}[svscan.journal]
        checks.append(Check(True, f"svscan running (pid {svscan.pid}, {kind}{mode})"))
    if under_systemd:
        unit = (procinfo.systemd_unit(svscan.pid) if svscan else None) or "pysvscan.service"
        checks.append(unit_check(unit))
    return checks


def unit_check(unit: str) -> Check:
    """The systemd unit's ActiveState and SubState, as systemctl reports them."""
    systemctl = shutil.which("systemctl", path="/usr/bin:/bin")
    if systemctl is None:
        return Check(None, f"systemd unit {unit}: systemctl not found")
    try:
        out = subprocess.run([systemctl, "show", "--property=ActiveState,SubState", unit],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return Check(None, f"systemd unit {unit}: {e}")
    props = dict(line.partition("=")[::2] for line in out.splitlines())
    state = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
    if props.get("ActiveState") == "active":
        return Check(True, f"systemd unit {unit}: {state}")
    return Check(False, f"systemd unit {unit}: {state}",
                 f"journalctl -u {unit} says why; systemctl restart {unit}")


def run_check(path: str) -> Check:
    """./run exists, is executable and is a script with a #! line (or a binary)."""
    run = os.path.join(path, "run")
    try:
        st = os.stat(run)
        with open(run, "rb") as f:
            head = f.read(256)
    except FileNotFoundError:
        return Check(False, f"{run} does not exist", f"write it, then chmod +x {run}")
    except OSError as e:
        return Check(False, f"unable to read {run}: {e.strerror}")
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        return Check(False, f"{run} is not executable", f"chmod +x {run}")
    if head.startswith(b"\x7fELF"):
        return Check(True, "run: an executable binary")
    if not head.startswith(b"#!"):
        return Check(False, f"{run} has no #! line: exec fails with 'exec format error'",
                     "make its first line #!/bin/sh (or the interpreter it needs)")
    interpreter = head[2:].split(b"\n")[0].split()
    program = os.fsdecode(interpreter[0]) if interpreter else ""
    if not program or not os.access(program, os.X_OK):
        return Check(False, f"run: its interpreter {program or '(none)'} is not an "
                     "executable file", f"fix the #! line of {run}")
    return Check(True, f"run: executable, #!{program}")


def supervise_check(s: ServiceState, svscan: procinfo.Svscan | None) -> Check:
    if s.supervised:
        return Check(True, "supervise running")
    if s.state == "unknown":
        return Check(False, f"unable to tell whether supervise runs: {s.error}",
                     "run pysvscan doctor as root")
    why = "start svscan first (see above)" if svscan is None else (
        "svscan starts one within 5 seconds; if none comes, svscan's messages say why "
        "(journalctl -u pysvscan, or the readproctitle line of svscanboot)")
    return Check(False, "no supervise running", why)


def process_check(s: ServiceState) -> Check:
    where = s.dir
    if s.error is not None:
        return Check(None, f"process: {s.error}")
    if s.paused:
        return Check(False, f"paused (pid {s.pid}) by svc -p", f"svc -c {where}")
    if s.pid and s.want == "down":
        return Check(False, f"still up (pid {s.pid}) though wanted down",
                     f"it ignores SIGTERM: svc -k {where}")
    if s.pid:
        if s.ready is False:
            ready = Check(s.seconds is not None and s.seconds < READY_GRACE,
                          f"up (pid {s.pid}) {services.duration(s.seconds)}, not ready",
                          "it has not said READY=1; its log says why")
            return ready if not ready.ok else Check(None, ready.text + " yet")
        return Check(True, f"up (pid {s.pid}) {services.duration(s.seconds)}")
    if s.want == "up":
        last = f": last exit {exit_text(s)}" if s.last_exit else ""
        return Check(False, f"down, wanted up{last}",
                     f"run it by hand to see why: cd {os.path.realpath(where)} && ./run")
    return Check(True, f"down, as wanted (svc -u {where} starts it)")


def exit_text(s: ServiceState) -> str:
    if s.last_exit is None:
        return "none"
    ago = s.last_exit.seconds_ago(tai64.now()[0])
    return f"'{s.last_exit.text()}' {services.duration(ago)} ago"


def loop_check(s: ServiceState) -> Check:
    if s.recent_exits >= LOOP_EXITS:
        return Check(False, f"restarting in a loop: {s.recent_exits} exits in the last "
                     f"minute, the last {exit_text(s)}",
                     f"pysvscan logs {s.name} shows why; cd {os.path.realpath(s.dir)} "
                     "&& ./run reproduces it")
    return Check(True, f"no restart loop ({s.recent_exits} exits in the last minute, "
                 f"{s.restarts} restarts)")


def pipe_check(main: ServiceState, log: ServiceState) -> Check:
    """The service's stdout is the pipe its logger reads (svscan made it)."""
    if not main.pid or not log.pid:
        return Check(None, f"log pipe: not checked while {main.name} or its log is down")
    out = procinfo.fd_target(main.pid, 1)
    into = procinfo.fd_target(log.pid, 0)
    if out is None or into is None:
        return Check(None, "log pipe: cannot see the processes' descriptors (not root?)")
    if out == into and out.startswith("pipe:"):
        return Check(True, f"log pipe: stdout goes to {log.name} ({out})")
    return Check(False, f"log pipe: {main.name}'s stdout is {out}, {log.name} reads {into}",
                 "svscan joins the two when it starts them: were they started by hand? "
                 f"svc -dx {main.dir} {log.dir} and let svscan start them again")


def permission_check(s: ServiceState) -> Check:
    sup = os.path.join(s.dir, "supervise")
    try:
        st = os.stat(sup)
    except FileNotFoundError:
        return Check(None, "supervise/ not created yet")
    except OSError as e:
        return Check(False, f"unable to stat {sup}: {e.strerror}")
    if not stat.S_ISDIR(st.st_mode):
        return Check(False, f"{sup} is not a directory", f"rm {sup}; supervise makes it")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        return Check(False, f"{sup} is writable by others (mode {mode:04o}): anyone can "
                     "control the service", f"chmod 700 {sup}")
    for fifo_name in ("control", "ok"):
        try:
            if not stat.S_ISFIFO(os.stat(os.path.join(sup, fifo_name)).st_mode):
                return Check(False, f"{sup}/{fifo_name} is not a FIFO",
                             f"svc -dx {s.dir}, rm {sup}/{fifo_name}; supervise remakes it")
        except FileNotFoundError:
            pass
        except OSError as e:
            return Check(False, f"unable to stat {sup}/{fifo_name}: {e.strerror}")
    if s.state == "unknown":
        return Check(False, f"supervise/: {s.error}",
                     f"run as root, or check the owner and mode of {sup}")
    return Check(True, f"supervise/ mode {mode:04o}, owner uid {st.st_uid}")


def service_checks(s: ServiceState, svscan: procinfo.Svscan | None,
                   log: ServiceState | None) -> list[Check]:
    checks = [run_check(s.dir), supervise_check(s, svscan)]
    if s.supervised:
        checks += [process_check(s), loop_check(s)]
    if log is not None:
        checks.append(pipe_check(s, log))
    checks.append(permission_check(s))
    return checks


def diagnose(scandir: str, names: list[str]) -> list[tuple[str, list[Check]]]:
    """Sections in order: the scan directory and svscan, then each service."""
    states, svscan = services.read_all(scandir, names)
    by_name = {s.name: s for s in states}
    sections = [("", scandir_checks(scandir) + svscan_checks(scandir, svscan))]
    for s in states:
        sections.append((s.name, service_checks(s, svscan, by_name.get(f"{s.name}/log"))))
    return sections
