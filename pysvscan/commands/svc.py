"""svc [-udopchaitkx] DIR ...: send the option letters to each DIR's supervise, in order.

The letters are collected first (each once, in order of first appearance, at most 20)
and written to every directory in a single write(), so `svc -dx` is down-then-exit.
"""

from __future__ import annotations

import errno
import os

import _signal  # not `signal`: its IntEnum set-up costs 2.4 ms of start-up
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, fifo, sgetopt

PROG = "svc"
LETTERS = "udopchaitkx"
OPTIONS_LINE = ("svc options: u up, d down, o once, x exit, p pause, c continue, "
                "h hup, a alarm, i interrupt, t term, k kill")
MAX_COMMANDS = 20


def main(argv: list[str]) -> int:
    """daemontools.md §3; exits 0 even when every directory failed."""
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    try:
        parsed = sgetopt.parse(argv, LETTERS)
    except sgetopt.OptionError:
        errors.write_line(OPTIONS_LINE)
        return errors.EXIT_PERMANENT
    commands = ""
    for letter, _ in parsed.options:
        if letter not in commands and len(commands) < MAX_COMMANDS:
            commands += letter
    data = commands.encode()
    try:
        origin = os.open(".", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return errors.fatal(PROG, "unable to open current directory: ", e)
    for dir in parsed.args:
        send(dir, data)
        try:
            os.fchdir(origin)
        except OSError as e:
            return errors.fatal(PROG, "unable to set directory: ", e)
    return 0


def send(dir: str, data: bytes) -> None:
    """One directory: every failure is a warning and the next directory is tried."""
    try:
        os.chdir(dir)
    except OSError as e:
        return errors.warn(PROG, f"unable to chdir to {dir}: ", e)
    try:
        fd = fifo.open_writer("supervise/control")
    except OSError as e:
        if e.errno == errno.ENXIO:
            return errors.warn(PROG, f"unable to control {dir}: supervise not running")
        return errors.warn(PROG, f"unable to control {dir}: ", e)
    try:
        fifo.write_commands(fd, data)
    except OSError as e:
        errors.warn(PROG, f"error writing commands to {dir}: ", e)
    finally:
        os.close(fd)


def run() -> NoReturn:
    errors.run_main(PROG, main)
