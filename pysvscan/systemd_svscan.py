"""svscan started by systemd (systemd.md §2.3, §2.7, §3.4, §4.3).

pysvscan.commands.svscan hands over to main() here when any of systemd's variables
(execenv.SYSTEMD_VARIABLES) is in the environment; classic svscan never imports this
module. The scanner is the classic one, with:

* the environment clean-up: the notifier is made from NOTIFY_SOCKET first, then every
  systemd variable leaves os.environ, so no child inherits one;
* sd_notify (notifier.py): READY=1 after the first scan, STATUS= after every scan,
  WATCHDOG=1 after completed loop iterations, RELOADING=1/READY=1 around the SIGHUP
  rescan, STOPPING=1 and EXTEND_TIMEOUT_USEC during the ordered shutdown, STATUS= and
  ERRNO= for a fatal start-up error; faulthandler, so that a watchdog SIGABRT leaves a
  Python stack in the journal;
* journal mode (stderr is the journal, or PYSVSCAN_JOURNAL=1): every supervise gets a
  relay pipe as stderr (and stdout, without log/), which svscan reads in its loop and
  sends to journald a line at a time (relay.py); svscan's and each supervise's own
  diagnostics go to journald natively, supervise's with SERVICE=NAME.
"""

from __future__ import annotations

import os
import select
import signal
import time

from . import errors, execenv, notifier, proctitle, relay
from .commands import supervise
from .commands.svscan import (_CAUGHT, PROG, SCAN_INTERVAL, Launch, Scanner, Service,
                              become_subreaper, inherited_fds, raise_nofile, read_signals,
                              title_area)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

# READY=1 waits this long at most for the supervise processes of its scan to answer svok
# (a new service's opens supervise/ok once its service has started: supervise.prepare)
READY_WAIT = 5.0


class SystemdScanner(Scanner):
    """The classic scanner, telling systemd how things go; `relays` in journal mode."""

    def __init__(self, inherited: frozenset[int], nofile: tuple[int, int] | None,
                 title: proctitle.Title | None, told: notifier.Notifier | None) -> None:
        super().__init__(inherited, nofile, title)
        self.told = told
        self.relays: relay.Relays | None = None

    def names(self) -> list[str]:
        """The service directories of the last scan (for STATUS=)."""
        return [sv.name for sv in self.services.values() if sv.active]

    def become_supervise(self, job: Launch) -> int:
        """In the child: supervise's own diagnostics where they belong (svscan's
        diagnostics remember lines for STATUS=; a supervise's need not)."""
        errors.divert(self.supervise_sink(job))
        return super().become_supervise(job)

    def supervise_sink(self, job: Launch) -> Callable[[str], None] | None:
        return None  # fd 2, as in classic svscan

    def watch_while_waiting(self, poller: select.poll) -> None:
        """During the shutdown's waits the relay pipes are still read."""
        if self.relays:
            self.relays.watch(poller)

    def pause(self, poller: select.poll, seconds: float, wakeup: int) -> None:
        """Scanner.pause, telling systemd that the shutdown takes time and the loop is
        alive, and pumping the relay pipes."""
        if self.told:
            self.told.still_stopping()
        if self.relays:
            seconds = min(seconds, self.relays.next_flush())
        events = poller.poll(seconds * 1000)
        if self.relays:
            self.relays.pump(events)
        supervise.drain(wakeup)


class JournalLaunch(Launch):
    __slots__ = ("stderr",)  # the relay pipe's write end


