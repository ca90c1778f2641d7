"""tai64n and tai64nlocal (daemontools.md §12, §13, §21.1), against the C where it is safe.

The C tai64nlocal dies of SIGSEGV on labels it cannot convert, losing what it had
buffered (§13, §21.1): such input is run through pysvscan only, never used as a C
oracle. Streaming tests feed a pipe piece by piece and poll the output with deadlines.
"""

from __future__ import annotations

import os
import random
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import C, PY, Processes, Tree, require_c_reference

OFFSET = (1 << 62) + 10
STAMPED = re.compile(rb"@([0-9a-f]{16})([0-9a-f]{8}) ")
ZONES = Path("/usr/share/zoneinfo")



def env(tz: str | None = "UTC") -> dict[str, str]:
    e = {"PATH": "/usr/bin:/bin"}
    if tz is not None:
        e["TZ"] = tz
    return e


def stamps(output: bytes) -> list[tuple[float, bytes]]:
    """(unix time, line without its label) for each line of tai64n output."""
    result = []
    for line in output.split(b"\n"):
        if not line:
            continue
        m = STAMPED.match(line)
        assert m, line
        sec, nsec = int(m[1], 16), int(m[2], 16)
        assert nsec < 1_000_000_000
        result.append((sec - OFFSET + nsec / 1e9, line[m.end():]))
    return result


class Stream:
    """A program between two pipes: write pieces, poll for output with a deadline."""

    def __init__(self, procs: Processes, tree: Tree, program: str,
                 environ: dict[str, str] | None = None) -> None:
        self.proc = procs.start([tree.bin(program)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=environ or env())
        assert self.proc.stdin and self.proc.stdout
        self.stdin = self.proc.stdin
        self.fd = self.proc.stdout.fileno()
        self.got = b""

    def send(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def read_until(self, want: bytes, timeout: float = 5.0) -> bytes:
        """Everything read so far, once it contains `want`."""
        deadline = time.monotonic() + timeout
        while want not in self.got:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {want!r} in output after {timeout} s: {self.got!r}")
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise AssertionError(f"EOF before {want!r}: {self.got!r}")
                self.got += chunk
        return self.got

    def quiet_for(self, seconds: float) -> bytes:
        """Whatever arrives within `seconds` (used to show nothing more is written)."""
        deadline = time.monotonic() + seconds
        extra = b""
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                extra += chunk
        self.got += extra
        return extra

    def finish(self, timeout: float = 5.0) -> tuple[int, bytes]:
        self.stdin.close()
        rest = self.proc.stdout.read()  # type: ignore[union-attr]
        return self.proc.wait(timeout=timeout), self.got + rest


def run_shell(tree: Tree, program: str, redirect: str, stdin: bytes = b"x\n"
              ) -> subprocess.CompletedProcess[bytes]:
    """The program run by /bin/sh with a redirection such as `>&-` or `<&-`."""
    return subprocess.run(["/bin/sh", "-c", f'exec "$1" {redirect}', "sh", tree.bin(program)],
                          input=stdin, capture_output=True, env=env(), timeout=10)


# ---------------------------------------------------------------------------------------
# tai64n

def test_tai64n_labels_every_line(tree: Tree) -> None:
    data = b"one\ntwo\n\n  three  \n@x\nlast, no newline"
    before = time.time()
    cp = tree.run("tai64n", stdin=data, env=env())
    after = time.time()
    assert (cp.returncode, cp.stderr) == (0, b"")
    got = stamps(cp.stdout)
    assert [line for _, line in got] == data.split(b"\n")
    assert not cp.stdout.endswith(b"\n")  # the partial last line gets no newline
    times = [t for t, _ in got]
    assert before - 1 <= times[0] and times[-1] <= after + 1
    assert times == sorted(times)


def test_tai64n_many_lines_across_reads(tree: Tree) -> None:
    """A megabyte in one go: lines split across reads get exactly one label each."""
    lines = [b"%06d %s" % (i, b"x" * (i % 97)) for i in range(20000)]
    cp = tree.run("tai64n", stdin=b"\n".join(lines) + b"\n", env=env())
    assert (cp.returncode, cp.stderr) == (0, b"")
    got = stamps(cp.stdout)
    assert [line for _, line in got] == lines
    times = [t for t, _ in got]
    assert times == sorted(times)


def test_tai64n_empty_input_gives_empty_output(tree: Tree) -> None:
    cp = tree.run("tai64n", stdin=b"", env=env())
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, b"", b"")


def test_tai64n_stamps_a_line_when_its_first_byte_arrives(tree: Tree, procs: Processes) -> None:
    s = Stream(procs, tree, "tai64n")
    s.send(b"ab")
    s.read_until(b" ab")  # flushed before the next read: the label is already taken
    time.sleep(1.2)
    s.send(b"c\nd\n")
    code, out = s.finish()
    assert code == 0
    (t_abc, abc), (t_d, d) = stamps(out)
    assert (abc, d) == (b"abc", b"d")
    assert t_d - t_abc >= 1.0


def test_tai64n_flushes_before_each_read(tree: Tree, procs: Processes) -> None:
    s = Stream(procs, tree, "tai64n")
    s.send(b"first line\n")
    first = s.read_until(b" first line\n")
    s.send(b"partial")
    s.read_until(b" partial")
    s.send(b" end\n")
    code, out = s.finish()
    assert code == 0
    assert [line for _, line in stamps(out)] == [b"first line", b"partial end"]
    assert out.startswith(first)


# ---------------------------------------------------------------------------------------
# tai64nlocal: the observed conversions of §13

LABEL = b"@4000000037c219bf2ef02e94"
TABLE = [
    ("UTC", LABEL + b" mark\n", b"1999-08-24 04:04:05.787492500 mark\n"),
    ("US/Pacific", LABEL + b" mark\n", b"1999-08-23 21:04:05.787492500 mark\n"),
    ("right/UTC", LABEL + b" mark\n", b"1999-08-24 04:03:43.787492500 mark\n"),
    ("UTC", b"@400000000000000a00000000 epoch\n", b"1970-01-01 00:00:00.000000000 epoch\n"),
    ("UTC", b"@3fffffffffffffff00000000 pre\n", b"1969-12-31 23:59:49.000000000 pre\n"),
    ("UTC", b"@4000000100000000aabbccdd big\n", b"2106-02-07 06:28:06.2864434397 big\n"),
    ("UTC", LABEL + b"\n", b"1999-08-24 04:04:05.787492500\n"),
]


@pytest.mark.parametrize("tz, line, expected", TABLE)
def test_tai64nlocal_conversion_table(tree: Tree, tz: str, line: bytes, expected: bytes) -> None:
    if not (ZONES / tz).exists():
        pytest.skip(f"no {ZONES / tz} (tzdata)")
    cp = tree.run("tai64nlocal", stdin=line, env=env(tz))
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, expected, b"")


