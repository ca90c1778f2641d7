"""setuidgid ACCOUNT CHILD...: run CHILD as ACCOUNT, with its primary group only."""

from __future__ import annotations

import os
import pwd
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv

PROG = "setuidgid"


def find_account(prog: str, account: str) -> pwd.struct_passwd | None:
    """getpwnam(ACCOUNT), shared with envuidgid; None once the C's complaint is written
    (the caller exits 111). The C asks no more of a failed lookup than that it failed."""
    try:
        return pwd.getpwnam(account)
    except KeyError:
        errors.fatal(prog, f"unknown account {account}")
        return None


def main(argv: list[str]) -> int:
    """daemontools.md §14, step by step."""
    if len(argv) < 3:
        return errors.usage(PROG, "setuidgid account child")
    child = argv[2:]
    pw = find_account(PROG, argv[1])
    if pw is None:
        return errors.EXIT_TEMPORARY
    try:  # prot_gid(): supplementary groups first, while still allowed to change them
        os.setgroups([pw.pw_gid])
        os.setgid(pw.pw_gid)
    except OSError as e:
        return errors.fatal(PROG, "unable to setgid: ", e)
    try:
        os.setuid(pw.pw_uid)
    except OSError as e:
        return errors.fatal(PROG, "unable to setuid: ", e)
    return execenv.exec_child(PROG, child)


def run() -> NoReturn:
    # Before setuid: the process is then no longer dumpable, and /proc/self/environ,
    # which this reads to undo Python's edits, is root's only.
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
