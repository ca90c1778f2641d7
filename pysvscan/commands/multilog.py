"""multilog SCRIPT: select lines of stdin and write them to rotated log directories.

daemontools.md §11, plus the journal action `J` (systemd.md §3.5). The C handles one
byte at a time; this reads large chunks and works on every line of a chunk at once (one
timestamp per read, patterns compiled to regular expressions, one write per directory),
keeping what can be observed: a line's stamp is taken when its first byte is read,
patterns, `e` and `=` see the first 1000 bytes (stamp included), every complete line is
in `current` whenever multilog waits for input, and near the size limit the writes are
cut exactly where the C cuts them, so files end where the C's would (logdir.py).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from bisect import bisect_right
from itertools import accumulate, compress
from operator import not_

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, NoReturn

from .. import errors, execenv, journal, tai64
from ..logdir import (DEFAULT_NUM, DEFAULT_SIZE, MAX_SIZE, MIN_NUM, MIN_SIZE, PAUSE,
                      LogDir, leading_number, pausing)
from ..pattern import compile_pattern
from ..peek import Input

PROG = "multilog"
LINE_BUFFER = 1000   # what patterns, `e` and `=` see of a line, the stamp included
STAMP_LEN = 26       # '@', 24 hex digits, ' '
E_LIMIT = 200        # `e` prints longer buffers cut here, followed by `...`
STATUS_SIZE = 1001   # `=FILE` gets the buffer padded with newlines to this size
READ_SIZE = 65536
C_READ = 1024        # the C reads stdin this much at a time and flushes its logs first
J_LIMIT = 65536      # the longest line the journal action sends whole
JOURNAL_RETRY = 5.0  # seconds between attempts while the journal is unreachable


class Action:
    """One argument of the script that does something per line."""

    __slots__ = ("kind", "text", "match", "fd", "log", "selection", "ident")

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind          # '+', '-', 'e', '=', '/', 'J'
        self.text = text          # the argument without its first byte
        self.match = None         # patterns: compiled matcher; None for `*`
        self.fd = -1              # `=`: the status file
        self.log: LogDir | None = None
        self.selection: list[bool] | None = None  # per line of the batch; None: all
        self.ident = b""          # `J`: SYSLOG_IDENTIFIER


class Flags:
    """What the signal handlers ask for; acted on between reads, as the C does."""

    __slots__ = ("term", "alarm")

    def __init__(self) -> None:
        self.term = self.alarm = False


# -- the script ----------------------------------------------------------------------------

def parse(argv: list[str]) -> tuple[bool, list[Action], list[Action]]:
    """(timestamps, line actions, directory actions in order, settings applied).
    Unknown actions are ignored; `t` counts only as the first argument."""
    stamps = bool(argv) and argv[0][:1] == "t"
    actions: list[Action] = []
    dirs: list[Action] = []
    size, num, processor = DEFAULT_SIZE, DEFAULT_NUM, None
    for arg in argv:
        first, rest = arg[:1], arg[1:]
        if first == "s":
            size = min(max(leading_number(rest), MIN_SIZE), MAX_SIZE)
        elif first == "n":
            num = max(leading_number(rest), MIN_NUM)
        elif first == "!":
            processor = rest
        elif first in ("+", "-"):
            action = Action(first, rest)
            if rest != "*":
                action.match = compile_pattern(os.fsencode(rest))
            actions.append(action)
        elif first in ("e", "=", "J"):
            actions.append(Action(first, rest))
        elif first in (".", "/"):
            action = Action("/", arg)
            action.log = LogDir(arg, size, num, processor)
            actions.append(action)
            dirs.append(action)
    return stamps, actions, dirs


def service_name() -> bytes:
    """The name the journal action files lines under: SERVICE when running in
    SERVICE/log, else the current directory's own name."""
    try:
        here = os.getcwd()
    except OSError:
        return b"multilog"
    parent, base = os.path.split(here)
    if base == "log":
        base = os.path.basename(parent)
    return os.fsencode(base or "multilog")


# -- per batch of lines: selection and the actions that are not directories -----------------

