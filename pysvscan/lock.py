"""BSD flock() locks, the only kind that excludes the C daemontools programs."""

from __future__ import annotations

import fcntl
import os

_LOCK_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC


def open_lockfile(path: str, inheritable: bool = False) -> int:
    """Open (creating 0600) a lock file the way daemontools does: append, never truncate.

    Close-on-exec, like every internal descriptor, unless `inheritable`: setlock's is
    CHILD's, which holds the lock for as long as any copy of it stays open.
    """
    fd = os.open(path, _LOCK_FLAGS, 0o600)
    if inheritable:  # os.open() always adds O_CLOEXEC (PEP 446)
        os.set_inheritable(fd, True)
    return fd


def lock_ex(fd: int) -> None:
    """Exclusive lock, waiting for as long as another holder keeps it."""
    fcntl.flock(fd, fcntl.LOCK_EX)


def lock_exnb(fd: int) -> None:
    """Exclusive lock or OSError(EAGAIN) at once."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
