"""The 18-byte `supervise/status` record, byte for byte as daemontools 0.76 writes it.

Layout: TAI64N label of the last pid change (12 bytes, big-endian), pid (4 bytes,
little-endian, 0 when down), paused flag, want byte (`u`, `d` or 0 after `o`).
Extra state never goes in here: the C svstat reads these 18 bytes.
"""

from __future__ import annotations

import errno
import os
import struct

from . import tai64
from .errors import errtext

SIZE = 18
_HEAD = struct.Struct(">QI")
_TAIL = struct.Struct("<IBB")

WANT_UP = ord("u")
WANT_DOWN = ord("d")
WANT_NONE = 0


class Status:
    """One status record; `when` is the label's seconds, `nsec` its nanoseconds.

    A slotted class rather than a dataclass: svstat must start in a few milliseconds,
    and importing dataclasses alone costs about 4 ms.
    """

    __slots__ = ("when", "nsec", "pid", "paused", "want")

    def __init__(self, when: int, nsec: int, pid: int = 0, paused: int = 0,
                 want: int = WANT_UP) -> None:
        self.when, self.nsec, self.pid, self.paused, self.want = when, nsec, pid, paused, want

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Status) and self.pack() == other.pack()

    def __repr__(self) -> str:
        return (f"Status(when={self.when}, nsec={self.nsec}, pid={self.pid}, "
                f"paused={self.paused}, want={self.want})")

    def pack(self) -> bytes:
        return _HEAD.pack(self.when, self.nsec) + _TAIL.pack(self.pid, self.paused, self.want)

    @classmethod
    def unpack(cls, data: bytes) -> "Status":
        """Decode the first 18 bytes; ValueError when there are fewer."""
        if len(data) < SIZE:
            raise ValueError("bad format")
        when, nsec = _HEAD.unpack_from(data, 0)
        pid, paused, want = _TAIL.unpack_from(data, 12)
        return cls(when, nsec, pid, paused, want)

    def seconds_since(self, now: int | None = None) -> int:
        """Whole seconds since the last pid change as svstat counts them (never negative).

        The C goes through a double (tai_approx), so absurd ages from a corrupted
        label come out rounded the same way.
        """
        if now is None:
            now = tai64.now()[0]
        return int(float(max(0, now - self.when)))




class Probe:
    """What svstat learns about the service in the current directory.

    `error` is svstat's text for the first step that failed (None if all went well);
    `running` says a supervise holds supervise/ok.
    """

    __slots__ = ("error", "status", "normally_up", "running")

    def __init__(self, error: str | None = None, status: "Status | None" = None,
                 normally_up: bool = True, running: bool = False) -> None:
        self.error, self.status, self.normally_up, self.running = (
            error, status, normally_up, running)


def probe() -> Probe:
    """svstat's steps after chdir, in order: down, supervise/ok, supervise/status."""
    try:
        os.stat("down")
        normally_up = False
    except FileNotFoundError:
        normally_up = True
    except OSError as e:
        return Probe(f"unable to stat down: {errtext(e)}")
    try:
        os.close(os.open("supervise/ok", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError as e:
        if e.errno == errno.ENXIO:
            return Probe("supervise not running", normally_up=normally_up)
        return Probe(f"unable to open supervise/ok: {errtext(e)}", normally_up=normally_up)
    try:
        fd = os.open("supervise/status", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return Probe(f"unable to open supervise/status: {errtext(e)}", None, normally_up, True)
    try:
        data = os.read(fd, SIZE)
    except OSError as e:  # daemontools.md §21.2: the C prints nonsense here
        return Probe(f"unable to read supervise/status: {errtext(e)}", None, normally_up, True)
    finally:
        os.close(fd)
    if len(data) < SIZE:
        return Probe("unable to read supervise/status: bad format", None, normally_up, True)
    return Probe(None, Status.unpack(data), normally_up, True)
