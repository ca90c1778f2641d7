"""journald's native protocol, spoken directly (systemd.md §3.1-3.2).

A datagram per entry to /run/systemd/journal/socket; entries too big for a datagram
travel in a sealed memfd. Written here rather than taken from python-systemd because
libsystemd reports success when journald is absent (§3.1), and multilog must notice
that and say so once; it also keeps multilog free of an optional dependency.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys

SOCKET_PATH = "/run/systemd/journal/socket"
DEFAULT_PRIORITY = 6  # info, as journald gives stdout streams
SEND_TIMEOUT = 1.0
SEND_BUFFER = 8 << 20
_UNREACHABLE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.EACCES)


def field(name: bytes, value: bytes) -> bytes:
    """One field: NAME=value, or the length-prefixed form when value holds a newline."""
    if b"\n" in value:
        return name + b"\n" + len(value).to_bytes(8, "little") + value + b"\n"
    return name + b"=" + value + b"\n"


def split_priority(line: bytes) -> tuple[int, bytes]:
    """(priority, message) from a `<N>` prefix as journald parses stdout streams:
    one to three digits, leading zeros allowed, value 0-7; else the line unchanged."""
    if line[:1] == b"<":
        end = line.find(b">", 1, 5)
        digits = line[1:end]
        if end > 1 and digits.isdigit() and int(digits) <= 7:
            return int(digits), line[end + 1:]
    return DEFAULT_PRIORITY, line


class Journal:
    """A connectionless sender; send() raises OSError when journald cannot be reached."""

    def __init__(self, path: str = SOCKET_PATH, timeout: float = SEND_TIMEOUT) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # a wedged journald must not wedge the sender: a send that cannot complete in
        # `timeout` raises TimeoutError (an OSError) like an unreachable journal
        self.sock.settimeout(timeout)
        try:  # as libsystemd does: room for bursts, fewer entries through memfds
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass

    def send(self, entry: bytes) -> None:
        """Send one entry (concatenated fields); large ones go through a memfd."""
        try:
            self.sock.sendto(entry, self.path)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, "journald takes no entries") from None
        except OSError as e:
            if e.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self.send_large(entry)

    def send_large(self, entry: bytes) -> None:
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(entry)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
            self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    fd.to_bytes(4, sys.byteorder, signed=True))], 0, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sock.close()


def unreachable(err: OSError) -> bool:
    """True for the errors that mean no journald listens (as opposed to a bad entry)."""
    return err.errno in _UNREACHABLE
