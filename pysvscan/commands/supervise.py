"""supervise DIR: start DIR/run, restart it when it dies, obey svc through supervise/control.

Follows supervise.c of daemontools 0.76 step by step (daemontools.md §2), including
Debian's two behavioural patches (dangling `supervise` symlink, retry after a failed
fork). The same code runs standalone and in a child that svscan forks without exec.
"""

# A service directory with `sd-notify`, `watchdog` or `notification-fd` gets the subclass
# in pysvscan.notify_server instead (readiness, watchdog, notify socket: systemd.md §2).
# That module is imported only then, so every other service runs exactly the code below.

from __future__ import annotations

import errno
import os
import select
import signal
import time

import _signal  # not `signal`: see execenv.exec_signal_state

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

    from ..systemd_supervise import UnitLink

from .. import errors, execenv, fifo, lock, tai64
from ..status import WANT_DOWN, WANT_NONE, WANT_UP, Status

PROG = "supervise"
START_PAUSE = 1.0          # the C code sleeps this long after every start
FORK_FAILURE_PAUSE = 60.0
IDLE_TIMEOUT = 3600.0
STALE_RETRY = 1.0          # pysvscan: a status write that failed is tried again this often
# Stopping in order (svscan's shutdown, supervise as a systemd unit):
STOP_BUDGET = 10.0      # per-service budget before `svc -k`
LOG_DRAIN_BUDGET = 5.0  # loggers get this long to reach end of input
KILL_GRACE = 5.0        # after `k`, a supervise that still lingers is SIGKILLed
_SIGCHLD = int(signal.SIGCHLD)
_SIGNAL_BYTES = {"a": signal.SIGALRM, "h": signal.SIGHUP, "k": signal.SIGKILL,
                 "t": signal.SIGTERM, "i": signal.SIGINT}
NOTIFY_FILES = ("sd-notify", "watchdog", "notification-fd")  # opting in (notify_server)
# pysvscan's extra file next to the 18-byte status: starts, exits, the last exit and the
# exits of the last RECENT seconds (for `pysvscan status` and `pysvscan doctor`).
HISTORY = "supervise/history"
STATUS = "supervise/status"
# svscan writes the first status of this many new services itself, as the C does, before
# leaving it to the children (prepare): enough calls for CPython to specialise that code
# in svscan, where every child shares it, instead of each child running it cold and
# copying the pages that dirties (some 30 kB a child).
FIRST_STATUS_IN_SVSCAN = 8
_first_status_left = FIRST_STATUS_IN_SVSCAN
RECENT = 60.0


