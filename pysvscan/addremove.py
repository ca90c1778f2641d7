"""`pysvscan add` and `pysvscan remove`: the safe ways in and out of the scan directory.

In: the service directory is written in full outside the scan directory (in SVDIR,
/etc/sv by default), appears there by one rename, and is then linked into
the scan directory by another, so svscan never sees a half-written service; svscan is
then told to rescan. Out: the order daemontools' documentation prescribes, so that
svscan cannot restart what is being stopped: unlink, `svc -dx` the service, wait for
its supervise to exit, the same for its log, and only then delete.
"""

from __future__ import annotations

import errno
import os
import pwd
import shlex
import shutil
import signal
import sys
from typing import Callable

from . import fifo, procinfo, services, watch

# Where our programs may be named without a path: the PATH every run script sees.
SYSTEM_BINDIRS = ("/usr/bin", "/bin", "/usr/local/bin")


class Refused(services.UserError):
    """What `add` or `remove` will not do, or could not do: one line for the user."""


def check_new_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or any(c in name for c in "\0\n"):
        raise Refused(f"bad service name {name!r}: it must not be empty, contain '/' or "
                      "start with '.'")


def parse_env(pairs: tuple[str, ...]) -> list[tuple[str, str]]:
    """K=V options as envdir files: K a file name without '=', V one line."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or "/" in key or key.startswith(".") or "\0" in key:
            raise Refused(f"bad --env {pair!r}: give NAME=VALUE, NAME a plain file name")
        if "\n" in value or "\0" in value:
            raise Refused(f"bad --env {pair!r}: envdir reads one line, so no newline")
        if any(key == k for k, _ in out):
            raise Refused(f"--env {key} given twice")
        out.append((key, value))
    return out


def tool(name: str) -> str:
    """How a run script names one of our programs: by name when it is installed where
    every PATH looks, otherwise by the full path of this installation's copy (a venv)."""
    bindir = os.path.dirname(sys.executable)
    if bindir in SYSTEM_BINDIRS or not os.access(os.path.join(bindir, name), os.X_OK):
        return name
    return os.path.join(bindir, name)


def run_script(name: str, command: list[str], user: str | None, env: bool,
               logged: bool) -> str:
    """./run: stderr joins stdout when a logger reads it, then one exec chain."""
    chain = []
    if env:
        chain += [tool("envdir"), "./env"]
    if user:
        chain += [tool("setuidgid"), user]
    lines = ["#!/bin/sh", f"# {name}: written by pysvscan add"]
    if logged:
        lines.append("exec 2>&1")
    lines.append("exec " + shlex.join(chain + command))
    return "\n".join(lines) + "\n"


def log_script(kind: str) -> str:
    """log/run: stamped lines rotated in ./main, or the journal (which stamps them)."""
    actions = "t ./main" if kind == "dir" else "J"
    return f"#!/bin/sh\nexec {shlex.quote(tool('multilog'))} {actions}\n"


def write_file(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)  # whatever the umask


def add_service(name: str, command: list[str], *, svdir: str, scandir: str,
                user: str | None, env: list[tuple[str, str]], log: str, down: bool,
                say: Callable[[str], None]) -> None:
    """Write SVDIR/NAME, link it into the scan directory, poke svscan; `say` is told
    each step. Nothing is left behind when a step fails."""
    check_new_name(name)
    if not command:
        raise Refused("no command: give it after --, e.g. pysvscan add web -- httpd -f")
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise Refused(f"no such user {user!r}") from None
    if not os.path.isdir(scandir):
        raise Refused(f"no scan directory {scandir}")
    svdir = os.path.abspath(svdir)
    if os.path.realpath(svdir) == os.path.realpath(scandir):
        raise Refused("the service directory must be outside the scan directory "
                      "(give --svdir)")
    target = os.path.join(svdir, name)
    link = os.path.join(scandir, name)
    for path in (link, target):
        if os.path.lexists(path):
            raise Refused(f"{path} already exists")
    try:
        os.makedirs(svdir, exist_ok=True)
    except OSError as e:
        raise Refused(f"unable to create {svdir}: {e.strerror}") from None

    staging = os.path.join(svdir, f".{name}.pysvscan-{os.getpid()}")
    logged = log != "none"
    files = ["run"]
    try:
        os.mkdir(staging, 0o755)
        write_file(os.path.join(staging, "run"),
                   run_script(name, command, user, bool(env), logged), 0o755)
        if env:
            os.mkdir(os.path.join(staging, "env"), 0o700)  # values may be secrets
            for key, value in env:
                write_file(os.path.join(staging, "env", key), value + "\n", 0o600)
                files.append(f"env/{key}")
        if down:
            write_file(os.path.join(staging, "down"), "", 0o644)
            files.append("down")
        if logged:
            os.mkdir(os.path.join(staging, "log"), 0o755)
            write_file(os.path.join(staging, "log", "run"), log_script(log), 0o755)
            files.append("log/run")
        os.rename(staging, target)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise Refused(f"unable to write {target}: {e.strerror}") from None
    for f in files:
        say(f"created {os.path.join(target, f)}")

    temp_link = os.path.join(scandir, f".{name}.pysvscan-{os.getpid()}")
    try:
        os.symlink(target, temp_link)
        if os.path.lexists(link):  # appeared meanwhile: rename would replace it
            raise FileExistsError(errno.EEXIST, "file exists")
        os.rename(temp_link, link)
    except OSError as e:
        if os.path.islink(temp_link):
            os.unlink(temp_link)
        shutil.rmtree(target, ignore_errors=True)
        raise Refused(f"unable to link {link}: {e.strerror}; nothing was added") from None
    say(f"linked {link} -> {target}")
    say(poke(scandir, name))


