"""readproctitle ARG... DOTS: `ps` shows the tail of standard input in place of DOTS.

daemontools.md §8. The display area is the last argument's own memory, rewritten
through /proc/self/mem (the interpreter's argv strings, see proctitle.last_argument),
so /proc/PID/cmdline keeps every argument boundary and the same length. Nothing is
ever written to a descriptor, not even a usage line.

Input is read in chunks, not a byte at a time as in the C: the area after a chunk is
exactly what the C shows after the same bytes, and svscan's output never waits on a
system call per byte.
"""

from __future__ import annotations

import fcntl
import os

import _signal  # not `signal`: its IntEnum set-up costs start-up time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv, proctitle

PROG = "readproctitle"
FIXED = b"..."    # the first three bytes of the area never change
MIN_LENGTH = 5
CHUNK = 4096


class Area:
    """The last argument's bytes in this process's memory."""

    def __init__(self, mem: int, address: int) -> None:
        self.mem, self.address = mem, address

    def show(self, text: bytes) -> None:
        os.pwrite(self.mem, text, self.address)


def main(argv: list[str]) -> int:
    """daemontools.md §8, steps 1-4; every exit is silent."""
    if len(argv) < 2:
        return errors.EXIT_PERMANENT
    length = len(os.fsencode(argv[-1]))
    proctitle.start_at_own_name(PROG)  # cmdline as the C's: no interpreter in front
    area = find_area(argv[-1])
    if area is not None:
        area.show(b"." * length)
    if length < MIN_LENGTH:
        return errors.EXIT_PERMANENT
    window = b"." * (length - len(FIXED))
    while True:
        try:
            data = os.read(0, CHUNK)  # EINTR is retried, as the C does
        except OSError:
            return errors.EXIT_TEMPORARY
        if not data:
            return 0
        data = data.replace(b"\0", b"")
        if data:
            window = (window + data)[-len(window):]
            if area is not None:
                area.show(FIXED + window)


def find_area(last: str) -> Area | None:
    """The display area, or None if this process cannot rewrite its argv memory (no
    /proc, or the memory's last string is not `last`): standard input is then still
    read to the end, so svscan is never blocked on a full pipe."""
    try:
        mem = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if mem < 3:  # fd 0 was closed: reading it must fail with EBADF, as in the C
            mem, low = fcntl.fcntl(mem, fcntl.F_DUPFD_CLOEXEC, 3), mem
            os.close(low)
        address, text = proctitle.last_argument(mem)
    except (OSError, ValueError, IndexError):
        os.close(mem)
        return None
    if text != os.fsencode(last):
        os.close(mem)
        return None
    return Area(mem, address)


def run() -> NoReturn:
    # CPython catches SIGINT; the C program dies of it (unless it was started ignored).
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    execenv.settle_after_launcher(PROG)
    errors.run_main(PROG, main)
