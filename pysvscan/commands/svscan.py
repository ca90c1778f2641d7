"""svscan [DIR]: one supervise per service directory, one per log/, joined by a pipe.

daemontools.md §6, with the departures of architecture.md §2.5: children are reaped at
once, SIGALRM and SIGHUP rescan at once, SIGTERM stops every service in order (services
first, then their loggers drain to end of input) and exits 0, and there is no limit of
1000 services. Each supervise is forked without exec and runs the same code as the
standalone program, sharing svscan's memory copy-on-write.
"""

from __future__ import annotations

import errno
import gc
import os
import resource
import select
import signal
import time
from dataclasses import dataclass
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv, fifo, proctitle
from . import supervise

PROG = "svscan"
SCAN_INTERVAL = 5.0
STOP_BUDGET = 10.0      # per-service budget before `svc -k` at shutdown
LOG_DRAIN_BUDGET = 5.0  # loggers get this long to reach end of input
KILL_GRACE = 5.0        # after `k`, a supervise that still lingers is SIGKILLed
_CAUGHT = (signal.SIGCHLD, signal.SIGALRM, signal.SIGHUP, signal.SIGTERM)


@dataclass
class Service:
    """One service directory, known by (device, inode); `name` is its latest name."""

    name: str
    has_log: bool
    pipe: tuple[int, int] | None = None
    pid: int = 0
    log_pid: int = 0
    active: bool = True


