"""multilog (daemontools.md §11, §21.4, §23): differential tests against the C, and
property tests of the pattern matcher.

Differential runs feed both programs the same regular file on stdin. From a file the C
reads 1024 bytes at a time and pysvscan emulates where those reads cut its writes, so
every file both leave behind must be identical: names (an archive's 24-hex stamp
replaced by a placeholder, archives kept in time order), modes, sizes, and contents
(stamps replaced). Scripts with `t` only use patterns that cannot depend on the hex
digits of a stamp. The C and pysvscan run side by side in directories whose paths have
the same length, so paths a processor prints keep the sizes comparable.

Tests that need timing (SIGALRM, SIGTERM, `current` while running, runtime errors) feed
a pipe the test keeps both ends of: they poll with deadlines, wait for a signal to be
taken by reading /proc/PID/status instead of sleeping, and read what is left in the
pipe once multilog is gone. The few cases that sit through the 5-second pauses run the
C and pysvscan concurrently.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import C, PY, Processes, Tree, require_c_reference, wait_until
from pysvscan.pattern import compile_pattern

STAMP = re.compile(rb"@[0-9a-f]{24}")
ARCHIVE = re.compile(r"@[0-9a-f]{24}\.[su]")
STAMPED_LINE = re.compile(rb"@(4[0-9a-f]{15})([0-9a-f]{8}) ")
TAI_OFFSET = (1 << 62) + 10


# -- running both programs on the same input -------------------------------------------------

@dataclass
class Entry:
    """A file or directory left in a run's directory, as compared."""

    path: str       # relative, stamps replaced
    kind: str       # dir, file, link, other
    mode: int
    size: int
    data: bytes     # file contents (stamps and the run's root replaced), link target


@dataclass
class Result:
    rc: int | str
    out: bytes
    err: bytes
    offset: int      # where multilog left its stdin file's offset
    files: list[Entry]


def unstamp(data: bytes) -> bytes:
    return STAMP.sub(b"@<stamp>", data)


def normalize(data: bytes, root: Path) -> bytes:
    return unstamp(data.replace(os.fsencode(root), b"ROOT"))


def snapshot(root: Path) -> list[Entry]:
    """Everything below root, sorted by name (so archives are in time order)."""
    entries: list[Entry] = []

    def visit(directory: Path, prefix: str) -> None:
        for name in sorted(os.listdir(directory)):
            path = directory / name
            st_ = os.lstat(path)
            shown = unstamp(os.fsencode(prefix + name)).decode()
            mode = stat.S_IMODE(st_.st_mode)
            if stat.S_ISDIR(st_.st_mode):
                entries.append(Entry(shown + "/", "dir", mode, 0, b""))
                visit(path, prefix + name + "/")
            elif stat.S_ISLNK(st_.st_mode):
                entries.append(Entry(shown, "link", 0, 0, os.fsencode(os.readlink(path))))
            elif stat.S_ISREG(st_.st_mode):
                entries.append(Entry(shown, "file", mode, st_.st_size,
                                     normalize(path.read_bytes(), root)))
            else:
                entries.append(Entry(shown, "other", mode, 0, b""))
    visit(root, "")
    return entries


def listing(result: Result) -> list[tuple[str, str, str, int]]:
    return [(e.path, e.kind, oct(e.mode), e.size) for e in result.files]


def assert_same(c: Result, py: Result, what: object) -> None:
    """pysvscan left exactly what the C left."""
    assert (py.rc, py.out, py.err) == (c.rc, c.out, c.err), what
    assert listing(py) == listing(c), what
    for ce, pe in zip(c.files, py.files):
        if ce.data != pe.data:
            at = next((i for i, (a, b) in enumerate(zip(ce.data, pe.data)) if a != b),
                      min(len(ce.data), len(pe.data)))
            raise AssertionError(f"{what}: {ce.path} differs at byte {at}: "
                                 f"C {ce.data[max(0, at - 30):at + 30]!r}, "
                                 f"ours {pe.data[max(0, at - 30):at + 30]!r}")
    assert py.offset == c.offset, (what, "stdin offset")


def tree_root(base: Path, tree: Tree) -> Path:
    """Per-tree directories whose paths have the same length."""
    return base / {"c": "tree-c_", "py": "tree-py"}[tree.name]