class Lines:
    """A batch of complete lines, everything the actions need computed once."""

    __slots__ = ("stamped", "bufs", "lines", "contents", "start", "deferred", "said")

    def __init__(self, stamped: bytes, contents: bytes, start: int) -> None:
        self.stamped = stamped    # the lines as logged, each ending in \n
        self.contents = contents  # the same without stamps and without the final \n
        self.start = start        # input offset of the first line
        self.bufs: list[bytes] | None = None
        self.lines: list[bytes] | None = None
        self.deferred = False     # the start of a long line, still arriving
        self.said: list[bytes] | None = None  # per line, what the `e` actions print

    def buffers(self) -> list[bytes]:
        """The C's line buffers: stamp + line, first 1000 bytes."""
        if self.bufs is None:
            bufs = self.logged()
            if max(map(len, bufs)) > LINE_BUFFER:
                bufs = [b[:LINE_BUFFER] for b in bufs]
            self.bufs = bufs
        return self.bufs

    def say(self, first: int = 0, end: int | None = None) -> None:
        """Print the `e` output of lines first..end-1 on stderr."""
        if self.said:
            errors.write_fd2(b"".join(self.said[first:end]))

    def logged(self) -> list[bytes]:
        """Each line as logged, without its newline."""
        if self.lines is None:
            self.lines = self.stamped[:-1].split(b"\n")
        return self.lines


class Script:
    """The actions in order, applied to batches of lines."""

    def __init__(self, stamps: bool, actions: list[Action], dirs: list[Action]) -> None:
        self.stamps = stamps
        self.actions = actions
        self.dirs = dirs
        self.journal: journal.Journal | None = None
        self.journal_down = False
        self.retry_at = 0.0
        self.service = b""

    def open_status_files(self, startdir: int) -> int | None:
        for action in self.actions:
            if action.kind != "=":
                continue
            name = action.text
            try:
                os.close(os.open(name, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND | os.O_CREAT,
                                 0o600, dir_fd=startdir))
            except OSError as e:
                return errors.fatal(PROG, f"unable to create {name}: ", e)
            try:
                action.fd = os.open(name, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC,
                                    dir_fd=startdir)
            except OSError as e:
                return errors.fatal(PROG, f"unable to write {name}: ", e)
        return None

    def set_up_journal(self) -> None:
        names = [a for a in self.actions if a.kind == "J"]
        if not names:
            return
        self.service = service_name()
        for action in names:
            action.ident = os.fsencode(action.text) or self.service
        self.journal = journal.Journal()

    def select(self, lines: Lines) -> None:
        """Run the actions over the batch; directories remember their selection."""
        selected: list[bool] | None = None  # None: every line selected
        printing: list[list[bool] | None] = []
        for action in self.actions:
            kind = action.kind
            if kind == "+":
                if selected is not None:
                    selected = None if action.match is None else apply(
                        action.match, lines.buffers(), selected, True)
            elif kind == "-":
                if action.match is None:
                    selected = [False] * len(lines.buffers())
                elif selected is None:
                    selected = list(map(not_, map(action.match, lines.buffers())))
                else:
                    selected = apply(action.match, lines.buffers(), selected, False)
            elif kind == "/":
                action.selection = selected
            elif kind == "e":
                printing.append(selected)
            elif kind == "=":
                chosen = pick(lines.buffers(), selected)
                if chosen:
                    self.write_status(action, chosen[-1])
            elif kind == "J":
                if lines.deferred:  # a long line: sent whole once it has ended
                    action.selection = selected
                else:
                    self.send(action, pick(lines.contents.split(b"\n"), selected))
        if printing:
            lines.said = stderr_lines(lines.buffers(), printing)

    @staticmethod
    def write_status(action: Action, buf: bytes) -> None:
        data = buf + b"\n" * (STATUS_SIZE - len(buf))
        name = action.text
        while True:
            pausing(f"unable to move to beginning of {name}",
                    lambda: os.lseek(action.fd, 0, os.SEEK_SET))
            try:
                if os.write(action.fd, data) == STATUS_SIZE:
                    return
                raise OSError(0, "short write")
            except OSError as e:
                errors.warn(PROG, f"unable to write {name}, pausing: ", e)
                time.sleep(PAUSE)

    def send(self, action: Action, contents: list[bytes]) -> None:
        """The journal action: one native entry per line. When journald cannot be
        reached, multilog says so once and drops the journal's lines until it is back;
        its other actions go on. A journald that takes no entry within a second is
        tried again only JOURNAL_RETRY seconds later, so it cannot stall the logs."""
        if self.journal is None or (self.journal_down and time.monotonic() < self.retry_at):
            return
        head = (journal.field(b"SYSLOG_IDENTIFIER", action.ident)
                + journal.field(b"SERVICE", self.service) + b"SYSLOG_FACILITY=3\n")
        for line in contents:
            priority, message = journal.split_priority(line[:J_LIMIT])
            entry = (head + b"PRIORITY=%d\n" % priority + journal.field(b"MESSAGE", message))
            try:
                self.journal.send(entry)
                self.journal_down = False
            except OSError as e:
                if not self.journal_down:
                    self.journal_down = True
                    errors.warn(PROG, "unable to send to the journal, "
                                      "dropping its lines until it is back: ", e)
                if e.errno == errno.ETIMEDOUT:  # slow to fail: do not try every line
                    self.retry_at = time.monotonic() + JOURNAL_RETRY
                return