class Scanner:
    def __init__(self, inherited: frozenset[int], nofile_soft: int) -> None:
        self.services: dict[tuple[int, int], Service] = {}
        self.inherited = inherited
        self.nofile_soft = nofile_soft
        self.stopping = False
        self.frozen = False

    # -- starting supervise ------------------------------------------------------

    def fork_supervise(self, label: str, arg: str, chdir_to: str | None,
                       stdin: int | None, stdout: int | None) -> int:
        """Fork a child that runs supervise ARG in-process; 0 if the fork failed."""
        if not self.frozen:  # once per scan that forks: children never touch these objects
            gc.collect()
            gc.freeze()
            self.frozen = True
        try:
            pid = os.fork()
        except OSError as e:
            errors.warn(PROG, f"unable to fork for {label}: ", e)
            return 0
        if pid:
            return pid
        code = errors.EXIT_TEMPORARY
        try:
            code = self.become_supervise(label, arg, chdir_to, stdin, stdout)
        except BaseException as e:  # never fall back into svscan's loop
            detail = errors.errtext(e) if isinstance(e, OSError) else repr(e)
            errors.warn(PROG, f"unable to start supervise {label}: {detail}")
        finally:
            os._exit(code)

    def become_supervise(self, label: str, arg: str, chdir_to: str | None,
                         stdin: int | None, stdout: int | None) -> int:
        """In the child: what exec would have given a fresh supervise, then its main."""
        for sig in _CAUGHT:
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        try:
            if stdin is not None:
                os.dup2(stdin, 0)
            if stdout is not None:
                os.dup2(stdout, 1)
            execenv.close_fds_from(3, self.inherited)
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (self.nofile_soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        except OSError as e:
            errors.warn(PROG, f"unable to set up descriptors for {label}: ", e)
            return errors.EXIT_TEMPORARY
        if chdir_to is not None:
            try:
                os.chdir(chdir_to)
            except OSError as e:
                errors.warn(PROG, f"unable to switch to {chdir_to}: ", e)
                return errors.EXIT_TEMPORARY
        proctitle.set_title(["supervise", arg])
        return supervise.main(["supervise", arg])

    def start(self, sv: Service) -> None:
        if not sv.pid:
            out = sv.pipe[1] if sv.pipe else None
            sv.pid = self.fork_supervise(sv.name, sv.name, None, None, out)
        if sv.has_log and sv.pipe and not sv.log_pid:
            sv.log_pid = self.fork_supervise(f"{sv.name}/log", "log", sv.name, sv.pipe[0], None)

    # -- scanning ----------------------------------------------------------------

    def new_service(self, name: str) -> Service | None:
        """First sight of a directory: look for log/ now and only now (0.76 semantics)."""
        has_log = False
        if len(os.fsencode(name)) <= 255:
            try:
                os.stat(f"{name}/log")
                has_log = True
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.warn(PROG, f"unable to stat {name}/log: ", e)
                return None
        sv = Service(name, has_log)
        if has_log:
            try:
                sv.pipe = os.pipe2(os.O_CLOEXEC)
            except OSError as e:
                errors.warn(PROG, f"unable to create pipe for {name}: ", e)
                return None
        return sv

    def scan(self) -> None:
        for sv in self.services.values():
            sv.active = False
        try:
            names = os.listdir(".")
        except OSError as e:
            return errors.warn(PROG, "unable to read directory: ", e)
        self.frozen = False
        for name in names:
            if name.startswith("."):
                continue
            try:
                st = os.stat(name)
            except OSError as e:
                errors.warn(PROG, f"unable to stat {name}: ", e)
                continue
            if not (st.st_mode & 0o170000 == 0o040000):
                continue
            key = (st.st_dev, st.st_ino)
            sv = self.services.get(key)
            if sv is None:
                sv = self.new_service(name)
                if sv is None:
                    continue
                self.services[key] = sv
            sv.name = name
            sv.active = True
            self.start(sv)
        for key in [k for k, sv in self.services.items()
                    if not sv.active and not sv.pid and not sv.log_pid]:
            sv = self.services.pop(key)
            if sv.pipe:
                os.close(sv.pipe[0])
                os.close(sv.pipe[1])

    def reap(self) -> None:
        """Forget every supervise that has exited; it is started again by the next scan."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for sv in self.services.values():
                if sv.pid == pid:
                    sv.pid = 0
                elif sv.log_pid == pid:
                    sv.log_pid = 0

    # -- ordered shutdown --------------------------------------------------------

    def command(self, path: str, data: bytes) -> None:
        """What `svc` does for one directory, silently: shutdown must not stall."""
        try:
            fd = fifo.open_writer(f"{path}/supervise/control")
        except OSError:
            return
        try:
            os.write(fd, data)
        except OSError:
            pass
        finally:
            os.close(fd)

    def wait_for(self, pids: set[int], seconds: float, wakeup: int) -> set[int]:
        """Reap until none of `pids` is left or the time is up; the ones still running."""
        deadline = time.monotonic() + seconds
        poller = select.poll()
        poller.register(wakeup, select.POLLIN)
        while True:
            self.reap()
            alive = {p for p in pids if self.owner(p)}
            left = deadline - time.monotonic()
            if not alive or left <= 0:
                return alive
            if poller.poll(min(left, 0.5) * 1000):
                supervise.drain(wakeup)

    def owner(self, pid: int) -> Service | None:
        for sv in self.services.values():
            if pid and pid in (sv.pid, sv.log_pid):
                return sv
        return None

    def stop_group(self, pids: set[int], paths: dict[int, str], first: bytes,
                   budget: float, wakeup: int) -> None:
        """`first` to each, then after `budget` `k`, then SIGKILL to a stuck supervise."""
        for pid in pids:
            self.command(paths[pid], first)
        alive = self.wait_for(pids, budget, wakeup)
        for pid in alive:
            self.command(paths[pid], b"k")
        for pid in self.wait_for(alive, KILL_GRACE, wakeup):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.wait_for(alive, KILL_GRACE, wakeup)

    def shutdown(self, wakeup: int) -> None:
        """Services down (svc -dx), then loggers drain their pipes to EOF and exit."""
        self.stopping = True
        mains = {sv.pid: sv.name for sv in self.services.values() if sv.pid}
        self.stop_group(set(mains), mains, b"dx", STOP_BUDGET, wakeup)
        logs = {sv.log_pid: f"{sv.name}/log" for sv in self.services.values() if sv.log_pid}
        for path in logs.values():
            self.command(path, b"x")
        for sv in self.services.values():
            if sv.pipe:
                os.close(sv.pipe[1])  # the logger's input reaches EOF once drained
        alive = self.wait_for(set(logs), LOG_DRAIN_BUDGET, wakeup)
        self.stop_group(alive, logs, b"dx", STOP_BUDGET, wakeup)


def inherited_fds() -> frozenset[int]:
    """Descriptors this process was given without close-on-exec: children get them too."""
    import fcntl
    kept = set()
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd < 3:
            continue
        try:
            if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                kept.add(fd)
        except OSError:
            pass
    return frozenset(kept)


def raise_nofile() -> int:
    """Two descriptors per logged service: take the hard limit, return the soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass
    return soft


def main(argv: list[str]) -> int:
    """svscan [DIR]: scan, then wait up to 5 s for a signal, forever (until SIGTERM)."""
    if len(argv) > 1:
        try:
            os.chdir(argv[1])
        except OSError as e:
            return errors.fatal(PROG, f"unable to chdir to {argv[1]}: ", e)
    scanner = Scanner(inherited_fds(), raise_nofile())
    wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    for sig in _CAUGHT:
        signal.signal(sig, lambda signum, frame: None)
    poller = select.poll()
    poller.register(wakeup_r, select.POLLIN)
    while True:
        scanner.reap()
        scanner.scan()
        deadline = time.monotonic() + SCAN_INTERVAL
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(left * 1000 + 1):
                continue
            signals = read_signals(wakeup_r)
            if signal.SIGTERM in signals:
                scanner.shutdown(wakeup_r)
                return 0
            if signal.SIGCHLD in signals:
                scanner.reap()
            if signal.SIGALRM in signals or signal.SIGHUP in signals:
                break


def read_signals(fd: int) -> set[int]:
    """The signal numbers that set_wakeup_fd wrote since the last read."""
    got: set[int] = set()
    while True:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return got
        if not data:
            return got
        got.update(data)


def run() -> NoReturn:
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
