"""readproctitle and svscanboot with real processes (daemontools.md §7, §8, §19).

readproctitle is differential: ours and the C one are started with the same arguments
and fed the same bytes, and the words of /proc/PID/cmdline after the program are
compared exactly; run by name, the whole command line is (ours moves the start of its
argv area past the interpreter and script path the kernel puts first). The C reads a byte at a time and ours a chunk at a time: a feed
is compared once both pipes are empty and both processes sleep in read(), when each
shows everything it was fed; the C is also held to a small model of §8.

svscanboot has no usable C oracle (Debian's script ignores DIR and would boot
/etc/service): it is checked first with recording stand-ins for svc, svscan and
readproctitle placed next to a copy of it (the exact commands, environments and
descriptors of §7), then for real with pysvscan's svscan on a scratch directory. Each
svscanboot runs in its own session and the `procs` fixture kills its process group.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import shutil
import signal
import stat
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from conftest import (C, PY, Processes, Tree, alive, make_service, require_c_reference,
                      require_journald, start_supervise, status_pid, wait_until, write_script)

BOOT_PATH = ("/command:/usr/local/bin:/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin:"
             "/usr/X11R6/bin")
DOTS = "." * 400
ENV = {"PATH": "/usr/bin:/bin"}
JOURNALD_NS = Path(__file__).resolve().parent / "journald_ns.sh"


def private_run() -> list[str]:
    """Run a real svscanboot with an empty /run of its own when root: it makes
    /run/pysvscan/notify, which the host's /run must not get from a test. (Another
    user cannot make it anyway.) The script's shell adds PWD: env takes it out again."""
    if os.geteuid() != 0:
        return []
    return [str(JOURNALD_NS), "--no-journald", "--", "/usr/bin/env", "-u", "PWD"]


# ---------------------------------------------------------------------------------------
# /proc helpers

def cmdline(pid: int) -> list[bytes]:
    """The words of /proc/PID/cmdline ([] once the process is gone)."""
    try:
        data = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return data[:-1].split(b"\0") if data.endswith(b"\0") else data.split(b"\0")


def arguments(pid: int, program: str = "readproctitle") -> list[bytes] | None:
    """The words after the program's own path: for ours, the interpreter and the script
    come first. None if the program is not (or no longer) what the process runs."""
    words = cmdline(pid)
    for i, word in enumerate(words[:2]):
        if os.path.basename(word) == program.encode():
            return words[i + 1:]
    return None


def environ(pid: int) -> dict[bytes, bytes]:
    data = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split(b"=", 1) for entry in data.split(b"\0") if entry)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def child_running(pid: int, program: str) -> int:
    """The pid of `pid`'s child running `program` (ours), 0 if none yet."""
    for child in children(pid):
        if arguments(child, program) is not None:
            return child
    return 0


# ---------------------------------------------------------------------------------------
# readproctitle

def model(area: bytes, data: bytes) -> bytes:
    """daemontools.md §8 step 3: the area after `data`, as the C builds it byte by byte."""
    window = area[3:]
    for byte in data.replace(b"\0", b""):
        window = window[1:] + bytes([byte])
    return area[:3] + window


def waiting_for_input(proc: subprocess.Popen[bytes]) -> bool:
    """Its pipe is empty and it sleeps in read(): whatever it was fed is on show (both
    programs write the area before they read again)."""
    assert proc.stdin is not None
    unread = struct.unpack("i", fcntl.ioctl(proc.stdin.fileno(), termios.FIONREAD,
                                            b"\0" * 4))[0]
    try:
        wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
    except OSError:
        return False
    # without kernel symbols wchan reads "0": an empty pipe must then do
    return unread == 0 and ("pipe_read" in wchan or wchan == "0")


