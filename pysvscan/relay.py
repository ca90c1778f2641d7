"""Relay pipes: what services write on stdout and stderr, sent to journald a line at a
time by svscan in journal mode (systemd.md §3.4).

svscan creates one pipe per supervise and keeps both ends for the life of the
service directory, like 0.76's log pipe, so a restart of the service or of its
supervise loses nothing. Its loop reads the pipes (a bounded amount per iteration),
splits lines and sends each one natively with the service's name in
SYSLOG_IDENTIFIER and SERVICE=, its priority from a `<N>` prefix and its pid in
SYSLOG_PID. When journald cannot be reached the lines go to svscan's stderr as
`NAME: line` instead, until it is back.
"""

from __future__ import annotations

import os
import time

from . import errors, journal, tai64

TYPE_CHECKING = False
if TYPE_CHECKING:
    import select
    from typing import Callable

LINE_MAX = 48 * 1024    # journald's LineMax: longer lines are sent in pieces
IDLE_FLUSH = 0.5        # a partial line is sent once its writer paused this long
PID_WAIT = 0.5          # output from a service whose pid supervise/status does not show
                        # yet (it wrote before supervise recorded the fork) waits this
PID_POLL = 0.02         # long at most, looking again this often
LAST_WORDS = 2          # seconds after a service's death when lines are still its own
READ_SIZE = 65536       # one read per ready pipe per iteration ...
BUDGET = 256 * 1024     # ... and at most this much for all pipes together
DRAIN_BUDGET = 16 * 1024 * 1024  # at shutdown: what a stray writer may still add
ERR = 3                 # lines at this priority or more urgent count as errors
RETRY = 0.05            # journald's queue was full: try again after this long
FINAL_WAIT = 1.0        # at shutdown, how long journald may keep svscan waiting
POLLIN = 1              # select.POLLIN, without importing select here
FACILITY = b"SYSLOG_FACILITY=3\n"  # daemon


class Relay:
    """One pipe: the read end stays here, the write end is a supervise's stdout/stderr."""

    __slots__ = ("fd", "write_fd", "label", "head", "pending", "flush_at", "continued",
                 "status_seen", "pid", "last_pid", "changed", "held", "hold_until",
                 "check_at", "backlog")

    def __init__(self, label: str) -> None:
        self.fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.fd, False)  # the read end only: writers keep blocking
        self.label = ""
        self.head = b""
        self.rename(label)
        self.pending = b""        # the start of a line whose end has not arrived
        self.flush_at = 0.0       # when `pending` goes out anyway
        self.continued: int | None = None  # priority of a line sent in part already
        self.status_seen: tuple[int, int] | None = None
        self.pid = self.last_pid = 0
        self.changed = 0          # when supervise/status last changed (unix seconds)
        self.held: bytes | None = None  # data read while waiting for the pid
        self.hold_until = self.check_at = 0.0
        # (entry, `NAME: line` for stderr) split and not sent yet: journald was full
        self.backlog: list[tuple[bytes, bytes]] = []

    def rename(self, label: str) -> None:
        """The service directory's latest name (svscan follows renames)."""
        if label != self.label:
            self.label = label
            name = os.fsencode(label)
            self.head = (journal.field(b"SYSLOG_IDENTIFIER", name)
                         + journal.field(b"SERVICE", name) + FACILITY)

    def service_pid(self) -> int:
        """The pid for SYSLOG_PID, best effort: the one in LABEL/supervise/status, or,
        for up to LAST_WORDS seconds after supervise recorded its death, the pid that
        was there (a service's last lines are often read after it has exited).

        The file is read again whenever it was replaced (supervise renames a new one in
        at every pid change, a second at least after the last), and while it says 0: a
        start writes it twice within a clock tick, the second time on an inode number
        the first freed."""
        path = f"{self.label}/supervise/status"
        try:
            st = os.stat(path)
            seen = (st.st_ino, st.st_mtime_ns)
            if seen != self.status_seen or not self.pid:
                self.status_seen = seen
                with open(path, "rb") as f:
                    data = f.read(18)
                if len(data) < 18:
                    self.pid = 0
                else:
                    self.pid = int.from_bytes(data[12:16], "little")
                    self.changed = int.from_bytes(data[:8], "big") - tai64.OFFSET
        except OSError:
            self.pid = 0
        if self.pid:
            self.last_pid = self.pid
            return self.pid
        if self.last_pid and time.time() - self.changed < LAST_WORDS:
            return self.last_pid
        return 0

    def due(self) -> float:
        """When this pipe's held data or partial line must go out (inf: nothing waits)."""
        if self.held is not None:
            return min(self.hold_until, self.check_at)
        return self.flush_at if self.pending else float("inf")

    def lines(self, data: bytes, now: float) -> list[tuple[int, bytes]]:
        """(priority, message) for each line `data` completes, in LINE_MAX pieces; a
        partial line is kept for later, unless it has reached LINE_MAX."""
        pieces = (self.pending + data if self.pending else data).split(b"\n")
        rest = pieces.pop()
        out = []
        for line in pieces:
            while len(line) > LINE_MAX:
                out.append(self.entry(line[:LINE_MAX], whole=False))
                line = line[LINE_MAX:]
            out.append(self.entry(line))
        while len(rest) >= LINE_MAX:
            out.append(self.entry(rest[:LINE_MAX], whole=False))
            rest = rest[LINE_MAX:]
        self.pending = rest
        if rest:
            self.flush_at = now + IDLE_FLUSH
        return out

    def flush(self) -> list[tuple[int, bytes]]:
        """The partial line, sent as it is (its writer went quiet, or is gone)."""
        if not self.pending:
            return []
        out = [self.entry(self.pending, whole=False)]
        self.pending = b""
        return out

    def entry(self, text: bytes, whole: bool = True) -> tuple[int, bytes]:
        """`<N>` is parsed at the start of a line only; the rest of a line sent in
        pieces keeps the priority of its first piece."""
        if self.continued is None:
            priority, message = journal.split_priority(text)
        else:
            priority, message = self.continued, text
        self.continued = None if whole else priority
        return priority, message

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.write_fd)