def test_tai64nlocal_copies_other_lines_unchanged(tree: Tree) -> None:
    data = (b"plain\n\nx " + LABEL + b" later in the line\n" + LABEL + b" mark\n"
            b"\t@ not at the start\n" + LABEL + b"\x00binary\xff\n"
            b"x" + LABEL[1:] + b" shaped like a label\n")
    cp = tree.run("tai64nlocal", stdin=data, env=env())
    assert (cp.returncode, cp.stderr) == (0, b"")
    assert cp.stdout == (b"plain\n\nx " + LABEL + b" later in the line\n"
                         b"1999-08-24 04:04:05.787492500 mark\n\t@ not at the start\n"
                         b"1999-08-24 04:04:05.787492500\x00binary\xff\n"
                         b"x" + LABEL[1:] + b" shaped like a label\n")


@pytest.mark.parametrize("data, expected", [
    (b"plain", b"plain"),
    (LABEL + b" mark", b"1999-08-24 04:04:05.787492500 mark"),
    (b"x\n" + LABEL + b" ", b"x\n1999-08-24 04:04:05.787492500 "),
    # The C stops at EOF while it still scans a label: the label is never written.
    (b"x\n" + LABEL, b"x\n"),
    (b"x\n@", b"x\n"),
])
def test_tai64nlocal_last_line_without_newline(tree: Tree, data: bytes, expected: bytes) -> None:
    cp = tree.run("tai64nlocal", stdin=data, env=env())
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, expected, b"")