class Pair:
    """Ours and the C readproctitle, started with the same arguments and fed alike."""

    def __init__(self, procs: Processes, args: list[bytes]) -> None:
        require_c_reference()
        self.args = args
        self.area = b"." * len(args[-1])
        self.procs = {
            tree.name: procs.start([tree.bin("readproctitle").encode(), *args], env=ENV,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
            for tree in (C, PY)}
        for name, proc in self.procs.items():
            wait_until(lambda: arguments(proc.pid) == [*args[:-1], self.area],
                       timeout=5, message=f"{name} readproctitle showing its dots")

    def feed(self, data: bytes) -> None:
        """Feed both, wait until each has taken in everything, then compare."""
        for proc in self.procs.values():
            assert proc.stdin is not None
            proc.stdin.write(data)
            proc.stdin.flush()
        for name, proc in self.procs.items():
            wait_until(lambda: waiting_for_input(proc), timeout=5,
                       message=f"{name} readproctitle to consume {data!r}")
        self.area = model(self.area, data)
        c = arguments(self.procs["c"].pid)
        assert c == [*self.args[:-1], self.area], f"the C departs from §8 after {data!r}"
        assert arguments(self.procs["py"].pid) == c, f"after {data!r}"

    def finish(self) -> None:
        """End of input: both exit 0 and never wrote a byte."""
        results = {}
        for name, proc in self.procs.items():
            out, err = proc.communicate(timeout=5)
            results[name] = (proc.returncode, out, err)
        assert results["py"] == results["c"] == (0, b"", b"")


FEEDS = [
    b"fatal error xyz\nwarning abc\n",
    b"a\0b\0\0c\n",                       # NULs are dropped
    b"\0\0\0",                            # only NULs: nothing changes
    b"..abc",                             # input that starts like the fixed dots
    b"......xyz.",
    b"x",
    bytes(b for b in range(256) if b) * 5,  # every byte value, wraps a 400-byte area
    b"svscan: warning: unable to start hello: exec format error\n" * 20,
    b"tail\n",
]


@pytest.mark.parametrize("args", [
    [b"service", b"errors:", DOTS.encode()],
    [b"x", b"xxxxx"],                                  # 5 bytes: a 2-byte window
    [b"xxxxxx"],                                       # the only argument is the area
    [b"two words", b"", b"\xffnot utf-8 \xe9\xe9\xe9"],  # odd words kept as they are
    [b"big", b"d" * 20000],
], ids=["svscanboot", "five", "alone", "odd-bytes", "big"])
def test_readproctitle_shows_what_the_c_shows(procs: Processes, args: list[bytes]) -> None:
    pair = Pair(procs, args)
    for data in FEEDS:
        pair.feed(data)
    pair.finish()


def test_readproctitle_in_ps_and_comm(procs: Processes) -> None:
    """`ps` (newline shown as `?`) and `ps -e` (comm) agree after the program path."""
    pair = Pair(procs, [b"service", b"errors:", DOTS.encode()])
    pair.feed(b"line one\nsvscan: fatal: unable to chdir to /x: file does not exist\n")
    views = {}
    for name, proc in pair.procs.items():
        args = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(proc.pid)],
                              capture_output=True, check=True).stdout.rstrip(b"\n")
        comm = Path(f"/proc/{proc.pid}/comm").read_bytes()
        views[name] = (args.split(b"readproctitle ", 1)[1], comm)
    assert views["py"] == views["c"]
    assert views["c"][1] == b"readproctitle\n"
    pair.finish()


@pytest.mark.parametrize("args, stdin", [
    ([], b""),                          # no argument at all
    (["abcd"], b""),                    # an area under 5 bytes
    (["service", "errors:", ""], b""),  # an empty area
    (["x", "....."], b"hello"),         # fine: end of input
    (["....."], b""),
])
def test_readproctitle_exit_codes(tree: Tree, args: list[str], stdin: bytes) -> None:
    cp = tree.run("readproctitle", *args, stdin=stdin, env=ENV)
    expected = 100 if not args or len(args[-1]) < 5 else 0
    assert (cp.returncode, cp.stdout, cp.stderr) == (expected, b"", b"")


def test_readproctitle_read_error_exits_111(tree: Tree) -> None:
    """Standard input closed: the first read() fails (EBADF)."""
    cp = subprocess.run(["/bin/sh", "-c", 'exec "$@" <&-', "sh", tree.bin("readproctitle"),
                         "service", "errors:", DOTS], capture_output=True, env=ENV, timeout=10)
    assert (cp.returncode, cp.stdout, cp.stderr) == (111, b"", b"")


@pytest.mark.parametrize("tree", [pytest.param(C, id="c"), pytest.param(PY, id="py")])
def test_readproctitle_directory_on_stdin(tree: Tree, tmp_path: Path) -> None:
    if tree is C:
        require_c_reference()
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        cp = subprocess.run([tree.bin("readproctitle"), "x", "....."], stdin=directory,
                            capture_output=True, env=ENV, timeout=10)
    finally:
        os.close(directory)
    assert (cp.returncode, cp.stdout, cp.stderr) == (111, b"", b"")


