"""The FIFOs under `supervise/`: how supervise holds them and how clients reach them.

"supervise is running" means "someone holds `supervise/ok` open for reading", so a
client opens it write-only and non-blocking: ENXIO says nobody is there.
"""

from __future__ import annotations

import os

_CLIENT_FLAGS = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC


def make(path: str, mode: int = 0o600) -> None:
    """mkfifo with errors ignored, as supervise does (an existing FIFO is reused as is)."""
    try:
        os.mkfifo(path, mode)
    except OSError:
        pass


def open_reader(path: str) -> int:
    """Non-blocking read end for supervise; close-on-exec so `./run` never holds it."""
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


def open_writer(path: str) -> int:
    """Non-blocking write end; raises OSError(ENXIO) when no supervise holds the FIFO."""
    return os.open(path, _CLIENT_FLAGS)


def has_reader(path: str) -> bool:
    """svok's test on supervise/ok: someone holds it open for reading."""
    try:
        os.close(open_writer(path))
    except OSError:
        return False
    return True


def send_quietly(control: str, data: bytes) -> None:
    """What `svc` does for one directory's control FIFO, without a word on failure:
    for a supervisor stopping its children, which must never stall on one of them."""
    try:
        fd = open_writer(control)
    except OSError:
        return
    try:
        os.write(fd, data)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_commands(fd: int, data: bytes) -> int:
    """Switch to blocking and write `data` in one write(), as svc does."""
    os.set_blocking(fd, True)
    return os.write(fd, data)