def test_tai64nlocal_years_the_c_prints_oddly(tree: Tree) -> None:
    """Years below 0 and from 2^31 on: the C prints `1900 + tm_year` as unsigned long."""
    lines = []
    for unix in (-62167219201, -62167219200, -100_000_000_000, 67767976233532799,
                 67767976233532800, 1 << 55):
        lines.append(b"@%016x%08x x\n" % ((OFFSET + unix) % (1 << 64), 5))
    cp = tree.run("tai64nlocal", stdin=b"".join(lines), env=env())
    assert (cp.returncode, cp.stderr) == (0, b"")
    assert cp.stdout.split(b"\n") == [
        b"18446744073709551615-12-31 23:59:59.000000005 x",
        b"0-01-01 00:00:00.000000005 x",
        b"18446744073709550417-02-15 14:13:20.000000005 x",
        b"2147483647-12-31 23:59:59.000000005 x",
        b"18446744071562067968-01-01 00:00:00.000000005 x",
        b"1141709097-06-13 06:26:08.000000005 x", b""]


def test_tai64nlocal_flushes_what_the_c_would(tree: Tree, procs: Processes) -> None:
    """A line is written as far as it goes once its label is complete; a label still
    being scanned is held back until the byte after it arrives."""
    s = Stream(procs, tree, "tai64nlocal")
    s.send(LABEL + b" ma")
    s.read_until(b"1999-08-24 04:04:05.787492500 ma")
    s.send(b"rk\nplain")
    s.read_until(b"rk\nplain")
    s.send(b" more\n@4000000037c2")
    s.read_until(b" more\n")
    assert s.quiet_for(0.3) == b""
    s.send(b"19bf2ef02e94\n")
    s.read_until(b"\n1999-08-24 04:04:05.787492500\n")
    code, out = s.finish()
    assert (code, out) == (0, b"1999-08-24 04:04:05.787492500 mark\nplain more\n"
                              b"1999-08-24 04:04:05.787492500\n")