class JournalScanner(SystemdScanner):
    """Journal mode (§3.4): every supervise gets a relay pipe as its stderr, and as its
    stdout too when there is no log/ (a logger's stdout and stderr go to a relay of
    their own, `NAME/log`). svscan keeps each pipe, both ends, for as long as it knows
    the service directory, like the log pipe. In each forked supervise, its own
    diagnostics go to journald with SERVICE=NAME."""

    def __init__(self, inherited: frozenset[int], nofile: tuple[int, int] | None,
                 title: proctitle.Title | None, told: notifier.Notifier | None,
                 relays: relay.Relays) -> None:
        super().__init__(inherited, nofile, title, told)
        self.relays = relays
        self.relay_of: dict[Service, tuple[relay.Relay, relay.Relay | None]] = {}

    def new_service(self, name: str) -> Service | None:
        sv = super().new_service(name)
        if sv is None:
            return None
        assert self.relays is not None
        opened = []
        try:
            opened.append(self.relays.open(name))
            if sv.pipe:
                opened.append(self.relays.open(f"{name}/log"))
        except OSError as e:
            errors.warn(PROG, f"unable to create pipe for {name}: ", e)
            for one in opened:
                self.relays.close(one)
            if sv.pipe:
                os.close(sv.pipe[0])
                os.close(sv.pipe[1])
            return None
        self.relay_of[sv] = (opened[0], opened[1] if sv.pipe else None)
        return sv

    def launches(self, sv: Service) -> list[Launch]:
        main, log = self.relay_of[sv]
        todo: list[Launch] = []
        if not sv.pid:
            job = JournalLaunch(sv, False)
            job.stderr = main.write_fd
            if not sv.pipe:
                job.stdout = main.write_fd
            todo.append(job)
        if sv.pipe and log and not sv.log_pid:
            job = JournalLaunch(sv, True)
            job.stdout = job.stderr = log.write_fd
            todo.append(job)
        return todo

    def scan(self) -> None:
        super().scan()
        assert self.relays is not None
        known = set(self.services.values())
        for sv, (main, log) in list(self.relay_of.items()):
            if sv not in known:
                del self.relay_of[sv]
                self.relays.close(main)
                if log:
                    self.relays.close(log)
            else:  # renamed directories: lines go out under the new name
                main.rename(sv.name)
                if log:
                    log.rename(f"{sv.name}/log")

    def become_supervise(self, job: Launch) -> int:
        """In the child: the relay as stderr, then supervise."""
        assert isinstance(job, JournalLaunch)
        try:
            os.dup2(job.stderr, 2)
        except OSError as e:
            errors.warn(PROG, f"unable to set up descriptors for {job.label}: ", e)
            return errors.EXIT_TEMPORARY
        return super().become_supervise(job)

    def supervise_sink(self, job: Launch) -> Callable[[str], None] | None:
        """Diagnostics to journald with SERVICE=NAME; to the relay (fd 2) meanwhile
        journald cannot be reached."""
        assert self.relays is not None
        return relay.native_sink("supervise", job.label, self.relays.path,
                                 errors.write_to_fd2)

    def shutdown(self, wakeup: int) -> None:
        """§4.3 steps 1-4, then 5: the relay pipes drained and flushed."""
        super().shutdown(wakeup)
        assert self.relays is not None
        self.relays.finish()


def main(argv: list[str]) -> int:
    """svscan [DIR] under systemd: svscan's main() with the additions above."""
    told = notifier.Notifier.from_environment(PROG)  # before NOTIFY_SOCKET goes
    taken = notifier.take_environment()
    journal_mode = notifier.journal_mode(taken)
    if told or journal_mode:
        notifier.enable_faulthandler()
    if len(argv) > 1:
        try:
            os.chdir(argv[1])
        except OSError as e:
            text = f"unable to chdir to {argv[1]}: "
            if told:
                told.fatal(f"{PROG}: fatal: {text}{errors.errtext(e)}", e)
            return errors.fatal(PROG, text, e)
    become_subreaper()
    wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    poller = select.poll()
    poller.register(wakeup_r, select.POLLIN)
    scanner: SystemdScanner
    sink = errors.write_to_fd2
    if journal_mode:
        path = taken.get(notifier.JOURNAL_SOCKET_VARIABLE) or relay.journal.SOCKET_PATH
        relays = relay.Relays(poller, path, PROG)
        scanner = JournalScanner(inherited_fds(), raise_nofile(), title_area(), told, relays)
        sink = relay.native_sink(PROG, None, path, errors.write_to_fd2)
    else:
        scanner = SystemdScanner(inherited_fds(), raise_nofile(), title_area(), told)
    if told:  # for STATUS=: svscan's own last diagnostic, or a service's error line
        if scanner.relays:
            scanner.relays.on_error = told.note
        sink = noting(told, sink)
    errors.divert(sink)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    for sig in _CAUGHT:
        signal.signal(sig, execenv.wakeup_handler)
    return loop(scanner, poller, wakeup_r)


def loop(scanner: SystemdScanner, poller: select.poll, wakeup_r: int) -> int:
    """svscan's loop, with the relay pipes read and systemd told (§2.7)."""
    told, relays = scanner.told, scanner.relays
    while True:
        scanner.reap()
        scanner.scan()
        if told:
            if told.ready_due():  # READY=1 says every supervise answers svok
                scanner.wait_supervised(READY_WAIT)
            told.scanned(notifier.summary(scanner.names(), told.last_error))
        deadline = time.monotonic() + SCAN_INTERVAL
        while (left := deadline - time.monotonic()) > 0:
            if told:
                left = min(left, told.next_ping())
            if relays:
                left = min(left, relays.next_flush())
            events = poller.poll(left * 1000 + 1)
            if relays:
                relays.pump(events)
            signals = read_signals(wakeup_r)
            if signal.SIGTERM in signals:
                if told:
                    running = sum(1 for sv in scanner.services.values() if sv.pid)
                    told.stopping(f"stopping {running} service{'' if running == 1 else 's'}")
                scanner.shutdown(wakeup_r)
                return 0
            if signal.SIGCHLD in signals:
                scanner.reap()
            if signal.SIGHUP in signals and told:
                told.reload_started()
            if signal.SIGALRM in signals or signal.SIGHUP in signals:
                break
            if told:
                told.iteration_done()


def noting(told: notifier.Notifier, send: Callable[[str], None]) -> Callable[[str], None]:
    """errors.write_line that also remembers the line for STATUS=."""
    def write_line(text: str) -> None:
        told.note(text)
        send(text)
    return write_line


