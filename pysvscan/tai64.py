"""TAI64N labels as daemontools makes them: 2^62+10+unix seconds, no leap-second table.

Nanoseconds come from microseconds (`usec*1000+500`), so every label ends in ...500 ns,
exactly like the C programs' gettimeofday()-based labels.
"""

from __future__ import annotations

import struct
import time

OFFSET = (1 << 62) + 10
_LABEL = struct.Struct(">QI")


def now() -> tuple[int, int]:
    """(label seconds, nanoseconds) for the current time."""
    usec = time.time_ns() // 1000
    return OFFSET + usec // 1_000_000, (usec % 1_000_000) * 1000 + 500


def pack(sec: int, nsec: int) -> bytes:
    """The 12-byte big-endian TAI64N label."""
    return _LABEL.pack(sec, nsec)


def unpack(label: bytes) -> tuple[int, int]:
    """(seconds, nanoseconds) from the first 12 bytes of `label`."""
    return _LABEL.unpack_from(label)


def to_unix(sec: int) -> int:
    """Unix seconds for a label's seconds field."""
    return sec - OFFSET


def external(label: bytes) -> str:
    """The printed form: `@` and 24 lowercase hex digits."""
    return "@" + label[:12].hex()


def external_now() -> bytes:
    """The printed label of the current time as bytes, ready for os.write (tai64n)."""
    sec, nsec = now()
    return b"@" + _LABEL.pack(sec, nsec).hex().encode()