def test_tai64nlocal_mixed_input_matches_the_c(c_tree: Tree) -> None:
    """A megabyte of lines the C converts safely, in every shape the fast path must
    recognise or leave to the line-by-line path, fed through a pipe; fixed seed."""
    rng = random.Random(4242)
    now = int(time.time())
    lines = []
    for i in range(30000):
        label = b"@%016x%08x" % (OFFSET + now + i // 1000 + rng.randrange(-2, 3),
                                 rng.randrange(1 << 32))
        kind = rng.random() if (i // 3000) % 2 else 0.0  # some chunks all well-formed
        if kind < 0.90:
            lines.append(label + b" " + b"y" * rng.randrange(60))
        elif kind < 0.93:
            lines.append(label)  # nothing after the label
        elif kind < 0.95:
            lines.append(label + b"Z tail")  # ends on a non-hex letter
        elif kind < 0.98:
            lines.append(b"plain " + label)
        else:
            lines.append(b"")
    data = b"\n".join(lines) + b"\n"
    for tz in ("UTC", "US/Pacific"):
        c = C.run("tai64nlocal", stdin=data, env=env(tz))
        py = PY.run("tai64nlocal", stdin=data, env=env(tz))
        assert c.returncode == py.returncode == 0
        assert py.stdout == c.stdout


# ---------------------------------------------------------------------------------------
# tai64nlocal: labels the C crashes on (§21.1) — pysvscan only

MALFORMED = [
    b"@abc x",                                # too few digits: year out of range
    b"@ x",                                   # no digits at all
    b"@",                                     # `@` alone on a line
    b"@4000000037C219BF2EF02E94 upper",       # uppercase stops the scan at once
    b"@4000000037c219bf2ef02e94extra",        # the `e` of extra is a 25th digit
    b"@4000000037c219bf2ef02e9 a",            # 23 digits, a hex letter 2 bytes on
    b"@ffffffffffffffffffffffff all ones",
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_tai64nlocal_writes_unconvertible_lines_unchanged(py_tree: Tree, bad: bytes) -> None:
    data = b"plain1\n" + LABEL + b" good\n" + bad + b"\nplain2\n" + LABEL + b" end"
    cp = py_tree.run("tai64nlocal", stdin=data, env=env())
    assert (cp.returncode, cp.stderr) == (0, b"")
    assert cp.stdout == (b"plain1\n1999-08-24 04:04:05.787492500 good\n" + bad +
                         b"\nplain2\n1999-08-24 04:04:05.787492500 end")


def test_tai64nlocal_bad_line_among_many_good_ones(py_tree: Tree, c_tree: Tree) -> None:
    """A line the fast path must refuse, inside a chunk of good ones: it is written
    unchanged, its neighbours are still converted, nothing is lost. The expected output
    is the C's on the good lines only (a safe oracle)."""
    good = [LABEL[:-3] + b"%03x line %d" % (i % 4096, i) for i in range(5000)]
    expected = c_tree.run("tai64nlocal", stdin=b"\n".join(good) + b"\n", env=env()).stdout
    converted = expected.split(b"\n")
    for bad in (b"@abc bad", b"@4000000037C219BF2EF02E94 bad", b"@4000000037c219bf2ef02e9 a",
                b"x" + LABEL[1:] + b" no @", b"@4000000037c219bf2ef02e94e"):
        data = b"\n".join(good[:2500] + [bad] + good[2500:]) + b"\n"
        cp = py_tree.run("tai64nlocal", stdin=data, env=env())
        assert cp.returncode == 0
        assert cp.stdout == b"\n".join(converted[:2500] + [bad] + converted[2500:])


def reference(sec: int, nsec: int) -> bytes:
    """Straightforward conversion: local time of the label, as §13 prints it."""
    tm = time.localtime(sec - OFFSET)
    return b"%d-%02d-%02d %02d:%02d:%02d.%09d" % (
        tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nsec)


@pytest.mark.parametrize("tz", ["UTC", "US/Pacific", "right/UTC"])
def test_tai64nlocal_random_labels_match_a_reference(py_tree: Tree, tz: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Random well-formed labels, 1970-2100 (fixed seed), against time.localtime."""
    if not (ZONES / tz).exists():
        pytest.skip(f"no {ZONES / tz} (tzdata)")
    rng = random.Random(f"tai64nlocal {tz}")
    labels = []
    for _ in range(20000):
        sec = OFFSET + rng.randrange(0, 4102444800)  # 1970-01-01 .. 2100-01-01
        nsec = rng.randrange(1 << 32) if rng.random() < 0.1 else rng.randrange(10**9)
        labels.append((sec, nsec, bytes(rng.choice(b" abcxyz@:\t") for _ in range(rng.randrange(30)))))
    data = b"".join(b"@%016x%08x%s\n" % (s, n, b" " + rest) for s, n, rest in labels)
    cp = py_tree.run("tai64nlocal", stdin=data, env=env(tz))
    assert (cp.returncode, cp.stderr) == (0, b"")
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        expected = b"".join(reference(s, n) + b" " + rest + b"\n" for s, n, rest in labels)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert cp.stdout == expected


# ---------------------------------------------------------------------------------------
# Both programs: exit codes

PROGRAMS = ["tai64n", "tai64nlocal"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_closed_stdout_exits_111(tree: Tree, program: str) -> None:
    cp = run_shell(tree, program, ">&-")
    assert (cp.returncode, cp.stdout, cp.stderr) == (111, b"", b"")


@pytest.mark.parametrize("program", PROGRAMS)
def test_closed_stdout_and_no_input_exits_0(tree: Tree, program: str) -> None:
    """Nothing to write, so nothing fails."""
    cp = run_shell(tree, program, ">&-", stdin=b"")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, b"", b"")


@pytest.mark.parametrize("program", PROGRAMS)
def test_closed_stdin_exits_111(tree: Tree, program: str) -> None:
    cp = run_shell(tree, program, "<&-")
    assert (cp.returncode, cp.stdout, cp.stderr) == (111, b"", b"")


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("which", [pytest.param(C, id="c"), pytest.param(PY, id="py")])
def test_directory_on_stdin_exits_111(which: Tree, program: str, tmp_path: Path) -> None:
    if which is C:
        require_c_reference()
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        cp = subprocess.run([which.bin(program)], stdin=directory, capture_output=True,
                            env=env(), timeout=10)
    finally:
        os.close(directory)
    assert (cp.returncode, cp.stdout, cp.stderr) == (111, b"", b"")


@pytest.mark.parametrize("program", PROGRAMS)
def test_closed_pipe_kills_with_sigpipe(tree: Tree, program: str, procs: Processes) -> None:
    """Like the C, which does not ignore SIGPIPE: the reader went away, so does it."""
    proc = procs.start([tree.bin(program)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env())
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdout.close()
    try:
        proc.stdin.write(b"line\n" * 1000)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    assert proc.wait(timeout=10) == -signal.SIGPIPE
    assert proc.stderr.read() == b""