@pytest.mark.parametrize("tree", [pytest.param(C, id="c"), pytest.param(PY, id="py")])
def test_readproctitle_with_stdout_closed(tree: Tree) -> None:
    """It never writes: closed stdout and stderr change nothing."""
    if tree is C:
        require_c_reference()
    cp = subprocess.run(["/bin/sh", "-c", 'exec "$@" 2>&1 >&-', "sh", tree.bin("readproctitle"),
                         "x", "....."], input=b"hello", capture_output=True, env=ENV, timeout=10)
    assert (cp.returncode, cp.stdout) == (0, b"")


# ---------------------------------------------------------------------------------------
# svscanboot with recording stand-ins: the exact commands of §7

RECORD = """#!/bin/sh
d={log}/$(basename "$0")
printf '%s\\0' "$@" > "$d.args"
cat /proc/$$/environ > "$d.env"
fds=$(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2)  # before any redirection
echo "$fds" > "$d.fds"
if [ -e /proc/$$/fd/{extra} ]; then echo open; else echo closed; fi > "$d.extra"
"""
FAKE_SVC = RECORD + """sleep 0.3
echo svc-out; echo svc-err >&2
touch {log}/svc.done
"""
FAKE_SVSCAN = RECORD + """[ -e {log}/svc.done ] && echo after-svc > {log}/svscan.order
echo svscan-out
echo svscan-err >&2
"""
FAKE_READPROCTITLE = RECORD + """cat > {log}/readproctitle.stdin
{end}
"""


def fake_bin(tmp_path: Path, extra_fd: int, end: str = "exit 7",
             programs: tuple[str, ...] = ("svc", "svscan", "readproctitle")) -> tuple[Path, Path]:
    """A copy of our svscanboot with recording stand-ins next to it: (bindir, logdir)."""
    bindir, log = tmp_path / "bin", tmp_path / "log"
    bindir.mkdir()
    log.mkdir()
    shutil.copy(PY.bin("svscanboot"), bindir / "svscanboot")
    texts = {"svc": FAKE_SVC, "svscan": FAKE_SVSCAN, "readproctitle": FAKE_READPROCTITLE}
    for program in programs:
        write_script(bindir / program, texts[program].format(log=log, extra=extra_fd, end=end))
    return bindir, log


def recorded(log: Path, program: str) -> tuple[list[bytes], dict[bytes, bytes], list[str], str]:
    """(arguments, environment, what fds 0-2 were, whether the extra fd was open)."""
    args = (log / f"{program}.args").read_bytes().split(b"\0")[:-1]
    env = dict(e.split(b"=", 1) for e in (log / f"{program}.env").read_bytes().split(b"\0") if e)
    fds = (log / f"{program}.fds").read_text().split()
    return args, env, fds, (log / f"{program}.extra").read_text().strip()


def expected_leftovers(dir: Path) -> list[bytes]:
    """What dash passes for `DIR/* DIR/*/log`, for a directory the test does not own."""
    try:
        names = sorted(n for n in os.listdir(os.fsencode(dir)) if not n.startswith(b"."))
    except OSError:
        names = []
    services = [os.fsencode(dir) + b"/" + n for n in names]
    logs = [s + b"/log" for s in services if os.path.lexists(s + b"/log")]
    return (services or [os.fsencode(dir) + b"/*"]) + (logs or [os.fsencode(dir) + b"/*/log"])


def run_boot(procs: Processes, bindir: Path, *args: str, env: dict[str, str],
             pass_fds: tuple[int, ...] = ()) -> tuple[int, bytes, bytes]:
    proc = procs.start([*private_run(), str(bindir / "svscanboot"), *args], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, pass_fds=pass_fds)
    out, err = proc.communicate(timeout=10)
    return proc.returncode, out, err


@pytest.fixture
def extra_fd(tmp_path: Path):
    """A descriptor svscanboot inherits: the shell passes such descriptors on."""
    fd = os.open(tmp_path, os.O_RDONLY)
    os.set_inheritable(fd, True)
    yield fd
    os.close(fd)


