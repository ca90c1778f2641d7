"""softlimit, setlock, pgrphack and fghack against daemontools 0.76 (daemontools.md §9,
§10, §17, §18, §1.3 option parsing, §1.4 PATH search).

Each scenario runs once with our program and once with the C one (the `tree` fixture)
against the same expected exit code, stdout and stderr, so the C lane proves every
expectation written here; where the output depends on the machine (resource limits,
signal masks, descriptor tables) both lanes run inside one test and are compared
directly. Children read what they inherited from /proc/self. Everything long-running
is started in a session of its own and killed by process group at teardown.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from conftest import C, PY, Processes, Tree, alive, proc_state, require_c_reference, wait_until

ENV = {"PATH": "/bin:/usr/bin"}
SOFTLIMIT_USAGE = (b"softlimit: usage: softlimit [-a allbytes] [-c corebytes] [-d databytes] "
                   b"[-f filebytes] [-l lockbytes] [-m membytes] [-o openfiles] [-p processes] "
                   b"[-r residentbytes] [-s stackbytes] [-t cpusecs] child\n")
SETLOCK_USAGE = b"setlock: usage: setlock [ -nNxX ] file program [ arg ... ]\n"
R = resource
INF = R.RLIM_INFINITY
# The resources softlimit can touch, with their names in /proc/self/limits.
NAMES = {R.RLIMIT_CPU: "Max cpu time", R.RLIMIT_FSIZE: "Max file size",
         R.RLIMIT_DATA: "Max data size", R.RLIMIT_STACK: "Max stack size",
         R.RLIMIT_CORE: "Max core file size", R.RLIMIT_RSS: "Max resident set",
         R.RLIMIT_NPROC: "Max processes", R.RLIMIT_NOFILE: "Max open files",
         R.RLIMIT_MEMLOCK: "Max locked memory", R.RLIMIT_AS: "Max address space"}
# daemontools.md §17, the Linux mapping.
MAPPING = {"a": (R.RLIMIT_AS,), "c": (R.RLIMIT_CORE,), "d": (R.RLIMIT_DATA,),
           "f": (R.RLIMIT_FSIZE,), "l": (R.RLIMIT_MEMLOCK,),
           "m": (R.RLIMIT_DATA, R.RLIMIT_STACK, R.RLIMIT_MEMLOCK, R.RLIMIT_AS),
           "o": (R.RLIMIT_NOFILE,), "p": (R.RLIMIT_NPROC,), "r": (R.RLIMIT_RSS,),
           "s": (R.RLIMIT_STACK,), "t": (R.RLIMIT_CPU,)}
# Hard limits the children start with: finite, no higher than this test's own (only root
# may raise a hard limit), and ample for a Python program to start under.
CEILING = {R.RLIMIT_CPU: 100000, R.RLIMIT_FSIZE: 1 << 30, R.RLIMIT_DATA: 1 << 34,
           R.RLIMIT_STACK: 1 << 28, R.RLIMIT_CORE: 1 << 30, R.RLIMIT_RSS: 1 << 30,
           R.RLIMIT_NPROC: 10000, R.RLIMIT_NOFILE: 4096, R.RLIMIT_MEMLOCK: 8 << 20,
           R.RLIMIT_AS: 1 << 34}


@pytest.fixture(autouse=True)
def _need_c() -> None:
    require_c_reference()


def run(tree: Tree, program: str, *args: str | os.PathLike[str], cwd: Path | None = None,
        env: dict[str, str] | None = ENV, preexec: Callable[[], None] | None = None,
        umask: int = -1, process_group: int | None = None,
        argv0: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """Tree.run plus what these programs' tests need (limits, umask, process group, a
    different argv[0]); never a Python traceback."""
    cp = subprocess.run([argv0 or tree.bin(program), *map(str, args)], cwd=cwd, env=env,
                        capture_output=True, timeout=10, preexec_fn=preexec, umask=umask,
                        process_group=process_group)
    assert b"Traceback" not in cp.stdout + cp.stderr, (tree.name, program, args, cp.stderr)
    return cp


def result(cp: subprocess.CompletedProcess[bytes]) -> tuple[int, bytes, bytes]:
    return cp.returncode, cp.stdout, cp.stderr


def other(tree: Tree) -> Tree:
    return C if tree is PY else PY


# ---------------------------------------------------------------------------------------
# softlimit (§17)


def hard_limits() -> dict[int, int]:
    """Finite hard limits for the children: this test's own, capped by CEILING."""
    out = {}
    for res, cap in CEILING.items():
        hard = R.getrlimit(res)[1]
        out[res] = cap if hard == INF else min(hard, cap)
    return out


