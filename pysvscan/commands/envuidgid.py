"""envuidgid ACCOUNT CHILD...: run CHILD with $UID and $GID set to ACCOUNT's ids."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv
from .setuidgid import find_account

PROG = "envuidgid"


def main(argv: list[str]) -> int:
    """daemontools.md §15, step by step; the ids of this process stay as they are."""
    if len(argv) < 3:
        return errors.usage(PROG, "envuidgid account child")
    child = argv[2:]
    pw = find_account(PROG, argv[1])
    if pw is None:
        return errors.EXIT_TEMPORARY
    edits = [b"GID=%d" % pw.pw_gid, b"UID=%d" % pw.pw_uid]  # in the C's order
    return execenv.exec_child(PROG, child, execenv.edited_environment(edits))


def run() -> NoReturn:
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