def test_svscanboot_runs_the_pipeline_next_to_it(procs: Processes, tmp_path: Path,
                                                 extra_fd: int) -> None:
    bindir, log = fake_bin(tmp_path, extra_fd)
    service = tmp_path / "service"
    for d in ("b", "a", "a/log", ".hidden", ".hidden/log", "c/log", "Z"):
        (service / d).mkdir(parents=True)
    (service / "file").write_bytes(b"")
    # dash: byte order, no hidden names, a `log` wherever lstat finds one
    leftovers = ("Z", "a", "b", "c", "file", "a/log", "c/log")
    code, out, err = run_boot(procs, bindir, str(service), "ignored", env={**ENV, "FOO": "bar"},
                              pass_fds=(extra_fd,))
    # the pipeline's status is readproctitle's; everything of svscanboot's went to /dev/null
    assert (code, out, err) == (7, b"", b"")

    args, env, fds, extra = recorded(log, "svc")
    assert args == [b"-dx", *(os.fsencode(service / n) for n in leftovers)]
    assert env == {b"PATH": BOOT_PATH.encode(), b"FOO": b"bar"}  # the shell's environment
    assert (fds, extra) == (["/dev/null"] * 3, "open")

    args, env, fds, extra = recorded(log, "svscan")
    assert args == [os.fsencode(service)]
    assert env == {b"PATH": BOOT_PATH.encode()}
    assert fds[0] == "/dev/null" and fds[1] == fds[2] and fds[1].startswith("pipe:")
    assert extra == "open"
    assert (log / "svscan.order").read_text() == "after-svc\n"

    args, env, fds, extra = recorded(log, "readproctitle")
    assert args == [b"service", b"errors:", DOTS.encode()]
    assert env == {b"PATH": BOOT_PATH.encode()}
    assert fds == [recorded(log, "svscan")[2][1], "/dev/null", "/dev/null"]
    assert extra == "open"
    assert (log / "readproctitle.stdin").read_bytes() == b"svscan-out\nsvscan-err\n"


def test_svscanboot_default_dir_and_unmatched_globs(procs: Processes, tmp_path: Path,
                                                    extra_fd: int) -> None:
    """No argument: /etc/service (only stand-ins run, whatever it holds); an empty
    directory: the patterns are passed literally, as sh does."""
    bindir, log = fake_bin(tmp_path, extra_fd, end="exit 0")
    assert run_boot(procs, bindir, env=ENV) == (0, b"", b"")
    assert recorded(log, "svscan")[0] == [b"/etc/service"]
    assert recorded(log, "svc")[0] == [b"-dx", *expected_leftovers(Path("/etc/service"))]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_boot(procs, bindir, str(empty), env=ENV) == (0, b"", b"")
    assert recorded(log, "svc")[0] == [b"-dx", f"{empty}/*".encode(), f"{empty}/*/log".encode()]
    assert recorded(log, "svscan")[0] == [os.fsencode(empty)]


def test_svscanboot_exit_status_and_exec_failure(procs: Processes, tmp_path: Path,
                                                 extra_fd: int) -> None:
    """No svscan next to it: the failure is what readproctitle reads (so `ps` shows it);
    readproctitle killed by SIGTERM: 128 + 15, as from sh."""
    bindir, log = fake_bin(tmp_path, extra_fd, end="kill -TERM $$",
                           programs=("svc", "readproctitle"))
    assert run_boot(procs, bindir, str(tmp_path), env=ENV) == (128 + signal.SIGTERM, b"", b"")
    assert (log / "readproctitle.stdin").read_bytes() == (
        f"svscanboot: fatal: unable to run {os.path.realpath(bindir)}/svscan: "
        "file does not exist\n").encode()


# ---------------------------------------------------------------------------------------
# svscanboot for real, with pysvscan's svscan and readproctitle

HELLO = "#!/bin/sh\necho hello-marker >&2\nsleep 1000\n"   # sh stays: its environ is supervise's
SLEEP = "#!/bin/sh\nexec sleep 1000\n"


