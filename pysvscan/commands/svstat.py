"""svstat DIR ...: one line per directory from supervise/status, as daemontools 0.76.

A service that opted in to readiness notification gets `, ready N seconds` or
`, not ready` appended (systemd.md §2.6); every other line is the C's.
"""

from __future__ import annotations

import os

import _signal  # not `signal`: its IntEnum set-up costs 2.4 ms of start-up
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, status, tai64
from ..status import WANT_DOWN, WANT_UP, Status

PROG = "svstat"
BUFFER = 1024  # the C buffer_1: output leaves in 1 KiB writes
# supervise.NOTIFY_FILES and notify_server.NOTIFY_STATE, not imported: their modules'
# imports would cost svstat's start-up
NOTIFY_FILES = ("sd-notify", "watchdog", "notification-fd")
NOTIFY_STATE = "supervise/notify-state"


def describe(dir: str, now: int) -> str:
    """The text after `DIR: `; the first failing step decides it (daemontools.md §5)."""
    try:
        os.chdir(dir)
    except OSError as e:
        return f"unable to chdir: {errors.errtext(e)}"
    found = status.probe()
    if found.error is not None or found.status is None:
        return found.error or ""
    text = line(found.status, found.normally_up, now)
    if found.status.pid:  # services that opted in to readiness (systemd.md §2.6)
        text += readiness(found.status.pid, now)
    return text


def line(st: Status, normally_up: bool, now: int) -> str:
    """`up (pid P) S seconds` or `down S seconds`, then the flags in the C order."""
    text = f"up (pid {st.pid}) " if st.pid else "down "
    text += f"{st.seconds_since(now)} seconds"
    if st.pid and not normally_up:
        text += ", normally down"
    if not st.pid and normally_up:
        text += ", normally up"
    if st.pid and st.paused:
        text += ", paused"
    if not st.pid and st.want == WANT_UP:
        text += ", want up"
    if st.pid and st.want == WANT_DOWN:
        text += ", want down"
    return text


def readiness(pid: int, now: int) -> str:
    """The suffix for a service that is up: `, ready N seconds` or `, not ready`; ''
    when the service does not opt in (ready_since)."""
    when = ready_since(pid)
    if when is None:
        return ""
    if when == NOT_READY:
        return ", not ready"
    return f", ready {int(float(max(0, now - when)))} seconds"


NOT_READY = -1


def ready_since(pid: int) -> int | None:
    """The TAI64 seconds at which the service in the current directory became ready,
    NOT_READY, or None when it does not opt in. Read from supervise/notify-state
    (notify_server.write_state), which only a supervise serving an opted-in service
    writes; None too when there is no such file or the service no longer opts in. A
    state left from another pid means the new run is not ready. Shared with
    `pysvscan status` (pysvscan.services)."""
    try:
        fd = os.open(NOTIFY_STATE, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 8192)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not any(os.access(name, os.F_OK) for name in NOTIFY_FILES):
        return None
    fields = dict(entry.partition(b"=")[::2] for entry in data.split(b"\n"))
    ready = fields.get(b"ready", b"")
    if fields.get(b"pid") != b"%d" % pid or len(ready) != 25 or ready[:1] != b"@":
        return NOT_READY
    try:
        return int(ready[1:17], 16)
    except ValueError:
        return NOT_READY


def main(argv: list[str]) -> int:
    """Every argument is a directory (no options); exit 0 unless `.` is unusable."""
    try:
        origin = os.open(".", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return errors.fatal(PROG, "unable to open current directory: ", e)
    out = bytearray()
    for dir in argv[1:]:
        out += os.fsencode(f"{dir}: {describe(dir, tai64.now()[0])}\n")
        if len(out) >= BUFFER:
            write_out(out[:len(out) - len(out) % BUFFER])
            del out[:len(out) - len(out) % BUFFER]
        try:
            os.fchdir(origin)
        except OSError as e:
            write_out(out)
            return errors.fatal(PROG, "unable to set directory: ", e)
    write_out(out)
    return 0


def write_out(data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def run() -> NoReturn:
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)  # a closed stdout ends svstat, as in C
    errors.run_main(PROG, main)
