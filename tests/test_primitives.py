"""The shared primitives, each against the real kernel (fds, FIFOs, flock, exec)."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import C, is_c_program, write_script
from pysvscan import errors, fifo, lock, sgetopt, status, tai64
from pysvscan.status import Status


def run_python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None
               ) -> subprocess.CompletedProcess[bytes]:
    """A fresh interpreter (the venv's) running `code`: for exec, exit and signal state."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, timeout=20)


# -- errors ------------------------------------------------------------------------

@pytest.mark.parametrize("err, text", [
    (errno.ENOENT, "file does not exist"), (errno.EACCES, "access denied"),
    (errno.EAGAIN, "temporary failure"), (errno.ENXIO, "device not configured"),
    (errno.ELOOP, "symbolic link loop"), (errno.EISDIR, "is a directory"),
    (errno.ENOEXEC, "exec format error"), (errno.EPERM, "permission denied"),
    (errno.EMFILE, "process cannot open more files"), (0, "no error"),
    (errno.EOVERFLOW, "unknown error"), (errno.EREMCHG, "remote address changed"),
])
def test_errtext_uses_the_c_table(err: int, text: str) -> None:
    assert errors.errtext(err) == text
    assert errors.errtext(OSError(err, "whatever strerror says")) == text


def test_messages_have_the_reference_shape(capfd: pytest.CaptureFixture[str]) -> None:
    assert errors.fatal("svok", "unable to chdir to x: ", errno.ENOENT) == 111
    errors.warn("svc", "unable to control x: supervise not running")
    assert errors.usage("svok", "svok dir") == 100
    assert errors.fatal("envdir", "bad", code=100) == 100
    assert capfd.readouterr().err == (
        "svok: fatal: unable to chdir to x: file does not exist\n"
        "svc: warning: unable to control x: supervise not running\n"
        "svok: usage: svok dir\n"
        "envdir: fatal: bad\n")


def test_an_unexpected_exception_is_one_line_not_a_traceback() -> None:
    r = run_python("""
        from pysvscan import errors
        def main(argv):
            raise RuntimeError("boom")
        errors.run_main("svok", main)
    """)
    assert r.returncode == 111
    assert r.stderr == b"svok: fatal: internal error: RuntimeError: boom\n"


def test_a_diagnostic_reaches_fd2_in_one_write(tmp_path: Path) -> None:
    """strace-free check: a pipe read returns the whole line at once."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 2)
        errors.warn("x", "y" * 200)
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 4096) == b"x: warning: " + b"y" * 200 + b"\n"
    os.close(r)


# -- tai64 -------------------------------------------------------------------------

def test_tai64_offset_and_layout() -> None:
    assert tai64.OFFSET == 0x400000000000000A
    label = tai64.pack(tai64.OFFSET + 1_700_000_000, 123_456_500)
    assert label == bytes.fromhex("400000006553f10a") + (123_456_500).to_bytes(4, "big")
    assert tai64.unpack(label) == (tai64.OFFSET + 1_700_000_000, 123_456_500)
    assert tai64.external(label) == "@400000006553f10a075bcbf4"
    assert tai64.to_unix(tai64.OFFSET + 5) == 5


def test_tai64_now_is_unix_plus_offset_with_microsecond_nanos() -> None:
    before = int(time.time())
    sec, nsec = tai64.now()
    after = int(time.time())
    assert before <= tai64.to_unix(sec) <= after
    assert nsec % 1000 == 500 and 0 <= nsec < 1_000_000_000


# -- status ------------------------------------------------------------------------

SPEC_EXAMPLE = bytes.fromhex("400000006b0b755e0e91aaec2241000000" "75")


def test_status_matches_the_observed_bytes() -> None:
    st = Status.unpack(SPEC_EXAMPLE)
    assert (st.when, st.nsec, st.pid, st.paused, st.want) == (
        0x400000006B0B755E, 0x0E91AAEC, 16674, 0, ord("u"))
    assert st.pack() == SPEC_EXAMPLE
    assert Status(st.when, st.nsec, 16674, 1, 0).pack()[16:] == b"\x01\x00"


def test_status_short_record_is_rejected_and_extra_bytes_ignored() -> None:
    with pytest.raises(ValueError):
        Status.unpack(SPEC_EXAMPLE[:17])
    assert Status.unpack(SPEC_EXAMPLE + b"junk") == Status.unpack(SPEC_EXAMPLE)


def test_seconds_since_is_clamped_at_zero() -> None:
    st = Status.unpack(SPEC_EXAMPLE)
    assert st.seconds_since(st.when + 7) == 7
    assert st.seconds_since(st.when - 7) == 0


def test_probe_reads_a_live_service_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    sup = tmp_path / "supervise"
    sup.mkdir()
    monkeypatch.chdir(tmp_path)
    assert status.probe().error == "unable to open supervise/ok: file does not exist"
    os.mkfifo(sup / "ok")
    assert status.probe().error == "supervise not running"
    reader = os.open(sup / "ok", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert status.probe().error == "unable to open supervise/status: file does not exist"
        (sup / "status").write_bytes(SPEC_EXAMPLE[:5])
        assert status.probe().error == "unable to read supervise/status: bad format"
        (sup / "status").write_bytes(SPEC_EXAMPLE)
        (tmp_path / "down").write_bytes(b"")
        found = status.probe()
        assert found.error is None and found.status == Status.unpack(SPEC_EXAMPLE)
        assert not found.normally_up and found.running
    finally:
        os.close(reader)


# -- fifo and lock -------------------------------------------------------------------

def test_fifo_client_sees_enxio_without_a_reader(tmp_path: Path) -> None:
    path = str(tmp_path / "control")
    fifo.make(path)
    fifo.make(path)  # an existing FIFO is reused, errors ignored
    assert (tmp_path / "control").stat().st_mode & 0o777 == 0o600 & ~_umask()
    with pytest.raises(OSError) as e:
        fifo.open_writer(path)
    assert e.value.errno == errno.ENXIO
    reader = fifo.open_reader(path)
    writer = fifo.open_writer(path)
    try:
        assert fifo.write_commands(writer, b"dx") == 2
        assert os.read(reader, 10) == b"dx"
        assert fcntl.fcntl(reader, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        os.close(reader)
        os.close(writer)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_lock_excludes_another_process_and_the_c_setlock(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    fd = lock.open_lockfile(path)
    lock.lock_exnb(fd)
    try:
        r = run_python(f"""
            from pysvscan import lock
            try:
                lock.lock_exnb(lock.open_lockfile({path!r}))
            except OSError as e:
                raise SystemExit(e.errno)
        """)
        assert r.returncode == errno.EAGAIN
        if is_c_program(C.bindir / "setlock"):  # the C programs must see our lock too
            c = subprocess.run([C.bin("setlock"), "-n", path, "true"], capture_output=True)
            assert c.returncode == 111 and b"temporary failure" in c.stderr
        assert "FLOCK" in Path("/proc/locks").read_text()
    finally:
        os.close(fd)
    assert os.stat(path).st_size == 0


def test_lock_descriptors_are_close_on_exec_unless_inheritable(tmp_path: Path) -> None:
    internal = lock.open_lockfile(str(tmp_path / "a"))
    inherited = lock.open_lockfile(str(tmp_path / "b"), inheritable=True)
    try:
        assert not os.get_inheritable(internal) and os.get_inheritable(inherited)
        for fd in (internal, inherited):
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            assert flags & (os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK) == (
                os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        lock.lock_ex(inherited)
        lock.lock_ex(inherited)  # a lock already held by this descriptor: no wait
    finally:
        os.close(internal)
        os.close(inherited)


def test_lock_ex_waits_for_the_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    fd = lock.open_lockfile(path)
    lock.lock_exnb(fd)
    waiter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from pysvscan import lock
        lock.lock_ex(lock.open_lockfile({path!r}))
    """)])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=0.3)  # the one deliberate pause: it must still be blocked
    finally:
        os.close(fd)
    assert waiter.wait(timeout=10) == 0


