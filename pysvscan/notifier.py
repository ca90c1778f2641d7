"""svscan and systemd: the environment systemd gives, and sd_notify messages back
(systemd.md §1.4-1.6, §2.3, §2.7).

svscanboot imports this module for stderr_is_journal() alone: nothing here imports
socket or sdnotify until NOTIFY_SOCKET asks for a Notifier.
"""

from __future__ import annotations

import errno
import os
import time

from . import errors, execenv

JOURNAL_VARIABLE = "PYSVSCAN_JOURNAL"
JOURNAL_SOCKET_VARIABLE = "PYSVSCAN_JOURNAL_SOCKET"

PAYLOAD_MAX = 4096     # systemd drops longer datagrams (NOTIFY_BUFFER_MAX)
STATUS_MAX = 1024      # bytes of STATUS= text: one line in `systemctl status`
SEND_TIMEOUT = 1.0     # PID 1 busy must never stall svscan's loop for long
WARN_EVERY = 60.0      # one line per minute about failing notifications
EXTEND_EVERY = 3.0     # EXTEND_TIMEOUT_USEC while a shutdown makes progress
EXTEND_BY_USEC = 15_000_000


def take_environment() -> dict[str, str]:
    """Remove systemd's variables and svscan's switches (execenv.SYSTEMD_VARIABLES) from
    os.environ, so that no child ever inherits them; return the ones that were set."""
    taken = {}
    for name in execenv.SYSTEMD_VARIABLES:
        value = os.environ.pop(name, None)
        if value is not None:
            taken[name] = value
    return taken


def stderr_is_journal(stream: str | None) -> bool:
    """True if JOURNAL_STREAM (`dev:ino`) names what fd 2 is now (§1.4): systemd
    connected stderr to journald, and nobody has redirected it since. A variable
    inherited by a shell whose stderr is a terminal does not match."""
    if not stream:
        return False
    dev, sep, ino = stream.partition(":")
    try:
        st = os.fstat(2)
        return bool(sep) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def journal_mode(taken: dict[str, str]) -> bool:
    """§3.4: PYSVSCAN_JOURNAL=1 forces journal mode, =0 forbids it; otherwise it is on
    when svscan's stderr is the journal."""
    forced = taken.get(JOURNAL_VARIABLE)
    if forced in ("0", "1"):
        return forced == "1"
    return stderr_is_journal(taken.get("JOURNAL_STREAM"))


class Notifier:
    """sd_notify for svscan through sdnotify: made before the environment is scrubbed
    (sdnotify reads NOTIFY_SOCKET once, when created), never raises, waits at most
    SEND_TIMEOUT, and says what fails in one line a minute at most."""

    def __init__(self, prog: str, watchdog_usec: int) -> None:
        self.prog = prog
        self.failed_at = -WARN_EVERY
        self.inner = None
        try:
            import sdnotify  # only now: it brings in socket
            self.inner = sdnotify.SystemdNotifier(debug=True)
            self.inner.socket.settimeout(SEND_TIMEOUT)
        except Exception as e:  # not installed, or whatever socket raised
            self.inner = None
            self.complain("unable to connect to NOTIFY_SOCKET: ", e)
        # the ping period: WATCHDOG_USEC/2 at most between two pings, so aim for a
        # third and let one slow loop iteration still arrive in time
        self.ping_every = watchdog_usec / 3e6 if watchdog_usec else 0.0
        self.pinged = time.monotonic()
        self.first_ready = False
        self.reloading = False
        self.extended = -EXTEND_EVERY
        self.last_error: tuple[float, str] | None = None

    @classmethod
    def from_environment(cls, prog: str) -> "Notifier | None":
        """A Notifier if NOTIFY_SOCKET is set, else None (nothing to tell)."""
        if not os.environ.get("NOTIFY_SOCKET"):
            return None
        return cls(prog, watchdog_usec(os.environ))

    def complain(self, text: str, e: BaseException) -> None:
        now = time.monotonic()
        if now - self.failed_at >= WARN_EVERY:
            self.failed_at = now
            detail = errors.errtext(e) if isinstance(e, OSError) else type(e).__name__
            errors.warn(self.prog, text + detail)

    def send(self, *assignments: str) -> bool:
        """One datagram of KEY=VALUE lines. sdnotify encodes latin-1: hand it the UTF-8
        bytes as latin-1 characters, so that the UTF-8 goes out unchanged."""
        if self.inner is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", "surrogateescape")
        payload = payload.replace(b"\0", b"")
        if len(payload) > PAYLOAD_MAX:
            self.complain("unable to notify systemd: ", OSError(errno.EMSGSIZE, ""))
            return False
        try:
            self.inner.notify(payload.decode("latin-1"))
            return True
        except Exception as e:
            self.complain("unable to notify systemd: ", e)
            return False

    # -- what svscan says, and when ----------------------------------------------

    def scanned(self, status: str) -> None:
        """After each scan: READY=1 after the first one and after a reload's, always
        STATUS=, and the watchdog ping if it is due (a scan completes an iteration)."""
        lines = [f"STATUS={one_line(status)}"]
        if self.ready_due():
            lines.insert(0, "READY=1")
            self.first_ready, self.reloading = True, False
        self.send(*lines)
        self.iteration_done()

    def ready_due(self) -> bool:
        """The next scanned() says READY=1."""
        return not self.first_ready or self.reloading

    def reload_started(self) -> None:
        """SIGHUP: RELOADING=1 now, READY=1 after the rescan (scanned)."""
        self.reloading = True
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={one_line(status)}")
        self.extended = time.monotonic()

    def still_stopping(self) -> None:
        """During the ordered shutdown, which svscan bounds itself: more time, every
        EXTEND_EVERY seconds (systemd keeps the later of its own deadline and this)."""
        now = time.monotonic()
        if now - self.extended >= EXTEND_EVERY:
            self.extended = now
            self.send(f"EXTEND_TIMEOUT_USEC={EXTEND_BY_USEC}")
        self.iteration_done()

    def fatal(self, text: str, err: OSError | None) -> None:
        """A start-up error svscan dies of: systemctl status shows it."""
        lines = [f"STATUS={one_line(text)}"]
        if err is not None and err.errno:
            lines.append(f"ERRNO={err.errno}")
        self.send(*lines)

    def next_ping(self) -> float:
        """Seconds until the next watchdog ping is due (inf without a watchdog)."""
        if not self.ping_every:
            return float("inf")
        return max(0.0, self.pinged + self.ping_every - time.monotonic())

    def iteration_done(self, *also: str) -> None:
        """WATCHDOG=1, if due, with `also` in the same datagram: only ever called once a
        loop iteration has completed, so a wedged loop stops the pings and systemd
        aborts and restarts the tree."""
        if self.ping_every and time.monotonic() - self.pinged >= self.ping_every:
            self.pinged = time.monotonic()
            self.send("WATCHDOG=1", *also)

    def note(self, text: str) -> None:
        """Remember a diagnostic line for the STATUS= summary."""
        self.last_error = (time.monotonic(), text)


