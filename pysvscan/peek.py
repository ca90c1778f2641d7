"""Reading stdin in large chunks, without losing what a killed reader had not written.

A pipe cannot be peeked, but tee(2) copies its contents into another pipe without
consuming them. multilog copies what is waiting, writes the lines out, and only then
takes those bytes out of its stdin, so a multilog killed in between leaves them to its
successor (at least once, where the C is at most once). Other kinds of stdin are read
as usual. A line left unfinished in the pipe for more than a second is taken out anyway,
so that waiting for its end can go back to sleeping in poll().
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat
import sys
import termios
import time

SPLICE_F_NONBLOCK = 2
STUCK_LINE = 1.0   # seconds an unfinished line may hold bytes in the pipe
MAX_NAP = 0.1      # longest sleep while waiting for an unfinished line to grow


def _load_tee():
    """libc's tee(), or None where it cannot be had (then stdin is read normally)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        tee = libc.tee
    except (ImportError, OSError, AttributeError):
        return None
    tee.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)
    tee.restype = ctypes.c_ssize_t

    def call(fd_in: int, fd_out: int, size: int) -> int:
        n = tee(fd_in, fd_out, size, SPLICE_F_NONBLOCK)
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return n
    return call


class Input:
    """fd 0. Offsets count bytes since multilog started: `returned` is how far read()
    has handed data out, `consumed` how far the data is really gone from stdin."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.returned = 0
        self.consumed = 0
        self.eof = False
        self.tee = None
        self.copy_r = self.copy_w = -1
        self.stuck_since = 0.0
        try:
            is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except OSError:
            is_pipe = False
        if is_pipe:
            self.tee = _load_tee()
        if self.tee is not None:
            self.copy_r, self.copy_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                fcntl.fcntl(self.copy_w, fcntl.F_SETPIPE_SZ, fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
            except OSError:
                pass
        self.capacity = (fcntl.fcntl(self.copy_w, fcntl.F_GETPIPE_SZ)
                         if self.tee is not None else 0)

    @property
    def held(self) -> int:
        """Bytes handed out but still in the pipe."""
        return self.returned - self.consumed

    def wait(self, wakeup: int) -> bool:
        """Sleep until stdin has news (data, end of input); False if `wakeup` (the
        signal pipe) became readable first."""
        if self.tee is None or self.held == 0:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            poller.register(wakeup, select.POLLIN)
            for fd, _ in poller.poll():
                if fd == wakeup:
                    return False
            return True
        return self.wait_for_more(wakeup)

    def wait_for_more(self, wakeup: int) -> bool:
        """The pipe holds an unfinished line we have seen: poll() would always say it is
        readable, so nap until it grows or loses its writers."""
        nap = 0.001
        if not self.stuck_since:
            self.stuck_since = time.monotonic()
        while True:
            if self.pipe_size() > self.held or self.hung_up():
                return True
            if time.monotonic() - self.stuck_since > STUCK_LINE:
                self.consume_to(self.returned)  # give the rest of the line up to memory
                return self.wait(wakeup)
            if select.select([wakeup], [], [], nap)[0]:
                return False
            nap = min(nap * 2, MAX_NAP)

    def pipe_size(self) -> int:
        try:
            data = fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int.from_bytes(data, sys.byteorder)

    def hung_up(self) -> bool:
        poller = select.poll()
        poller.register(self.fd, 0)
        return any(ev & select.POLLHUP for _, ev in poller.poll(0))

    def read(self, size: int) -> bytes | None:
        """Up to `size` new bytes; b"" at end of input (read errors end it too, as in
        the C); None when nothing is there after all (a spurious wake-up)."""
        if self.eof:
            return b""
        if self.tee is not None:
            return self.read_copy(size)
        try:
            data = os.read(self.fd, size)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        self.returned += len(data)
        self.consumed = self.returned
        self.eof = not data
        return data

    def read_copy(self, size: int) -> bytes | None:
        want = min(self.held + size, self.capacity)
        try:
            copied = self.tee(self.fd, self.copy_w, want)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno != errno.EINVAL:
                self.eof = True
                return b""
            self.tee = None  # not a pipe tee can read after all
            return self.read(size)
        data = self.read_exactly(self.copy_r, copied)
        new = data[self.held:]
        if not new:
            if copied == 0 or self.hung_up():
                self.eof = True
                return b""
            return None
        self.stuck_since = 0.0
        self.returned += len(new)
        return new

    @staticmethod
    def read_exactly(fd: int, size: int) -> bytes:
        parts = []
        while size > 0:
            chunk = os.read(fd, size)
            if not chunk:
                break
            parts.append(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def consume_to(self, offset: int) -> None:
        """Everything before `offset` has been written: take it out of the pipe."""
        if self.tee is None or offset <= self.consumed:
            return
        self.read_exactly(self.fd, offset - self.consumed)
        self.consumed = offset