# -- sgetopt -------------------------------------------------------------------------

@pytest.mark.parametrize("argv, options, args", [
    (["svc", "-dx", "a"], [("d", None), ("x", None)], ["a"]),
    (["svc", "-u", "--", "-d"], [("u", None)], ["-d"]),
    (["svc", "-u", "-", "-d"], [("u", None)], ["-", "-d"]),
    (["svc", "a", "-d"], [], ["a", "-d"]),
    (["x", "-o10", "-o", "20", "f"], [("o", "10"), ("o", "20")], ["f"]),
    (["svc", "-u", "--d", "-x"], [("u", None)], ["-x"]),  # any `--...` word is `--`
    (["svc", "-o", "--", "a"], [("o", "--")], ["a"]),  # an option's argument is any word
    (["svc", "-o", "", "-d", ""], [("o", ""), ("d", None)], [""]),
])
def test_sgetopt_parses_like_djb_getopt(argv: list[str], options: list[tuple[str, str | None]],
                                        args: list[str]) -> None:
    parsed = sgetopt.parse(argv, "udxo:")
    assert parsed.options == options and parsed.args == args


def test_sgetopt_complains_with_the_name_it_was_run_as(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(sgetopt.OptionError):
        sgetopt.parse(["/some/where/svc", "-dz"], "dx")
    with pytest.raises(sgetopt.OptionError):
        sgetopt.parse(["setlock", "-o"], "o:")
    assert capfd.readouterr().err == ("svc: illegal option -- z\n"
                                      "setlock: option requires an argument -- o\n")


def test_sgetopt_complains_with_one_byte_of_a_letter(capfdbinary: pytest.CaptureFixture[bytes]
                                                     ) -> None:
    """The C prints one byte: the first of a multi-byte character's encoding."""
    for argv in (["svc", "-d\u00e9"], ["svc", "-" + os.fsdecode(b"\xff\xfe")], ["svc", "-:"]):
        with pytest.raises(sgetopt.OptionError):
            sgetopt.parse(argv, "d")
    assert capfdbinary.readouterr().err == (b"svc: illegal option -- \xc3\n"
                                            b"svc: illegal option -- \xff\n"
                                            b"svc: illegal option -- :\n")


def test_sgetopt_options_come_as_they_are_read(capfd: pytest.CaptureFixture[str]) -> None:
    """Options yields each option before looking at the next, so a caller can stop at a
    bad argument before a later bad option is complained about; `args` comes last."""
    options = sgetopt.Options(["softlimit", "-m", "x", "-z", "true"], "m:")
    assert next(iter(options)) == ("m", "x")
    assert capfd.readouterr().err == ""
    options = sgetopt.Options(["softlimit", "-m5", "-c", "=", "true", "-m"], "c:m:")
    assert list(options) == [("m", "5"), ("c", "=")] and options.args == ["true", "-m"]


# -- exec with daemontools' PATH rules -------------------------------------------------

EXEC_PROBE = """
    import sys
    from pysvscan import execenv, errors
    try:
        execenv.exec_with_path(sys.argv[1], [sys.argv[1]], path=sys.argv[2])
    except OSError as e:
        print(errors.errtext(e))
        raise SystemExit(111)
"""


def exec_probe(tmp_path: Path, name: str, path: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(EXEC_PROBE), name, path],
                          cwd=tmp_path, capture_output=True, timeout=20)


