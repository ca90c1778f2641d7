"""DJB's sgetopt: options only in front, clustering, a lone `-` ends them and is kept,
any word starting `--` (`--`, `--x`) ends them and is consumed.

Complaints name the program as it was run (basename of argv[0]) and exit 100 is the
caller's business: each program prints its own usage line after them.
"""

from __future__ import annotations

import os
from . import errors

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import Iterator, NoReturn


class Parsed:
    """Options in command-line order, then the remaining arguments."""

    __slots__ = ("options", "args")

    def __init__(self) -> None:
        self.options: list[tuple[str, str | None]] = []
        self.args: list[str] = []


class OptionError(Exception):
    """Already reported on stderr; the caller prints its usage and exits 100."""


class Options:
    """getopt() one option at a time: iterating yields (letter, argument or None) as each
    option is read, so a program can act on it before the next one is looked at, as the
    C loops do (softlimit: `-m x -z` is a bad number, not a bad option). A bad option is
    complained about and raises OptionError. Once the loop has ended, `args` holds the
    words after the options (the C's argv + optind).
    """

    __slots__ = ("_argv", "_spec", "args")

    def __init__(self, argv: list[str], spec: str) -> None:
        """`spec`: getopt letters, `:` after those that take an argument."""
        self._argv = argv
        self._spec = spec
        self.args: list[str] = []

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        argv, spec = self._argv, self._spec
        i = 1
        while i < len(argv):
            word = argv[i]
            if not word.startswith("-") or word == "-":
                break
            if word.startswith("--"):  # the C looks no further than the second byte
                i += 1
                break
            j = 1
            while j < len(word):
                letter = word[j]
                pos = spec.find(letter)
                if letter == ":" or pos < 0:
                    _complain(argv, "illegal option", letter)
                if spec[pos + 1:pos + 2] == ":":
                    if j + 1 < len(word):
                        yield letter, word[j + 1:]
                    elif i + 1 < len(argv):
                        i += 1
                        yield letter, argv[i]
                    else:
                        _complain(argv, "option requires an argument", letter)
                    break
                yield letter, None
                j += 1
            i += 1
        self.args = argv[i:]


def parse(argv: list[str], spec: str) -> Parsed:
    """The whole option list at once, for programs that act only once it is read."""
    options = Options(argv, spec)
    out = Parsed()
    out.options = list(options)
    out.args = options.args
    return out


def _complain(argv: list[str], text: str, letter: str) -> NoReturn:
    """`NAME: TEXT -- C`. The C prints one byte, so a multi-byte character is cut to the
    first byte of its encoding (`-é`: \\303): surrogate-escaped, write_line writes it raw."""
    name = os.path.basename(argv[0]) if argv else ""
    errors.write_line(f"{name}: {text} -- {os.fsdecode(os.fsencode(letter)[:1])}")
    raise OptionError(letter)