def poke(scandir: str, name: str) -> str:
    """Make svscan rescan now, if it is pysvscan's; say what will happen."""
    svscan = procinfo.find_svscan(scandir)
    if svscan is None:
        return (f"no svscan is running on {scandir}: {name} starts when one does "
                "(systemctl start pysvscan)")
    if not svscan.python:  # daemontools' svscan dies of SIGALRM
        return f"svscan (pid {svscan.pid}) starts {name} at its next scan, within 5 seconds"
    if not svscan.rescans_on_alarm():
        return f"svscan (pid {svscan.pid}) is starting: it starts {name} at its first scan"
    try:
        os.kill(svscan.pid, signal.SIGALRM)
    except OSError as e:
        return (f"unable to signal svscan (pid {svscan.pid}): {e.strerror}; {name} starts "
                "at its next scan, within 5 seconds")
    return f"svscan (pid {svscan.pid}) rescans now: {name} starts at once"


# -- remove ----------------------------------------------------------------------------

def supervise_pids(service_dir: str) -> list[int]:
    """The supervise processes running for `service_dir` (supervise chdirs into it)."""
    real = os.path.realpath(service_dir)
    found = []
    for entry in os.listdir("/proc"):
        if (entry.isdigit() and procinfo.comm(int(entry)) == "supervise"
                and procinfo.link(f"/proc/{entry}/cwd") == real):
            found.append(int(entry))
    return found


def supervise_running(service_dir: str) -> bool:
    """svok's test: someone holds supervise/ok open for reading."""
    return fifo.has_reader(os.path.join(service_dir, "supervise", "ok"))


KILL_GRACE = 5.0  # after `svc -k`, what a supervise gets to exit


def stop(service_dir: str, label: str, timeout: float) -> str:
    """`svc -dx`, then wait until its supervise has exited (its pidfd, or a change in
    supervise/ when the process cannot be found); `svc -k` after `timeout`."""
    control = os.path.join(service_dir, "supervise", "control")
    try:
        fd = fifo.open_writer(control)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return f"{label}: no supervise running"
        raise Refused(f"unable to control {label}: {e.strerror}") from None
    try:
        fifo.write_commands(fd, b"dx")
    except OSError as e:
        raise Refused(f"unable to control {label}: {e.strerror}") from None
    finally:
        os.close(fd)
    pids = supervise_pids(service_dir)

    def exited(watcher: watch.Watcher) -> bool:
        watch.watch_service(watcher, service_dir)
        for pid in pids:
            watcher.add_pid(pid)
        if pids:
            return not any(procinfo.alive(pid) for pid in pids)
        return not supervise_running(service_dir)

    if watch.wait_for(exited, timeout):
        return f"{label}: stopped, supervise exited"
    fifo.send_quietly(control, b"k")  # as svscan's shutdown: SIGTERM ignored, SIGKILL
    if watch.wait_for(exited, KILL_GRACE):
        return f"{label}: killed after {timeout:g} s (svc -k), supervise exited"
    top = service_dir[:-len("/log")] if label.endswith("/log") else service_dir
    raise Refused(f"{label}: supervise still running after svc -dx and svc -k; the "
                  f"service is out of the scan directory, not deleted: once it has "
                  f"exited, svc -dx {top}/log if it has one, and rm -r {top}")


def remove_service(name: str, *, scandir: str, keep: bool, timeout: float,
                   say: Callable[[str], None]) -> None:
    """Out of the scan directory first, so that svscan cannot start a new supervise
    for it; then the service, then its logger (which thus gets all the service's
    last lines); the directory goes last, once nothing runs in it."""
    services.check_name(name)
    if "/" in name:
        raise Refused(f"{name}: remove the service it belongs to")
    target = take_out(scandir, name, say)
    say(stop(target, name, timeout))
    if os.path.isdir(os.path.join(target, "log")):
        say(stop(os.path.join(target, "log"), f"{name}/log", timeout))
    if keep:
        say(f"kept {target}")
        return
    if os.path.realpath(target) in ("/", os.path.realpath(scandir)):
        raise Refused(f"not deleting {target}")
    try:
        shutil.rmtree(target)
    except OSError as e:
        raise Refused(f"unable to delete {target}: {e.strerror}") from None
    say(f"deleted {target}")


def take_out(scandir: str, name: str, say: Callable[[str], None]) -> str:
    """Make svscan stop seeing service `name`; the directory it lives in now."""
    link = os.path.join(scandir, name)
    if os.path.islink(link):
        target = os.path.realpath(link)
        if not os.path.isdir(target):
            raise Refused(f"{link} points to {target}, which is not a directory")
        try:
            os.unlink(link)
        except OSError as e:
            raise Refused(f"unable to unlink {link}: {e.strerror}") from None
        say(f"unlinked {link} (-> {target})")
    elif os.path.isdir(link):  # a directory in the scan directory: hide it from svscan
        target = os.path.join(scandir, f".{name}")
        if os.path.lexists(target):
            raise Refused(f"{target} already exists: it is where {link} would go")
        try:
            os.rename(link, target)
        except OSError as e:
            raise Refused(f"unable to move {link} to {target}: {e.strerror}") from None
        say(f"moved {link} to {target} (svscan ignores it)")
    else:
        raise Refused(f"no service {name!r} in {scandir}")
    return target
