"""fghack CHILD: keep a self-daemonising CHILD in the foreground. CHILD gets 31 copies
of a pipe's write end; descendants that keep them keep fghack waiting, so supervise
sees the service as up until the daemon itself is gone."""

from __future__ import annotations

import fcntl
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv

PROG = "fghack"
COPIES = 30  # dup()s of the write end on top of the original: 31 descriptors in all


def main(argv: list[str]) -> int:
    """daemontools.md §9."""
    if len(argv) < 2:
        return errors.usage(PROG, "fghack child")
    try:
        # pipe2(0), not os.pipe(): like C pipe(), no close-on-exec, so CHILD inherits.
        reader, writer = os.pipe2(0)
    except OSError as e:
        return errors.fatal(PROG, "unable to create pipe: ", e)
    try:
        pid = os.fork()
    except OSError as e:
        return errors.fatal(PROG, "unable to fork: ", e)

    if pid == 0:
        os.close(reader)
        for _ in range(COPIES):
            try:
                fcntl.fcntl(writer, fcntl.F_DUPFD, 0)  # dup(): lowest free fd, inheritable
            except OSError:  # the C ignores a failed dup() too
                pass
        return execenv.exec_child(PROG, argv[1:])

    os.close(writer)
    while True:  # EOF: every holder of the write end, grandchildren too, closed it or died
        try:
            if not os.read(reader, 4096):
                break
        except OSError:  # as the C: any read error other than EINTR ends the wait
            break
    try:
        _, wstat = os.waitpid(pid, 0)
    except OSError as e:
        return errors.fatal(PROG, "wait failed: ", e)
    if wstat & 0o177:  # wait_crashed()
        return errors.fatal(PROG, "child crashed")
    return (wstat >> 8) & 0xFF


def run() -> NoReturn:
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