def multilog_argv(tree: Tree, args: Sequence[str], umask: int | None = None) -> list[str]:
    argv = [tree.bin("multilog"), *args]
    if umask is not None:
        argv = ["/bin/sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *argv]
    return argv


def run_both(procs: Processes, base: Path, args: Sequence[str] | Callable[[Path], list[str]],
             data: bytes = b"", prepare: Callable[[Path], None] | None = None,
             umask: int | None = None, timeout: float = 30.0,
             check: bool = True) -> dict[str, Result]:
    """Run the C and pysvscan side by side on `data` (a regular file on stdin), each in
    its own directory prepared by `prepare`; assert they left the same things behind.
    `args` may be a function of the run's directory (for absolute paths)."""
    require_c_reference()
    base.mkdir(parents=True, exist_ok=True)
    source = base / "input"
    source.write_bytes(data)
    started = {}
    for tree in (C, PY):
        root = tree_root(base, tree)
        root.mkdir()
        if prepare:
            prepare(root)
        argv = args(root) if callable(args) else list(args)
        stdin = open(source, "rb")
        proc = procs.start(multilog_argv(tree, argv, umask), cwd=root, stdin=stdin.fileno(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started[tree.name] = (root, proc, stdin)
    results = {}
    for name, (root, proc, stdin) in started.items():
        try:
            out, err = proc.communicate(timeout=timeout)
            rc: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            rc = "still running"
        offset = os.lseek(stdin.fileno(), 0, os.SEEK_CUR)
        stdin.close()
        results[name] = Result(rc, normalize(out, root), normalize(err, root), offset,
                               snapshot(root))
    if check:
        assert_same(results["c"], results["py"], list(args) if not callable(args) else args)
    return results


def files_of(result: Result) -> dict[str, Entry]:
    return {e.path: e for e in result.files}


def log_files(result: Result, directory: str) -> list[Entry]:
    """The archives (in time order) then `current` of one log directory."""
    prefix = directory.rstrip("/") + "/"
    archives = [e for e in result.files
                if e.path.startswith(prefix + "@<stamp>.") and "/" not in e.path[len(prefix):]]
    return archives + [e for e in result.files if e.path == prefix + "current"]


# -- inputs ----------------------------------------------------------------------------------

LENGTHS = [0, 0, 1, 2, 30, 99, 173, 174, 175, 199, 200, 201, 973, 974, 975, 999, 1000, 1001,
           1023, 1024, 1025, 2500, 4095, 4096, 4097, 7000]
TEXT = b"abcxyz  ::**\0\r"


def mixed_input(seed: int, count: int, *, final_newline: bool = False) -> bytes:
    """Lines of the lengths that matter (the 1000-byte buffer, 974 with `t`, 200 for `e`,
    the C's 1024-byte reads, SIZE), bytes including NUL, \\r and `*`; by default the
    last line has no newline."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        n = rng.choice(LENGTHS)
        lines.append((b"%d " % i + bytes(rng.choices(TEXT, k=n)))[:n])
    data = b"\n".join(lines)
    return data + b"\n" if final_newline else data + b"\nno newline at the end"


def numbered_lines(count: int, width: int = 100, tag: bytes = b"") -> bytes:
    """`count` lines of exactly `width` bytes each, newline included."""
    return b"".join((tag + b"%05d " % i).ljust(width - 1, b"x") + b"\n" for i in range(count))


# -- pipes the test keeps both ends of -------------------------------------------------------

class Piped:
    """multilog reading a pipe; the test writes into it and can read what is left."""

    def __init__(self, procs: Processes, tree: Tree, args: Sequence[str], cwd: Path,
                 stderr: Path | None = None, default: Sequence[int] = ()) -> None:
        """`default`: signals to start multilog with at their default action, whatever
        the test run itself inherited (a background job starts with SIGINT ignored)."""
        self.read_end, self.write_end = os.pipe()
        self.stderr = stderr or cwd / "multilog.stderr"

        def reset() -> None:
            for sig in default:
                signal.signal(sig, signal.SIG_DFL)
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(multilog_argv(tree, args), cwd=cwd,
                                         stdin=self.read_end, stderr=err.fileno(),
                                         start_new_session=True,
                                         preexec_fn=reset if default else None)
        procs.started.append(self.proc)  # killed and reaped at teardown
        self.pid = self.proc.pid
        self.tree = tree

    def signal(self, sig: int) -> None:
        """Send `sig` once multilog sleeps waiting for input, and wait until it is taken.

        The C tests its flags, then unblocks the signals and calls read(): a signal
        arriving after the flush that precedes a read is only acted on once the next
        read returns (a race of the C). Waiting until the C sleeps in read(0) keeps the
        tests off that window."""
        wait_until(lambda: waiting_for_input(self.pid, self.tree), timeout=5,
                   message="multilog waiting for input")
        os.kill(self.pid, sig)
        wait_until(lambda: signal_taken(self.pid, sig), timeout=5, message=f"signal {sig} taken")

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.write_end, view):]

    def end_input(self) -> None:
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout=timeout)

    def unread(self) -> bytes:
        """What multilog left in the pipe (call once it has exited)."""
        os.set_blocking(self.read_end, False)
        chunks = []
        try:
            while chunk := os.read(self.read_end, 65536):
                chunks.append(chunk)
        except BlockingIOError:
            pass
        return b"".join(chunks)

    def errors(self) -> bytes:
        return self.stderr.read_bytes()

    def close(self) -> None:
        self.end_input()
        os.close(self.read_end)


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def signal_taken(pid: int, sig: int) -> bool:
    """`sig` is no longer pending for `pid`: the kernel has delivered it (the handler ran)
    or the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    bit = 1 << (sig - 1)
    for line in text.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & bit:
            return False
    return True


READ_SYSCALL = {"x86_64": "0", "aarch64": "63", "riscv64": "63", "ppc64le": "3",
                "s390x": "3"}.get(os.uname().machine)


def waiting_for_input(pid: int, tree: Tree) -> bool:
    """Asleep; for the C, in read(0, ...) itself (pysvscan waits in poll/select with
    its signal wake-up pipe, where a signal cannot be missed)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state != "S":
            return False
        if tree is not C:
            return True
        call = Path(f"/proc/{pid}/syscall").read_text().split()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return call[:2] == [READ_SYSCALL, "0x0"] or "pipe_read" in wchan


def archives(log: Path) -> list[str]:
    return sorted(n for n in os.listdir(log) if ARCHIVE.fullmatch(n))


# ============================================================================================
# Patterns: property tests against a model of the C's match(), byte by byte
# ============================================================================================

def c_match(pattern: bytes, buf: bytes) -> bool:
    """multilog.c's match(): no backtracking, anchored at both ends."""
    p = b = 0
    while True:
        if p == len(pattern):
            return b == len(buf)
        ch = pattern[p]
        p += 1
        if ch == ord("*"):
            if p == len(pattern):
                return True
            following = pattern[p]
            while True:
                if b == len(buf):
                    return False
                if buf[b] == following:
                    break
                b += 1
            continue
        if b == len(buf) or buf[b] != ch:
            return False
        b += 1


def matches(pattern: bytes, line: bytes) -> bool:
    return compile_pattern(pattern)(line) is not None


SMALL = st.sampled_from(list(b"ab*: "))
SPECIAL = st.sampled_from(list(b"a*.\\[]^$|?+(){}-\n\r\t\x01\xff"))


@settings(max_examples=1500, deadline=None, database=None)
@given(st.lists(SMALL, max_size=10).map(bytes), st.lists(SMALL, max_size=16).map(bytes))
def test_pattern_matches_like_the_c_small_alphabet(pattern: bytes, line: bytes) -> None:
    assert matches(pattern, line) == c_match(pattern, line), (pattern, line)


@settings(max_examples=800, deadline=None, database=None)
@given(st.lists(SPECIAL, max_size=8).map(bytes), st.lists(SPECIAL, max_size=12).map(bytes))
def test_pattern_matches_like_the_c_regex_metacharacters(pattern: bytes, line: bytes) -> None:
    """Bytes that mean something to a regular expression are literal to multilog;
    newlines (never in a real buffer), \\xff and control bytes are plain bytes."""
    assert matches(pattern, line) == c_match(pattern, line), (pattern, line)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(SMALL, max_size=6).map(bytes), st.lists(SMALL, max_size=6).map(bytes),
       st.lists(SMALL, max_size=6).map(bytes))
def test_pattern_built_from_the_line_matches_like_the_c(pre: bytes, mid: bytes,
                                                          post: bytes) -> None:
    """Patterns made by starring parts of the line itself: where backtracking would
    matter most."""
    line = pre + mid + post
    for pattern in (pre + b"*" + post, b"*" + mid + b"*", pre + b"*" + mid + b"*" + post,
                    b"*" + post, pre + b"**" + post):
        assert matches(pattern, line) == c_match(pattern, line), (pattern, line)


@pytest.mark.parametrize("pattern, line, expected", [
    (b"*b", b"abab", False),          # no backtracking
    (b"*b", b"aab", True),
    (b"* one", b"xy one", True),
    (b"* one", b"x one two", False),
    (b"*:*", b"a:b:c", True),
    (b"**", b"xx", False),            # `**` needs a literal `*`
    (b"**", b"x*x", True),
    (b"x**y", b"x*y", True),
    (b"x**y", b"xzy", False),
    (b"", b"", True),
    (b"", b"a", False),
    (b"*", b"", True),
    (b"*", b"anything at all", True),
    (b"a", b"ab", False),             # anchored at the end
    (b"b", b"ab", False),             # and at the start
    (b"a.c", b"abc", False),          # `.` is literal
    (b"a.c", b"a.c", True),
])
def test_pattern_examples_of_the_spec(pattern: bytes, line: bytes, expected: bool) -> None:
    assert matches(pattern, line) is expected
    assert c_match(pattern, line) is expected


# ============================================================================================
# Actions and their parsing quirks (differential, stdin a regular file)
# ============================================================================================

@pytest.mark.parametrize("args", [
    pytest.param([], id="no-actions"),
    pytest.param(["./log"], id="directory"),
    pytest.param(["t", "./log"], id="t"),
    pytest.param(["tfoo", "./log", "e"], id="t-prefix-word"),
    pytest.param(["./log", "t", "./log2"], id="t-not-first-ignored"),
    # (`J` is left out: pysvscan's journal action, systemd.md §3.5, which the C ignores)
    pytest.param(["N3", "x", "", "T", "?", "#", "./log", "s"], id="unknown-ignored"),
    pytest.param(["s4096", "n5", "./d1", "-*a*", "./d2", "e", "=st"], id="brief-script"),
    pytest.param(["t", "s4096", "n3", "./d1", "-* *a*", "./d2", "+* *x*", "./d3", "e", "=st"],
                 id="t-script"),
    pytest.param(["-*", "+*x*", "./x", "-*", "+* *", "./space", "+*", "./all", "-*",
                  "./none", "e"], id="select-deselect"),
    pytest.param(["-", "./nonempty", "-*", "+", "./empty"], id="empty-patterns"),
    pytest.param(["t", "-", "./all", "-*", "+", "./none"], id="empty-patterns-t"),
    pytest.param(["-*", "+**", "./stars", "-*", "+*\r", "./cr", "-*", "+*\r*", "./cr-inside"],
                 id="star-star-and-cr"),
    pytest.param(["s5000", "!", "./empty-processor", "n3", "./d2"], id="empty-processor"),
    pytest.param(["s4096", "./raw", "!tr a-z A-Z", "./upper", "n3", "s6000", "./upper3"],
                 id="processor-applies-later"),
])
def test_script_differential(procs: Processes, tmp_path: Path, args: list[str]) -> None:
    run_both(procs, tmp_path, args, mixed_input(len(args), 150))


@pytest.mark.parametrize("size_args, expected_archive_limit", [
    (["s0"], 4096), (["s4095"], 4096), (["s4097"], 4097), (["s5000junk"], 5000),
    (["sxyz"], 4096), (["s"], 4096), (["s-5000"], 4096), (["s 5000"], 4096),
    (["s99999999"], 16777215), (["s16777216"], 16777215), (["s6000", "s4500"], 4500),
])
def test_size_parsing_differential(procs: Processes, tmp_path: Path, size_args: list[str],
                                   expected_archive_limit: int) -> None:
    """SIZE is the leading digits, clamped to 4096...16777215; every file ends at the
    first line end at or beyond SIZE-2000, never above SIZE."""
    data = mixed_input(7, 120)
    results = run_both(procs, tmp_path, [*size_args, "n999", "./log"], data)
    files = log_files(results["c"], "log")
    assert b"".join(e.data for e in files) == data + b"\n"
    for entry in files:
        assert entry.size <= expected_archive_limit
    if expected_archive_limit < len(data):
        assert len(files) > 1
        assert any(e.size > 4096 for e in files) == (expected_archive_limit > 4096)
    else:
        assert len(files) == 1


def test_size_and_number_wrap_like_scan_ulong(procs: Processes, tmp_path: Path) -> None:
    """The C's scan_ulong accumulates in an unsigned long and wraps modulo 2**64:
    s18446744073709551617 is s1 (clamped to 4096), n18446744073709551619 is n3."""
    big = 2 ** 64
    run_both(procs, tmp_path, [f"s{big + 1}", f"n{big + 3}", "./log", f"s{big + 5000}",
                               "n2", "./log2"], numbered_lines(200))


@pytest.mark.parametrize("number_args", [["n0"], ["n1"], ["n2"], ["n3x"], ["nabc"], ["n"],
                                         ["n4"], ["n40"], ["n3", "n5"]])
def test_number_parsing_differential(procs: Processes, tmp_path: Path,
                                     number_args: list[str]) -> None:
    """NUM: leading digits, at least 2; NUM-1 archives are kept besides `current`."""
    results = run_both(procs, tmp_path, ["s4096", *number_args, "./log"], numbered_lines(400))
    digits = re.match(r"\d*", number_args[-1][1:]).group()
    num = max(int(digits or 0), 2)
    kept = [e for e in log_files(results["c"], "log") if e.path != "log/current"]
    # 40000 bytes make at least 15 archives of at most 2500 bytes
    assert len(kept) == num - 1 if num <= 16 else len(kept) < num


@pytest.mark.parametrize("stamps", [False, True], ids=["plain", "t"])
def test_e_prints_200_bytes_of_the_buffer(procs: Processes, tmp_path: Path,
                                          stamps: bool) -> None:
    """`e`: buffers of up to 200 bytes whole, longer ones as 200 bytes and `...`; with
    `t` the stamp counts (174 line bytes make 200)."""
    plen = 26 if stamps else 0
    lengths = [0, 1, 2, 198 - plen, 199 - plen, 200 - plen, 201 - plen, 202 - plen,
               999 - plen, 1000 - plen, 1001 - plen, 3000]
    data = b"".join((b"%d:" % n + b"y" * n)[:n] + b"\n" for n in lengths)
    args = (["t"] if stamps else []) + ["exyz", "./log"]
    results = run_both(procs, tmp_path, args, data)
    printed_lines = results["c"].err.split(b"\n")[:-1]
    assert len(printed_lines) == len(lengths)
    shrink = len(b"@" + b"0" * 24) - len(b"@<stamp>") if stamps else 0
    for n, printed in zip(lengths, printed_lines):
        if n + plen <= 200:
            assert len(printed) + shrink == n + plen, n
        else:
            assert len(printed) + shrink == 203 and printed.endswith(b"..."), n


def test_e_t_e_quirk(procs: Processes, tmp_path: Path) -> None:
    """`e t e`: the `t` is not a timestamp action; each line is printed twice, line by
    line (the C runs the whole script on one line before reading the next)."""
    results = run_both(procs, tmp_path, ["e", "t", "e"], b"one\ntwo\n")
    assert results["c"].err == b"one\none\ntwo\ntwo\n"


@pytest.mark.parametrize("stamps", [False, True], ids=["plain", "t"])
def test_several_e_actions_print_line_by_line(procs: Processes, tmp_path: Path,
                                              stamps: bool) -> None:
    """Two `e` actions with different selections, lines short and long: stderr is in
    line order, each line's outputs in script order."""
    args = (["t"] if stamps else []) + ["e", "-*", "+*y*", "e", "./log", "+*", "e"]
    data = mixed_input(11, 80).replace(b"a", b"y")
    run_both(procs, tmp_path, args, data)


def test_e_output_and_rotation_interleave_like_the_c(procs: Processes, tmp_path: Path) -> None:
    """The C rotates while it works through the input, a line at a time: a processor's
    stderr comes right after the `e` line whose write filled the file, not after all
    the lines of a 64 KiB read."""
    run_both(procs, tmp_path, ["s4096", "e", "!cat; echo PROCESSOR >&2", "./log"],
             numbered_lines(60))


# -- =FILE ------------------------------------------------------------------------------------

def test_status_file_new_is_1001_bytes_mode_0600(procs: Processes, tmp_path: Path) -> None:
    results = run_both(procs, tmp_path, ["=st", "-*b*", "=nob"], b"a line\nb line\nlast a\n")
    files = files_of(results["c"])
    assert files["st"].mode == files["nob"].mode == 0o600
    assert files["st"].data == b"last a" + b"\n" * 995
    assert files["nob"].data == b"last a" + b"\n" * 995


def test_status_file_keeps_the_tail_of_a_longer_file(procs: Processes, tmp_path: Path) -> None:
    """Never truncated: a pre-existing 3000-byte file keeps bytes 1001...; its mode
    stays."""
    def prepare(root: Path) -> None:
        (root / "st").write_bytes(b"T" * 3000)
        os.chmod(root / "st", 0o640)
        (root / "untouched").write_bytes(b"U" * 50)
        os.chmod(root / "untouched", 0o644)
    results = run_both(procs, tmp_path, ["=st", "-*", "=untouched"], b"first\nsecond\n",
                       prepare)
    files = files_of(results["c"])
    assert files["st"].data == b"second" + b"\n" * 995 + b"T" * 1999
    assert files["st"].mode == 0o640
    assert files["untouched"].data == b"U" * 50


@pytest.mark.parametrize("stamps", [False, True], ids=["plain", "t"])
def test_status_file_sees_1000_bytes(procs: Processes, tmp_path: Path, stamps: bool) -> None:
    """Long lines: the first 1000 bytes of the buffer (stamp included) and one \\n."""
    data = b"Q" * 1500 + b"\n" + b"R" * 980 + b"\n" + b"S" * 10
    args = (["t"] if stamps else []) + ["=st", "-*", "+*Q*", "=q", "-*", "+*R*", "=r"]
    results = run_both(procs, tmp_path, args, data)
    files = files_of(results["c"])
    plen = 26 if stamps else 0
    assert files["q"].data.endswith(b"Q" * (1000 - plen) + b"\n")
    assert files["st"].data.endswith(b"S" * 10 + b"\n" * (991 - plen))
    assert all(files[n].size == 1001 for n in ("st", "q", "r"))


def test_pattern_sees_the_first_1000_bytes(procs: Processes, tmp_path: Path) -> None:
    """`+*ZZZ*` finds ZZZ at offset 990 without `t`, not with it; the long line is
    logged whole either way."""
    line = b"a" * 990 + b"ZZZ" + b"b" * 500 + b"\n"
    for stamps in (False, True):
        args = (["t"] if stamps else []) + ["-*", "+*ZZZ*", "./zzz", "+*", "./all"]
        results = run_both(procs, tmp_path / str(stamps), args, line + b"short ZZZ\n")
        files = files_of(results["c"])
        zzz = unstamp(files["zzz/current"].data)
        assert (b"b" * 500 in zzz) is not stamps
        assert files["all/current"].size == len(line) + 10 + (52 if stamps else 0)


# ============================================================================================
# Rotation (differential)
# ============================================================================================

@pytest.mark.parametrize("args, seed", [
    (["s4096", "./log"], 1),
    (["s4096", "n3", "./log"], 2),
    (["t", "s4096", "n4", "./log"], 3),
    (["s5000", "n50", "./log"], 4),
    (["s6001", "./log", "t"], 5),
    (["n50", "./log"], 6),                 # the default size, 99999
])
def test_rotation_mixed_lines_differential(procs: Processes, tmp_path: Path, args: list[str],
                                           seed: int) -> None:
    data = mixed_input(seed, 250 if "s" not in args[0] + args[-1] else 120)
    results = run_both(procs, tmp_path, args, data)
    files = log_files(results["c"], "log")
    size = next((int(a[1:]) for a in args if a.startswith("s")), 99999)
    for entry in files[:-1]:
        assert entry.mode == 0o744 and entry.path.endswith(".s")
        assert entry.size <= size
        # a file ends at a line end at or beyond SIZE-2000, or is cut at SIZE
        assert entry.size == size or (entry.size >= size - 2000 and entry.data[-1:] == b"\n")
    assert files[-1].mode == 0o744


@pytest.mark.parametrize("args, seed", [
    (["t", "s4500", "n3", "./log", "-* *x*", "./l2", "e"], 21),
    (["s4096", "!cat", "./log", "=st"], 22),
])
def test_rotation_from_a_full_pipe_differential(procs: Processes, tmp_path: Path,
                                                args: list[str], seed: int) -> None:
    """A pipe already holding all the input when multilog starts: the C's reads are
    then all 1024 bytes, as from a file, and files must end in the same places."""
    require_c_reference()
    data = mixed_input(seed, 300)
    results = {}
    for tree in (C, PY):
        root = tree_root(tmp_path, tree)
        root.mkdir()
        read_end, write_end = os.pipe()
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1 << 20)
            os.write(write_end, data)
            os.close(write_end)
            proc = procs.start(multilog_argv(tree, args), cwd=root, stdin=read_end,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        finally:
            os.close(read_end)
        out, err = proc.communicate(timeout=30)
        results[tree.name] = Result(proc.returncode, out, normalize(err, root), 0,
                                    snapshot(root))
    assert len(log_files(results["c"], "log")) == (3 if "n3" in args else 10)
    assert_same(results["c"], results["py"], args)


def test_rotation_100_byte_lines(procs: Processes, tmp_path: Path) -> None:
    """s4096 with 100-byte lines: archives of 2100-2500 bytes ending at a line end."""
    data = numbered_lines(300)
    results = run_both(procs, tmp_path, ["s4096", "n100", "./log"], data)
    files = log_files(results["c"], "log")
    assert b"".join(e.data for e in files) == data
    for entry in files[:-1]:
        assert 2100 <= entry.size <= 2500 and entry.size % 100 == 0


def test_rotation_splits_a_long_line_at_size(procs: Processes, tmp_path: Path) -> None:
    data = b"start\n" + b"L" * 5000 + b"\n" + b"M" * 9000 + b"\nend\n"
    results = run_both(procs, tmp_path, ["s4096", "n100", "./log"], data)
    files = log_files(results["c"], "log")
    assert b"".join(e.data for e in files) == data
    assert files[0].size == 4096 and files[0].data.endswith(b"L")


def test_rotation_continues_a_cleanly_stopped_current(procs: Processes,
                                                      tmp_path: Path) -> None:
    """A clean `current` (owner-x) is appended to, its size counted towards SIZE."""
    def prepare(root: Path) -> None:
        (root / "log").mkdir(mode=0o755)
        (root / "log" / "current").write_bytes(b"o" * 2999 + b"\n")
        os.chmod(root / "log" / "current", 0o744)
    results = run_both(procs, tmp_path, ["s4096", "./log"], numbered_lines(30), prepare)
    files = files_of(results["c"])
    assert files["log/"].mode == 0o755
    # the first 512-byte write already passes SIZE-2000: cut at its last newline
    assert [e.size for e in log_files(results["c"], "log")] == [3500, 2500, 0]


def test_second_run_appends(procs: Processes, tmp_path: Path) -> None:
    first = run_both(procs, tmp_path, ["./log"], b"one\n")
    for tree in (C, PY):
        root = tree_root(tmp_path, tree)
        with open(tmp_path / "input", "rb") as f:
            subprocess.run([tree.bin("multilog"), "./log"], cwd=root, stdin=f, check=True,
                           timeout=10)
        assert (root / "log" / "current").read_bytes() == b"one\none\n"
        assert mode_of(root / "log" / "current") == 0o744
    assert files_of(first["c"])["log/current"].data == b"one\n"


# ============================================================================================
# Processors
# ============================================================================================

PROTOCOL = (
    "echo '== fds'; ls /proc/$$/fd; "
    "readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/4 /proc/$$/fd/5; "
    "echo '== cwd'; pwd; ls; "
    "echo \"== argv0 $0\"; "
    "echo '== state'; cat state; "
    "echo '== previous'; cat; "
    "{ cat <&4; echo rotated; } >&5"
)


def test_processor_protocol(procs: Processes, tmp_path: Path) -> None:
    """stdin `previous`, stdout `processed` (the `.s` archive), fd 4 `state`, fd 5
    `newstate` (the next state), cwd the log directory, /bin/sh -c, TERM and ALRM
    back to default and unblocked, nothing else open but stderr."""
    data = numbered_lines(100)
    results = run_both(procs, tmp_path, ["s4096", f"!{PROTOCOL}", "./log",
                                         "!exec grep -E '^Sig(Blk|Ign)' /proc/self/status",
                                         "./signals"], data)
    for archive in log_files(results["c"], "signals")[:-1]:
        assert archive.data.startswith(b"SigBlk:\t0000000000000000\n"), archive.data
    files = log_files(results["c"], "log")
    assert len(files) >= 4
    state, logged = b"", b""
    for archive in files[:-1]:
        assert archive.path.endswith(".s") and archive.mode == 0o744
        out, previous = archive.data.split(b"== previous\n")
        assert out.startswith(b"== fds\n0\n1\n2\n4\n5\n"), out[:60]
        assert (b"ROOT/log/previous\nROOT/log/processed\nROOT/log/state\n"
                b"ROOT/log/newstate\n== cwd\nROOT/log\n") in out
        assert b"\ncurrent\nlock\nnewstate\nprevious\nprocessed\nstate\n" in out
        assert out.endswith(b"== argv0 sh\n== state\n" + state)
        state += b"rotated\n"
        logged += previous
    assert logged + files[-1].data == data
    assert files_of(results["c"])["log/state"].data == state
    assert files_of(results["c"])["log/state"].mode == 0o644
    assert "log/newstate" not in files_of(results["c"])
    assert "log/processed" not in files_of(results["c"])


def test_processor_output_is_the_archive(procs: Processes, tmp_path: Path) -> None:
    """What the processor writes is the archive; a processor writing nothing leaves an
    empty `.s`; state only changes through fd 5."""
    data = numbered_lines(120)
    results = run_both(procs, tmp_path, ["s4096", "n4", "!sed -n '$p'", "./last", "!cat >/dev/null",
                                         "./nothing", "!grep 00001; echo kept >&5", "./grep"],
                       data)
    files = files_of(results["c"])
    last = log_files(results["c"], "last")
    assert len(last) == 4 and all(e.size == 100 for e in last[:-1])
    assert [e.size for e in log_files(results["c"], "nothing")[:-1]] == [0, 0, 0]
    assert files["nothing/state"].data == b""
    assert files["grep/state"].data == b"kept\n"


# ============================================================================================
# Directory set-up, locking, start-up errors
# ============================================================================================

def test_fresh_directory_modes(procs: Processes, tmp_path: Path) -> None:
    for umask in (0o077, 0o000):
        results = run_both(procs, tmp_path / str(umask), ["=st", "./log", "s4096", "./log2"],
                           numbered_lines(30), umask=umask)
        files = files_of(results["c"])
        assert files["log/"].mode == 0o700
        assert files["log/lock"].mode == 0o600 and files["log/lock"].size == 0
        assert files["log/state"].mode == 0o644 and files["log/state"].size == 0
        assert files["log/current"].mode == 0o744
        assert files["st"].mode == 0o600
        assert [e.mode for e in log_files(results["c"], "log2")] == [0o744, 0o744]


@pytest.mark.parametrize("args, prepare, message", [
    (["./a/b/log"], None,
     b"multilog: fatal: unable to open directory ./a/b/log: file does not exist\n"),
    (["=st", "./log", "./nodir/log"], None,
     b"multilog: fatal: unable to open directory ./nodir/log: file does not exist\n"),
    (["./log", "./log"], None,
     b"multilog: fatal: unable to lock directory ./log: temporary failure\n"),
    (["./log", "./log/"], None,
     b"multilog: fatal: unable to lock directory ./log/: temporary failure\n"),
    (["./log", "./x/../log"], lambda r: (r / "x").mkdir(),
     b"multilog: fatal: unable to lock directory ./x/../log: temporary failure\n"),
    (["./file"], lambda r: (r / "file").write_bytes(b"x"),
     b"multilog: fatal: unable to open directory ./file: not a directory\n"),
    (["./log", "=nodir/st"], None,  # `=` files come before every directory
     b"multilog: fatal: unable to create nodir/st: file does not exist\n"),
    (["=./log/st", "./log"], None,
     b"multilog: fatal: unable to create ./log/st: file does not exist\n"),
    (["="], None, b"multilog: fatal: unable to create : file does not exist\n"),
    (["=adir"], lambda r: (r / "adir").mkdir(),
     b"multilog: fatal: unable to create adir: is a directory\n"),
    (["=fifo"], lambda r: os.mkfifo(r / "fifo"),
     b"multilog: fatal: unable to create fifo: device not configured\n"),
    (["./log"], lambda r: ((r / "log").mkdir(), os.symlink("current", r / "log" / "current")),
     b"multilog: fatal: unable to stat ./log/current: symbolic link loop\n"),
    (["./log"], lambda r: (r / "log" / "current").mkdir(mode=0o755, parents=True),
     b"multilog: fatal: unable to append to ./log/current: is a directory\n"),
    (["./log"], lambda r: (r / "log" / "state").mkdir(parents=True),
     b"multilog: fatal: unable to write to ./log/state: is a directory\n"),
    (["./log"], lambda r: ((r / "log").mkdir(),
                           os.symlink("processed", r / "log" / "processed")),
     b"multilog: fatal: unable to stat ./log/processed: symbolic link loop\n"),
])
def test_startup_failures(procs: Processes, tmp_path: Path, args: list[str],
                          prepare: Callable[[Path], object] | None, message: bytes) -> None:
    """Exit 111 with the reference's text, and no input read (stdin offset 0)."""
    results = run_both(procs, tmp_path, args, b"input\n", prepare)
    assert results["c"].rc == 111
    assert results["c"].err == message
    assert results["c"].offset == 0


def test_absolute_directory(procs: Processes, tmp_path: Path) -> None:
    results = run_both(procs, tmp_path, lambda root: [f"{root}/log", f"{root}/no/log"],
                       b"x\n")
    assert results["c"].err == (b"multilog: fatal: unable to open directory ROOT/no/log: "
                                b"file does not exist\n")


@pytest.mark.parametrize("holder, contender", [(C, PY), (PY, C), (PY, PY), (C, C)],
                         ids=["c-holds", "py-holds", "py-py", "c-c"])
def test_directory_locked_by_another_multilog(procs: Processes, tmp_path: Path, holder: Tree,
                                              contender: Tree) -> None:
    require_c_reference()
    running = Piped(procs, holder, ["./log"], tmp_path)
    try:
        wait_until(lambda: (tmp_path / "log" / "current").exists(), message="holder ready")
        source = tmp_path / "input"
        source.write_bytes(b"never read\n")
        with open(source, "rb") as f:
            cp = subprocess.run([contender.bin("multilog"), "=st", "./other", "./log"],
                                cwd=tmp_path, stdin=f, capture_output=True, timeout=10)
            assert os.lseek(f.fileno(), 0, os.SEEK_CUR) == 0
        assert (cp.returncode, cp.stderr) == (
            111, b"multilog: fatal: unable to lock directory ./log: temporary failure\n")
        assert (tmp_path / "other" / "current").exists()
        assert (tmp_path / "st").read_bytes() == b""
        running.send(b"still logging\n")
        running.end_input()
        assert running.wait() == 0
        assert (tmp_path / "log" / "current").read_bytes() == b"still logging\n"
    finally:
        running.close()


# ============================================================================================
# Crash recovery (differential)
# ============================================================================================

def crashed(root: Path, *, current: bytes | None = b"old current\n", state: bool = True,
            processed: int | None = None, previous: bool = False, extra: Sequence[str] = (),
            linked: bool = False) -> None:
    """A log directory as a killed multilog leaves it."""
    log = root / "log"
    log.mkdir(mode=0o700)
    (log / "lock").write_bytes(b"")
    os.chmod(log / "lock", 0o600)
    if current is not None:
        (log / "current").write_bytes(current)
        os.chmod(log / "current", 0o644)
        if linked:  # killed between link() and unlink()
            os.link(log / "current", log / "@400000000000000000000009.u")
    if state:
        (log / "state").write_bytes(b"junk state\n")
        (log / "newstate").write_bytes(b"junk newstate\n")
    if previous:
        (log / "previous").write_bytes(b"old previous\n")
        os.chmod(log / "previous", 0o744)
    if processed is not None:
        (log / "processed").write_bytes(b"old processed\n")
        os.chmod(log / "processed", processed)
    for name in extra:
        (log / name).write_bytes(name.encode() + b"\n")
        os.chmod(log / name, 0o744)


OLD_ARCHIVES = ["@400000000000000000000003.s", "@400000000000000000000001.u",
                "@400000000000000000000002.s", "@400000000000000000000004.s"]


@pytest.mark.parametrize("prepare", [
    pytest.param(lambda r: crashed(r), id="current-and-junk-state"),
    pytest.param(lambda r: crashed(r, current=b""), id="empty-current"),
    pytest.param(lambda r: crashed(r, processed=0o744, previous=True), id="processed-done"),
    pytest.param(lambda r: crashed(r, processed=0o644, previous=True), id="processed-unfinished"),
    pytest.param(lambda r: crashed(r, processed=0o644), id="processed-no-previous"),
    pytest.param(lambda r: crashed(r, previous=True, current=None), id="previous-only"),
    pytest.param(lambda r: crashed(r, linked=True), id="current-already-linked"),
    pytest.param(lambda r: crashed(r, extra=OLD_ARCHIVES + ["@short", "@zzzzzzzzzzzzzzzzzzzzzzzz"]),
                 id="trimmed-to-num"),
    pytest.param(lambda r: (crashed(r, current=None, state=False, extra=OLD_ARCHIVES),
                            (r / "log" / "current").write_bytes(b"clean\n"),
                            os.chmod(r / "log" / "current", 0o744)), id="clean-no-trim"),
    pytest.param(lambda r: (crashed(r, current=None),
                            os.symlink("elsewhere", r / "log" / "current")),
                 id="dangling-current-symlink"),
])
def test_crash_recovery_differential(procs: Processes, tmp_path: Path,
                                     prepare: Callable[[Path], None]) -> None:
    results = run_both(procs, tmp_path, ["n3", "./log"], b"new line\n", prepare)
    assert results["c"].rc == 0


def test_crash_recovery_details(procs: Processes, tmp_path: Path) -> None:
    """What the C leaves, spelled out for the usual case."""
    results = run_both(procs, tmp_path, ["./log"], b"new line\n",
                       lambda r: crashed(r, processed=0o744, previous=True))
    assert [(e.path, e.mode, e.data) for e in results["c"].files] == [
        ("log/", 0o700, b""),
        ("log/@<stamp>.s", 0o744, b"old processed\n"),
        ("log/@<stamp>.u", 0o644, b"old current\n"),
        ("log/current", 0o744, b"new line\n"),
        ("log/lock", 0o600, b""),
        ("log/state", 0o644, b""),
    ]


# ============================================================================================
# End of input
# ============================================================================================

@pytest.mark.parametrize("data", [b"", b"\n", b"last", b"a\nlast", b"\n\n", b"\0\r\n\r",
                                  b"x" * 1500, b"y" * 5000 + b"\n" + b"z" * 3000],
                         ids=["empty", "newline", "partial", "line-partial", "two-empty",
                              "nul-cr", "long-partial", "longer"])
@pytest.mark.parametrize("stamps", [False, True], ids=["plain", "t"])
def test_end_of_input_differential(procs: Processes, tmp_path: Path, data: bytes,
                                   stamps: bool) -> None:
    args = (["t"] if stamps else []) + ["./log", "e", "=st"]
    results = run_both(procs, tmp_path, args, data)
    current = files_of(results["c"])["log/current"]
    assert current.mode == 0o744
    expected = data if data.endswith(b"\n") or not data else data + b"\n"
    assert STAMP.sub(b"", current.data.replace(b"@<stamp> ", b"")) == expected
    assert results["c"].rc == 0 and results["c"].offset == len(data)


def test_no_actions_reads_everything(procs: Processes, tmp_path: Path) -> None:
    results = run_both(procs, tmp_path, [], numbered_lines(500))
    assert (results["c"].rc, results["c"].files, results["c"].offset) == (0, [], 50000)


def test_stdin_closed(procs: Processes, tmp_path: Path) -> None:
    """fd 0 closed: multilog's own `.` becomes fd 0 and reading it fails: end of input."""
    require_c_reference()
    for tree in (C, PY):
        root = tree_root(tmp_path, tree)
        root.mkdir()
        cp = subprocess.run(["/bin/sh", "-c", 'exec <&- && exec "$@"', "sh", tree.bin("multilog"),
                             "./log"], cwd=root, capture_output=True, timeout=10)
        assert (tree.name, cp.returncode, cp.stderr) == (tree.name, 0, b"")
        assert (root / "log" / "current").read_bytes() == b""
        assert mode_of(root / "log" / "current") == 0o744


@pytest.mark.parametrize("tree_", [C, PY], ids=["c", "py"])
def test_stdin_directory_ends_input(tmp_path: Path, tree_: Tree) -> None:
    if tree_ is C:
        require_c_reference()
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        cp = subprocess.run([tree_.bin("multilog"), "./log"], cwd=tmp_path, stdin=directory,
                            capture_output=True, timeout=10)
    finally:
        os.close(directory)
    assert (cp.returncode, cp.stderr) == (0, b"")
    assert mode_of(tmp_path / "log" / "current") == 0o744


@pytest.mark.parametrize("tree_", [C, PY], ids=["c", "py"])
def test_stamps_are_tai64n_of_now(tmp_path: Path, tree_: Tree) -> None:
    """With `t` every logged line starts with a TAI64N label of the current time, `e`
    and `=` see the same label, and labels do not go backwards."""
    if tree_ is C:
        require_c_reference()
    data = b"".join(b"line %d\n" % i for i in range(200))
    before = time.time()
    cp = subprocess.run([tree_.bin("multilog"), "t", "./log", "e", "=st"], cwd=tmp_path,
                        input=data, capture_output=True, timeout=10)
    after = time.time()
    assert cp.returncode == 0
    logged = (tmp_path / "log" / "current").read_bytes().split(b"\n")[:-1]
    assert cp.stderr.split(b"\n")[:-1] == logged
    assert (tmp_path / "st").read_bytes().rstrip(b"\n") == logged[-1]
    previous = 0.0
    for i, line in enumerate(logged):
        m = STAMPED_LINE.match(line)
        assert m and line[m.end():] == b"line %d" % i, line
        nano = int(m[2], 16)
        assert nano < 1_000_000_000
        when = int(m[1], 16) - TAI_OFFSET + nano / 1e9
        assert before - 1 <= when <= after + 1 and when >= previous
        previous = when


# ============================================================================================
# While running: `current`, SIGALRM, SIGTERM (one tree at a time, stdin a pipe)
# ============================================================================================

def test_current_while_running(tree: Tree, procs: Processes, tmp_path: Path) -> None:
    """0644 while running, complete lines written before each read and a line being
    assembled not; 0744 after a clean stop."""
    log = tmp_path / "log"
    piped = Piped(procs, tree, ["./log", "=st"], tmp_path)
    try:
        piped.send(b"one\ntwo")
        wait_until(lambda: read_or_none(log / "current") == b"one\n", message="first line")
        assert mode_of(log / "current") == 0o644
        assert mode_of(log) == 0o700 and mode_of(log / "lock") == 0o600
        assert (log / "state").read_bytes() == b"" and mode_of(log / "state") == 0o644
        assert (tmp_path / "st").read_bytes()[:4] == b"one\n"
        piped.send(b" three\n" + b"x" * 3000)
        wait_until(lambda: read_or_none(log / "current") == b"one\ntwo three\n" + b"x" * 3000,
                   message="a long line is written as it arrives")
        assert mode_of(log / "current") == 0o644
        piped.send(b"\n")
        piped.end_input()
        assert piped.wait() == 0
        assert (log / "current").read_bytes() == b"one\ntwo three\n" + b"x" * 3000 + b"\n"
        assert mode_of(log / "current") == 0o744
        assert piped.errors() == b""
    finally:
        piped.close()


def test_sigalrm_rotates_non_empty_current(tree: Tree, procs: Processes,
                                           tmp_path: Path) -> None:
    log = tmp_path / "log"
    piped = Piped(procs, tree, ["!cat; echo alarm >&5", "./log"], tmp_path)
    try:
        piped.send(b"a\nb")
        wait_until(lambda: read_or_none(log / "current") == b"a\n", message="first line")
        piped.signal(signal.SIGALRM)
        first = wait_until(lambda: archives(log), message="an archive")
        wait_until(lambda: (log / "state").read_bytes() == b"alarm\n", message="processed")
        assert len(first) == 1 and first[0].endswith(".s")
        assert (log / first[0]).read_bytes() == b"a\n"   # the partial line stays out
        assert mode_of(log / first[0]) == 0o744
        assert (log / "current").read_bytes() == b""
        assert mode_of(log / "current") == 0o644
        piped.signal(signal.SIGALRM)          # an empty current stays
        piped.send(b"c\n")
        wait_until(lambda: read_or_none(log / "current") == b"bc\n", message="second line")
        assert archives(log) == first
        piped.end_input()
        assert piped.wait() == 0
        assert (log / "state").read_bytes() == b"alarm\n"
        assert piped.errors() == b""
    finally:
        piped.close()


def test_sigterm_mid_line_finishes_it_and_leaves_the_rest(tree: Tree, procs: Processes,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "log"
    piped = Piped(procs, tree, ["./log"], tmp_path)
    try:
        piped.send(b"first\nsecond-")
        wait_until(lambda: read_or_none(log / "current") == b"first\n", message="first line")
        piped.signal(signal.SIGTERM)
        piped.send(b"part\nREST\nmore")
        assert piped.wait() == 0
        assert (log / "current").read_bytes() == b"first\nsecond-part\n"
        assert mode_of(log / "current") == 0o744
        assert piped.unread() == b"REST\nmore"
        assert piped.errors() == b""
    finally:
        piped.close()


def test_sigterm_at_line_end_reads_nothing_more(tree: Tree, procs: Processes,
                                                tmp_path: Path) -> None:
    log = tmp_path / "log"
    piped = Piped(procs, tree, ["./log"], tmp_path)
    try:
        piped.send(b"whole\n")
        wait_until(lambda: read_or_none(log / "current") == b"whole\n", message="line")
        piped.signal(signal.SIGTERM)
        piped.send(b"unread\n")
        assert piped.wait() == 0
        assert (log / "current").read_bytes() == b"whole\n"
        assert mode_of(log / "current") == 0o744
        assert piped.unread() == b"unread\n"
    finally:
        piped.close()


def test_sigterm_before_any_input(tree: Tree, procs: Processes, tmp_path: Path) -> None:
    log = tmp_path / "log"
    piped = Piped(procs, tree, ["./log"], tmp_path)
    try:
        wait_until(lambda: (log / "current").exists(), message="set-up done")
        piped.signal(signal.SIGTERM)
        piped.send(b"unread\n")
        assert piped.wait() == 0
        assert (log / "current").read_bytes() == b""
        assert mode_of(log / "current") == 0o744
        assert piped.unread() == b"unread\n"
    finally:
        piped.close()


def test_signals_during_a_long_line(tree: Tree, procs: Processes, tmp_path: Path) -> None:
    """A line longer than the buffer is written as it arrives: SIGALRM archives the part
    already written; SIGTERM in a long line still reads up to its newline."""
    log = tmp_path / "log"
    piped = Piped(procs, tree, ["./log"], tmp_path)
    try:
        piped.send(b"A" * 1500)
        wait_until(lambda: read_or_none(log / "current") == b"A" * 1500, message="A")
        piped.signal(signal.SIGALRM)
        first = wait_until(lambda: archives(log), message="an archive")
        assert (log / first[0]).read_bytes() == b"A" * 1500
        piped.send(b"B" * 1500)
        wait_until(lambda: read_or_none(log / "current") == b"B" * 1500, message="B")
        piped.signal(signal.SIGTERM)
        piped.send(b"C" * 10 + b"\nrest\n")
        assert piped.wait() == 0
        assert (log / "current").read_bytes() == b"B" * 1500 + b"C" * 10 + b"\n"
        assert archives(log) == first
        assert piped.unread() == b"rest\n"
    finally:
        piped.close()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT], ids=["HUP", "INT"])
def test_other_signals_kill_and_the_next_run_recovers(tree: Tree, procs: Processes,
                                                       tmp_path: Path, sig: int) -> None:
    """Default actions (pysvscan must not keep CPython's SIGINT handler): killed,
    `current` stays 0644, and the next run archives it as `.u`."""
    log = tmp_path / "log"
    piped = Piped(procs, tree, ["./log"], tmp_path, default=[sig])
    try:
        piped.send(b"before the crash\n")
        wait_until(lambda: read_or_none(log / "current") == b"before the crash\n",
                   message="line")
        os.kill(piped.pid, sig)
        assert piped.wait() == -sig
        assert mode_of(log / "current") == 0o644
    finally:
        piped.close()
    cp = tree.run("multilog", "./log", cwd=tmp_path, stdin=b"after\n")
    assert (cp.returncode, cp.stderr) == (0, b"")
    [unclean] = archives(log)
    assert unclean.endswith(".u") and mode_of(log / unclean) == 0o644
    assert (log / unclean).read_bytes() == b"before the crash\n"
    assert (log / "current").read_bytes() == b"after\n"


def test_e_into_a_closed_pipe_dies_of_sigpipe(tree: Tree, tmp_path: Path) -> None:
    """SIGPIPE is at its default (CPython ignores it): the first `e` kills multilog,
    before the line reaches the log."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        cp = subprocess.run([tree.bin("multilog"), "e", "./log"], cwd=tmp_path,
                            input=b"x\ny\n", stderr=write_end, timeout=10)
    finally:
        os.close(write_end)
    assert cp.returncode == -signal.SIGPIPE
    assert (tmp_path / "log" / "current").read_bytes() == b""
    assert mode_of(tmp_path / "log" / "current") == 0o644


def test_startup_failure_reads_nothing_from_a_pipe(tree: Tree, procs: Processes,
                                                   tmp_path: Path) -> None:
    piped = Piped(procs, tree, ["./log", "./missing/log"], tmp_path)
    try:
        piped.send(b"kept\n")
        assert piped.wait() == 111
        assert piped.unread() == b"kept\n"
        assert piped.errors() == (b"multilog: fatal: unable to open directory ./missing/log: "
                                  b"file does not exist\n")
    finally:
        piped.close()


# ============================================================================================
# Pauses: runtime errors and failing processors (C and pysvscan concurrently)
# ============================================================================================

def test_runtime_error_pauses_and_drops_nothing(procs: Processes, tmp_path: Path) -> None:
    """`previous` is a directory, so rotation cannot rename `current`: the reference's
    warning, a retry 5 s later that succeeds once the obstacle is gone, nothing lost."""
    require_c_reference()
    first, later = numbered_lines(21, tag=b"a"), numbered_lines(5, tag=b"b")
    runs = {}
    try:
        for tree in (C, PY):
            root = tree_root(tmp_path, tree)
            root.mkdir()
            runs[tree.name] = Piped(procs, tree, ["s4096", "./log"], root,
                                    stderr=tmp_path / f"{tree.name}.stderr")
        for name, piped in runs.items():
            log = tree_root(tmp_path, C if name == "c" else PY) / "log"
            wait_until(lambda: (log / "current").exists(), message="set-up done")
            (log / "previous").mkdir()
            piped.send(first)
        warning = (b"multilog: warning: unable to rename current to previous in directory "
                   b"./log, pausing: is a directory\n")
        seen = {}
        for name, piped in runs.items():
            wait_until(lambda: piped.errors() == warning, message=f"{name}: the warning")
            seen[name] = time.monotonic()
            piped.send(later)
            (tree_root(tmp_path, C if name == "c" else PY) / "log" / "previous").rmdir()
        for name, piped in runs.items():
            log = tree_root(tmp_path, C if name == "c" else PY) / "log"
            wait_until(lambda: archives(log), timeout=10, message=f"{name}: the retry")
            assert time.monotonic() - seen[name] > 3.5, name
            piped.end_input()
            assert piped.wait() == 0
            assert piped.errors() == warning
            assert [(log / a).read_bytes() for a in archives(log)] == [first]
            assert (log / "current").read_bytes() == later
        results = {name: Result(0, b"", b"", 0, snapshot(tree_root(tmp_path, tree)))
                   for name, tree in (("c", C), ("py", PY))}
        assert_same(results["c"], results["py"], "runtime error")
    finally:
        for piped in runs.values():
            piped.close()


def test_processor_failures_pause_and_retry(procs: Processes, tmp_path: Path) -> None:
    """A processor that cannot be run (`newstate` is a directory) prints `unable to run`
    and counts as failed: pause 5 s and run again. One killed by a signal: `crashed`
    (its ERR part is unspecified, §21.4), 5 s, then also `failed`, 5 s more. The C and
    pysvscan, both scenarios, run at the same time."""
    require_c_reference()
    data = numbered_lines(21) + b"tail\n"
    source = tmp_path / "input"
    source.write_bytes(data)
    scenarios = {
        "unrunnable": ("cat", lambda log: (log / "newstate").mkdir()),
        "crash": ("if [ -e flag ]; then cat; else : >flag; kill -9 $$; fi", lambda log: None),
    }
    started = {}
    for scenario, (processor, prepare) in scenarios.items():
        for tree in (C, PY):
            root = tree_root(tmp_path / scenario, tree)
            (root / "log").mkdir(parents=True)
            prepare(root / "log")
            with open(source, "rb") as f, open(tmp_path / f"{scenario}-{tree.name}.err", "wb") as e:
                proc = procs.start(multilog_argv(tree, ["s4096", f"!{processor}", "./log"]),
                                   cwd=root, stdin=f.fileno(), stderr=e.fileno())
            started[scenario, tree.name] = (proc, time.monotonic(), root)
    unrunnable = (b"multilog: fatal: unable to run cat: is a directory\n"
                  b"multilog: warning: processor failed in ./log, pausing\n")
    for tree in (C, PY):
        err = tmp_path / f"unrunnable-{tree.name}.err"
        wait_until(lambda: err.read_bytes() == unrunnable, message=f"{tree.name}: failure")
        (started["unrunnable", tree.name][2] / "log" / "newstate").rmdir()
    results = {}
    for (scenario, name), (proc, start, root) in started.items():
        rc = proc.wait(timeout=20)
        elapsed = time.monotonic() - start
        err = (tmp_path / f"{scenario}-{name}.err").read_bytes()
        if scenario == "unrunnable":
            assert err == unrunnable, name
            assert elapsed > 4.5, name
        else:
            crashed_line, failed_line, rest = err.split(b"\n")
            assert crashed_line.startswith(
                b"multilog: warning: processor crashed in ./log, pausing: "), (name, err)
            assert failed_line == b"multilog: warning: processor failed in ./log, pausing"
            assert rest == b""
            assert elapsed > 9.5, name
        results[scenario, name] = Result(rc, b"", b"", 0, snapshot(root))
    for scenario in scenarios:
        c = results[scenario, "c"]
        assert c.rc == 0
        assert b"".join(e.data for e in log_files(c, "log")) == data
        assert log_files(c, "log")[0].path.endswith(".s")
        assert_same(c, results[scenario, "py"], scenario)


# ============================================================================================
# Random scripts and inputs through both programs
# ============================================================================================

PATTERN_BYTES = st.sampled_from(list(b"xyz*: "))   # nothing a stamp is made of


@st.composite
def scripts(draw: st.DrawFn) -> list[str]:
    args: list[str] = []
    if draw(st.booleans()):
        args.append(draw(st.sampled_from(["t", "tx"])))
    dirs = 0
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from("+-+-ed=sn!?"))
        if kind in "+-":
            args.append(kind + bytes(draw(st.lists(PATTERN_BYTES, max_size=5))).decode())
        elif kind == "d":
            dirs += 1
            args.append(f"./d{dirs}")
        elif kind == "=":
            args.append(draw(st.sampled_from(["=st1", "=st2"])))
        elif kind == "s":
            args.append(draw(st.sampled_from(["s4096", "s4500", "s5000x", "s0"])))
        elif kind == "n":
            args.append(draw(st.sampled_from(["n2", "n3", "n1"])))
        elif kind == "!":
            args.append(draw(st.sampled_from(["!", "!cat", "!tr x y"])))
        elif kind == "e":
            args.append("e")
        else:
            args.append(draw(st.sampled_from(["N3", "", "T", "x"])))
    if not dirs:
        args.append("./d0")
    return args


@st.composite
def inputs(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.integers(0, 4)) == 0:
            length = draw(st.sampled_from([973, 974, 975, 999, 1000, 1001, 2000, 4097, 6000]))
            seed = bytes(draw(st.lists(st.sampled_from(list(b"xyz :*\0\r")), min_size=1,
                                       max_size=4)))
            lines.append((seed * length)[:length])
        else:
            lines.append(bytes(draw(st.lists(st.sampled_from(list(b"xyz :*\0\r")),
                                             max_size=12))))
    data = b"\n".join(lines)
    return data + b"\n" if lines and draw(st.booleans()) else data


@settings(max_examples=30, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scripts(), inputs())
def test_random_scripts_differential(args: list[str], data: bytes) -> None:
    require_c_reference()
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="multilog-") as base:
            run_both(procs, Path(base), args, data)
    finally:
        procs.cleanup()