def limits_setter(limits: dict[int, tuple[int, int]]) -> Callable[[], None]:
    """A preexec function giving the child exactly these (soft, hard) limits."""
    def apply() -> None:
        for res, pair in limits.items():
            R.setrlimit(res, pair)
    return apply


def proc_limits(stdout: bytes) -> dict[str, tuple[int, int]]:
    """/proc/self/limits as {name: (soft, hard)}, `unlimited` as RLIM_INFINITY."""
    def value(word: str) -> int:
        return INF if word == "unlimited" else int(word)
    out = {}
    for line in stdout.decode().splitlines()[1:]:
        soft, hard = line[26:].split()[:2]
        out[line[:25].strip()] = (value(soft), value(hard))
    return out


def softlimit_sees(tree: Tree, limits: dict[int, tuple[int, int]], *options: str
                   ) -> tuple[int, bytes, dict[str, tuple[int, int]]]:
    """What `softlimit OPTIONS cat /proc/self/limits` shows, started with `limits`."""
    cp = run(tree, "softlimit", *options, "cat", "/proc/self/limits",
             preexec=limits_setter(limits))
    return cp.returncode, cp.stderr, proc_limits(cp.stdout)


def expect(limits: dict[int, tuple[int, int]], changed: dict[int, int]
           ) -> dict[str, tuple[int, int]]:
    """The limits the child should see: `changed` soft limits, every hard one as given."""
    return {NAMES[res]: (changed.get(res, soft), hard) for res, (soft, hard) in limits.items()}


ARGUMENT_FOR = {"a": 8_000_000_000, "c": 123456, "d": 3_000_000_000, "f": 7654321,
                "l": 65536, "m": 100_000_000, "o": 100, "p": 4321, "r": 98765432,
                "s": 4_000_000, "t": 3600}


@pytest.mark.parametrize("letter", sorted(MAPPING))
def test_softlimit_option_lowers_soft_limits_only(tree: Tree, letter: str) -> None:
    """Each option sets the soft limit of exactly its resources to min(N, hard)
    (`-m` leaves MEMLOCK at its 8 MiB hard limit); hard limits never move."""
    hard = hard_limits()
    limits = {res: (h, h) for res, h in hard.items()}
    n = ARGUMENT_FOR[letter]
    code, err, seen = softlimit_sees(tree, limits, f"-{letter}", str(n))
    assert (code, err) == (0, b"")
    assert {k: seen[k] for k in NAMES.values()} == expect(
        limits, {res: min(n, hard[res]) for res in MAPPING[letter]})


