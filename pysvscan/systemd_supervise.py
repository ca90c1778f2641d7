"""supervise as the main process of a systemd unit (pysvscan-supervise@.service).

NOTIFY_SOCKET in supervise's environment turns this on: svscan removes that variable
from everything it starts, so a supervise that sees it was started by systemd itself
(systemd.md §1; issue 9). Then supervise is a notify client of systemd:

* READY=1 once the service is where it is wanted: started, or, for a service that
  notifies (sd-notify, notification-fd), once it said it is ready; or down by design.
* STATUS= the service's svstat line, on every change and with every ping.
* WATCHDOG=1 from the loop while the service is healthy: where it is wanted, and not
  in a crash loop (a second unexpected end within one watchdog period). A wedged
  supervise or a crash-looping service thus stops the pings and systemd acts.
* SIGTERM: the service is stopped as `svc -dx` would (TERM, CONT, SIGKILL after
  STOP_BUDGET), STOPPING=1, exit 0.
* With a log/ directory, `supervise DIR/log` runs as its child with the service's
  standard output piped into it, as svscan does for one pair; it is restarted if it
  dies, and stopped last, once the service is down and it has drained the pipe.

systemd's variables are removed from what the service inherits; a service that opted
in to sd-notify gets supervise's own socket instead (notify_server).
"""

from __future__ import annotations

import os
import select
import sys
import time

import _signal

from . import errors, execenv, fifo, notifier, tai64
from .commands import svstat
from .commands.supervise import (KILL_GRACE, LOG_DRAIN_BUDGET, PROG, START_PAUSE,
                                 STOP_BUDGET, Supervisor, drain, start_pause_left)
from .notify_server import NotifySupervisor

CRASH_LOOP = 2  # unexpected ends within one watchdog period that stop the pings
_SIGNALLING = frozenset("dtkhai")  # control bytes after which an end is intended


