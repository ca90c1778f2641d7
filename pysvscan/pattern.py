"""multilog's `+PATTERN`/`-PATTERN` matcher, compiled to an anchored regular expression.

daemontools.md §11 (Patterns): the pattern covers the whole line buffer; `*` at the end
matches the rest, `*` followed by a byte X skips to the *first* X without backtracking
(and fails when there is none). `[^X]*(?=X)` is exactly that skip: it cannot pass an X,
and the look-ahead fails unless it stopped right at one, so the regular expression
engine has no other way through. Compiling once and matching in C is what makes the
pattern scripts fast enough (issue: at least half the C's throughput).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def translate(pattern: bytes) -> bytes:
    """The regular expression equivalent to `pattern` under multilog's rules."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i:i + 1]
        if ch != b"*":
            out.append(re.escape(ch))
            i += 1
            continue
        if i + 1 == n:  # a final `*` takes whatever is left
            return b"".join(out) + b".*"
        # skip to the first occurrence of the next pattern byte, which is then
        # matched by the next step (a literal, or another `*` when it is one)
        out.append(b"[^\\x%02x]*(?=\\x%02x)" % (pattern[i + 1], pattern[i + 1]))
        i += 1
    return b"".join(out) + b"\\Z"


def compile_pattern(pattern: bytes) -> Callable[[bytes], object]:
    """A function returning a true value iff the line buffer matches `pattern`."""
    return re.compile(translate(pattern), re.DOTALL).match

