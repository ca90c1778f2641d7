"""DJB's sgetopt: options only in front, clustering, `--` consumed, lone `-` kept.

Complaints name the program as it was run (basename of argv[0]) and exit 100 is the
caller's business: each program prints its own usage line after them.
"""

from __future__ import annotations

import os
from . import errors


class Parsed:
    """Options in command-line order, then the remaining arguments."""

    __slots__ = ("options", "args")

    def __init__(self) -> None:
        self.options: list[tuple[str, str | None]] = []
        self.args: list[str] = []


class OptionError(Exception):
    """Already reported on stderr; the caller prints its usage and exits 100."""


def parse(argv: list[str], spec: str) -> Parsed:
    """Parse argv[1:] against `spec` (getopt letters, `:` after those with arguments)."""
    name = os.path.basename(argv[0]) if argv else ""
    out = Parsed()
    i = 1
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        j = 1
        while j < len(word):
            letter = word[j]
            pos = spec.find(letter)
            if letter == ":" or pos < 0:
                errors.write_line(f"{name}: illegal option -- {letter}")
                raise OptionError(letter)
            if spec[pos + 1:pos + 2] == ":":
                if j + 1 < len(word):
                    out.options.append((letter, word[j + 1:]))
                elif i + 1 < len(argv):
                    i += 1
                    out.options.append((letter, argv[i]))
                else:
                    errors.write_line(f"{name}: option requires an argument -- {letter}")
                    raise OptionError(letter)
                break
            out.options.append((letter, None))
            j += 1
        i += 1
    out.args = argv[i:]
    return out
