"""Hostile input (issue 8, requirement 7): property-based tests with hypothesis.

Each property runs a modest, derandomized number of examples (no example database, no
deadline), so the file gives the same verdict on every run and stays well under a minute
on two cores. Wherever the C reference behaves sanely it is the oracle: the same input
goes to /usr/bin's program and to ours, and exit code, output and files must agree.
Where the C has a bug listed in daemontools.md §21 (tai64nlocal's crash on labels it
cannot convert) the example is held to the §21 behaviour instead. Always: no Python
traceback, no hang (every program runs under a timeout; multilog's documented retry
loop is recognised by its `pausing` warning, the C's and ours alike), and a running
supervise keeps running with a valid status.

atheris is not used: it is not packaged for Debian 12 nor installed here, and it fuzzes
one in-process Python function, whereas every program here is a separate process whose
behaviour is compared with a C binary; coverage-guided mutation would mostly measure
interpreter start-up. hypothesis' structured generators reach the same corners (NULs,
invalid UTF-8, oversized lines and datagrams, odd names) with shrinking to a readable
counterexample.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import C, PY, Tree, ok_reader, require_c_reference, status_pid, wait_until
from pysvscan.status import SIZE, Status
from test_supervise_notify import services  # noqa: F401  (the fixture)

ENV = {"PATH": "/usr/bin:/bin"}
TIMEOUT = 10


# HOSTILE_SCALE=N (N > 1): N times the examples, random ones instead of the fixed
# sequence, for a longer hunt by hand or in a soak run.
SCALE = int(os.environ.get("HOSTILE_SCALE", "1"))


def examples(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, derandomize=SCALE <= 1,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def run(tree: Tree, argv: list[bytes | str], cwd: str | Path, stdin: bytes = b"",
        env: dict[str, str] | None = None, timeout: float = TIMEOUT
        ) -> subprocess.CompletedProcess[bytes]:
    """One program to completion (or a failed test after `timeout`: no hang)."""
    cp = subprocess.run([tree.bin(str(argv[0])), *argv[1:]], cwd=cwd, input=stdin,
                        capture_output=True, env=env or ENV, timeout=timeout)
    if tree is PY:
        assert b"Traceback" not in cp.stderr and b"internal error" not in cp.stderr, cp
    return cp


@pytest.fixture(scope="module", autouse=True)
def c_reference() -> None:
    require_c_reference()


@pytest.fixture
def scratch() -> Iterator[Path]:
    """One directory for all the examples of a test, each making fresh() parts of it
    (outside pytest's 0700 tree, so that it can be opened to nobody)."""
    path = Path(tempfile.mkdtemp(prefix="pysvscan-hostile-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fresh(parent: Path, name: str) -> Path:
    """An empty directory parent/name, emptied if an earlier example left it."""
    path = parent / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    return path


# ---------------------------------------------------------------------------------------
# Status records and svstat

@examples(300)
@given(when=st.integers(0, 2**64 - 1), nsec=st.integers(0, 2**32 - 1),
       pid=st.integers(0, 2**32 - 1), paused=st.integers(0, 255), want=st.integers(0, 255))
def test_status_pack_unpack_round_trip(when: int, nsec: int, pid: int, paused: int,
                                       want: int) -> None:
    record = Status(when, nsec, pid, paused, want).pack()
    assert len(record) == SIZE
    back = Status.unpack(record)
    assert (back.when, back.nsec, back.pid, back.paused, back.want) == (when, nsec, pid,
                                                                        paused, want)


@examples(300)
@given(data=st.binary(max_size=40))
def test_status_unpack_of_any_bytes(data: bytes) -> None:
    """Fewer than 18 bytes: ValueError (svstat's `bad format`); else the first 18 bytes
    decoded, and packed back to exactly them."""
    if len(data) < SIZE:
        with pytest.raises(ValueError):
            Status.unpack(data)
    else:
        assert Status.unpack(data).pack() == data[:SIZE]


SECONDS = re.compile(rb"(\d+) seconds")


def same_but_seconds(c: bytes, py: bytes) -> bool:
    """svstat lines equal except for ages, which may differ by the second between the
    two runs (or by one double's rounding step for the absurd ages of random labels)."""
    if SECONDS.sub(b"S seconds", c) != SECONDS.sub(b"S seconds", py):
        return False
    return all(abs(int(a) - int(b)) <= 1 + int(a) / 2**51
               for a, b in zip(SECONDS.findall(c), SECONDS.findall(py)))


@pytest.fixture(scope="module")
def svstat_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`sv` with supervise/ok held open for reading, as if a supervise ran."""
    root = tmp_path_factory.mktemp("svstat")
    sv = root / "sv"
    sv.mkdir()
    with ok_reader(sv):
        yield sv


@examples(100)
@given(data=st.one_of(st.binary(max_size=40),
                      st.builds(lambda head, tail: head + tail,
                                st.sampled_from([b"\x40\x00\x00\x00", b"\x3f\xff\xff\xff",
                                                 b"\xff" * 4, b"\x00" * 4]),
                                st.binary(min_size=14, max_size=30))),
       down=st.booleans())
def test_svstat_on_random_status_files(svstat_dir: Path, data: bytes, down: bool) -> None:
    """Any 0..40-byte status file: ours prints what the C prints, exit 0."""
    (svstat_dir / "supervise" / "status").write_bytes(data)
    if down:
        (svstat_dir / "down").touch()
    else:
        (svstat_dir / "down").unlink(missing_ok=True)
    c = run(C, ["svstat", "sv"], svstat_dir.parent)
    py = run(PY, ["svstat", "sv"], svstat_dir.parent)
    assert (py.returncode, py.stderr) == (c.returncode, c.stderr) == (0, b"")
    assert same_but_seconds(c.stdout, py.stdout), (data, c.stdout, py.stdout)


# ---------------------------------------------------------------------------------------
# svc, svstat and svok argument lists

def client_sandbox(root: Path) -> None:
    """The same hostile neighbourhood for each tree: names that chdir fails on, a
    supervise/ that is missing, a FIFO nobody reads, a control that is a plain file,
    a running-looking service with a bad status, a symlink loop."""
    (root / "plain").mkdir()
    (root / "file").write_bytes(b"")
    for name in ("fifo", "regular", "bad"):
        (root / name / "supervise").mkdir(parents=True)
    os.mkfifo(root / "fifo" / "supervise" / "control")
    os.mkfifo(root / "fifo" / "supervise" / "ok")
    (root / "regular" / "supervise" / "control").write_bytes(b"")
    (root / "regular" / "supervise" / "ok").write_bytes(b"")
    (root / "regular" / "supervise" / "status").write_bytes(b"\0" * 18)
    os.mkfifo(root / "bad" / "supervise" / "ok")
    (root / "bad" / "supervise" / "status").write_bytes(b"short")
    os.symlink("loop", root / "loop")
    os.symlink("fifo", root / "link")


NAMES = st.sampled_from([b"plain", b"file", b"fifo", b"regular", b"bad", b"loop", b"link",
                         b"missing", b"", b"-", b"--", b".", b"/", b"fifo/", b"\xff\xfe",
                         b"caf\xc3\xa9", b"a\nb", b"x" * 300])
OPTIONS = st.lists(st.sampled_from(list("udopchaitkx") + list("zq12-U?")),
                   max_size=6).map(lambda letters: b"-" + "".join(letters).encode())
WORDS = st.lists(st.one_of(NAMES, OPTIONS, st.binary(max_size=8).filter(
    lambda b: b"\0" not in b)), max_size=6)


@pytest.fixture(scope="module")
def client_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    dirs = {}
    for tree in (C, PY):
        dirs[tree.name] = tmp_path_factory.mktemp(f"clients-{tree.name}")
        client_sandbox(dirs[tree.name])
    # `bad` looks running: hold its ok FIFO open in both sandboxes
    with contextlib.ExitStack() as stack:
        for root in dirs.values():
            stack.enter_context(ok_reader(root / "bad"))
        yield dirs


@examples(100)
@given(program=st.sampled_from(["svc", "svstat", "svok"]), words=WORDS)
def test_client_argument_lists(client_dirs: dict[str, Path], program: str,
                               words: list[bytes]) -> None:
    """Random options and paths: the C's exit code, output and messages, byte for byte;
    what svc wrote into a control that is a plain file, too."""
    got = {}
    for tree in (C, PY):
        root = client_dirs[tree.name]
        control = root / "regular" / "supervise" / "control"
        control.write_bytes(b"")
        cp = run(tree, [program, *words], root)
        got[tree.name] = (cp.returncode, cp.stdout, cp.stderr, control.read_bytes())
    if program == "svstat":  # ages of the all-zero label differ by the second at most
        assert same_but_seconds(got["c"][1], got["py"][1]), got
        got = {k: (v[0], SECONDS.sub(b"S", v[1]), *v[2:]) for k, v in got.items()}
    assert got["py"] == got["c"], words


# ---------------------------------------------------------------------------------------
# multilog: random scripts, random input

STAMP = re.compile(rb"@[0-9a-f]{24}")
PATTERN = st.text(alphabet="xy*", max_size=4)  # no hex digit: a stamp never decides
ACTIONS = st.one_of(
    PATTERN.map(lambda p: "+" + p), PATTERN.map(lambda p: "-" + p),
    st.sampled_from(["e", "efoo", "=st", "=st2", "=d", "=f", "=", "=missing/x",
                     "./a", "./a", "./b", "./a/", "./a/.", ".", "./d", "./d", "./f",
                     "./missing/x", "./p", "./loop", "=p", "=loop",
                     "s", "s0", "s4096", "s99999999999999999999999", "n", "n1", "n3",
                     "!cat", "!", "!exit 1", "x", "", "N3", "T", "t", "tfoo"]))
LINES = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda a, n, b: a + b"k" * n + b, st.binary(max_size=20),
              st.integers(150, 2500), st.binary(max_size=20)),  # past `e`'s 200, the 1000
).map(lambda b: b.translate(bytes.maketrans(b"abcdefghij", b"\n\n\n\0\r\xff xy*")))


def log_tree(root: Path) -> list[tuple[str, str, bytes]]:
    """Every file under root except the scaffolding: path, mode, contents (stamps
    masked, in names too)."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = STAMP.sub(b"@T", os.fsencode(path.relative_to(root))).decode()
        if rel in ("f", "d", "p", "loop"):
            continue
        st_ = path.lstat()
        data = STAMP.sub(b"@T", path.read_bytes()) if stat.S_ISREG(st_.st_mode) else b""
        found.append((rel, stat.filemode(st_.st_mode), data))
    return sorted(found)


# What an earlier run, a crash or a hostile user may have left in the log directory `d`.
LEFTOVER = st.lists(st.tuples(
    st.sampled_from(["lock", "current", "state", "newstate", "processed", "previous",
                     "@400000000000000000000000.s", "@400000000000000000000001.u", "@x"]),
    st.sampled_from(["0644", "0744"] * 4 + ["fifo0644", "fifo0744", "dir", "loop"]),
    st.binary(max_size=20)), max_size=4, unique_by=lambda e: e[0])


def multilog_sandbox(scratch: Path, tree: Tree,
                     leftovers: list[tuple[str, str, bytes]]) -> Path:
    root = fresh(scratch, tree.name)
    (root / "f").write_bytes(b"a file\n")
    os.mkfifo(root / "p")
    os.symlink("loop", root / "loop")
    d = root / "d"
    d.mkdir()
    for name, kind, data in leftovers:
        path = d / name
        if kind.startswith("fifo"):
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        elif kind == "loop":
            os.symlink(name, path)
        else:
            path.write_bytes(data)
        if kind not in ("dir", "loop"):
            path.chmod(int(kind[-4:], 8))
    return root


@examples(100)
@given(first=st.sampled_from(["t", "", "tx", "e"]), script=st.lists(ACTIONS, max_size=7),
       data=LINES, leftovers=LEFTOVER)
def test_multilog_random_scripts(scratch: Path, first: str, script: list[str],
                                 data: bytes, leftovers: list[tuple[str, str, bytes]]
                                 ) -> None:
    """The C's exit code, messages and `e` output (stamps masked), and the same files
    with the same modes and contents, also over leftovers in `d` (crash recovery, FIFOs
    and links where files belong: never a hang). (`J`, pysvscan's journal action, is
    left out: the C ignores it.)"""
    argv = ["multilog", *([first] if first else []), *script]
    got = {}
    for tree in (C, PY):
        root = multilog_sandbox(scratch, tree, leftovers)
        code, err = run_until_pausing(tree, argv, root, data)
        got[tree.name] = (code, STAMP.sub(b"@T", err), log_tree(root))
    assert got["py"] == got["c"], argv


def run_until_pausing(tree: Tree, argv: list[str], cwd: Path, data: bytes,
                      timeout: float = TIMEOUT) -> tuple[int | str, bytes]:
    """multilog to completion: (exit code, stderr). A runtime error makes it warn
    `..., pausing: ERR` and retry every 5 s forever, the C as well (§11): then it is
    killed at that first warning, and the result is ("pausing", stderr up to it)."""
    proc = subprocess.Popen([tree.bin(argv[0]), *argv[1:]], cwd=cwd, env=ENV,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    feed: bytes | None = data
    try:
        while True:
            try:
                _, err = proc.communicate(feed, timeout=0.2)
                break
            except subprocess.TimeoutExpired as e:
                feed = None
                head, pausing, _ = (e.stderr or b"").partition(b", pausing: ")
                if pausing:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()
                    line_end = (e.stderr or b"").index(b"\n", len(head))
                    return "pausing", (e.stderr or b"")[:line_end + 1]
                assert time.monotonic() < deadline, f"{tree.name} {argv} hangs"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if tree is PY:
        assert b"Traceback" not in err and b"internal error" not in err, err
    return proc.returncode, err


@pytest.mark.parametrize("leftover", [("lock", "fifo0644"), ("current", "fifo0744"),
                                      ("current", "fifo0644"), ("processed", "fifo0744"),
                                      ("previous", "fifo0644"), ("processed", "dir")],
                         ids=lambda c: "-".join(c))
def test_multilog_fifo_or_directory_in_the_log(scratch: Path, leftover: tuple[str, str]
                                               ) -> None:
    """A FIFO where multilog expects its lock or `current`: the C fails at once
    (non-blocking opens: `device not configured`); pysvscan used to block in open()
    for ever. A directory where an archive source should be: both warn and pause."""
    got = {}
    for tree in (C, PY):
        root = multilog_sandbox(scratch, tree, [(*leftover, b"")])
        code, err = run_until_pausing(tree, ["multilog", "./d"], root, b"line\n")
        got[tree.name] = (code, STAMP.sub(b"@T", err), log_tree(root))
    assert got["py"] == got["c"]


LINE = st.one_of(st.binary(max_size=120).map(lambda b: b.replace(b"\n", b"\r")),
                 st.builds(lambda b, n: (b or b"\0") * n, st.binary(min_size=1, max_size=3),
                           st.integers(900, 9000)))
STREAM = st.builds(lambda lines, end: b"\n".join(lines) + end,
                   st.lists(LINE, min_size=1, max_size=30), st.sampled_from([b"\n", b""]))


def logged(main: Path) -> tuple[bytes, list[int]]:
    """Archives in the order they were made, then current: their bytes joined, and
    each one's size."""
    files = sorted(main.glob("@*")) + [main / "current"]
    return b"".join(f.read_bytes() for f in files), [f.stat().st_size for f in files]


@examples(40)
@given(data=STREAM)
def test_multilog_keeps_every_byte(scratch: Path, data: bytes) -> None:
    """NULs, CRs, invalid UTF-8, lines of thousands of bytes, no final newline: every
    byte reaches the log, in order, a final newline added; rotation at 4096 bytes cuts
    the files at the very places the C cuts them."""
    expected = data if data.endswith(b"\n") or not data else data + b"\n"
    sizes = {}
    for tree in (C, PY):
        root = fresh(scratch, tree.name)
        cp = run(tree, ["multilog", "s4096", "n1000", "./main"], root, stdin=data)
        assert (cp.returncode, cp.stderr) == (0, b""), (tree.name, cp)
        joined, sizes[tree.name] = logged(root / "main")
        assert joined == expected, tree.name
    assert sizes["py"] == sizes["c"]


# ---------------------------------------------------------------------------------------
# envdir: odd directories

NAME = st.one_of(st.sampled_from([b"A", b"B", b"PATH", b"E=F", b"=x", b"=", b"a\nb", b" ",
                                  b"\xff", b".hidden", b"-", b"caf\xc3\xa9", b"x" * 200]),
                 st.binary(min_size=1, max_size=10).filter(
                     lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")))
VALUE = st.binary(max_size=60).map(lambda b: b.translate(bytes.maketrans(
    b"abcdefgh", b"\n\n\0\0 \t\r=")))
KIND = st.sampled_from(["file", "file", "file", "file", "empty", "huge-first-line",
                        "huge-rest", "fifo", "fifo-held", "fifo-held-data", "subdir",
                        "loop", "unreadable"])
ENTRIES = st.lists(st.tuples(NAME, KIND, VALUE), max_size=6, unique_by=lambda e: e[0])
ENVDIR_ENV = {"PATH": "/usr/bin:/bin", "A": "old", "E": "e", "LANG": "C"}


@pytest.fixture
def open_scratch(scratch: Path) -> Path:
    """scratch, reachable by nobody."""
    scratch.chmod(0o755)
    return scratch


def make_envdir(root: Path, entries: list[tuple[bytes, str, bytes]]) -> None:
    """The directory `e`, with one entry of each given name, kind and contents."""
    d = fresh(root, "e")
    d.chmod(0o755)
    for name, kind, value in entries:
        path = os.path.join(os.fsencode(d), name)
        if kind in ("file", "unreadable"):
            with open(path, "wb") as f:
                f.write(value)
            os.chmod(path, 0o000 if kind == "unreadable" else 0o644)
        elif kind == "empty":
            open(path, "wb").close()
        elif kind == "huge-first-line":  # over the kernel's 128 KiB per environment string
            with open(path, "wb") as f:
                f.write(b"v" * 200_000 + value)
        elif kind == "huge-rest":
            with open(path, "wb") as f:
                f.write(value.replace(b"\n", b"") + b"\n" + b"x" * 2_000_000)
        elif kind.startswith("fifo"):
            os.mkfifo(path, 0o644)
        elif kind == "subdir":
            os.mkdir(path)
        elif kind == "loop":
            os.symlink(name, path)


def hold_fifos(d: Path, entries: list[tuple[bytes, str, bytes]]) -> list[int]:
    """A writer on the `fifo-held` FIFOs (envdir then reads EAGAIN), with data first
    in the `-data` ones."""
    held = []
    for name, kind, value in entries:
        if kind.startswith("fifo-held"):
            fd = os.open(os.path.join(os.fsencode(d), name), os.O_RDWR | os.O_NONBLOCK)
            held.append(fd)
            if kind.endswith("data"):
                os.write(fd, value or b"v")
    return held


@examples(100)
@given(entries=ENTRIES)
def test_envdir_odd_directories(open_scratch: Path, entries: list[tuple[bytes, str, bytes]]
                                ) -> None:
    """As nobody (so a mode-000 file is unreadable): the C's exit code and message, or
    exactly the C's environment for the child (`env -0`), in the C's order. A FIFO never
    makes either hang: no writer reads as empty, a silent writer as `temporary
    failure`. A first line over 128 KiB fails at exec (`argument list too long`)."""
    make_envdir(open_scratch, entries)
    got = {}
    for tree in (C, PY):
        held = hold_fifos(open_scratch / "e", entries)
        try:
            cp = subprocess.run([PY.bin("setuidgid"), "nobody", tree.bin("envdir"), "e",
                                 "/usr/bin/env", "-0"], cwd=open_scratch,
                                capture_output=True, env=ENVDIR_ENV, timeout=TIMEOUT)
        finally:
            for fd in held:
                os.close(fd)
        assert b"Traceback" not in cp.stderr and b"internal error" not in cp.stderr, cp
        got[tree.name] = (cp.returncode, cp.stdout, cp.stderr)
    code, out, err = got["c"]
    assert got["py"] == (code, without_nameless(out), err), entries


def without_nameless(env0: bytes) -> bytes:
    """`env -0` output without entries that have no `=` after their first byte. The C
    passes one on for an empty file named `=x` (its removal of variable `` finds
    nothing and appends the edit as is); os.execve() cannot pass such a string (it
    takes names and values), so pysvscan leaves it out (execenv.edited_environment)."""
    return b"".join(e + b"\0" for e in env0.split(b"\0")[:-1] if b"=" in e[1:])


# ---------------------------------------------------------------------------------------
# tai64nlocal: random bytes and bad labels

HEX = "0123456789abcdef"
LABEL_LINE = st.one_of(
    st.builds(lambda s, n, rest: b"@%016x%08x" % (s, n) + rest,
              st.integers((1 << 62) - 2**40, (1 << 62) + 2**40), st.integers(0, 2**32 - 1),
              st.binary(max_size=20)),
    st.builds(lambda digits, rest: b"@" + digits.encode() + rest,
              st.text(alphabet=HEX + "ABCDEFxg", max_size=30), st.binary(max_size=10)),
    st.binary(max_size=40))
LOCAL_INPUT = st.builds(lambda lines, end: b"\n".join(
    line.replace(b"\n", b" ") for line in lines) + end,
    st.lists(LABEL_LINE, max_size=12), st.sampled_from([b"\n", b""]))


@examples(120)
@given(data=LOCAL_INPUT)
def test_tai64nlocal_random_input(scratch: Path, data: bytes) -> None:
    """Output identical to the C's whenever the C survives. Where it dies (SIGSEGV on
    a label it cannot convert, daemontools.md §13, §21.1), ours exits 0 and writes
    each line as the C does for that line alone, or unchanged where that crashes too."""
    env = {**ENV, "TZ": "UTC"}
    c = run(C, ["tai64nlocal"], scratch, stdin=data, env=env)
    py = run(PY, ["tai64nlocal"], scratch, stdin=data, env=env)
    assert (py.returncode, py.stderr) == (0, b"")
    if c.returncode == 0:
        assert py.stdout == c.stdout, data
        return
    assert c.returncode == -11, c  # the §21.1 crash, nothing else
    *whole, last = data.split(b"\n")
    expected = b""
    for line in [line + b"\n" for line in whole] + [last]:
        alone = run(C, ["tai64nlocal"], scratch, stdin=line, env=env)
        expected += alone.stdout if alone.returncode == 0 else line
    assert py.stdout == expected, data


# ---------------------------------------------------------------------------------------
# Notify datagrams to a running supervise

# The service: the pid supervise started (so its messages pass the `main` policy),
# sending whatever the test asks through FIFOs, then a BARRIER=1 whose descriptor
# supervise closes once it has handled everything before it.
RELAY = """import array, os, select, socket, struct, sys
address = os.environ["NOTIFY_SOCKET"]
target = "\\0" + address[1:] if address.startswith("@") else address
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
req = os.open("req", os.O_RDONLY)
ack = os.open("ack", os.O_WRONLY)

def exact(n):
    data = b""
    while len(data) < n:
        chunk = os.read(req, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data

def send(data, fds):
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    s.sendmsg([data], rights, 0, target)

def barrier():
    r, w = os.pipe()
    send(b"BARRIER=1", [w])
    os.close(w)
    p = select.poll()
    p.register(r, 0)
    done = bool(p.poll(5000))
    os.close(r)
    return done

while True:
    size, nfds = struct.unpack("<II", exact(8))
    data = exact(size)
    pipes = [os.pipe() for _ in range(nfds)]
    err = 0
    if size or nfds:
        try:
            send(data, [w for _, w in pipes])
        except OSError as e:
            err = e.errno
    for pair in pipes:
        for fd in pair:
            os.close(fd)
    os.write(ack, struct.pack("<ii", err, barrier()))
"""


def past_start_pause(d: Path) -> None:
    """Wait until supervise's second of pause after starting the service is over."""
    label = (d / "supervise" / "status").read_bytes()[:12]
    started = int.from_bytes(label[:8], "big") - (1 << 62) - 10 + \
        int.from_bytes(label[8:], "big") / 1e9
    wait_until(lambda: time.time() > started + 1.1, message="the end of the start pause")


class Relay:
    """The test's end of the relay's FIFOs."""

    def __init__(self, d: Path, stderr: Callable[[], str]) -> None:
        self.stderr = stderr  # supervise's and so the relay's
        self.req = wait_until(lambda: self.open_writer(d / "req"), message="the relay")
        self.ack = os.open(d / "ack", os.O_RDONLY | os.O_NONBLOCK)

    @staticmethod
    def open_writer(path: Path) -> int | None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return None
        os.set_blocking(fd, True)
        return fd

    def send(self, data: bytes, fds: int) -> tuple[int, int]:
        """Have the service send `data` with `fds` descriptors (nothing for b"", 0),
        then a barrier: (errno of sendmsg, barrier completed)."""
        try:
            os.write(self.req, struct.pack("<II", len(data), fds) + data)
        except BrokenPipeError:
            raise AssertionError(f"the relay is gone: {self.stderr()}") from None
        poll = select.poll()
        poll.register(self.ack, select.POLLIN)
        assert poll.poll(10_000), "the relay did not answer within 10 s"
        answer = os.read(self.ack, 8)
        assert len(answer) == 8, f"the relay is gone: {self.stderr()}"
        return struct.unpack("<ii", answer)

    def close(self) -> None:
        os.close(self.req)
        os.close(self.ack)


def relay_service(services) -> tuple[Path, subprocess.Popen[bytes], int, Relay]:  # noqa: F811
    """The relay as a service under `sd-notify` = main (and a ready-timeout far away,
    so that EXTEND_TIMEOUT_USEC counts), its supervise, pid and FIFOs, once
    supervise's start pause is over: messages then reach the main loop, with its
    poll() timeouts."""
    d = services.make("relay", f"#!/bin/sh\nexec {sys.executable} ./relay.py\n",
                      sd_notify="main", ready_timeout="1000")
    (d / "relay.py").write_text(RELAY)
    os.mkfifo(d / "req")
    os.mkfifo(d / "ack")
    proc = services.supervise(d)
    pid = services.pid(d)
    relay = Relay(d, lambda: services.stderr(d))
    past_start_pause(d)
    return d, proc, pid, relay


KEYS = st.sampled_from([b"READY", b"STATUS", b"ERRNO", b"WATCHDOG", b"WATCHDOG_USEC",
                        b"EXTEND_TIMEOUT_USEC", b"MAINPID", b"RELOADING", b"STOPPING",
                        b"BARRIER", b"FDSTORE", b"X_UNKNOWN", b"", b"READY\xff"])
NUMBERS = st.one_of(st.integers(0, 2**70).map(lambda n: b"%d" % n),
                    st.integers(1, 4080).map(lambda n: b"9" * n),
                    st.sampled_from([b"1", b"0", b"-1", b"1e9", b" 5", b"\xff", b""]))
ASSIGNMENT = st.builds(lambda k, v: k + b"=" + v, KEYS,
                       st.one_of(NUMBERS, st.binary(max_size=40).map(
                           lambda b: b.replace(b"\n", b""))))


def harmless(payload: bytes) -> bool:
    """Not a message that rightly kills the service: WATCHDOG=trigger, or a watchdog
    period short enough to expire during the test (under a day)."""
    for line in payload.split(b"\n"):
        key, _, value = line.partition(b"=")
        if line.startswith(b"WATCHDOG=trigger"):
            return False
        if key == b"WATCHDOG_USEC" and value.isdigit() and 0 < int(value) < 86400 * 10**6:
            return False
    return True


PAYLOAD = st.one_of(
    st.lists(ASSIGNMENT, max_size=6).map(b"\n".join),
    st.binary(max_size=200),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=3), st.integers(1300, 70000)),
    st.lists(ASSIGNMENT, min_size=1, max_size=3).map(lambda a: b"\0".join(a)),
).filter(harmless)


def test_notify_datagrams(services) -> None:  # noqa: F811 (the fixture)
    """Random datagrams (key=value garbage, oversized, NULs, invalid UTF-8, up to 253
    descriptors) from the service itself and from a foreign process: supervise handles
    each (the barrier after it completes), never dies, keeps the service's pid in a
    valid status, leaves no descriptor open, and writes no traceback; afterwards a
    plain READY=1 still makes the service ready."""
    d, proc, pid, relay = relay_service(services)
    foreign = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    foreign.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    address = (d / "supervise" / "notify-socket").read_text().strip()
    target = "\0" + address[1:]
    fds_before = len(os.listdir(f"/proc/{proc.pid}/fd"))

    @examples(150)
    @given(payload=PAYLOAD, fds=st.sampled_from([0, 0, 0, 1, 3, 253]),
           from_service=st.booleans())
    def datagram(payload: bytes, fds: int, from_service: bool) -> None:
        if from_service:
            err, done = relay.send(payload, fds)
            assert err in (0, 90), err  # EMSGSIZE only for what no socket takes
        else:
            pipes = [os.pipe() for _ in range(fds)]
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                       struct.pack(f"{fds}i", *[w for _, w in pipes]))] if fds else []
            try:
                foreign.sendmsg([payload], rights, 0, target)
            except OSError as e:
                assert e.errno == 90, e
            finally:
                for pair in pipes:
                    for fd in pair:
                        os.close(fd)
            err, done = relay.send(b"", 0)
        assert done, "supervise did not close the barrier's descriptor"
        assert proc.poll() is None, services.stderr(d)
        assert status_pid(d) == pid and len((d / "supervise" / "status").read_bytes()) == 18
        assert "Traceback" not in services.stderr(d)
        assert "internal error" not in services.stderr(d)

    try:
        datagram()
        assert len(os.listdir(f"/proc/{proc.pid}/fd")) == fds_before
        relay.send(b"READY=1", 0)
        wait_until(lambda: f"pid={pid}\n" in (text := (d / "supervise" / "notify-state")
                                               .read_text()) and "ready=@" in text,
                   message="readiness after the fuzz")
    finally:
        relay.close()
        foreign.close()
    assert proc.poll() is None
    assert status_pid(d) == pid


@pytest.mark.parametrize("messages", [
    [b"WATCHDOG_USEC=" + b"9" * 400],                       # no float holds it
    [b"EXTEND_TIMEOUT_USEC=" + b"9" * 400],
    [b"ERRNO=" + b"9" * 4000],
    [b"READY=1", b"WATCHDOG_USEC=10000000000000"],          # a poll() timeout over 2^31 ms
    [b"READY=1", b"WATCHDOG_USEC=18446744073709551615"],    # systemd's infinity
    [b"READY=1", b"WATCHDOG_USEC=18446744073709551616"],    # past uint64: ignored
], ids=["watchdog-usec-huge", "extend-huge", "errno-huge", "watchdog-days",
        "watchdog-infinity", "watchdog-past-uint64"])
def test_notify_numbers_out_of_range(services, messages: list[bytes]) -> None:  # noqa: F811
    """Numbers a service may send that no float or poll() timeout holds: supervise
    keeps running (a huge watchdog period just never expires) and keeps serving."""
    d, proc, pid, relay = relay_service(services)
    try:
        for message in messages:
            assert relay.send(message, 0) == (0, 1)
        assert relay.send(b"STATUS=still here", 0) == (0, 1)
        wait_until(lambda: "status=still here\n" in (d / "supervise" / "notify-state")
                   .read_text(), message="the STATUS after them")
    finally:
        relay.close()
    assert proc.poll() is None and status_pid(d) == pid
    assert services.stderr(d) == ""