class Relays:
    """Every relay pipe of one svscan, the pollers that watch them, and the journal.

    The journal socket does not block: when journald's queue is full, the lines
    already split wait in their relay's backlog, and the pipes are not read (their
    writers block, as on a full pipe to any logger) until it has room again. svscan's
    loop, its reaping and its watchdog pings go on meanwhile.
    """

    def __init__(self, poller: select.poll, path: str = journal.SOCKET_PATH,
                 prog: str = "svscan") -> None:
        self.pollers = [poller]
        self.journal = journal.Journal(path)
        self.journal.sock.setblocking(False)
        self.path = path
        self.prog = prog
        self.by_fd: dict[int, Relay] = {}
        self.partial: set[Relay] = set()   # relays with held data or a partial line
        self.backlogged: list[Relay] = []  # relays with lines journald had no room for
        self.retry_at = 0.0                # when to try those again
        self.turn = 0              # where the next pump starts: no pipe starves the rest
        self.down = False          # journald unreachable: lines go to fd 2 meanwhile
        self.on_error: Callable[[str], None] | None = None  # lines of priority <= ERR

    def open(self, label: str) -> Relay:
        relay = Relay(label)
        self.by_fd[relay.fd] = relay
        for poller in self.pollers:
            poller.register(relay.fd, 0 if self.backlogged else POLLIN)
        return relay

    def close(self, relay: Relay) -> None:
        """A service directory svscan forgets: send what is left, then close."""
        self.take(relay, self.drain(relay, DRAIN_BUDGET), time.monotonic(), hold=False)
        self.send(relay, relay.flush())
        self.partial.discard(relay)
        if relay.backlog:
            self.send_backlog(relay, wait=True)
        for poller in self.pollers:
            poller.unregister(relay.fd)
        del self.by_fd[relay.fd]
        relay.close()

    def watch(self, poller: select.poll) -> None:
        """Let another poller (the shutdown's, one at a time) see the pipes too."""
        self.pollers[1:] = [poller]
        for fd in self.by_fd:
            poller.register(fd, 0 if self.backlogged else POLLIN)

    def next_flush(self) -> float:
        """Seconds until held data, a partial line or a backlog is due (inf: none)."""
        due = [r.due() for r in self.partial]
        if self.backlogged:
            due.append(self.retry_at)
        if not due:
            return float("inf")
        return max(0.0, min(due) - time.monotonic())

    def pump(self, events: list[tuple[int, int]]) -> None:
        """One iteration's work: a read from each ready pipe, BUDGET bytes in all, then
        the partial lines whose time has come; first the backlog, if journald had
        no room for it earlier (and then nothing else while it still has none)."""
        now = time.monotonic()
        if self.backlogged:
            if now < self.retry_at or not all(map(self.send_backlog, list(self.backlogged))):
                return
        ready = [self.by_fd[fd] for fd, _ in events if fd in self.by_fd]
        if ready:
            self.turn = (self.turn + 1) % len(ready)
            budget = BUDGET
            for relay in ready[self.turn:] + ready[:self.turn]:
                if budget <= 0 or self.backlogged:
                    break
                try:
                    data = os.read(relay.fd, min(READ_SIZE, budget))
                except BlockingIOError:
                    continue
                budget -= len(data)
                self.take(relay, data, now)
        for relay in [r for r in self.partial if r.due() <= now]:
            if relay.held is not None:
                self.take(relay, b"", now)
            else:
                self.partial.discard(relay)
                self.send(relay, relay.flush())

    def take(self, relay: Relay, data: bytes, now: float, hold: bool = True) -> None:
        """Send the lines `data` completes. Right after a (re)start, the service can
        write before supervise has put its pid in supervise/status: its first lines
        then wait up to PID_WAIT for the pid (SYSLOG_PID)."""
        if relay.held is None:
            if not data:
                return
            if hold and relay.service_pid() == 0:
                relay.held, relay.hold_until = data, now + PID_WAIT
                relay.check_at = now + PID_POLL
                self.partial.add(relay)
                return
        else:
            data, relay.held = relay.held + data, None
            if (hold and now < relay.hold_until and len(data) < LINE_MAX
                    and relay.service_pid() == 0):
                relay.held, relay.check_at = data, now + PID_POLL
                return
        self.send(relay, relay.lines(data, now))
        if relay.pending:
            self.partial.add(relay)
        else:
            self.partial.discard(relay)

    @staticmethod
    def drain(relay: Relay, budget: int) -> bytes:
        """Whatever the pipe holds now, up to `budget` bytes."""
        chunks = []
        while budget > 0:
            try:
                data = os.read(relay.fd, min(READ_SIZE, budget))
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
            budget -= len(data)
        return b"".join(chunks)

    def finish(self) -> None:
        """At shutdown, every service gone: empty every pipe, send the partial lines
        and the backlogs, waiting for journald (a bounded time) if need be."""
        now = time.monotonic()
        for relay in list(self.by_fd.values()):
            self.take(relay, self.drain(relay, DRAIN_BUDGET), now, hold=False)
            self.send(relay, relay.flush())
        for relay in list(self.backlogged):
            self.send_backlog(relay, wait=True)
        self.partial.clear()
        self.backlogged.clear()

    def send(self, relay: Relay, lines: list[tuple[int, bytes]]) -> None:
        if not lines:
            return
        pid = relay.service_pid()
        head = relay.head + (b"SYSLOG_PID=%d\n" % pid if pid else b"")
        name = os.fsencode(relay.label) + b": "
        for priority, message in lines:
            if priority <= ERR and self.on_error is not None:
                self.on_error(f"{relay.label}: {os.fsdecode(message)}")
            relay.backlog.append((head + b"PRIORITY=%d\n" % priority
                                  + journal.field(b"MESSAGE", message),
                                  name + message + b"\n"))
        if relay not in self.backlogged:
            self.send_backlog(relay)

    def send_backlog(self, relay: Relay, wait: bool = False) -> bool:
        """Send the relay's lines in order; False if journald has no room for them
        now (the rest waits, reading pauses). `wait`: block a little instead (at the
        end), then write what still could not go to stderr."""
        if wait:
            self.journal.sock.settimeout(FINAL_WAIT)
        done = 0
        try:
            for entry, line in relay.backlog:
                try:
                    self.journal.send(entry)
                    self.down = False
                except BlockingIOError as e:
                    if wait:  # it timed out before: no more waiting
                        self.fall_back(e)
                        errors.write_fd2(line)
                    else:
                        if relay not in self.backlogged:
                            self.backlogged.append(relay)
                            self.reading(False)
                        self.retry_at = time.monotonic() + RETRY
                        return False
                except OSError as e:
                    if wait:
                        self.journal.sock.setblocking(False)
                    self.fall_back(e)
                    errors.write_fd2(line)
                done += 1
        finally:
            del relay.backlog[:done]
            if wait:
                self.journal.sock.setblocking(False)
        if relay in self.backlogged:
            self.backlogged.remove(relay)
            if not self.backlogged:
                self.reading(True)
        return True

    def reading(self, on: bool) -> None:
        """Watch the pipes for input, or stop: with a backlog, their data must wait
        in them, and poll would otherwise report them readable again at once."""
        for poller in self.pollers:
            for fd in self.by_fd:
                poller.modify(fd, POLLIN if on else 0)

    def fall_back(self, e: OSError) -> None:
        if not self.down:
            self.down = True
            errors.warn(self.prog, "unable to send to the journal, writing service output "
                                   "to stderr until it is back: ", e)


def priority_of(text: str) -> int:
    """svscan's and supervise's own lines: `prog: warning: …` is a warning, anything
    else they say (fatal, usage, a bare `unable to …`) an error."""
    return 4 if ": warning: " in text[:32] else ERR


def native_sink(identifier: str, service: str | None, path: str,
                fallback: Callable[[str], None]) -> Callable[[str], None]:
    """A replacement for errors.write_line that sends each diagnostic natively, with
    the program's name in SYSLOG_IDENTIFIER (and SERVICE= for a supervise), and uses
    `fallback` when journald cannot be reached. The socket is made at the first line:
    most supervise processes never say anything."""
    head = journal.field(b"SYSLOG_IDENTIFIER", identifier.encode()) + FACILITY
    if service is not None:
        head += journal.field(b"SERVICE", os.fsencode(service))
    sender: list[journal.Journal] = []

    def write_line(text: str) -> None:
        entry = (head + b"PRIORITY=%d\nSYSLOG_PID=%d\n" % (priority_of(text), os.getpid())
                 + journal.field(b"MESSAGE", os.fsencode(text)))
        try:
            if not sender:
                sender.append(journal.Journal(path))
            sender[0].send(entry)
        except OSError:
            fallback(text)
    return write_line
