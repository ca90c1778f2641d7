"""tai64nlocal: turn the TAI64N label at the start of each line into local time.

The C program works byte by byte. This one reads large chunks and converts all the
whole lines of a chunk at once with bytes operations that loop in C (split, join,
translate, a2b_hex, one `%` format), falling back to line-by-line work only for a
chunk with lines that are not plain `@` + 24 hex digits. Conversions are cached
per second, since a log's lines come in runs within the same second.

What is written before each read is exactly what the C program would have flushed:
a partial line is written as far as it goes once its label is complete; the label
of a line is held back until the byte after it arrives.
"""

from __future__ import annotations

import os
import time
from binascii import a2b_hex
from itertools import chain
from operator import itemgetter
from struct import unpack

import _signal  # not `signal`: its IntEnum set-up costs start-up time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv, tai64

PROG = "tai64nlocal"
CHUNK = 1 << 16  # bigger chunks gain nothing: the per-chunk work outgrows the CPU caches
HEX = b"0123456789abcdef"  # the C accepts lowercase digits only
CACHE_LIMIT = 10_000

_HEAD = itemgetter(slice(0, 26))  # `@`, 24 hex digits and the byte that ends the scan
_SECONDS = itemgetter(slice(1, 17))
_NANOS = itemgetter(slice(17, 25))
_REST = itemgetter(slice(25, None))

# Seconds field (16 hex digits, as bytes) -> `YYYY-MM-DD HH:MM:SS.` in local time.
_cache: dict[bytes, bytes] = {}
_failed: set[bytes] = set()


def write_all(data: bytes) -> None:
    """Everything to fd 1, however many write() calls it takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def local_seconds(key: bytes) -> bytes | None:
    """`YYYY-MM-DD HH:MM:SS.` for a label's seconds field; None where the C crashes.

    The year is printed as the C prints `1900 + tm_year` (an int) through an unsigned
    long: years from 2^31 on, and negative years, come out as huge numbers.
    """
    unix = (int(key, 16) - tai64.OFFSET) & 0xFFFFFFFFFFFFFFFF  # time_t arithmetic
    if unix >= 1 << 63:
        unix -= 1 << 64
    try:
        tm = time.localtime(unix)
    except (OverflowError, OSError, ValueError):  # localtime() NULL: SIGSEGV in C (§21.1)
        return None
    year = ((tm.tm_year + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return b"%d-%02d-%02d %02d:%02d:%02d." % (
        year & 0xFFFFFFFFFFFFFFFF, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)


def fill_cache(keys: list[bytes]) -> bool:
    """Convert the seconds not yet cached; False if one of them cannot be converted."""
    if len(_cache) + len(_failed) > CACHE_LIMIT:
        _cache.clear()
        _failed.clear()
    for key in set(keys).difference(_cache):
        if key in _failed:
            return False
        prefix = local_seconds(key)
        if prefix is None:
            _failed.add(key)
            return False
        _cache[key] = prefix
    return True


def convert_line(line: bytes) -> bytes:
    """One line (or the start of one, label complete) as the C writes it: the hex scan
    stops at the first byte that is not 0-9a-f, a 96-bit accumulator keeps the last 24
    digits; unconvertible times leave the line unchanged (§21.1)."""
    if line[:1] != b"@":
        return line
    rest = line[1:].lstrip(HEX)
    digits = line[1:len(line) - len(rest)]
    value = int(digits[-24:], 16) if digits else 0
    key = b"%016x" % (value >> 32)
    prefix = _cache.get(key)
    if prefix is None:
        if key in _failed or not fill_cache([key]):
            return line
        prefix = _cache[key]
    return b"%s%09d%s" % (prefix, value & 0xFFFFFFFF, rest)


def convert_lines(block: bytes) -> bytes:
    """Whole lines, each ending in a newline, converted.

    Fast path when every line is `@` + exactly 24 lowercase hex digits + more: the
    heads are checked by counting (each 26-byte head must lose exactly its 24 digits
    to translate(), with `@` first and a non-digit last), then the output is one
    `%` format over (cached seconds, nanoseconds, rest of line) triples.
    """
    lines = block.split(b"\n")
    lines.pop()
    n = len(lines)
    heads = b"".join(map(_HEAD, lines))
    if (len(heads) == 26 * n and heads[0::26].count(b"@") == n
            and len(heads[25::26].translate(None, HEX)) == n
            and len(heads.translate(None, HEX)) == 2 * n):
        keys = list(map(_SECONDS, lines))
        try:
            prefixes = list(map(_cache.__getitem__, keys))
        except KeyError:
            prefixes = list(map(_cache.__getitem__, keys)) if fill_cache(keys) else None
        if prefixes is not None:
            nanos = unpack(">%dI" % n, a2b_hex(b"".join(map(_NANOS, lines))))
            return (b"%s%09d%s\n" * n) % tuple(
                chain.from_iterable(zip(prefixes, nanos, map(_REST, lines))))
    if block.find(b"@") < 0:
        return block
    lines.append(b"")
    return b"\n".join(map(convert_line, lines))


def main(argv: list[str]) -> int:
    """daemontools.md §13: arguments are ignored; output is flushed before each read.
    Any read or write error ends the program with 111 and no message, as in C."""
    pending: list[bytes] = []  # `@` and hex digits of a line whose label scan goes on
    copying = False  # inside a line whose label, if any, is written: bytes pass through
    read = os.read
    try:
        while True:
            data = read(0, CHUNK)
            if not data:
                return 0  # a label still being scanned is dropped, as by the C
            out = []
            if copying:
                end = data.find(b"\n") + 1
                if not end:
                    write_all(data)
                    continue
                out.append(data[:end])
                data = data[end:]
                copying = False
            if pending:
                pending.append(data)
                if not data.lstrip(HEX):
                    continue
                data = b"".join(pending)
                pending = []
            end = data.rfind(b"\n") + 1
            if end:
                out.append(convert_lines(data if end == len(data) else data[:end]))
            if end < len(data):
                tail = data[end:]
                if tail[0] == 64 and not tail[1:].lstrip(HEX):
                    pending = [tail]
                else:
                    out.append(convert_line(tail))
                    copying = True
            if out:
                write_all(out[0] if len(out) == 1 else b"".join(out))
    except OSError:
        return errors.EXIT_TEMPORARY


def run() -> NoReturn:
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)  # a closed pipe ends it, as in C
    execenv.settle_after_launcher(PROG)
    errors.run_main(PROG, main)
