"""pgrphack CHILD: run CHILD in a new session (and so a new process group), for
programs that signal their whole group and would otherwise hit their supervisor."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv

PROG = "pgrphack"


def main(argv: list[str]) -> int:
    """daemontools.md §10."""
    if len(argv) < 2:
        return errors.usage(PROG, "pgrphack child")
    try:
        os.setsid()
    except OSError:  # already a process group leader: the C ignores this too
        pass
    return execenv.exec_child(PROG, argv[1:])


def run() -> NoReturn:
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