def stderr_lines(bufs: list[bytes], selections: list[list[bool] | None]) -> list[bytes]:
    """Per line, what the `e` actions print for it, in script order: the buffer, or its
    first 200 bytes and `...`, then a newline."""
    shown = [b + b"\n" if len(b) <= E_LIMIT else b[:E_LIMIT] + b"...\n" for b in bufs]
    if len(selections) == 1:
        chosen = selections[0]
        return shown if chosen is None else [s if c else b"" for s, c in zip(shown, chosen)]
    return [b"".join(text for chosen in selections if chosen is None or chosen[i])
            for i, text in enumerate(shown)]


def apply(match: Callable[[bytes], object], bufs: list[bytes], selected: list[bool],
          to: bool) -> list[bool]:
    """A new selection where the lines not already `to` that match become `to`: only
    those are matched, and every loop runs in C."""
    others = list(compress(range(len(bufs)), map(not_, selected) if to else selected))
    result = selected.copy()
    for index in compress(others, map(match, map(bufs.__getitem__, others))):
        result[index] = to
    return result


def pick(items: list[bytes], selected: list[bool] | None) -> list[bytes]:
    return items if selected is None else list(compress(items, selected))


# -- the input: lines assembled across reads, output per directory per read ------------------

class Router:
    """Turns reads of stdin into lines and writes each directory's share of each read.

    Within one read, each directory's output is collected as pieces: ("batch", Lines,
    selection), ("head", bytes, start, Lines, chosen) for the first part of a long line
    (chosen or not: its `e` output comes in its place), ("rest", bytes,
    offset) for more of it, ("nl", offset) for its end. If a directory's share stays
    below its rotation threshold it is written at once, otherwise replayed through the
    C's buffer and write rules (replay())."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.plen = STAMP_LEN if script.stamps else 0
        self.cap = LINE_BUFFER - self.plen  # line bytes that fit in the C's buffer
        self.offset = 0            # input offset of the next byte to arrive
        self.partial = b""         # an unfinished line, not yet output
        self.partial_stamp = b""
        self.partial_start = 0
        self.streaming = False     # a long line is being output as it arrives
        self.stream_dirs: list[Action] = []
        self.stream_text = bytearray()  # what the journal action will send of it
        self.pieces: dict[Action, list[tuple]] = {d: [] for d in script.dirs}
        self.written_from = 0  # the directory's line count before this read's writes
        self.batches: list[Lines] = []  # this read's, whose `e` output is still to come

    def settled(self) -> int:
        """Input before this offset has been written out completely."""
        return self.partial_start if self.partial else self.offset

    def at_line_start(self) -> bool:
        return not self.partial and not self.streaming

    def feed(self, data: bytes) -> None:
        """One read's worth of new bytes; b"" means end of input."""
        stamp = tai64.external_now() + b" " if self.plen and data else b""
        pos = self.continue_long_line(data) if self.streaming else 0
        if pos < len(data) or (not data and self.partial):
            self.take_lines(data, pos, stamp)
        bounds = range(self.offset + C_READ, self.offset + len(data), C_READ)
        self.offset += len(data)
        speak = len(self.pieces) == 1  # else `e` output goes first, whole
        if not speak:
            for lines in self.batches:
                lines.say()
        self.batches.clear()
        for action, pieces in self.pieces.items():
            if pieces:
                self.written_from = action.log.newlines
                write_pieces(action.log, pieces, bounds, self.plen, self.cap, speak)
                pieces.clear()

    def watch_rotations(self, commit: Callable[[int], None]) -> None:
        """With a single log directory, input already written can be taken out of the
        pipe as soon as a rotation has made it safe, before a processor runs (which can
        take long): a crash then repeats no more than the lines in flight."""
        if len(self.script.dirs) != 1:
            return
        action = self.script.dirs[0]

        def rotated() -> None:
            written = action.log.newlines - self.written_from
            offset = written_through(self.pieces[action], written, self.plen)
            if offset is not None:
                commit(offset)
        action.log.rotated = rotated

    def continue_long_line(self, data: bytes) -> int:
        """More of a long line goes straight out; returns where the rest of the read
        begins (past its newline)."""
        newline = data.find(b"\n")
        rest = data if newline < 0 else data[:newline]
        if rest:
            for action in self.stream_dirs:
                self.pieces[action].append(("rest", rest, self.offset))
            if len(self.stream_text) < J_LIMIT:
                self.stream_text += rest[:J_LIMIT - len(self.stream_text)]
        if newline < 0 and data:
            return len(data)
        for action in self.stream_dirs:
            self.pieces[action].append(("nl", b"\n", self.offset + len(rest)))
        self.streaming = False
        for action in self.script.actions:
            if action.kind == "J" and (action.selection is None or action.selection[0]):
                self.script.send(action, [bytes(self.stream_text)])
        self.stream_text.clear()
        return len(rest) + 1

    def take_lines(self, data: bytes, pos: int, stamp: bytes) -> None:
        if self.partial:
            text = self.partial + data[pos:]
            first_stamp, text_start = self.partial_stamp, self.partial_start
            self.partial = b""
        else:
            text = data[pos:] if pos else data
            first_stamp, text_start = stamp, self.offset + pos
        end = text.rfind(b"\n")
        if end >= 0:
            self.batch(text[:end], first_stamp, stamp, text_start)
            tail, tail_stamp, tail_start = text[end + 1:], stamp, text_start + end + 1
        else:
            tail, tail_stamp, tail_start = text, first_stamp, text_start
        if not tail:
            return
        if not data:  # end of input: a last line without \n is a line, and gets one
            self.batch(tail, tail_stamp, tail_stamp, tail_start)
        elif len(tail) >= self.cap:
            self.begin_long_line(tail, tail_stamp, tail_start)
        else:
            self.partial, self.partial_stamp, self.partial_start = tail, tail_stamp, tail_start

    def batch(self, complete: bytes, first_stamp: bytes, stamp: bytes, start: int) -> None:
        """Complete lines (joined by \n, the last one's \n left off)."""
        if self.plen:
            stamped = first_stamp + complete.replace(b"\n", b"\n" + stamp) + b"\n"
        else:
            stamped = complete + b"\n"
        lines = Lines(stamped, complete, start)
        self.script.select(lines)
        self.batches.append(lines)
        for action in self.script.dirs:
            self.pieces[action].append(("batch", lines, action.selection))

    def begin_long_line(self, tail: bytes, stamp: bytes, start: int) -> None:
        """A line longer than the buffer: decided on its first 1000 bytes, then output
        as it arrives, as the C streams it."""
        logged = stamp + tail
        lines = Lines(logged + b"\n", tail, start)
        lines.bufs = [logged[:LINE_BUFFER]]
        lines.deferred = True
        self.script.select(lines)
        self.batches.append(lines)
        self.stream_dirs = []
        for action in self.script.dirs:
            chosen = action.selection is None or action.selection[0]
            if chosen:
                self.stream_dirs.append(action)
            self.pieces[action].append(("head", logged, start, lines, chosen))
        self.stream_text[:] = tail[:J_LIMIT]
        self.streaming = True


