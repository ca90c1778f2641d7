"""svscan [DIR]: one supervise per service directory, one per log/, joined by a pipe.

daemontools.md §6, with the departures of architecture.md §2.5: children are reaped at
once, SIGALRM and SIGHUP rescan at once, SIGTERM stops every service in order (services
first, then their loggers drain to end of input) and exits 0, and there is no limit of
1000 services. Each supervise is forked without exec and runs the same code as the
standalone program, sharing svscan's memory copy-on-write.

Started by systemd (any of its variables in the environment, systemd.md §1.4), svscan
runs as pysvscan.systemd_svscan instead: the same scanner, plus sd_notify messages,
the environment clean-up of §2.3 and, in journal mode, the relay pipes of §3.4.
Nothing of that is imported otherwise.
"""

from __future__ import annotations

import errno
import gc
import os
import resource
import select
import signal
import time

import _signal  # in forked children, not `signal`: see execenv.exec_signal_state

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv, fifo, lock, proctitle
from . import supervise
from .supervise import KILL_GRACE, LOG_DRAIN_BUDGET, STOP_BUDGET

PROG = "svscan"
SCAN_INTERVAL = 5.0
_CAUGHT = (signal.SIGCHLD, signal.SIGALRM, signal.SIGHUP, signal.SIGTERM)
_CAUGHT_NUMBERS = tuple(int(sig) for sig in _CAUGHT)
_SYSTEMD = frozenset(os.fsencode(name) for name in execenv.SYSTEMD_VARIABLES)



class Service:
    """One service directory, known by (device, inode); `name` is its latest name.
    A service has a log/ exactly when it has a pipe (read end, write end)."""

    __slots__ = ("name", "pipe", "pid", "log_pid", "active")

    def __init__(self, name: str, pipe: tuple[int, int] | None) -> None:
        self.name, self.pipe = name, pipe
        self.pid = self.log_pid = 0
        self.active = True


class Launch:
    """One supervise, prepared in svscan and ready to fork (see Scanner.launch)."""

    __slots__ = ("service", "is_log", "label", "supervisor", "stdin", "stdout", "image",
                 "close_ranges")

    def __init__(self, service: Service, is_log: bool) -> None:
        self.service, self.is_log = service, is_log
        pipe = service.pipe
        # the name in messages, and the child's working directory from the scan directory
        self.label = f"{service.name}/log" if is_log else service.name
        self.stdin = pipe[0] if is_log and pipe else None
        self.stdout = pipe[1] if pipe and not is_log else None
        self.supervisor: supervise.Supervisor | None = None
        self.image = b""
        self.close_ranges: list[tuple[int, int]] = []


