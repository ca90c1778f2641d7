"""The numbered lines of the logging fault experiments, and their accounting.

Shared by bench/log_faults.py (multilog alone on a held pipe) and bench/tree_faults.py
(a whole svscan tree). A service writes `line %08d <filler>\\n`, one write(2) per line;
multilog `t` stamps it; reading the log directory back (archives in name order, that is
archival order, then `current`) gives, per number:

* lost: line numbers written and never logged;
* duplicated: log lines whose number was already logged;
* garbled: log lines not exactly `@<24 hex> line <8 digits> <filler>` (a line cut by a
  kill, two lines run together...), or a number never written;
* reordered: first appearances of a number after a higher number.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

INTERVAL = 0.001
FILLER = b"the quick brown fox jumps over the lazy dog 0123456789"
LINE = b"line %08d " + FILLER + b"\n"
LOGGED = re.compile(rb"@[0-9a-f]{24} line (\d{8}) " + re.escape(FILLER))
ARCHIVE = re.compile(r"@[0-9a-f]{24}\.[su]")


@dataclass
class Analysis:
    logged: int = 0
    lost: int = 0
    duplicated: int = 0
    dup_runs: int = 0        # stretches of consecutive duplicated lines
    max_dup_run: int = 0
    garbled: int = 0
    reordered: int = 0
    archives_s: int = 0
    archives_u: int = 0
    files: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    lost_examples: list[int] = field(default_factory=list)
    garbled_examples: list[bytes] = field(default_factory=list)

    def damage(self) -> list[str]:
        """Lost, garbled and reordered lines, in words (empty: none)."""
        out = []
        if self.lost:
            out.append(f"{self.lost} lines lost (first: {self.lost_examples})")
        if self.garbled:
            out.append(f"{self.garbled} garbled lines (e.g. {self.garbled_examples})")
        if self.reordered:
            out.append(f"{self.reordered} lines out of order")
        return out

    def trimmed(self, num: int) -> bool:
        """As many archives as multilog's n keeps: older ones may have been deleted."""
        return self.archives_s + self.archives_u >= num - 1


def log_files(logdir: Path) -> tuple[list[str], list[str]]:
    """(files holding log lines in order, unexpected leftovers)."""
    names = sorted(os.listdir(logdir))
    archives = [n for n in names if ARCHIVE.fullmatch(n)]
    ordered = archives + [n for n in ("previous", "current") if n in names]
    stray = [n for n in names if n not in ordered and n not in ("lock", "state")]
    if "previous" in names:  # only a crash leaves it; the last run recovers it
        stray.append("previous")
    return ordered, stray


def analyse(logdir: Path, count: int, maybe: Collection[int] = ()) -> Analysis:
    """The log in `logdir` against lines 0 .. count-1 written; a number in `maybe` may
    or may not have been written (its writer was killed around the write), so its
    absence is no loss."""
    result = Analysis()
    files, result.stray = log_files(logdir)
    result.files = files
    result.archives_s = sum(1 for n in files if n.endswith(".s"))
    result.archives_u = sum(1 for n in files if n.endswith(".u"))
    seen = bytearray(count)
    highest = -1
    run = 0
    for name in files:
        data = (logdir / name).read_bytes()
        lines = data.split(b"\n")
        unterminated = lines.pop()  # b"" when the file ends with a newline, as it should
        for line in lines:
            m = LOGGED.fullmatch(line)
            n = int(m.group(1)) if m else -1
            if n < 0 or n >= count:
                result.garbled += 1
                if len(result.garbled_examples) < 5:
                    result.garbled_examples.append(name.encode() + b": " + line[:120])
                continue
            result.logged += 1
            if seen[n]:
                result.duplicated += 1
                run += 1
                result.max_dup_run = max(result.max_dup_run, run)
                if run == 1:
                    result.dup_runs += 1
                continue
            run = 0
            seen[n] = 1
            if n < highest:
                result.reordered += 1
            highest = max(highest, n)
        if unterminated:  # a file ending mid-line: garbled, even if the text is whole
            result.garbled += 1
            if len(result.garbled_examples) < 5:
                result.garbled_examples.append(name.encode() + b" (no newline): "
                                               + unterminated[:120])
    excused = set(maybe)
    missing = [n for n in range(count) if not seen[n] and n not in excused]
    result.lost = len(missing)
    result.lost_examples = missing[:10]
    return result