@pytest.mark.parametrize("letter", sorted(MAPPING))
def test_softlimit_equals_raises_soft_to_hard(tree: Tree, letter: str) -> None:
    hard = hard_limits()
    limits = {res: (h // 4, h) for res, h in hard.items()}
    code, err, seen = softlimit_sees(tree, limits, f"-{letter}", "=")
    assert (code, err) == (0, b"")
    assert {k: seen[k] for k in NAMES.values()} == expect(
        limits, {res: hard[res] for res in MAPPING[letter]})


@pytest.mark.parametrize("arg", ["99999", "99999999999999999999", "18446744073709551615"])
def test_softlimit_clamps_to_hard(tree: Tree, arg: str) -> None:
    """N above the hard limit gives the hard limit (`-o 99999` with hard 4096: 4096)."""
    hard = hard_limits()
    limits = {res: (h // 2, h) for res, h in hard.items()}
    code, err, seen = softlimit_sees(tree, limits, "-o", arg)
    assert (code, err) == (0, b"")
    assert seen[NAMES[R.RLIMIT_NOFILE]] == (hard[R.RLIMIT_NOFILE], hard[R.RLIMIT_NOFILE])


@pytest.mark.parametrize("arg, soft", [
    ("", 0),                                   # empty counts as 0
    ("007", 7),
    ("9223372036854775808", 1 << 63),          # beyond a signed 64-bit number
    ("18446744073709551615", INF),             # 2**64 - 1 is RLIM_INFINITY
    ("18446744073709551616", 0),               # 2**64 wraps to 0
    ("18446744073709552616", 1000),
    ("99999999999999999999999", 99999999999999999999999 % (1 << 64)),
    ("9" * 5000, INF),                         # 10**5000 - 1 wraps to 2**64 - 1
    ("1" + "0" * 5000, 0),
    ("0" * 5000 + "42", 42),
], ids=lambda v: repr(v)[:24])
def test_softlimit_number_rules(tree: Tree, arg: str, soft: int) -> None:
    """Digits only, overflow wraps modulo 2**64; checked on CORE with no hard limit."""
    if R.getrlimit(R.RLIMIT_CORE)[1] != INF:
        pytest.skip("needs an unlimited hard CORE limit")
    code, err, seen = softlimit_sees(tree, {R.RLIMIT_CORE: (12345, INF)}, "-c", arg)
    assert (code, err, seen[NAMES[R.RLIMIT_CORE]]) == (0, b"", (soft, INF))


def test_softlimit_applies_options_in_order(tree: Tree) -> None:
    """Later options override earlier ones; `-p 0` still lets the exec happen."""
    hard = hard_limits()
    limits = {res: (h, h) for res, h in hard.items()}
    code, err, seen = softlimit_sees(tree, limits, "-c", "100", "-m", "=", "-c200",
                                     "-d", "5000000000", "-p", "0", "-o", "=")
    assert (code, err) == (0, b"")
    assert {k: seen[k] for k in NAMES.values()} == expect(limits, {
        R.RLIMIT_CORE: 200, R.RLIMIT_DATA: min(5_000_000_000, hard[R.RLIMIT_DATA]),
        R.RLIMIT_NPROC: 0})


def test_softlimit_whole_limits_table_matches_c() -> None:
    """Every line of /proc/self/limits, side by side, for a mixed command line."""
    hard = hard_limits()
    limits = {res: (h // 3, h) for res, h in hard.items()}
    args = ("-m", "100000000", "-c", "=", "-t", "18446744073709551716", "-o64", "-r", "",
            "--", "cat", "/proc/self/limits")
    got = {t.name: result(run(t, "softlimit", *args, preexec=limits_setter(limits)))
           for t in (C, PY)}
    assert got["py"] == got["c"]
    assert got["c"][0] == 0


BAD_NUMBERS = ["-5", "0x10", " 5", "5 ", "+5", "1e3", "==", "=5", "5=", "\u0665", "\uff15",
               os.fsdecode(b"\xff")]


@pytest.mark.parametrize("arg", BAD_NUMBERS, ids=repr)
def test_softlimit_bad_number_is_usage(tree: Tree, arg: str, tmp_path: Path) -> None:
    """Anything but ASCII digits or exactly `=` is a usage error, and CHILD never runs."""
    cp = run(tree, "softlimit", "-c", "5", "-o", arg, "touch", "ran", cwd=tmp_path)
    assert result(cp) == (100, b"", SOFTLIMIT_USAGE)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("args, expected", [
    ([], (100, b"", SOFTLIMIT_USAGE)),
    (["-m", "5"], (100, b"", SOFTLIMIT_USAGE)),
    (["-m"], (100, b"", b"softlimit: option requires an argument -- m\n" + SOFTLIMIT_USAGE)),
    (["-z", "true"], (100, b"", b"softlimit: illegal option -- z\n" + SOFTLIMIT_USAGE)),
    (["-m5", "-z", "true"], (100, b"", b"softlimit: illegal option -- z\n" + SOFTLIMIT_USAGE)),
    (["-:", "true"], (100, b"", b"softlimit: illegal option -- :\n" + SOFTLIMIT_USAGE)),
    # options are acted on as they are read: the bad number comes first, no getopt line
    (["-m", "x", "-z", "true"], (100, b"", SOFTLIMIT_USAGE)),
    (["-o", "5", "-p"], (100, b"", b"softlimit: option requires an argument -- p\n"
                                   + SOFTLIMIT_USAGE)),
    # sgetopt complains with one byte, even of a multi-byte character
    (["-\u00e9", "true"], (100, b"", b"softlimit: illegal option -- \xc3\n" + SOFTLIMIT_USAGE)),
    (["--", "-m", "5"], (111, b"", b"softlimit: fatal: unable to run -m: file does not exist\n")),
    # sgetopt ends the options at any word starting `--`, and consumes it
    (["-c", "0", "--m", "5", "echo"],
     (111, b"", b"softlimit: fatal: unable to run 5: file does not exist\n")),
    (["--x", "echo", "hi"], (0, b"hi\n", b"")),
    (["-o", "50", "-", "x"],
     (111, b"", b"softlimit: fatal: unable to run -: file does not exist\n")),
    (["-m", "--", "echo", "hi"], (100, b"", SOFTLIMIT_USAGE)),
    (["-o", "--", "echo", "hi"], (100, b"", SOFTLIMIT_USAGE)),
    (["-t", "100", "echo", "-t", "5"], (0, b"-t 5\n", b"")),
    (["nosuch"], (111, b"", b"softlimit: fatal: unable to run nosuch: file does not exist\n")),
    (["-c", "0", "/nonexistent/x"],
     (111, b"", b"softlimit: fatal: unable to run /nonexistent/x: file does not exist\n")),
    (["sh", "-c", "exit 7"], (7, b"", b"")),
    (["-o", "50", ""], (111, b"", b"softlimit: fatal: unable to run : access denied\n")),
], ids=lambda v: repr(v) if isinstance(v, list) else "")
def test_softlimit_arguments(tree: Tree, args: list[str], expected: tuple[int, bytes, bytes]
                             ) -> None:
    assert result(run(tree, "softlimit", *args)) == expected


@pytest.mark.parametrize("program, args, expected", [
    ("softlimit", ["-z", "true"], b"lim: illegal option -- z\n" + SOFTLIMIT_USAGE),
    ("setlock", ["-z", "f", "true"], b"lim: illegal option -- z\n" + SETLOCK_USAGE),
])
def test_getopt_names_the_program_as_run(tree: Tree, tmp_path: Path, program: str,
                                         args: list[str], expected: bytes) -> None:
    """The getopt line uses argv[0]'s basename; the usage line is a fixed string."""
    link = tmp_path / "lim"
    link.symlink_to(tree.bin(program))
    assert result(run(tree, program, *args, argv0=str(link))) == (100, b"", expected)


# ---------------------------------------------------------------------------------------
# setlock (§18)


@pytest.mark.parametrize("args, stderr", [
    ([], SETLOCK_USAGE),
    (["lk"], SETLOCK_USAGE),
    (["-n", "lk"], SETLOCK_USAGE),
    (["-nxXN"], SETLOCK_USAGE),
    (["-z", "lk", "true"], b"setlock: illegal option -- z\n" + SETLOCK_USAGE),
    (["-nz", "lk", "true"], b"setlock: illegal option -- z\n" + SETLOCK_USAGE),
    (["-n", "-y", "lk", "true"], b"setlock: illegal option -- y\n" + SETLOCK_USAGE),
    (["--", "-n"], SETLOCK_USAGE),
], ids=repr)
def test_setlock_usage(tree: Tree, tmp_path: Path, args: list[str], stderr: bytes) -> None:
    assert result(run(tree, "setlock", *args, cwd=tmp_path)) == (100, b"", stderr)
    assert not (tmp_path / "lk").exists()


@pytest.mark.parametrize("args, expected", [
    (["-\u00e9", "lk", "true"],
     (100, b"", b"setlock: illegal option -- \xc3\n" + SETLOCK_USAGE)),
    (["--n", "lk", "echo", "hi"], (0, b"hi\n", b"")),
], ids=["multibyte-letter", "double-dash-word"])
def test_setlock_sgetopt_details(tree: Tree, tmp_path: Path, args: list[str],
                                 expected: tuple[int, bytes, bytes]) -> None:
    """The C complains with one byte of a multi-byte letter, and takes any word starting
    `--` as `--`."""
    assert result(run(tree, "setlock", *args, cwd=tmp_path)) == expected


def test_setlock_child_inherits_lock_descriptor(tree: Tree, tmp_path: Path) -> None:
    """fd 3 is FILE, open write-only, append, non-blocking, not close-on-exec, locked;
    `--` and a lone `-` end the options; the child's exit code is setlock's."""
    script = ("readlink /proc/$$/fd/3; grep -c '^lock:.*FLOCK  ADVISORY  WRITE' "
              "/proc/$$/fdinfo/3; sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/3; exit 7")
    cp = run(tree, "setlock", "-n", "--", "lk", "sh", "-c", script, cwd=tmp_path)
    link, locks, flags = cp.stdout.decode().split()
    assert (cp.returncode, cp.stderr, link) == (7, b"", str(tmp_path / "lk"))
    assert locks == "1"
    mask = os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC
    assert int(flags, 8) & mask == os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK
    cp = run(tree, "setlock", "-", "sh", "-c", "readlink /proc/$$/fd/3", cwd=tmp_path)
    assert result(cp) == (0, str(tmp_path / "-").encode() + b"\n", b"")


def test_setlock_descriptor_flags_match_c(tmp_path: Path) -> None:
    """The whole fdinfo flags word, side by side (O_LARGEFILE included)."""
    script = "sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/3"
    got = {t.name: result(run(t, "setlock", "lk", "sh", "-c", script, cwd=tmp_path))
           for t in (C, PY)}
    assert got["py"] == got["c"] and got["c"][0] == 0


@pytest.mark.parametrize("umask, mode", [(0o022, 0o600), (0o000, 0o600), (0o277, 0o400),
                                         (0o077, 0o600)])
def test_setlock_creates_file_0600_minus_umask(tree: Tree, tmp_path: Path, umask: int,
                                               mode: int) -> None:
    assert result(run(tree, "setlock", "lk", "true", cwd=tmp_path, umask=umask)) == (0, b"", b"")
    assert (tmp_path / "lk").stat().st_mode & 0o7777 == mode


def test_setlock_appends_and_never_truncates(tree: Tree, tmp_path: Path) -> None:
    """Existing content and mode stay; what the child writes to fd 3 lands at the end."""
    lk = tmp_path / "lk"
    lk.write_bytes(b"previous content\n")
    lk.chmod(0o644)
    cp = run(tree, "setlock", "lk", "sh", "-c", "echo more >&3", cwd=tmp_path)
    assert result(cp) == (0, b"", b"")
    assert lk.read_bytes() == b"previous content\nmore\n"
    assert lk.stat().st_mode & 0o7777 == 0o644


def start_holder(procs: Processes, tree: Tree, tmp_path: Path) -> subprocess.Popen[bytes]:
    """A setlock holding `lk` (its child waits on a sleep) once `ready` exists."""
    proc = procs.start([tree.bin("setlock"), "lk", "sh", "-c",
                        "echo > ready; exec sleep 30"], cwd=tmp_path, env=ENV)
    wait_until(lambda: (tmp_path / "ready").exists() or proc.poll() is not None,
               timeout=5, message="the lock holder")
    assert proc.poll() is None
    return proc


@pytest.mark.parametrize("options, expected", [
    (["-n"], (111, b"", b"setlock: fatal: unable to lock lk: temporary failure\n")),
    (["-Nn"], (111, b"", b"setlock: fatal: unable to lock lk: temporary failure\n")),
    (["-nx"], (0, b"", b"")),
    (["-n", "-x"], (0, b"", b"")),
    (["-nxX"], (111, b"", b"setlock: fatal: unable to lock lk: temporary failure\n")),
    (["-nXx"], (0, b"", b"")),
    (["-x", "-X", "-n"], (111, b"", b"setlock: fatal: unable to lock lk: temporary failure\n")),
], ids=repr)
def test_setlock_held_lock(tree: Tree, tmp_path: Path, procs: Processes, options: list[str],
                           expected: tuple[int, bytes, bytes]) -> None:
    """-n/-N and -x/-X: the later one wins. The lock is held by the other implementation,
    so this also shows both take the same kind of lock."""
    start_holder(procs, other(tree), tmp_path)
    cp = run(tree, "setlock", *options, "lk", "touch", "ran", cwd=tmp_path)
    assert result(cp) == expected
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("options", [[], ["-N"], ["-nN"], ["-n", "-x", "-N"]], ids=repr)
def test_setlock_waits_for_the_lock(tree: Tree, tmp_path: Path, procs: Processes,
                                    options: list[str]) -> None:
    holder = start_holder(procs, tree, tmp_path)
    waiter = procs.start([tree.bin("setlock"), *options, "lk", "touch", "ran"],
                         cwd=tmp_path, env=ENV, stderr=subprocess.PIPE)
    with pytest.raises(subprocess.TimeoutExpired):
        waiter.wait(timeout=0.3)   # the one deliberate pause: it must still be blocked
    os.killpg(holder.pid, signal.SIGKILL)
    _, err = waiter.communicate(timeout=5)
    assert (waiter.returncode, err) == (0, b"")
    assert (tmp_path / "ran").exists()


def test_setlock_lock_lasts_until_every_copy_is_closed(tree: Tree, tmp_path: Path,
                                                       procs: Processes) -> None:
    """A grandchild that keeps fd 3 keeps the lock after setlock's own child exited."""
    setlock = procs.start([tree.bin("setlock"), "lk", "sh", "-c",
                           "sleep 30 >/dev/null 2>&1 & echo $! > pid"], cwd=tmp_path, env=ENV)
    assert setlock.wait(timeout=5) == 0
    grandchild = int((tmp_path / "pid").read_text())
    assert alive(grandchild)
    for checker in (C, PY):
        cp = run(checker, "setlock", "-n", "lk", "true", cwd=tmp_path)
        assert result(cp) == (111, b"", b"setlock: fatal: unable to lock lk: temporary failure\n")
    os.kill(grandchild, signal.SIGKILL)
    wait_until(lambda: run(tree, "setlock", "-n", "lk", "true", cwd=tmp_path).returncode == 0,
               timeout=5, message="the lock to be released")


@pytest.mark.parametrize("args, expected", [
    (["nodir/lk", "touch", "ran"],
     (111, b"", b"setlock: fatal: unable to open nodir/lk: file does not exist\n")),
    (["-x", "nodir/lk", "touch", "ran"], (0, b"", b"")),
    (["dir", "touch", "ran"], (111, b"", b"setlock: fatal: unable to open dir: is a directory\n")),
    (["-xn", "dir", "touch", "ran"], (0, b"", b"")),
    (["", "touch", "ran"], (111, b"", b"setlock: fatal: unable to open : file does not exist\n")),
    # an exec failure is reported even with -x, after the lock file was made
    (["-x", "lk", "/nonexistent"],
     (111, b"", b"setlock: fatal: unable to run /nonexistent: file does not exist\n")),
    (["-nx", "lk", "nosuch", "arg"],
     (111, b"", b"setlock: fatal: unable to run nosuch: file does not exist\n")),
    (["lk", "./dir"], (111, b"", b"setlock: fatal: unable to run ./dir: access denied\n")),
    (["-x", "lk", ""], (111, b"", b"setlock: fatal: unable to run : access denied\n")),
], ids=repr)
def test_setlock_failures(tree: Tree, tmp_path: Path, args: list[str],
                          expected: tuple[int, bytes, bytes]) -> None:
    (tmp_path / "dir").mkdir()
    assert result(run(tree, "setlock", *args, cwd=tmp_path)) == expected
    assert not (tmp_path / "ran").exists()
    assert (tmp_path / "lk").exists() == ("lk" in args)


# ---------------------------------------------------------------------------------------
# pgrphack (§10)


def stat_ids(stdout: bytes) -> tuple[int, int, int]:
    """(pid, process group, session) from a /proc/PID/stat line."""
    fields = stdout[stdout.rindex(b")") + 2:].split()
    return int(stdout.split()[0]), int(fields[2]), int(fields[3])


def test_pgrphack_runs_child_in_new_session(tree: Tree) -> None:
    cp = run(tree, "pgrphack", "cat", "/proc/self/stat")
    assert (cp.returncode, cp.stderr) == (0, b"")
    pid, pgrp, sid = stat_ids(cp.stdout)
    assert pid == pgrp == sid


def test_pgrphack_ignores_setsid_failure(tree: Tree) -> None:
    """Started as a process group leader, setsid() fails (EPERM) and is ignored."""
    cp = run(tree, "pgrphack", "cat", "/proc/self/stat", process_group=0)
    assert (cp.returncode, cp.stderr) == (0, b"")
    pid, pgrp, sid = stat_ids(cp.stdout)
    assert pid == pgrp and sid == os.getsid(0) != pid


@pytest.mark.parametrize("args, expected", [
    ([], (100, b"", b"pgrphack: usage: pgrphack child\n")),
    (["nosuch", "x"], (111, b"", b"pgrphack: fatal: unable to run nosuch: file does not exist\n")),
    (["sh", "-c", "echo $#; exit 9", "a", "b"], (9, b"1\n", b"")),
    (["-x"], (111, b"", b"pgrphack: fatal: unable to run -x: file does not exist\n")),
    (["", "a"], (111, b"", b"pgrphack: fatal: unable to run : access denied\n")),
], ids=repr)
def test_pgrphack_arguments(tree: Tree, args: list[str], expected: tuple[int, bytes, bytes]
                            ) -> None:
    assert result(run(tree, "pgrphack", *args)) == expected


# ---------------------------------------------------------------------------------------
# fghack (§9)


@pytest.mark.parametrize("args, expected", [
    ([], (100, b"", b"fghack: usage: fghack child\n")),
    (["true"], (0, b"", b"")),
    (["sh", "-c", "echo out; exit 7"], (7, b"out\n", b"")),
    (["sh", "-c", "exit 255"], (255, b"", b"")),
    (["sh", "-c", "kill -KILL $$"], (111, b"", b"fghack: fatal: child crashed\n")),
    (["sh", "-c", "kill -TERM $$"], (111, b"", b"fghack: fatal: child crashed\n")),
    (["nosuch"], (111, b"", b"fghack: fatal: unable to run nosuch: file does not exist\n")),
    (["/dev/null"], (111, b"", b"fghack: fatal: unable to run /dev/null: access denied\n")),
    ([""], (111, b"", b"fghack: fatal: unable to run : access denied\n")),
], ids=repr)
def test_fghack_arguments(tree: Tree, args: list[str], expected: tuple[int, bytes, bytes]
                          ) -> None:
    assert result(run(tree, "fghack", *args)) == expected


def test_fghack_wait_failure(tree: Tree) -> None:
    """With SIGCHLD ignored (inherited, left alone) the child is reaped by the kernel."""
    cp = run(tree, "fghack", "sh", "-c", "exit 3",
             preexec=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    assert result(cp) == (111, b"", b"fghack: fatal: wait failed: no child processes\n")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def fghack_child(procs: Processes, tree: Tree, tmp_path: Path, *child: str
                 ) -> tuple[subprocess.Popen[bytes], int]:
    proc = procs.start([tree.bin("fghack"), *child], cwd=tmp_path, env=ENV,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, wait_until(lambda: children(proc.pid), timeout=5, message="fghack's child")[0]


def test_fghack_gives_child_31_copies_of_the_pipe(tmp_path: Path, procs: Processes) -> None:
    """fds 3-33 of the child are one pipe's write end; killing it is a crash."""
    tables = {}
    for tree in (C, PY):
        proc, child = fghack_child(procs, tree, tmp_path, "sleep", "30")
        wait_until(lambda: Path(f"/proc/{child}/comm").read_text() == "sleep\n", timeout=5,
                   message="the child to exec")
        links = {int(fd): os.readlink(f"/proc/{child}/fd/{fd}")
                 for fd in os.listdir(f"/proc/{child}/fd")}
        assert sorted(links) == list(range(34)), tree.name
        pipe = {links[fd] for fd in range(3, 34)}
        assert len(pipe) == 1 and pipe.pop().startswith("pipe:"), tree.name
        tables[tree.name] = sorted(links)
        os.kill(child, signal.SIGKILL)
        out, err = proc.communicate(timeout=5)
        assert (proc.returncode, out, err) == (111, b"", b"fghack: fatal: child crashed\n")
    assert tables["py"] == tables["c"]


def test_fghack_waits_for_daemonised_grandchild(tree: Tree, tmp_path: Path,
                                                procs: Processes) -> None:
    """The child exits at once, but a grandchild holds the copies: fghack waits for it
    (leaving the child a zombie), then exits with the child's status."""
    proc, child = fghack_child(procs, tree, tmp_path, "sh", "-c",
                               "sleep 30 >/dev/null 2>&1 & echo $! > pid; exit 5")
    wait_until(lambda: proc_state(child) == "Z", timeout=5, message="the child to exit")
    grandchild = int((tmp_path / "pid").read_text())
    assert proc.poll() is None and alive(grandchild)
    os.kill(grandchild, signal.SIGKILL)
    out, err = proc.communicate(timeout=5)
    assert (proc.returncode, out, err) == (5, b"", b"")


def test_fghack_does_not_wait_for_grandchild_that_closed_copies(tree: Tree, tmp_path: Path,
                                                                procs: Processes) -> None:
    """A grandchild that closes the copies (dash cannot close fds above 9: Python does)
    no longer keeps fghack waiting; it is killed with the session at teardown."""
    closer = "import os, time; os.closerange(3, 64); open('ready', 'w').close(); time.sleep(30)"
    script = f'"$0" -c "{closer}" >/dev/null 2>&1 & exit 4'
    proc = procs.start([tree.bin("fghack"), "sh", "-c", script, sys.executable], cwd=tmp_path,
                       env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=5)
    assert (proc.returncode, out, err) == (4, b"", b"")
    wait_until(lambda: (tmp_path / "ready").exists(), timeout=5, message="the grandchild")


# ---------------------------------------------------------------------------------------
# All four: PATH search (§1.4), what the child inherits (§1.6)


PROGRAMS = {"softlimit": ["-o", "100"], "setlock": ["lk"], "pgrphack": [], "fghack": []}


def executable(path: Path, text: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
@pytest.mark.parametrize("layout, path, expected", [
    # an empty PATH element is the current directory
    ({"prog": ("#!/bin/sh\necho here \"$@\"\n", 0o755)}, ":/bin", (0, b"here a b\n", b"")),
    # EACCES is remembered and the search goes on
    ({"d1/prog": ("#!/bin/sh\necho d1\n", 0o644), "d2/prog": ("#!/bin/sh\necho d2\n", 0o755)},
     "d1:d2", (0, b"d2\n", b"")),
    ({"d1/prog": ("#!/bin/sh\necho d1\n", 0o644)}, "d1:d2",
     (111, b"", b"PROG: fatal: unable to run prog: access denied\n")),
    ({"d1/prog/x": ("", 0o644), "d2/prog": ("#!/bin/sh\necho d2\n", 0o755)}, "d1:d2",
     (0, b"d2\n", b"")),
    # any other error stops the search at once; no /bin/sh fallback
    ({"d1/prog": ("echo no shebang\n", 0o755), "d2/prog": ("#!/bin/sh\necho d2\n", 0o755)},
     "d1:d2", (111, b"", b"PROG: fatal: unable to run prog: exec format error\n")),
    ({}, "d1:d2", (111, b"", b"PROG: fatal: unable to run prog: file does not exist\n")),
], ids=["empty-element", "eacces-then-found", "eacces-reported", "directory-skipped",
        "enoexec-stops", "not-found"])
def test_path_search(tree: Tree, tmp_path: Path, program: str, layout: dict[str, tuple[str, int]],
                     path: str, expected: tuple[int, bytes, bytes]) -> None:
    for name, (text, mode) in layout.items():
        executable(tmp_path / name, text, mode)
    cp = run(tree, program, *PROGRAMS[program], "prog", "a", "b", cwd=tmp_path,
             env={"PATH": path})
    assert result(cp) == (expected[0], expected[1],
                          expected[2].replace(b"PROG", program.encode()))


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_path_unset_means_bin_usr_bin(tree: Tree, tmp_path: Path, program: str) -> None:
    cp = run(tree, program, *PROGRAMS[program], "env", cwd=tmp_path, env={})
    assert result(cp) == (0, b"", b"")


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_child_environment_and_signals_match_c(tmp_path: Path, program: str) -> None:
    """The child gets the environment as given (no locale variables added) and the
    signal dispositions and mask the C would pass on, an inherited SIG_IGN included."""
    def ignore_hup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    got = {}
    for env in (ENV, {**ENV, "LC_ALL": "C", "LANG": "C"}):
        for tree in (C, PY):
            child_env = run(tree, program, *PROGRAMS[program], "env", cwd=tmp_path, env=env,
                            preexec=ignore_hup)
            child_signals = run(tree, program, *PROGRAMS[program], "grep", "-E",
                                "^Sig(Blk|Ign|Cgt)", "/proc/self/status", cwd=tmp_path,
                                env=env, preexec=ignore_hup)
            got[tree.name] = result(child_env) + result(child_signals)
        assert got["py"] == got["c"]
        assert got["c"][0] == got["c"][3] == 0
        lines = got["py"][1].decode().splitlines()
        assert {f"{k}={v}" for k, v in env.items()} <= set(lines)
        assert not [line for line in lines if line.startswith("LC_CTYPE=")]