def test_pathexec_keeps_searching_past_eacces_and_reports_it(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "prog").write_text("#!/bin/sh\necho a\n")  # not executable
    write_script(tmp_path / "b" / "prog", "#!/bin/sh\necho from-b\n")
    assert exec_probe(tmp_path, "prog", f"{tmp_path}/a:{tmp_path}/b").stdout == b"from-b\n"
    assert exec_probe(tmp_path, "prog", f"{tmp_path}/a:/nonexistent").stdout == b"access denied\n"
    assert exec_probe(tmp_path, "nothing", "/nonexistent").stdout == b"file does not exist\n"


def test_pathexec_stops_at_enoexec_and_has_no_shell_fallback(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_script(tmp_path / "a" / "prog", "echo no shebang\n")
    write_script(tmp_path / "b" / "prog", "#!/bin/sh\necho from-b\n")
    r = exec_probe(tmp_path, "prog", f"{tmp_path}/a:{tmp_path}/b")
    assert r.stdout == b"exec format error\n" and r.returncode == 111


def test_pathexec_empty_name_fails_in_the_kernel_as_in_c(tmp_path: Path) -> None:
    """Python refuses an empty argv[0] (ValueError); the C's execve fails on `DIR/`."""
    assert exec_probe(tmp_path, "", "/bin:/usr/bin").stdout == b"access denied\n"
    assert exec_probe(tmp_path, "", "/nonexistent").stdout == b"file does not exist\n"
    assert exec_probe(tmp_path, "", "/bin/sh:/bin").stdout == b"not a directory\n"


def test_pathexec_empty_element_is_cwd_and_slash_skips_search(tmp_path: Path) -> None:
    write_script(tmp_path / "prog", "#!/bin/sh\necho here\n")
    assert exec_probe(tmp_path, "prog", "/nonexistent:").stdout == b"here\n"
    assert exec_probe(tmp_path, "./prog", "/nonexistent").stdout == b"here\n"


def test_undo_python_changes_drops_coerced_locale_and_restores_sigpipe() -> None:
    env = {"PATH": "/usr/bin:/bin"}  # no LC_ALL/LANG: CPython coerces to C.UTF-8
    r = run_python("""
        import os, signal
        from pysvscan import execenv
        before = "LC_CTYPE" in os.environ
        execenv.undo_python_changes()
        print(before, sorted(os.environ), signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL)
    """, env=env)
    assert r.stdout.decode().split(maxsplit=1)[1].strip() == "['PATH'] True"


def test_ranges_to_close_keep_only_what_is_asked() -> None:
    r = run_python("""
        import os
        from pysvscan import execenv
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
        for low, high in execenv.ranges_to_close(3, frozenset({fds[2]})):
            os.closerange(low, high)
        def is_open(fd):
            try:
                os.fstat(fd)
                return True
            except OSError:
                return False
        print([is_open(fd) for fd in [0, 1, 2] + fds])
    """)
    assert r.stdout.strip() == b"[True, True, True, False, False, True, False, False]"


# -- process titles --------------------------------------------------------------------

def test_set_title_is_what_ps_shows() -> None:
    r = run_python("""
        import os, subprocess
        from pysvscan import proctitle
        assert proctitle.set_title(["supervise", "hello"])
        print(subprocess.run(["ps", "-o", "args=", "-p", str(os.getpid())],
                             capture_output=True, text=True).stdout.strip())
        print(open("/proc/self/comm").read().strip())
        print(open("/proc/self/cmdline", "rb").read().rstrip(b"\\0"))
    """)
    assert r.stdout.decode().splitlines() == ["supervise hello", "supervise",
                                              "b'supervise\\x00hello'"]


def test_a_long_title_overflows_into_the_environment_area() -> None:
    """Longer than the whole argv area (the -c code): the environment strings take it."""
    r = run_python("""
        import os
        from pysvscan import proctitle
        name = "n" * 2000
        assert proctitle.set_title(["supervise", name])
        print(open("/proc/self/cmdline", "rb").read().rstrip(b"\\0").decode())
    """, env={"PATH": "/usr/bin:/bin", "PAD": "x" * 8000})
    assert r.stdout.decode().strip() == "supervise " + "n" * 2000


def test_exec_signal_state_covers_what_execve_keeps() -> None:
    """Caught signals are reset by execve itself; ignored ones and the mask are not."""
    r = run_python("""
        import os, signal
        from pysvscan import execenv
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, lambda *a: None)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        ignored, blocked = execenv.exec_signal_state()
        assert signal.SIGHUP in ignored and signal.SIGUSR2 not in ignored and blocked
        execenv.clean_exec_signals(ignored, blocked)
        os.execv("/bin/cat", ["cat", "/proc/self/status"])  # cat catches no signal
    """)
    fields = dict(line.split(":\t") for line in r.stdout.decode().splitlines() if ":\t" in line)
    assert (fields["SigBlk"], fields["SigIgn"], fields["SigCgt"]) == ("0" * 16,) * 3


def test_glibc_internal_signals_ignored_by_posix_spawn_are_reset() -> None:
    """posix_spawn (as GNU make uses it) leaves 32 and 33 ignored; we undo that."""
    code = textwrap.dedent("""
        import sys
        from pysvscan import execenv
        def ignored():
            for line in open("/proc/self/status"):
                if line.startswith("SigIgn:"):
                    return int(line.split()[1], 16)
        before = ignored()
        execenv.reset_libc_internal_signals()
        print(hex(before), hex(ignored()))
    """)
    r_fd, w_fd = os.pipe()
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code], dict(os.environ),
                         file_actions=[(os.POSIX_SPAWN_DUP2, w_fd, 1)])
    os.close(w_fd)
    out = b""
    while chunk := os.read(r_fd, 4096):
        out += chunk
    os.close(r_fd)
    os.waitpid(pid, 0)
    before, after = (int(x, 16) for x in out.split())
    assert before & 0x180000000 == 0x180000000, "posix_spawn no longer sets the quirk?"
    assert after & 0x180000000 == 0