class UnitLink:
    """What supervise as a unit keeps besides the plain supervise state: the link to
    systemd, the service's health, and the log supervise."""

    def __init__(self, dir: str) -> None:
        # First thing: sdnotify reads NOTIFY_SOCKET when created, then the variables go.
        self.notifier = notifier.Notifier(PROG, notifier.watchdog_usec(os.environ))
        notifier.take_environment()
        notifier.enable_faulthandler()
        # Ends within this many seconds make a crash loop: the watchdog period, and at
        # least three restart pauses, so that a loop paced at one start a second always
        # shows two ends in it.
        self.window = max(self.notifier.ping_every * 3, 3 * START_PAUSE)
        self.program = os.path.abspath(sys.argv[0])
        log = os.path.join(os.path.abspath(dir), "log")
        self.log_dir = log if os.path.isdir(log) else ""
        self.log_pid = 0
        self.log_started = self.log_due = 0.0
        self.stdout = self.pipe_r = -1
        self.sv: Supervisor | None = None
        self.ready_sent = self.stopping = self.term = self.intended = False
        self.kill_at = 0.0
        self.failures: list[float] = []  # when the service ended unexpectedly
        self.told = ""

    def classes(self) -> tuple[type[Supervisor], type[NotifySupervisor]]:
        return UnitSupervisor, UnitNotifySupervisor

    def attach(self, sv: Supervisor) -> None:
        self.sv = sv
        sv.link = self  # type: ignore[attr-defined]

    # -- what systemd is told ----------------------------------------------------------

    def status_text(self) -> str:
        sv = self.sv
        assert sv is not None
        now = tai64.now()[0]
        text = svstat.line(sv.status, not os.path.lexists("down"), now)
        if sv.pid and isinstance(sv, NotifySupervisor):
            text += svstat.readiness(sv.pid, now)
        return text

    def changed(self) -> None:
        """After every status change: READY=1 the first time the service is where it
        is wanted, and STATUS= whenever the line says something new."""
        sv = self.sv
        assert sv is not None
        text = self.status_text()
        lines = []
        if not self.ready_sent and not self.stopping and arrived(sv):
            self.ready_sent = True
            lines.append("READY=1")
        if lines or text != self.told:
            self.told = text
            self.notifier.send(*lines, f"STATUS={text}")

    def healthy(self, now: float) -> bool:
        sv = self.sv
        assert sv is not None
        if sv.want and sv.want_up and not sv.pid and not self.stopping:
            return False  # should run and does not (a fork failure, say)
        self.failures = [t for t in self.failures if now - t < self.window]
        return len(self.failures) < CRASH_LOOP

    def ended(self) -> None:
        """The service has just been reaped: an end nobody asked for counts against
        its health."""
        sv = self.sv
        assert sv is not None
        if sv.want and sv.want_up and not sv.exiting and not self.intended:
            self.failures.append(time.monotonic())
        self.intended = False

    # -- the loop's turns --------------------------------------------------------------

    def deadline(self) -> float:
        """Seconds until this link next needs the loop."""
        now = time.monotonic()
        due = [self.notifier.next_ping()]
        if self.kill_at:
            due.append(self.kill_at - now)
        if self.log_dir and not self.log_pid and not self.stopping:
            due.append(self.log_due - now)
        return max(0.0, min(due))

    def turn(self) -> None:
        sv = self.sv
        assert sv is not None
        now = time.monotonic()
        if self.term and not self.stopping:
            self.stop_service()
        if self.kill_at and now >= self.kill_at:
            self.kill_at = 0.0
            if sv.pid:
                errors.warn(PROG, f"{sv.dir} still running, sending SIGKILL to pid {sv.pid}")
                sv.signal_service(_signal.SIGKILL)
        if self.log_dir and not self.log_pid and not self.stopping and now >= self.log_due:
            self.start_logger()
        if self.notifier.next_ping() == 0 and self.healthy(now):
            self.told = self.status_text()
            self.notifier.iteration_done(f"STATUS={self.told}")

    def stop_service(self) -> None:
        """SIGTERM from systemd: `svc -dx`, then SIGKILL after STOP_BUDGET."""
        sv = self.sv
        assert sv is not None
        self.stopping = True
        self.notifier.send("STOPPING=1", f"STATUS=stopping: {self.status_text()}")
        sv.command("d")
        sv.command("x")
        if sv.pid:
            self.kill_at = time.monotonic() + STOP_BUDGET

    def finish(self) -> None:
        """The loop is over (SIGTERM, or `svc -x` with the service down)."""
        if not self.stopping:
            self.stopping = True
            self.notifier.send("STOPPING=1", f"STATUS={self.status_text()}")
        self.stop_logger()

    # -- the log supervise -------------------------------------------------------------

    def start_logger(self) -> None:
        """`supervise DIR/log` with the pipe on its stdin; the service's stdout is the
        pipe's other end, which this process keeps for as long as it runs, so that
        neither end ever sees the other go away across restarts."""
        if self.pipe_r < 0:
            try:
                self.stdout = os.dup(1)  # the log supervise's own stdout, made CLOEXEC
                self.pipe_r, write_end = os.pipe2(os.O_CLOEXEC)
                os.dup2(write_end, 1)  # what ./run inherits
                os.close(write_end)
            except OSError as e:
                errors.warn(PROG, f"unable to create pipe for {self.log_dir}: ", e)
                self.log_dir = ""
                return
        self.log_started = time.monotonic()
        self.log_due = self.log_started + START_PAUSE
        try:
            pid = os.fork()
        except OSError as e:
            return errors.warn(PROG, f"unable to fork for {self.log_dir}: ", e)
        if pid == 0:
            try:
                os.dup2(self.pipe_r, 0)
                os.dup2(self.stdout, 1)
                os.execv(self.program, ["supervise", self.log_dir])
            except OSError as e:
                errors.warn(PROG, f"unable to start supervise for {self.log_dir}: ", e)
            finally:
                os._exit(errors.EXIT_TEMPORARY)
        self.log_pid = pid

    def reaped(self, pid: int) -> None:
        if pid == self.log_pid:
            self.log_pid = 0  # started again by turn(), at most once a second

    def stop_logger(self) -> None:
        """As svscan's shutdown: `x`, then end of input once the pipe is drained; `dx`
        after LOG_DRAIN_BUDGET, `k` after STOP_BUDGET, SIGKILL after KILL_GRACE."""
        if not self.log_pid:
            return
        control = f"{self.log_dir}/supervise/control"
        fifo.send_quietly(control, b"x")
        self.wait_logger(start_pause_left(self.log_dir))
        for fd in (1, self.pipe_r):  # this process's copies: the logger reads EOF
            try:
                null = os.open("/dev/null", os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
            except OSError:
                pass
        for data, budget in ((b"dx", LOG_DRAIN_BUDGET), (b"k", STOP_BUDGET),
                             (b"", KILL_GRACE)):
            if self.wait_logger(budget):
                return
            if data:
                fifo.send_quietly(control, data)
            else:
                try:
                    os.kill(self.log_pid, _signal.SIGKILL)
                except OSError:
                    pass
        self.wait_logger(KILL_GRACE)

    def wait_logger(self, seconds: float) -> bool:
        """Reap until the log supervise has exited (True) or `seconds` are up."""
        sv = self.sv
        assert sv is not None
        waiter = select.poll()
        waiter.register(sv.wakeup_r, select.POLLIN)
        deadline = time.monotonic() + seconds
        while True:
            for pid, _ in execenv.reap_exited():
                self.reaped(pid)
            left = deadline - time.monotonic()
            if not self.log_pid or left <= 0:
                return not self.log_pid
            if waiter.poll(left * 1000 + 1):
                drain(sv.wakeup_r)


def arrived(sv: Supervisor) -> bool:
    """The service is where it is wanted: up (and ready, if it notifies), or down by
    design."""
    if not sv.want:  # `o`: running once is what was asked for
        return True
    if not sv.want_up:
        return not sv.pid
    if isinstance(sv, NotifySupervisor) and (sv.policy or sv.notification_fd is not None):
        return bool(sv.pid and sv.ready)
    return bool(sv.pid)


class UnitMixin:
    """The hooks of Supervisor that a unit's main supervise fills in; works with the
    plain and the notifying supervisor alike."""

    __slots__ = ()

    def arm(self) -> None:
        super().arm()  # type: ignore[misc]
        link = self.link  # type: ignore[attr-defined]
        _signal.signal(_signal.SIGTERM, lambda *_: setattr(link, "term", True))

    def serve(self) -> int:
        link = self.link  # type: ignore[attr-defined]
        if link.log_dir:
            link.start_logger()
        try:
            return super().serve()  # type: ignore[misc]
        finally:
            link.finish()

    def announce(self) -> None:
        super().announce()  # type: ignore[misc]
        self.link.changed()  # type: ignore[attr-defined]

    def command(self, byte: str) -> None:
        if byte in _SIGNALLING:
            self.link.intended = True  # type: ignore[attr-defined]
        super().command(byte)  # type: ignore[misc]

    def note_exit(self, status: int) -> None:
        super().note_exit(status)  # type: ignore[misc]
        self.link.ended()  # type: ignore[attr-defined]

    def reaped_other(self, pid: int) -> None:
        self.link.reaped(pid)  # type: ignore[attr-defined]

    def timeout_ms(self) -> float:
        return min(super().timeout_ms(),  # type: ignore[misc]
                   self.link.deadline() * 1000 + 1)  # type: ignore[attr-defined]

    def iteration_done(self) -> None:
        self.link.turn()  # type: ignore[attr-defined]


class UnitSupervisor(UnitMixin, Supervisor):
    __slots__ = ("link",)


class UnitNotifySupervisor(UnitMixin, NotifySupervisor):
    __slots__ = ("link",)

    def became_ready(self, now: float) -> None:
        super().became_ready(now)
        if self.dirty:  # notify-state first: the STATUS= line reads it
            self.write_state()
        self.link.changed()
