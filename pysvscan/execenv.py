"""Child processes: daemontools' PATH search, environment edits, a clean slate before
exec, reaping.

No `import signal` here: it builds IntEnums at import (some 2 ms of every classic
program's start-up); `_signal`, the C module under it, makes the same calls on ints.
"""

from __future__ import annotations

import errno
import os

import _signal  # the C module under `signal`, without its IntEnum wrapping (see below)

from . import errors

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import Iterator, Mapping, NoReturn, Sequence

DEFAULT_PATH = "/bin:/usr/bin"
# What systemd sets for its main process and no supervised service may see (systemd.md
# §1.4, §2.3): with NOTIFY_SOCKET or WATCHDOG_* a service could mark pysvscan ready or
# feed its watchdog; the others describe pysvscan.service's invocation, descriptors
# and directories, not the service's. Last, svscan's own switches (journal mode, and
# where journald listens), meant for one svscan and not for another run by a service.
SYSTEMD_VARIABLES = (
    "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID",
    "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "FDSTORE", "MEMORY_PRESSURE_WATCH",
    "MEMORY_PRESSURE_WRITE", "MAINPID", "MANAGERPID", "SYSTEMD_EXEC_PID",
    "CREDENTIALS_DIRECTORY", "RUNTIME_DIRECTORY",
    "PYSVSCAN_JOURNAL", "PYSVSCAN_JOURNAL_SOCKET",
)
_KEEP_SEARCHING = (errno.EACCES, errno.EPERM, errno.EISDIR)
_UNCATCHABLE = (_signal.SIGKILL, _signal.SIGSTOP)


def exec_child(prog: str, child: Sequence[str],
               env: Mapping[bytes, bytes] | Mapping[str, str] | None = None) -> int:
    """The last step of the programs that end by running CHILD [ARG...]: exec it by
    exec_with_path(), or say `PROG: fatal: unable to run CHILD: ERR` and return 111
    (daemontools.md §1.4). Returns only on failure."""
    try:
        exec_with_path(child[0], child, env)
    except OSError as e:
        return errors.fatal(prog, f"unable to run {child[0]}: ", e)


def exec_with_path(name: str, argv: Sequence[str],
                   env: Mapping[bytes, bytes] | Mapping[str, str] | None = None,
                   path: str | None = None) -> NoReturn:
    """pathexec_run: raise the OSError the C code would report if nothing could be run.

    `path` is the *caller's* PATH (envdir searches its own, not the child's); an empty
    element means the current directory; there is no /bin/sh fallback for ENOEXEC.
    argv[0] is `name`, as for every caller.
    """
    environ = os.environ if env is None else env
    argv = list(argv)
    if not name:
        # Python refuses an empty argv[0] before calling execve, where the C fails in the
        # kernel. An empty name only makes candidates ending in `/`, which no execve can
        # run, so a stand-in argv[0] gets exactly the C's error (`access denied` on a
        # normal PATH) and is never seen by any program.
        argv[0:1] = ["-"]
    if "/" in name:
        os.execve(name, argv, environ)
    if path is None:
        path = os.environ.get("PATH", DEFAULT_PATH)
    saved: OSError | None = None
    for element in path.split(":"):
        candidate = f"{element or '.'}/{name}"
        try:
            os.execve(candidate, argv, environ)
        except OSError as e:
            if e.errno == errno.ENOENT:
                continue
            saved = e
            if e.errno not in _KEEP_SEARCHING:
                raise
    if saved is not None:
        raise saved
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def edited_environment(edits: list[bytes]) -> dict[bytes, bytes]:
    """pathexec()'s environment (daemontools.md §1.5), in the order the C passes it on.

    Each edit names the variable up to its first `=` (so envdir's file `E=F` edits `E`).
    The first entry of that name is removed by moving the *last* entry into its slot, as
    the C does; then the edit itself is appended if it contains a `=`.
    """
    entries = [name + b"=" + value for name, value in os.environb.items()]
    for edit in edits:
        name, sep, _ = edit.partition(b"=")
        prefix = name + b"="
        for i, entry in enumerate(entries):
            if entry.startswith(prefix):
                last = entries.pop()
                if i < len(entries):
                    entries[i] = last
                break
        if sep:
            entries.append(edit)
    # execve() wants key and value; the key is split off at the first `=` after the
    # first byte, as Python reads environ. The one entry it cannot pass (a lone `=x`,
    # from an empty file named `=x`) is dropped.
    env: dict[bytes, bytes] = {}
    for entry in entries:
        split = entry.find(b"=", 1)
        if split > 0:
            env[entry[:split]] = entry[split + 1:]
    return env