class Supervisor:
    """The state supervise.c keeps in globals, plus the loop's wake-up plumbing.

    A slotted class, not a dataclass: svscan's forked children share its memory, and
    leaving dataclasses (with inspect, ast, re …) unimported keeps that memory small.
    """

    __slots__ = ("dir", "wakeup_r", "control", "idle", "pausing", "pid", "want", "want_up",
                 "paused", "exiting", "retry_start", "woken", "status", "fds", "exec_ignored",
                 "exec_blocked", "starts", "exits", "last_exit", "recent", "adopted",
                 "adopted_poll", "stale", "spawn", "ok_late", "written")

    def __init__(self, dir: str, wakeup_r: int, control: int, want_up: bool) -> None:
        self.dir, self.wakeup_r, self.control = dir, wakeup_r, control
        self.idle = select.poll()     # wake-up pipe + control FIFO
        self.pausing = select.poll()  # wake-up pipe only
        self.pid = 0
        self.want = True              # flagwant: false after `o`
        self.want_up = want_up        # flagwantup
        self.paused = False
        self.exiting = False          # `x` received
        self.retry_start = False      # Debian 20.3: start again after the fork-failure sleep
        self.woken = False            # a wake-up byte was drained during a pause
        self.status = Status(*tai64.now())
        self.starts = self.exits = 0
        # `exit 1 pid 123 at @4000…` once written; until then what note_exit kept
        self.last_exit: str | tuple[int | None, int, tuple[int, int], float] = ""
        self.recent: list[tuple[float, str]] = []  # (monotonic, label) of recent exits
        self.adopted = -1             # pidfd of a service adopted from an earlier supervise
        self.adopted_poll: select.poll | None = None
        self.stale = False            # the last status write failed: retried every second
        self.ok_late = False          # supervise/ok is opened after the first status write
        self.written = b""            # the status record last written
        self.fds: list[int] = []      # every descriptor prepare() opened (wake-up pipe first)
        # what ./run must not inherit: computed here, where svscan runs this (shared)
        self.exec_ignored, self.exec_blocked = execenv.exec_signal_state()
        self.spawn = execenv.run_spawner(self.exec_ignored)
        self.idle.register(wakeup_r, select.POLLIN)
        self.idle.register(control, select.POLLIN)
        self.pausing.register(wakeup_r, select.POLLIN)

    def arm(self) -> None:
        """Step 3, in the process that supervises: SIGCHLD wakes the loop."""
        signal.set_wakeup_fd(self.fds[1], warn_on_full_buffer=False)
        _signal.signal(_SIGCHLD, execenv.wakeup_handler)

    def serve(self) -> int:
        """Steps 11-12: start the service if wanted (and not adopted), loop until `x`,
        exit 0."""
        if self.want_up and not self.pid:
            self.try_start()
        self.loop()
        self.announce()
        return 0

    # -- status file -------------------------------------------------------------

    def pid_change(self) -> None:
        """New timestamp: it changes only when the pid does."""
        self.status.when, self.status.nsec = tai64.now()
        self.status.pid = self.pid

    def announce(self) -> None:
        """Write status.new and rename it over status; each failure only warns."""
        self.write_status(self.record())

    def record(self) -> bytes:
        self.status.paused = int(self.paused) if self.pid else 0
        self.status.want = (WANT_UP if self.want_up else WANT_DOWN) if self.want else WANT_NONE
        return self.status.pack()

    def write_status(self, record: bytes, quiet: bool = False) -> None:
        # pysvscan: a failed write (a full disk) is retried by the loop (retry_status)
        self.stale = not replace_file(self.dir, STATUS, record, quiet=quiet)
        self.written = b"" if self.stale else record

    def retry_status(self) -> None:
        """The last status write failed: try it again, quietly (each change still warns
        as in the C, whose status just stays stale until the next change)."""
        self.write_status(self.status.pack(), quiet=True)

    # -- the service -------------------------------------------------------------

    def try_start(self, after_death: bool = False) -> None:
        """Fork and exec ./run, then pause a second whatever happens meanwhile.

        `after_death`: the service has just been reaped and is restarted at once.
        supervise.c records the death (pid 0, new timestamp) and then the new pid a
        fork later; here only the new pid is recorded, after the fork, so that neither
        the new ./run nor the new pid in the status waits for an extra file creation
        and rename. The death is still recorded if the fork fails.
        """
        try:
            child = (self.spawn() if self.spawn else 0) or os.fork()
        except OSError as e:
            if after_death:
                self.record_death()
            elif self.ok_late:
                self.announce()
                self.open_ok_late()
            errors.warn(PROG, f"unable to fork for {self.dir}, sleeping 60 seconds: ", e)
            self.deep_sleep(FORK_FAILURE_PAUSE)
            self.retry_start = self.woken = True
            return
        if child == 0:
            exec_run(self.dir, self.exec_ignored, self.exec_blocked)
        self.paused = False
        self.pid = child
        self.starts += 1
        self.pid_change()
        self.announce()
        if self.ok_late:
            self.open_ok_late()
        if after_death:  # after the restart: the history must not delay it
            self.write_history()
        self.deep_sleep(START_PAUSE)

    def open_ok_late(self) -> None:
        """The first start of a new service under svscan (prepare): supervise/ok gets
        its reader only now, after the first status, as in the C; if that fails, this
        supervise ends as the C's would, and the next one adopts the run."""
        self.ok_late = False
        try:
            self.fds.append(fifo.open_reader("supervise/ok"))
        except OSError as e:
            os._exit(errors.fatal(PROG, f"unable to read {self.dir}/supervise/ok: ", e))

    def signal_service(self, sig: int) -> None:
        """Signals go to the service pid only, never to a process group; to an adopted
        one through its pidfd, which cannot name a process that reused the pid."""
        if self.pid:
            try:
                if self.adopted >= 0:
                    _signal.pidfd_send_signal(self.adopted, sig)
                else:
                    os.kill(self.pid, sig)
            except OSError:
                pass

    def deep_sleep(self, seconds: float) -> None:
        """Wait out `seconds` handling nothing, as the C sleep does; remember wake-ups
        so a child death during the pause is still reaped right after it."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            events = self.pausing.poll(left * 1000 + 1)
            if events:
                self.woken |= drain(self.wakeup_r)
                self.serve_fds(events)

    # -- the loop ----------------------------------------------------------------

    def reap(self) -> bool:
        """Reap until the service is found, as supervise.c does; True: leave the loop."""
        if self.adopted >= 0 and self.adopted_ended():
            return self.ended(None)
        for child, status in execenv.reap_exited():
            if child == self.pid:
                return self.ended(status)
            self.reaped_other(child)
        return False

    def ended(self, status: int | None) -> bool:
        """The service is gone: start it again if wanted; True: leave the loop."""
        self.note_exit(status)
        if not self.exiting and self.want and self.want_up:
            self.try_start(after_death=True)
            return False
        self.record_death()
        return self.exiting

    def reaped_other(self, pid: int) -> None:
        """A child that is not the service ended (as a systemd unit: the log supervise)."""

    def record_death(self) -> None:
        self.pid = 0
        self.pid_change()
        self.announce()
        self.write_history()

    # -- adoption (pysvscan) ---------------------------------------------------------

    def adopt(self, pid: int, pidfd: int, old: Status) -> None:
        """Take over the run an earlier supervise of this directory started: same pid,
        same timestamp, same pause; watched through its pidfd until it ends."""
        self.pid, self.adopted, self.paused = pid, pidfd, bool(old.paused)
        self.status.when, self.status.nsec, self.status.pid = old.when, old.nsec, pid
        self.adopted_poll = select.poll()
        for poller in (self.idle, self.pausing, self.adopted_poll):
            poller.register(pidfd, select.POLLIN)
        errors.warn(PROG, f"{self.dir}: adopting pid {pid}, left running by an earlier "
                          "supervise")

    def adopted_ended(self) -> bool:
        assert self.adopted_poll is not None
        if not self.adopted_poll.poll(0):
            return False
        for poller in (self.idle, self.pausing):
            poller.unregister(self.adopted)
        os.close(self.adopted)
        self.adopted, self.adopted_poll = -1, None
        return True

    # -- supervise/history (pysvscan) ----------------------------------------------

    def note_exit(self, status: int | None) -> None:
        """Remember how the service ended (None: an adopted one, not our child, whose
        status svscan reaped), as it is: this runs before the restart, write_history
        (after it) does the rest."""
        self.exits += 1
        self.last_exit = (status, self.pid, tai64.now(), time.monotonic())

    def write_history(self) -> None:
        """Only after an exit: a service that never ended costs no write at all."""
        if isinstance(self.last_exit, tuple):
            status, pid, when, ended = self.last_exit
            if status is None:
                how = "unknown"
            else:
                code = os.waitstatus_to_exitcode(status)
                how = f"exit {code}" if code >= 0 else f"signal {-code}"
            label = tai64.external(tai64.pack(*when))
            self.last_exit = f"{how} pid {pid} at {label}"
            self.recent = [(t, l) for t, l in self.recent if ended - t < RECENT][-63:]
            self.recent.append((ended, label))
        now = time.monotonic()
        recent = " ".join(label for t, label in self.recent if now - t < RECENT)
        replace_file(self.dir, HISTORY,
                     f"starts={self.starts}\nexits={self.exits}\nlast_exit={self.last_exit}\n"
                     f"recent_exits={recent}\n{self.history_extra()}".encode(), quiet=True)

    def history_extra(self) -> str:
        """More history lines (a notifying supervisor's watchdog kills)."""
        return ""

    def command(self, byte: str) -> None:
        """One control byte, exactly as supervise.c's switch; unknown bytes are ignored."""
        if byte == "d":
            self.want, self.want_up = True, False
            if self.pid:
                self.signal_service(signal.SIGTERM)
                self.signal_service(signal.SIGCONT)
                self.paused = False
            self.announce()
        elif byte == "u":
            self.want, self.want_up = True, True
            self.announce()
            if not self.pid:
                self.try_start()
        elif byte == "o":
            self.want = False
            self.announce()
            if not self.pid:
                self.try_start()
        elif byte in _SIGNAL_BYTES:
            self.signal_service(_SIGNAL_BYTES[byte])
        elif byte == "p":
            self.paused = True
            self.announce()
            self.signal_service(signal.SIGSTOP)
        elif byte == "c":
            self.paused = False
            self.announce()
            self.signal_service(signal.SIGCONT)
        elif byte == "x":
            self.exiting = True
            self.announce()

    def read_command(self) -> str:
        """One byte from the control FIFO, or '' when none is queued."""
        try:
            data = os.read(self.control, 1)
        except BlockingIOError:
            return ""
        return data.decode("latin-1")

    def loop(self) -> None:
        # doit() in supervise.c starts with one more status write, of the record just
        # written unless that write failed: one file creation saved per service (and
        # hundreds when svscan starts them at once)
        if (record := self.record()) != self.written:
            self.write_status(record)
        while True:
            if self.exiting and not self.pid:
                return
            if self.retry_start and not self.pid and self.want and self.want_up:
                self.retry_start = False
                self.try_start()
                continue
            self.retry_start = False
            self.serve_fds(self.idle.poll(0 if self.woken else self.timeout_ms()))
            drain(self.wakeup_r)
            self.woken = False
            if self.reap():
                return
            self.check_deadlines()  # after reap: never for a run that is already over
            self.command(self.read_command())
            if self.stale:
                self.retry_status()
            self.iteration_done()

    def serve_fds(self, events: list[tuple[int, int]]) -> None:
        """The descriptors a subclass adds to the polls (notify_server: its socket and
        the s6 pipe), served from the loop and during the pause after a start."""

    def check_deadlines(self) -> None:
        """Timers a subclass keeps (notify_server: watchdog, readiness, SIGKILL)."""

    def timeout_ms(self) -> float:
        """How long the loop may sleep with nothing happening."""
        return STALE_RETRY * 1000 if self.stale else IDLE_TIMEOUT * 1000

    def iteration_done(self) -> None:
        """After each turn of the loop (as a systemd unit: the watchdog ping)."""


def replace_file(dir: str, path: str, data: bytes, quiet: bool = False) -> bool:
    """Write path.new and rename it over path (supervise/status, notify-state …), so a
    reader never sees half a file; each failure only warns, in the C's words (`quiet`:
    not even that, for pysvscan's own files where status already warns, and for
    retries). True when written."""
    warn = (lambda *args: None) if quiet else errors.warn
    new = f"{path}.new"
    try:
        fd = os.open(new, os.O_WRONLY | os.O_NONBLOCK | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC,
                     0o644)
    except OSError as e:
        warn(PROG, f"unable to open {dir}/{new}: ", e)
        return False
    try:
        written = os.write(fd, data)
    except OSError as e:
        warn(PROG, f"unable to write {dir}/{new}: ", e)
        return False
    finally:
        os.close(fd)
    if written < len(data):
        warn(PROG, f"unable to write {dir}/{new}: partial write")
        return False
    try:
        os.rename(new, path)
    except OSError as e:
        warn(PROG, f"unable to rename {dir}/{new} to {path.rpartition('/')[2]}: ", e)
        return False
    return True


def start_pause_left(dir: str) -> float:
    """Seconds until the supervise of `dir` is past its pause after the last start of
    its service, and so reads commands again (the pause is the C's sleep(1)). One that
    is stopping its logger must wait for it: a logger that ended before `x` was read
    would be started again."""
    try:
        with open(f"{dir}/supervise/status", "rb") as f:
            st = Status.unpack(f.read(18))
    except (OSError, ValueError):
        return START_PAUSE
    sec, nsec = tai64.now()
    return START_PAUSE + 0.1 - ((sec - st.when) + (nsec - st.nsec) / 1e9)


def drain(fd: int) -> bool:
    """Empty a non-blocking wake-up pipe; True if anything was in it. A short read
    means it is empty: no exception raised on the restart path."""
    got = False
    while True:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return got
        got = got or bool(data)
        if len(data) < 4096:
            return got


def exec_run(dir: str, ignored: tuple[int, ...], blocked: bool,
             env: dict[bytes, bytes] | None = None) -> NoReturn:
    """The forked child: clean signal state, then ./run with argv ['./run'], no PATH.

    Only what exec would keep is undone (ignored signals, a mask): a restart's
    latency is mostly this child's work, and resetting all 64 signals doubles it.
    """
    # `env`: only for a service that opted in to notification (notify_server)
    try:
        execenv.clean_exec_signals(ignored, blocked)
        os.execve("./run", ["./run"], execenv.exec_environment() if env is None else env)
    except OSError as e:
        errors.fatal(PROG, f"unable to start {dir}/run: ", e)
    finally:  # whatever happens, this child never returns into supervise's loop
        os._exit(errors.EXIT_TEMPORARY)


def make_supervise_dir(dir: str) -> int | None:
    """mkdir supervise (errors ignored) with Debian's dangling-symlink patch (§20.2)."""
    try:
        os.mkdir("supervise", 0o700)
        return None
    except OSError:
        pass
    try:
        target = os.readlink("supervise")
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EINVAL):
            return None
        errors.write_line(f"unable to readlink ./supervise: {errors.errtext(e)}")
        return errors.EXIT_TEMPORARY
    if len(os.fsencode(target)) >= 256:  # the C buffer: readlink fills it, EOVERFLOW
        errors.write_line("unable to readlink ./supervise: unknown error")
        return errors.EXIT_TEMPORARY
    try:
        os.mkdir(target, 0o700)
    except OSError:
        pass
    return None


