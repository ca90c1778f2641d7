"""tai64n: put a TAI64N label (`@` + 24 hex digits + space) in front of every line.

The C program works byte by byte and takes the time when a line's first byte is read.
This one reads large chunks and takes one stamp per read: every line that starts in
that chunk was first seen at that moment, so the observable semantics are the same
(lines first seen in the same read share a stamp), and the labelling is one
bytes.replace per chunk instead of a Python loop per line.
"""

from __future__ import annotations

import os

import _signal  # not `signal`: its IntEnum set-up costs start-up time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv, tai64

PROG = "tai64n"
CHUNK = 1 << 20  # a pipe hands over what it has; a file fills the whole chunk


def write_all(data: bytes | memoryview) -> None:
    """Everything to fd 1, however many write() calls it takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def main(argv: list[str]) -> int:
    """daemontools.md §12: arguments are ignored; output is flushed before each read.
    Any read or write error ends the program with 111 and no message, as in C."""
    read = os.read
    at_line_start = True
    try:
        while True:
            chunk = read(0, CHUNK)
            if not chunk:
                return 0
            label = tai64.external_now() + b" "
            body = chunk.replace(b"\n", b"\n" + label)
            if at_line_start:
                body = label + body
            at_line_start = chunk[-1] == 10
            if at_line_start:  # the label after the last newline is the next read's
                write_all(memoryview(body)[:-len(label)])
            else:
                write_all(body)
    except OSError:
        return errors.EXIT_TEMPORARY


def run() -> NoReturn:
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)  # a closed pipe ends it, as in C
    execenv.settle_after_launcher(PROG)
    errors.run_main(PROG, main)