def written_through(pieces: list[tuple], lines: int, plen: int) -> int | None:
    """The input offset just past the `lines`-th line end these pieces write (None if
    they write fewer): the input that is safely in the log directory."""
    offset = None
    for kind, data, *rest in pieces:
        if lines <= 0:
            break
        if kind == "nl":
            lines -= 1
            offset = rest[0] + 1
        elif kind == "batch":
            start, selection = data.start, rest[0]
            for i, logged in enumerate(data.logged()):
                start += len(logged) - plen + 1
                if selection is None or selection[i]:
                    lines -= 1
                    offset = start
                    if lines == 0:
                        break
    return offset


def output(piece: tuple) -> bytes:
    """What a piece adds to the log."""
    kind, data = piece[0], piece[1]
    if kind == "head":
        return data if piece[4] else b""
    if kind != "batch":
        return data
    selection = piece[2]
    if selection is None:
        return data.stamped
    chosen = list(compress(data.logged(), selection))
    return b"\n".join(chosen) + b"\n" if chosen else b""


def write_pieces(log: LogDir, pieces: list[tuple], bounds: range, plen: int, cap: int,
                 speak: bool) -> None:
    """One read's output for one directory: in one write when it stays below the
    threshold, else exactly as the C would have written it. `speak`: print the `e`
    output of each line too, in its place among the writes (and the rotations, whose
    processor may write to stderr as well)."""
    data = b"".join(map(output, pieces))
    if log.bytes < log.size and len(data) <= log.room():
        if speak:
            for piece in pieces:
                if piece[0] in ("batch", "head"):
                    piece[3 if piece[0] == "head" else 1].say()
        log.write_through(data)
    elif data or speak:
        Replay(log, bounds, plen, cap, speak).run(pieces)