def adoptable(parent: int) -> tuple[int, int, Status] | None:
    """(pid, pidfd, old status) of the service an earlier supervise of this directory
    left running, if it is still that run: a child of `parent` (svscan, a subreaper,
    to which orphans go) started when the status says it was (within a second).

    Raw os calls and no exception on the common paths (no status yet, pid 0): this
    runs once per supervise in svscan's prepare loop, which should make few objects."""
    if not os.access(STATUS, os.R_OK):
        return None
    try:
        fd = os.open(STATUS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 18)
        finally:
            os.close(fd)
    except OSError:
        return None
    if len(data) < 18 or not int.from_bytes(data[12:16], "little"):
        return None
    old = Status.unpack(data)
    try:
        pidfd = os.pidfd_open(old.pid)  # first: from now on the pid cannot be reused
    except (OSError, AttributeError):
        return None
    try:
        with open(f"/proc/{old.pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        ppid, started = int(fields[1]), int(fields[19]) / os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started
        sec, nsec = tai64.now()
        said = (sec - old.when) + (nsec - old.nsec) / 1e9
    except (OSError, ValueError, IndexError):
        ppid, age, said = 0, 0.0, 2.0
    if ppid != parent or abs(age - said) > 1.0:
        os.close(pidfd)
        return None
    return old.pid, pidfd, old


def prepare(dir: str, unit: UnitLink | None = None, parent: int = 0) -> Supervisor | int:
    """Start-up steps 2 and 4-10 in order (daemontools.md §2); the exit code on failure.

    Everything here can run in another process than the one that will supervise:
    svscan prepares each supervise before it forks it, so that the pages this code
    touches stay shared instead of being copied into every child. The result holds
    every descriptor it opened (closed again here if a later step fails). `unit`:
    supervise is a systemd unit's main process (systemd_supervise). `parent`: the
    process orphaned services go to (svscan), for adopting one (adoptable).
    """
    global _first_status_left
    opened: list[int] = []
    try:
        try:
            wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            return errors.fatal(PROG, f"unable to create pipe for {dir}: ", e)
        opened += (wakeup_r, wakeup_w)
        try:
            os.chdir(dir)
        except OSError as e:
            return errors.fatal(PROG, f"unable to chdir to {dir}: ", e)
        try:
            os.stat("down")
            want_up = False
        except FileNotFoundError:
            want_up = True
        except OSError as e:
            return errors.fatal(PROG, f"unable to stat {dir}/down: ", e)
        # Readiness and watchdog files (systemd.md §2.2), read now and only now, like
        # `down`. Any other service costs three access() calls here and nothing else:
        # the server is imported only for a directory that has one of the files.
        # access(), not stat(): no exception raised per service in svscan's prepare
        # loop. A name that cannot be looked up (dangling symlink, loop) counts as absent.
        notify = None
        for name in NOTIFY_FILES:
            if os.access(name, os.F_OK):
                from .. import notify_server
                notify = notify_server.read_config(dir)
                break
        if (failed := make_supervise_dir(dir)) is not None:
            return failed
        try:
            opened.append(lock.open_lockfile("supervise/lock"))
            lock.lock_exnb(opened[-1])
        except OSError as e:
            return errors.fatal(PROG, f"unable to acquire {dir}/supervise/lock: ", e)
        if os.access(HISTORY, os.F_OK):  # an earlier supervise's counts are not ours
            try:
                os.unlink(HISTORY)
            except OSError:
                pass
        fifo.make("supervise/control")
        try:
            control = fifo.open_reader("supervise/control")
        except OSError as e:
            return errors.fatal(PROG, f"unable to read {dir}/supervise/control: ", e)
        opened.append(control)
        try:  # held for life: the reader never sees EOF
            opened.append(fifo.open_writer("supervise/control"))
        except OSError as e:
            return errors.fatal(PROG, f"unable to write {dir}/supervise/control: ", e)
        plain, notifying = (Supervisor, None) if unit is None else unit.classes()
        if notify is None:
            sv = plain(dir, wakeup_r, control, want_up)
        else:  # after the lock: the socket's stale path is ours to replace
            sv = notify.supervisor(dir, wakeup_r, control, want_up, opened, plain, notifying)
        if unit is not None:
            unit.attach(sv)
        if (parent and want_up and type(sv) is Supervisor and not _first_status_left
                and not os.access(STATUS, os.F_OK)):
            # A new service that svscan starts: its first status is the one with the
            # pid, written by the child, which then opens supervise/ok. The C's pid-0
            # record before it costs a file creation, in svscan's serial loop.
            sv.ok_late = True
        else:
            adopted = adoptable(parent) if parent else None
            if adopted is None:
                sv.pid_change()
            else:
                opened.append(adopted[1])
                sv.adopt(*adopted)
            sv.announce()
            if parent and _first_status_left:
                _first_status_left -= 1
        fifo.make("supervise/ok")
        try:  # never read: its reader is what svok looks for
            if not sv.ok_late:
                opened.append(fifo.open_reader("supervise/ok"))
        except OSError as e:
            return errors.fatal(PROG, f"unable to read {dir}/supervise/ok: ", e)
        sv.fds = opened
        opened = []
        return sv
    finally:
        for fd in opened:
            os.close(fd)


def main(argv: list[str]) -> int:
    """supervise DIR (daemontools.md §2)."""
    if len(argv) != 2:
        return errors.usage(PROG, "supervise dir")
    unit = None
    if os.environ.get("NOTIFY_SOCKET"):  # started by systemd, not by svscan
        from ..systemd_supervise import UnitLink
        unit = UnitLink(argv[1])
    sv = prepare(argv[1], unit)
    if isinstance(sv, int):
        return sv
    sv.arm()
    return sv.serve()


def run() -> NoReturn:
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
