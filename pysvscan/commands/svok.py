"""svok DIR: exit 0 if a supervise holds DIR/supervise/ok open, 100 if not."""

from __future__ import annotations

import errno
import os
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, fifo

PROG = "svok"


def main(argv: list[str]) -> int:
    """daemontools.md §4: further arguments are ignored."""
    if len(argv) < 2:
        return errors.usage(PROG, "svok dir")
    dir = argv[1]
    try:
        os.chdir(dir)
    except OSError as e:
        return errors.fatal(PROG, f"unable to chdir to {dir}: ", e)
    try:
        os.close(fifo.open_writer("supervise/ok"))
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENXIO):
            return errors.EXIT_PERMANENT
        return errors.fatal(PROG, f"unable to open {dir}/supervise/ok: ", e)
    return 0


def run() -> NoReturn:
    errors.run_main(PROG, main)