def enable_faulthandler() -> None:
    """A watchdog SIGABRT (or a crash) leaves the Python stack on stderr, in the
    journal (§2.7)."""
    import faulthandler
    try:
        faulthandler.enable()
    except (RuntimeError, ValueError, OSError):  # no usable stderr
        pass


def watchdog_usec(environ: os._Environ[str] | dict[str, str]) -> int:
    """sd_watchdog_enabled(): WATCHDOG_USEC, if WATCHDOG_PID is unset or names us."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return 0
    try:
        usec = int(environ.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return 0
    return max(usec, 0)


def one_line(text: str) -> str:
    """STATUS= text: one line, at most STATUS_MAX bytes of UTF-8, cut between characters."""
    text = " ".join(text.split("\n")).replace("\r", " ")
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= STATUS_MAX:
        return text
    return data[:STATUS_MAX].decode("utf-8", "ignore")


# -- the STATUS= summary -----------------------------------------------------------

def service_state(dir: str) -> tuple[bool, bool | None]:
    """(up, ready) of one service directory: up from supervise/status's pid, ready
    from supervise/notify-state (None: the service does not notify)."""
    pid = 0
    try:
        with open(f"{dir}/supervise/status", "rb") as f:
            data = f.read(18)
        if len(data) >= 18:
            pid = int.from_bytes(data[12:16], "little")
    except OSError:
        pass
    try:
        with open(f"{dir}/supervise/notify-state", "rb") as f:
            state = f.read(4096)
    except OSError:
        return bool(pid), None
    # as svstat reads it: a state left by another run (another pid) is not readiness
    fields = dict(line.partition(b"=")[::2] for line in state.split(b"\n"))
    ready = bool(pid) and fields.get(b"pid") == b"%d" % pid and bool(fields.get(b"ready"))
    return bool(pid), ready


def summary(names: list[str], last_error: tuple[float, str] | None) -> str:
    """`12 services: 11 up (9 ready), 1 down; last error 40s ago: TEXT` (§2.7), the
    ready count only when some service notifies: what readproctitle used to show."""
    up = ready = notifying = 0
    for name in names:
        is_up, is_ready = service_state(name)
        up += is_up
        if is_ready is not None:
            notifying += 1
            ready += is_ready
    text = f"{len(names)} service{'' if len(names) == 1 else 's'}: {up} up"
    if notifying:
        text += f" ({ready} ready)"
    text += f", {len(names) - up} down"
    if last_error is not None:
        ago = int(time.monotonic() - last_error[0])
        text += f"; last error {ago}s ago: {last_error[1]}"
    return text