def wakeup_handler(signum: int, frame: object) -> None:
    """The handler of svscan's and supervise's loops: the byte set_wakeup_fd writes
    is all they need. One module function, so that a forked child replacing svscan's
    handler frees nothing (no copied pages)."""


_EXEC_ENVIRONMENT: dict[bytes, bytes] | None = None


def exec_environment() -> dict[bytes, bytes]:
    """os.environ as a plain dict of bytes, made once: execve converts a plain dict in
    C, where os.environ costs a walk through Python code at every restart. Call it
    before forking (svscan does, through supervise.prepare) and children share it."""
    global _EXEC_ENVIRONMENT
    if _EXEC_ENVIRONMENT is None:
        _EXEC_ENVIRONMENT = dict(os.environb)
    return _EXEC_ENVIRONMENT


def exec_signal_state() -> tuple[tuple[int, ...], bool]:
    """(ignored signals, whether any signal is blocked): the part of this process's
    signal state that survives execve, since exec resets caught signals by itself.

    `_signal` rather than `signal` here and in children forked from svscan: the enum
    machinery `signal` runs on each result touches enough shared objects to copy some
    30 pages into every child.
    """
    ignored = tuple(sig for sig in _signal.valid_signals()
                    if sig not in _UNCATCHABLE and _signal.getsignal(sig) == _signal.SIG_IGN)
    return ignored, bool(_signal.pthread_sigmask(_signal.SIG_BLOCK, ()))


def clean_exec_signals(ignored: tuple[int, ...], blocked: bool) -> None:
    """Just before execve: undo what exec keeps, from exec_signal_state() computed
    earlier, so the new program starts with every signal at its default and none
    blocked: only what execve would keep, off a restart's critical path."""
    for sig in ignored:
        _signal.signal(sig, _signal.SIG_DFL)
    if blocked:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


