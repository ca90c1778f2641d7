"""BSD flock() locks, the only kind that excludes the C daemontools programs."""

from __future__ import annotations

import fcntl
import os

_LOCK_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC


def open_lockfile(path: str) -> int:
    """Open (creating 0600) a lock file the way daemontools does: append, never truncate."""
    return os.open(path, _LOCK_FLAGS, 0o600)


def lock_exnb(fd: int) -> None:
    """Exclusive lock or OSError(EAGAIN) at once."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
