"""multilog's `+PATTERN`/`-PATTERN` matcher, compiled to an anchored regular expression.

daemontools.md §11 (Patterns): the pattern covers the whole line buffer; `*` at the end
matches the rest, `*` followed by a byte X skips to the *first* X without backtracking
(and fails when there is none). The possessive `[^X]*+` (Python 3.11) is exactly that
skip: it cannot pass an X and gives no byte back, so the engine has no other way
through. Compiling once and matching in C is what makes pattern scripts fast enough
(issue 3: at least half the C's throughput).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def translate(pattern: bytes) -> bytes:
    """The regular expression equivalent to `pattern` under multilog's rules, for
    re.match (anchored at the start; the end is anchored unless the pattern ends
    with `*`, which takes whatever is left)."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] != 0x2A:  # a literal byte
            out.append(re.escape(pattern[i:i + 1]))
            i += 1
            continue
        if i + 1 == n:
            return b"".join(out)
        stop = pattern[i + 1]
        # skip to the first `stop` byte; possessive, so there is no way back. The
        # next step matches that byte, unless it is another `*`, which does not
        # consume it: then a look-ahead demands it.
        out.append(b"[^\\x%02x]*+" % stop)
        if stop == 0x2A:
            out.append(b"(?=\\*)")
        i += 1
    return b"".join(out) + b"\\Z"


def compile_pattern(pattern: bytes) -> Callable[[bytes], object]:
    """A function returning a true value iff the line buffer matches `pattern`."""
    return re.compile(translate(pattern), re.DOTALL).match