class RunSpawner:
    """posix_spawn of `./run` (argv ['./run'], the exec environment), with every
    argument built once, before svscan forks: a start then allocates nothing, so it
    dirties no more of supervise's pages than fork did.

    glibc spawns with vfork semantics: no copy of supervise's page tables and no
    copy-on-write for a child that execs at once, several times cheaper than fork and
    exec for a Python process. The child starts as exec_run's does, every signal at its
    default and none blocked. glibc leaves its internal signals 32 and 33 ignored in
    what it spawns unless they are in the spawn-sigdefault set, and its sigaddset()
    refuses them (so os.posix_spawn cannot ask): the set is written here as raw bits.
    """

    # glibc <spawn.h>; attribute and set sizes taken generously (336 and 128 bytes here)
    _SETSIGDEF, _SETSIGMASK = 0x04, 0x08
    _ATTR_BYTES, _SIGSET_WORDS = 1024, 16

    def __init__(self, ignored: tuple[int, ...], env: dict[bytes, bytes]) -> None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.attr = ctypes.create_string_buffer(self._ATTR_BYTES)
        to_default = (ctypes.c_ulong * self._SIGSET_WORDS)()
        for sig in (*ignored, *_LIBC_INTERNAL):
            to_default[(sig - 1) // 64] |= 1 << ((sig - 1) % 64)
        empty = (ctypes.c_ulong * self._SIGSET_WORDS)()
        if (libc.posix_spawnattr_init(self.attr)
                or libc.posix_spawnattr_setflags(self.attr, self._SETSIGDEF | self._SETSIGMASK)
                or libc.posix_spawnattr_setsigdefault(self.attr, to_default)
                or libc.posix_spawnattr_setsigmask(self.attr, empty)):
            raise OSError(errno.EINVAL, "posix_spawnattr")
        self.path = b"./run"
        self.argv = (ctypes.c_char_p * 2)(self.path, None)
        pairs = [key + b"=" + value for key, value in env.items()]
        self.envp = (ctypes.c_char_p * (len(pairs) + 1))(*pairs, None)
        self.pid = ctypes.c_int()
        self.pid_ref = ctypes.byref(self.pid)
        self.spawn = libc.posix_spawn

    def __call__(self) -> int:
        """The new pid, or 0 if the spawn failed (its errno is not told: the caller
        forks instead, and exec_run reports as the C does)."""
        if self.spawn(self.pid_ref, self.path, None, self.attr, self.argv, self.envp):
            return 0
        return self.pid.value


_RUN_SPAWNER: RunSpawner | None = None


def run_spawner(ignored: tuple[int, ...]) -> RunSpawner | None:
    """The RunSpawner for this process's exec environment, made once (None where
    ctypes or posix_spawn is missing: supervise then forks)."""
    global _RUN_SPAWNER
    if _RUN_SPAWNER is None:
        try:
            _RUN_SPAWNER = RunSpawner(ignored, exec_environment())
        except (ImportError, OSError, AttributeError):
            return None
    return _RUN_SPAWNER


def reap_exited() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of each child that has exited, without blocking (waitpid
    WNOHANG). A caller may stop early: the rest stay zombies until the next call."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def ranges_to_close(first: int, keep: frozenset[int] = frozenset()) -> list[tuple[int, int]]:
    """The closerange() calls that close every descriptor >= first except `keep`:
    what close-on-exec does for a child that is forked and not exec'd. Computed once
    by the parent, so each child only makes the calls."""
    ranges = []
    start = first
    for fd in sorted(f for f in keep if f >= first):
        if fd > start:
            ranges.append((start, fd))
        start = fd + 1
    ranges.append((start, _max_fd()))
    return ranges


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


_RT_SIGACTION = {"x86_64": 13, "aarch64": 134, "riscv64": 134, "ppc64le": 173, "s390x": 174}
_LIBC_INTERNAL = (32, 33)  # glibc's SIGCANCEL and SIGSETXID


def reset_libc_internal_signals() -> None:
    """Un-ignore signals 32 and 33 if this process was started with them ignored.

    glibc's posix_spawn() sets them to SIG_IGN in the program it starts, and exec keeps
    that (GNU make 4.3 starts its recipes this way; so may any posix_spawn launcher).
    glibc's own sigaction() refuses to touch them, so neither Python nor the C programs
    can pass on a clean signal state; the raw rt_sigaction system call can, and ctypes
    is only imported when there is something to undo.
    """
    try:
        with open("/proc/self/status", "rb") as f:
            ignored = next(int(line.split()[1], 16) for line in f if line.startswith(b"SigIgn:"))
    except (OSError, StopIteration, ValueError):
        return
    todo = [sig for sig in _LIBC_INTERNAL if ignored >> (sig - 1) & 1]
    number = _RT_SIGACTION.get(os.uname().machine)
    if not todo or number is None:
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    default = (ctypes.c_ulong * 4)()  # handler SIG_DFL, no flags, no restorer, empty mask
    for sig in todo:
        libc.syscall(number, sig, ctypes.byref(default), None, 8)


def undo_python_changes() -> None:
    """Give this process back what it was started with, as far as children can tell.

    CPython ignores SIGPIPE and SIGXFSZ and catches SIGINT, where the C programs keep
    the defaults; a posix_spawn launcher leaves glibc's internal signals ignored; and
    CPython's locale coercion (PEP 538) may add LC_CTYPE to the environment.
    The environment as exec'd is still in /proc/self/environ: make os.environ equal it.
    """
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    reset_libc_internal_signals()
    try:
        with open("/proc/self/environ", "rb") as f:
            given = f.read()
    except OSError:
        return
    original: dict[bytes, bytes] = {}
    for entry in given.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name not in original:
            original[name] = value
    current = os.environb
    for name in [n for n in current if n not in original]:
        del current[name]
    for name, value in original.items():
        if current.get(name) != value:
            current[name] = value


def settle_after_launcher(name: str) -> None:
    """Undo what the shell launcher of a program reading stdin (scripts/multilog …)
    changes. It execs python3 itself, so the command name `ps -C` and `pkill` see is
    `python3`: give `name` back. And CPython refuses to start with a directory as
    stdin, so the launcher passes one as fd PYSVSCAN_STDIN_FD: put it back on fd 0,
    where reads fail with EISDIR as the C programs' do."""
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, os.fsencode(name)[:15])
        finally:
            os.close(fd)
    except OSError:
        pass
    stdin = os.environ.pop("PYSVSCAN_STDIN_FD", None)
    if stdin is None:
        return
    try:
        os.dup2(int(stdin), 0)
        os.close(int(stdin))
    except (OSError, ValueError):
        pass