def test_svscanboot_boots_a_service_directory(procs: Processes, tmp_path: Path) -> None:
    root = tmp_path / "service"
    hello = make_service(root, "hello", HELLO)
    old = make_service(root, "old", SLEEP, log=SLEEP)
    # supervise left over from an earlier svscan, on a service and on its log
    leftovers = [start_supervise(procs, PY, d) for d in (old, old / "log")]
    old_pids = [wait_until(lambda d=d: status_pid(d), timeout=10, message=f"{d} up")
                for d in (old, old / "log")]

    boot = procs.start([*private_run(), PY.bin("svscanboot"), str(root)], env={**ENV, "JUNK": "1"},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # `svc -dx DIR/* DIR/*/log`: both leftovers stop their service and exit
    for proc in leftovers:
        proc.wait(timeout=10)
    wait_until(lambda: not any(alive(p) for p in old_pids), timeout=5,
               message="the leftover services to stop")

    # pysvscan's own svscan and readproctitle, never /usr/bin's
    svscan = wait_until(lambda: child_running(boot.pid, "svscan"), timeout=10, message="svscan")
    display = wait_until(lambda: child_running(boot.pid, "readproctitle"), timeout=10,
                         message="readproctitle")
    assert os.path.realpath(cmdline(svscan)[1]) == os.path.realpath(PY.bin("svscan")).encode()
    assert arguments(svscan, "svscan") == [os.fsencode(root)]
    # readproctitle hides the interpreter in front of its command line, as if exec'd
    # directly (the C's `ps` line), but it is a Python process, not /usr/bin's ELF
    assert cmdline(display)[0] == b"readproctitle"
    assert os.path.realpath(f"/proc/{display}/exe") == os.path.realpath(sys.executable)

    # the service runs, with an environment of PATH alone
    pid = wait_until(lambda: status_pid(hello), timeout=10, message="hello up")
    assert environ(pid) == {b"PATH": BOOT_PATH.encode()}

    # the service's stderr is svscan's, which readproctitle shows in `ps`
    def title() -> bytes:
        words = arguments(display) or [b"", b"", b""]
        return words[2] if b"hello-marker\n" in words[2] else b""
    shown = wait_until(title, timeout=10, message="hello-marker in readproctitle's title")
    assert arguments(display)[:2] == [b"service", b"errors:"]
    assert len(shown) == 400 and shown.startswith(b"...")
    assert boot.poll() is None  # svscanboot stays the parent of the pipeline


def test_svscanboot_makes_the_notify_directory(procs: Processes, tmp_path: Path) -> None:
    """Where no tmpfiles.d made it (a sysvinit host), svscanboot makes the directory of
    supervise's notify sockets, so a service that opts in gets a path socket under it."""
    require_journald("svscanboot's /run/pysvscan test needs a private /run and it")
    root = tmp_path / "service"
    ready = make_service(root, "ready", SLEEP)
    (ready / "sd-notify").write_text("main\n")
    boot = procs.start([*private_run(), PY.bin("svscanboot"), str(root)], env=ENV,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    socket_file = ready / "supervise" / "notify-socket"
    wait_until(socket_file.exists, timeout=10, message="supervise's notify-socket file")
    digest = hashlib.sha256(os.fsencode(os.path.realpath(ready))).hexdigest()[:16]
    assert socket_file.read_text() == f"/run/pysvscan/notify/{digest}.sock\n"
    # The namespace's /run, seen through the process's root.
    seen = Path(f"/proc/{boot.pid}/root/run/pysvscan")
    for d in (seen, seen / "notify"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755 and d.is_dir()
    assert stat.S_ISSOCK((seen / "notify" / f"{digest}.sock").stat().st_mode)


def test_svscanboot_ends_with_the_pipeline(procs: Processes, tmp_path: Path) -> None:
    """svscan cannot start: nothing holds the pipe any more, readproctitle reaches end
    of input and svscanboot exits with its status, 0."""
    boot = procs.start([*private_run(), PY.bin("svscanboot"), str(tmp_path / "missing")], env=ENV,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = boot.communicate(timeout=10)
    assert (boot.returncode, out, err) == (0, b"", b"")


def test_readproctitle_command_line_is_the_cs(procs: Processes) -> None:
    """Run by name, as svscanboot runs it, ours shows exactly the C's command line, the
    interpreter and script path hidden (prctl PR_SET_MM_MAP), in /proc and in `ps`."""
    require_c_reference()
    args = [b"service", b"errors:", b"." * 40]
    started = {}
    for tree in (C, PY):
        started[tree.name] = procs.start(
            [b"readproctitle", *args], env={**ENV, "PATH": str(tree.bindir)},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = {}
    for name, proc in started.items():
        assert proc.stdin is not None
        proc.stdin.write(b"hello\nworld\n")
        proc.stdin.flush()
        wait_until(lambda: waiting_for_input(proc) and b"world" in cmdline_bytes(proc.pid),
                   timeout=5, message=f"{name} readproctitle showing its input")
        ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(proc.pid)],
                            capture_output=True, check=True).stdout
        lines[name] = (cmdline_bytes(proc.pid), ps)
    assert lines["py"] == lines["c"]
    assert lines["c"][0].startswith(b"readproctitle\0service\0errors:\0...")
    for proc in started.values():
        proc.stdin.close()
        assert proc.wait(timeout=5) == 0


def cmdline_bytes(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()