class Replay:
    """The C's writes for one read: lines put into a 512-byte buffer, the buffer
    flushed when full and whenever the C would have read stdin (every 1024 bytes)."""

    def __init__(self, log: LogDir, bounds: range, plen: int, cap: int, speak: bool) -> None:
        self.log = log
        self.bounds = list(bounds)
        self.next = 0
        self.plen = plen
        self.cap = cap
        self.speak = speak

    def reach(self, offset: int) -> bool:
        """The C asks for input byte `offset`: a read (and flush) for each boundary
        passed since the last request. True if there was one."""
        bounds = self.bounds
        if self.next < len(bounds) and bounds[self.next] <= offset:
            self.log.flush()
            while self.next < len(bounds) and bounds[self.next] <= offset:
                self.next += 1
            return True
        return False

    def run(self, pieces: list[tuple]) -> None:
        for kind, data, *rest in pieces:
            if kind == "batch":
                self.lines(data, rest[0])
            elif kind == "head":
                start, lines, chosen = rest
                self.reach(start + self.cap - 1)
                if self.speak:
                    lines.say()
                if chosen:
                    self.long_start(data, start)
            elif kind == "rest":
                self.stream(data, rest[0])
            else:
                self.reach(rest[0])
                self.log.put(b"\n")
        self.log.flush()  # before the next read

    def lines(self, lines: Lines, selection: list[bool] | None) -> None:
        """Lines of which only some are selected: emulated one by one only where the
        C's writes could be cut, written in one piece in between (see skip)."""
        if selection is None:
            return self.all_lines(lines)
        logged = lines.logged()
        starts = list(accumulate((len(x) + 1 - self.plen for x in logged), initial=lines.start))
        sizes = list(accumulate((len(x) + 1 if chosen else 0
                                 for x, chosen in zip(logged, selection)), initial=0))
        i = 0
        while i < len(logged):
            line, start = logged[i], starts[i]
            length = len(line) - self.plen
            if self.reach(start + (length if length < self.cap else self.cap - 1)):
                following = self.skip_selected(lines, selection, starts, sizes, i)
                if following > i:
                    i = following
                    continue
            if self.speak:
                lines.say(i, i + 1)
            if selection[i]:
                self.line(line, start, length)
            i += 1

    def skip_selected(self, lines: Lines, selection: list[bool], starts: list[int],
                      sizes: list[int], i: int) -> int:
        """skip() for a partial selection, from per-line offsets and output sizes."""
        logged = lines.logged()
        room = self.log.room()
        best = None
        for index in range(self.next, len(self.bounds)):
            bound = self.bounds[index]
            upto = bisect_right(starts, bound) - 1  # lines ending before the boundary
            if upto >= len(logged) or sizes[upto] - sizes[i] > room:
                break
            length = len(logged[upto]) - self.plen
            if length >= self.cap and starts[upto] + self.cap - 1 < bound:
                break  # a long line partly put before that boundary: emulate it
            best = (index, upto)
        if best is None or best[1] <= i:
            return i
        index, upto = best
        if self.speak:
            lines.say(i, upto)
        chosen = list(compress(logged[i:upto], selection[i:upto]))
        if chosen:
            self.log.write_through(b"\n".join(chosen) + b"\n")
        self.next = index + 1
        return upto

    def line(self, logged: bytes, start: int, length: int) -> None:
        if length < self.cap:
            self.reach(start + length)
            self.log.put(logged)
        else:
            self.long_start(logged, start)
            self.reach(start + length)
        self.log.put(b"\n")

    def all_lines(self, lines: Lines) -> None:
        """Every line selected: emulated one by one only where the C's writes could
        be cut, written in one piece in between (see skip)."""
        text, stamped, base, plen = lines.contents, lines.stamped, lines.start, self.plen
        pos = spos = index = 0  # where the next line starts in text and stamped; its number
        while pos <= len(text):
            end = text.find(b"\n", pos)
            if end < 0:
                end = len(text)
            length = end - pos
            first_put = base + pos + (length if length < self.cap else self.cap - 1)
            if self.reach(first_put):
                pos, spos, index = self.skip(lines, pos, spos, index)
                if pos > len(text):
                    return
                end = text.find(b"\n", pos)
                if end < 0:
                    end = len(text)
                length = end - pos
            if self.speak:
                lines.say(index, index + 1)
            self.line(stamped[spos:spos + plen + length], base + pos, length)
            pos, spos, index = end + 1, spos + plen + length + 1, index + 1

    def skip(self, lines: Lines, pos: int, spos: int, index: int) -> tuple[int, int, int]:
        """Just after a flush, with the line at text offset `pos` next: write directly
        the lines that end before the last read boundary keeping the file below its
        threshold (none of the C's writes up to there can be cut). Returns where the
        next line starts in text and in stamped, and its number (kept only when `e`
        output is printed here)."""
        text, base, plen = lines.contents, lines.start, self.plen
        room = self.log.room()
        done, size = pos, 0
        best = None
        for bound in range(self.next, len(self.bounds)):
            upto = self.bounds[bound] - base
            if upto > len(text):
                break
            end = text.rfind(b"\n", done, upto)
            if end >= 0:
                size += end + 1 - done
                if plen:
                    size += text.count(b"\n", done, end + 1) * plen
                done = end + 1
            if size > room:
                break
            following = text.find(b"\n", done)
            length = (len(text) if following < 0 else following) - done
            if length >= self.cap and base + done + self.cap - 1 < self.bounds[bound]:
                break  # a long line partly put before that boundary: emulate it
            best = (bound, done, size)
        if best is None or best[1] == pos:
            return pos, spos, index
        bound, done, size = best
        count = text.count(b"\n", pos, done) if self.speak and lines.said else 0
        if count:
            lines.say(index, index + count)
        self.log.write_through(lines.stamped[spos:spos + size])
        self.next = bound + 1
        return done, spos + size, index + count

    def long_start(self, logged: bytes, start: int) -> None:
        self.reach(start + self.cap - 1)
        self.log.put(logged[:LINE_BUFFER])
        self.stream(logged[LINE_BUFFER:], start + self.cap)

    def stream(self, data: bytes, offset: int) -> None:
        """Bytes put one at a time, each after the C has read it."""
        done = 0
        while done < len(data):
            self.reach(offset + done)
            upto = len(data)
            if self.next < len(self.bounds):
                upto = min(upto, self.bounds[self.next] - offset)
            self.log.put_bytes(data[done:upto])
            done = upto