def test_run_spawner_starts_run_clean_and_says_0_when_it_cannot(tmp_path: Path) -> None:
    """supervise's posix_spawn: ./run with argv ['./run'], the exec environment, every
    signal at its default (32 and 33 too, which posix_spawn leaves ignored unless told
    with raw bits) and an empty mask, from a process that ignores, catches and blocks
    some; 0 when there is nothing to run, for supervise to fork and report instead."""
    (tmp_path / "svc").mkdir()
    write_script(tmp_path / "svc" / "run",
                 '#!/bin/sh\necho "$0 $SPAWN_MARK" > out\nexec cat /proc/self/status >> out\n')
    r = run_python(f"""
        import os, signal
        os.chdir({str(tmp_path / "svc")!r})
        os.environ["SPAWN_MARK"] = "seen"
        from pysvscan import execenv
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, lambda *a: None)
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
        ignored, blocked = execenv.exec_signal_state()
        spawn = execenv.run_spawner(ignored)
        pid = spawn()
        assert pid > 0 and os.waitpid(pid, 0)[1] == 0
        os.rename("run", "gone")
        print(spawn())
    """)
    assert r.stdout.decode().strip() == "0"
    out = (tmp_path / "svc" / "out").read_text()
    assert out.splitlines()[0] == "./run seen"
    fields = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    assert (fields["SigBlk"], fields["SigIgn"], fields["SigCgt"]) == ("0" * 16,) * 3
