"""Waiting for a service's files to change, without polling: inotify (through ctypes,
as the standard library has no binding) plus pidfds for processes.

supervise replaces supervise/status and notify-state by rename(), so IN_MOVED_TO on
supervise/ announces every change of state; the end of a supervise is seen through
its pidfd; multilog appends to `current` (IN_MODIFY) and rotates by rename and
create. Used by `pysvscan wait`, `remove` and `logs -f`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import time
from typing import Callable

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_ONLYDIR = 0x01000000
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000

# supervise/: a new status or notify-state, a supervise creating its files. Not the
# IN_CLOSE_* events: reading the state closes files there, and would wake us up.
SUPERVISE_EVENTS = IN_MOVED_TO | IN_CREATE | IN_DELETE
# a service directory: supervise/ appearing
SERVICE_EVENTS = IN_CREATE | IN_MOVED_TO | IN_DELETE
# a multilog directory: lines appended, rotation
LOGDIR_EVENTS = IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE


class Watcher:
    """One inotify instance and the pidfds of processes whose end matters."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._add_watch = libc.inotify_add_watch
        self._add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._add_watch.restype = ctypes.c_int
        fd = libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd
        self.pidfds: dict[int, int] = {}

    def add(self, path: str, mask: int) -> bool:
        """Watch directory `path` (again: the same watch); False if it does not exist."""
        if self._add_watch(self.fd, os.fsencode(path), mask | IN_ONLYDIR) >= 0:
            return True
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise OSError(err, os.strerror(err), path)

    def add_pid(self, pid: int) -> bool:
        """Wake up when process `pid` ends; False if there is no such process."""
        if pid in self.pidfds:
            return True
        try:
            self.pidfds[pid] = os.pidfd_open(pid)
            return True
        except OSError:
            return False

    def wait(self, timeout: float | None) -> bool:
        """Sleep until an event, a watched process's end or `timeout` seconds (None:
        no limit); True if something happened. Events are drained, not returned:
        callers read the files again, which is always correct."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        for fd in self.pidfds.values():
            poller.register(fd, select.POLLIN)
        ready = poller.poll(None if timeout is None else max(0.0, timeout) * 1000)
        for fd, _ in ready:
            if fd == self.fd:
                self.drain()
            else:  # a pidfd stays readable once the process ended: forget it
                pid = next(p for p, f in self.pidfds.items() if f == fd)
                os.close(self.pidfds.pop(pid))
        return bool(ready)

    def drain(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in self.pidfds.values():
            os.close(fd)
        self.pidfds.clear()
        os.close(self.fd)

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(check: Callable[[Watcher], bool], timeout: float | None) -> bool:
    """Until check() is true or `timeout` seconds passed; True if it became true.

    check() first adds the watches it needs (adding one twice is harmless), then
    reads the state: a change after the watch was added wakes the next wait(), so
    none is missed between reading and sleeping."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with Watcher() as watcher:
        while True:
            if check(watcher):
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            watcher.wait(left)


def watch_service(watcher: Watcher, service_dir: str) -> None:
    """The watches that see every change of a service's state: its supervise/ (and
    the service directory itself, in case supervise/ is not there yet)."""
    watcher.add(service_dir, SERVICE_EVENTS)
    watcher.add(os.path.join(service_dir, "supervise"), SUPERVISE_EVENTS)