# -- the program ------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    """daemontools.md §11, Startup steps 1-7."""
    os.umask(0o022)
    try:
        startdir = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        return errors.fatal(PROG, "unable to switch to current directory: ", e)
    flags = Flags()
    wakeup = catch_signals(flags)
    stamps, actions, dirs = parse(argv[1:])
    script = Script(stamps, actions, dirs)
    if (code := script.open_status_files(startdir)) is not None:
        return code
    for action in dirs:
        assert action.log is not None
        if (code := action.log.set_up(startdir)) is not None:
            return code
    script.set_up_journal()
    read_input(script, flags, wakeup)
    for action in dirs:
        assert action.log is not None
        action.log.close_cleanly()
    return 0


def catch_signals(flags: Flags) -> int:
    """SIGTERM and SIGALRM set flags, and wake the wait for input through a pipe."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    def on_term(signum: int, frame: object) -> None:
        flags.term = True

    def on_alarm(signum: int, frame: object) -> None:
        flags.alarm = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    return wake_r


def read_input(script: Script, flags: Flags, wakeup: int) -> None:
    """Step 6: until end of input, or SIGTERM at the end of a line."""
    router = Router(script)
    stdin = Input()
    if stdin.tee is not None:
        router.watch_rotations(stdin.consume_to)
    while True:
        if flags.alarm:
            flags.alarm = False
            for action in script.dirs:
                action.log.rotate_if_not_empty()
        if flags.term and router.at_line_start():
            return
        if not stdin.wait(wakeup):
            drain(wakeup)
            continue
        data = stdin.read(1 if flags.term and stdin.tee is None else READ_SIZE)
        if data is None:
            continue
        if flags.term and data:  # finish the line under way, leave the rest unread
            newline = data.find(b"\n")
            if newline >= 0:
                data = data[:newline + 1]
        router.feed(data)
        stdin.consume_to(router.settled())
        if not data:
            return


def drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def run() -> NoReturn:
    execenv.undo_python_changes()
    execenv.settle_after_launcher(PROG)
    errors.run_main(PROG, main)