class Scanner:
    BATCH = 64  # supervise prepared at once: each holds six descriptors until forked
    SHARE_FILES = 16  # from this many supervise to start, a helper creates their files
    PREPARE_FDS = 8  # what one prepared supervise holds (at most 7), and a spare

    def __init__(self, inherited: frozenset[int], nofile: tuple[int, int] | None,
                 title: proctitle.Title | None) -> None:
        self.services: dict[tuple[int, int], Service] = {}
        self.title = title
        self.inherited = inherited
        self.nofile = nofile  # the soft limit children get back, if svscan raised it
        self.here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.room = 0  # descriptors left for pipes in this scan (scan, new_service)
        # (pid, directory) of each supervise of this scan that opens supervise/ok itself,
        # after its service's first start (supervise.prepare) or its own start-up steps
        self.unconfirmed: list[tuple[int, str]] = []

    # -- starting supervise ------------------------------------------------------

    def launches(self, sv: Service) -> list[Launch]:
        """What `sv` needs started: its supervise and/or its log's supervise."""
        todo = []
        if not sv.pid:
            todo.append(Launch(sv, False))
        if sv.pipe and not sv.log_pid:
            todo.append(Launch(sv, True))
        return todo

    def prepare(self, job: Launch) -> bool:
        """Run supervise's start-up steps here, in svscan, for the child to inherit.

        Pages svscan touches before a fork stay shared with the child; the same steps
        run in each child would copy some 90 pages into each. Failures print
        supervise's own messages, as the child would have; the next scan retries.
        """
        try:
            if job.is_log:
                try:
                    os.chdir(job.service.name)
                except OSError as e:
                    errors.warn(PROG, f"unable to switch to {job.service.name}: ", e)
                    return False
                prepared = supervise.prepare("log", parent=os.getpid())
            else:
                prepared = supervise.prepare(job.label, parent=os.getpid())
        finally:
            os.fchdir(self.here)
        if isinstance(prepared, int):
            return False
        job.supervisor = prepared
        keep = self.inherited.union(prepared.fds)
        job.close_ranges = execenv.ranges_to_close(3, keep)
        if self.title:
            job.image = self.title.image(["supervise", "log" if job.is_log else job.label])
        return True

    def defer(self, job: Launch) -> None:
        """Leave the start-up steps to the child, as a C supervise does them in its own
        process: with svscan short of descriptors, the child has room once it has
        closed svscan's."""
        job.supervisor = None
        job.close_ranges = execenv.ranges_to_close(3, self.inherited)
        if self.title:
            job.image = self.title.image(["supervise", "log" if job.is_log else job.label])

    def descriptor_room(self) -> int:
        """Descriptors svscan may still open (a large number when unknown). Counted
        only near the limit: far from it an estimate does, without listing
        /proc/self/fd (a string per descriptor) for every batch."""
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        pipes = sum(2 for sv in self.services.values() if sv.pipe)
        if limit - pipes - len(self.inherited) > 4 * self.BATCH * self.PREPARE_FDS:
            return limit - pipes - len(self.inherited) - 16
        try:
            return limit - len(os.listdir("/proc/self/fd"))
        except OSError as e:  # listing takes a descriptor too
            return 0 if e.errno in (errno.EMFILE, errno.ENFILE) else 1 << 20
        except ValueError:
            return 1 << 20

    def launch(self, todo: list[Launch]) -> None:
        """Prepare and fork every supervise of this scan, a batch at a time.

        Each page svscan dirties after a fork stays, as an old copy, private to the
        child just forked; so everything, the children's titles included, is prepared
        beforehand and the loop between two forks is little more than the fork. The
        objects alive then are frozen so that no child's collector ever touches them.
        """
        if len(todo) >= self.SHARE_FILES:
            self.create_files_ahead(todo)
        for first in range(0, len(todo), self.BATCH):
            room = self.descriptor_room()
            batch = []
            for job in todo[first:first + self.BATCH]:
                if room < self.PREPARE_FDS:
                    self.defer(job)
                elif not self.prepare(job):
                    continue
                room -= self.PREPARE_FDS
                batch.append(job)
            if batch:
                self.fork_all(batch)

    def create_files_ahead(self, todo: list[Launch]) -> None:
        """Fork a helper that creates what supervise needs on disk, from the last
        service backwards, while svscan prepares from the first.

        Creating directory entries is most of a supervise's start-up on a busy file
        system; the C spreads it over its supervise processes, and svscan alone would do
        it serially. Every step is a create that a later one tolerates (mkdir, mkfifo,
        open O_CREAT), so racing svscan is harmless; the helper stops where it meets a
        service svscan has reached, and says nothing: svscan's own steps report.
        """
        try:
            if os.fork():
                return
        except OSError:
            return
        try:
            for sig in _CAUGHT_NUMBERS:
                _signal.signal(sig, _signal.SIG_DFL)
            for job in reversed(todo):
                try:
                    os.fchdir(self.here)
                    os.chdir(job.label)
                    if os.path.exists("supervise/ok"):
                        break
                    os.mkdir("supervise", 0o700)
                    os.close(lock.open_lockfile("supervise/lock"))
                    fifo.make("supervise/control")
                    fifo.make("supervise/ok")
                except OSError:
                    continue
        finally:
            os._exit(0)

    def fork_all(self, batch: list[Launch]) -> None:
        gc.collect()
        gc.freeze()
        fork = os.fork
        pids = []
        for index, job in enumerate(batch):  # nothing here that need not be here
            try:
                pid = fork()
            except OSError as e:
                errors.warn(PROG, f"unable to fork for {job.label}: ", e)
                pid = 0
            else:
                if pid == 0:
                    self.child(batch[index])
            pids.append(pid)
        for job, pid in zip(batch, pids):
            if pid and (job.supervisor is None or job.supervisor.ok_late):
                self.unconfirmed.append((pid, job.label))
            if job.is_log:
                job.service.log_pid = pid
            else:
                job.service.pid = pid
            if job.supervisor:  # the child holds these now (the lock goes with it)
                for fd in job.supervisor.fds:
                    os.close(fd)

    def child(self, job: Launch) -> NoReturn:
        code = errors.EXIT_TEMPORARY
        try:
            code = self.become_supervise(job)
        except BaseException as e:  # never fall back into svscan's loop
            detail = errors.errtext(e) if isinstance(e, OSError) else repr(e)
            errors.warn(PROG, f"unable to start supervise {job.label}: {detail}")
        finally:
            os._exit(code)

    def become_supervise(self, job: Launch) -> int:
        """In the child: what exec would have given a fresh supervise, then its loop."""
        for sig in _CAUGHT_NUMBERS:  # svscan's wake-up handlers, gone; supervise arms its own
            _signal.signal(sig, _signal.SIG_DFL)
        try:
            if job.stdin is not None:
                os.dup2(job.stdin, 0)
            if job.stdout is not None:
                os.dup2(job.stdout, 1)
            for low, high in job.close_ranges:
                os.closerange(low, high)
            if self.nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)
        except OSError as e:
            errors.warn(PROG, f"unable to set up descriptors for {job.label}: ", e)
            return errors.EXIT_TEMPORARY
        try:
            if job.supervisor is not None:
                os.chdir(job.label)
            elif job.is_log:  # deferred: as the C's child, which runs `supervise log`
                os.chdir(job.service.name)
        except OSError as e:  # in the C, the log's child fails to chdir to NAME
            errors.warn(PROG, f"unable to switch to {job.service.name}: ", e)
            return errors.EXIT_TEMPORARY
        if self.title:
            try:  # computed by svscan before the fork: only the writes happen here
                self.title.show(job.image, b"supervise")
            except OSError:
                pass
        if job.supervisor is None:  # deferred: the start-up steps here, as the C does
            prepared = supervise.prepare("log" if job.is_log else job.label,
                                         parent=os.getppid())
            if isinstance(prepared, int):
                return prepared
            job.supervisor = prepared
        job.supervisor.arm()
        return job.supervisor.serve()

    # -- scanning ----------------------------------------------------------------

    def new_service(self, name: str) -> Service | None:
        """First sight of a directory: look for log/ now and only now (0.76 semantics)."""
        if len(os.fsencode(name)) > 255:
            return Service(name, None)
        try:
            os.stat(f"{name}/log")
        except FileNotFoundError:
            return Service(name, None)
        except OSError as e:
            errors.warn(PROG, f"unable to stat {name}/log: ", e)
            return None
        try:
            # Pipes never take the last descriptors: svscan needs some to read the
            # directory, to prepare a supervise, and so to ever close a pipe again.
            if self.room < 2 + self.PREPARE_FDS:
                raise OSError(errno.EMFILE, "")
            pipe = os.pipe2(os.O_CLOEXEC)
        except OSError as e:
            errors.warn(PROG, f"unable to create pipe for {name}: ", e)
            return None
        self.room -= 2
        return Service(name, pipe)

    def wait_supervised(self, seconds: float) -> None:
        """Until every supervise of the last scan answers svok, or has exited, or
        `seconds` have passed: for a caller that tells the world they all run."""
        deadline = time.monotonic() + seconds
        while self.unconfirmed and time.monotonic() < deadline:
            self.reap()
            alive = self.running()
            self.unconfirmed = [(pid, label) for pid, label in self.unconfirmed
                                if pid in alive and not fifo.has_reader(f"{label}/supervise/ok")]
            if self.unconfirmed:
                time.sleep(0.005)

    def scan(self) -> None:
        self.unconfirmed = []
        for sv in self.services.values():
            sv.active = False
        try:
            names = os.listdir(".")
        except OSError as e:
            return errors.warn(PROG, "unable to read directory: ", e)
        self.room = self.descriptor_room()
        todo: list[Launch] = []
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
            if sv is not None and not sv.active and sv.name != name and not sv.pid \
                    and not sv.log_pid:
                # (device, inode) of a service all of whose supervise have ended, under
                # another name: a directory removed and made again between two scans
                # that got the freed inode number. A new service, whose log/ is looked
                # for afresh (the soak met one whose new log/ never started).
                self.forget(key)
                sv = None
            if sv is None:
                sv = self.new_service(name)
                if sv is None:
                    continue
                self.services[key] = sv
            elif sv.active:
                continue  # another name for a directory already seen in this scan
            sv.name = name
            sv.active = True
            todo += self.launches(sv)
        self.launch(todo)
        for key in [k for k, sv in self.services.items()
                    if not sv.active and not sv.pid and not sv.log_pid]:
            self.forget(key)

    def forget(self, key: tuple[int, int]) -> None:
        sv = self.services.pop(key)
        if sv.pipe:
            os.close(sv.pipe[0])
            os.close(sv.pipe[1])

    def reap(self) -> None:
        """Forget every supervise that has exited; it is started again by the next scan."""
        for pid, _ in execenv.reap_exited():
            for sv in self.services.values():
                if sv.pid == pid:
                    sv.pid = 0
                elif sv.log_pid == pid:
                    sv.log_pid = 0

    # -- ordered shutdown --------------------------------------------------------

    def command(self, path: str, data: bytes) -> None:
        """What `svc` does for one directory, silently: shutdown must not stall."""
        fifo.send_quietly(f"{path}/supervise/control", data)

    def wait_for(self, pids: set[int], seconds: float, wakeup: int) -> set[int]:
        """Reap until none of `pids` is left or the time is up; the ones still running."""
        deadline = time.monotonic() + seconds
        poller = select.poll()
        poller.register(wakeup, select.POLLIN)
        self.watch_while_waiting(poller)
        while True:
            self.reap()
            alive = pids & self.running()
            left = deadline - time.monotonic()
            if not alive or left <= 0:
                return alive
            self.pause(poller, min(left, 0.5), wakeup)

    def watch_while_waiting(self, poller: select.poll) -> None:
        """More descriptors wait_for() must serve (systemd mode: the relay pipes)."""

    def pause(self, poller: select.poll, seconds: float, wakeup: int) -> None:
        """One wait of wait_for(), up to `seconds`, ended early by a signal."""
        if poller.poll(seconds * 1000):
            supervise.drain(wakeup)

    def running(self) -> set[int]:
        """The pids of every supervise svscan has not reaped yet."""
        return {pid for sv in self.services.values() for pid in (sv.pid, sv.log_pid) if pid}

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
        mains = {sv.pid: sv.name for sv in self.services.values() if sv.pid}
        self.stop_group(set(mains), mains, b"dx", STOP_BUDGET, wakeup)
        logs = {sv.log_pid: f"{sv.name}/log" for sv in self.services.values() if sv.log_pid}
        for path in logs.values():
            self.command(path, b"x")
        # until each has read its `x` (supervise.start_pause_left)
        self.wait_for(set(logs), max([supervise.start_pause_left(p) for p in logs.values()],
                                     default=0.0), wakeup)
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


def title_area() -> proctitle.Title | None:
    """svscan's argv area, which each forked supervise inherits and rewrites (None
    without /proc)."""
    try:
        return proctitle.Title()
    except (OSError, ValueError, IndexError):
        return None


def become_subreaper() -> None:
    """PR_SET_CHILD_SUBREAPER: a service whose supervise dies becomes svscan's child,
    not init's, so svscan reaps it and the next supervise can tell it descends from
    this tree and adopt it instead of starting a second copy (supervise.adoptable)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errors.warn(PROG, "unable to become a child subreaper: ",
                    OSError(ctypes.get_errno(), ""))


_PR_SET_CHILD_SUBREAPER = 36


def raise_nofile() -> tuple[int, int] | None:
    """Two descriptors per logged service: take the hard limit; return the limits
    children must get back, or None if nothing changed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        return None
    return soft, hard


def main(argv: list[str]) -> int:
    """svscan [DIR]: scan, then wait up to 5 s for a signal, forever (until SIGTERM)."""
    proctitle.make_room(len("supervise ") + proctitle.NAME_MAX + 1, argv)
    if not _SYSTEMD.isdisjoint(os.environb):
        from .. import systemd_svscan
        return systemd_svscan.main(argv)
    if len(argv) > 1:
        try:
            os.chdir(argv[1])
        except OSError as e:
            return errors.fatal(PROG, f"unable to chdir to {argv[1]}: ", e)
    become_subreaper()
    scanner = Scanner(inherited_fds(), raise_nofile(), title_area())
    wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    for sig in _CAUGHT:
        signal.signal(sig, execenv.wakeup_handler)
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
