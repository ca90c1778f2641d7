"""svscanboot [DIR]: svscan DIR, its output shown by readproctitle; under systemd, svscan
DIR in journal mode.

daemontools.md §7: 0.76's /bin/sh script as Debian builds it, with one departure asked
for: DIR is honoured (default /etc/service), where Debian's build ignores its
arguments. Started by systemd (systemd.md §4.2), it execs svscan instead, see
choose_boot(). svc, svscan and readproctitle are pysvscan's, from the directory this
program really lives in, never whatever PATH would find first (the C ones in /usr/bin
on a machine that has both). Before svscan starts, it makes /run/pysvscan/notify where
no tmpfiles.d did (make_notify_dir).

Like the shell, this process stays the parent of the pipeline and ends with
readproctitle's status once both ends are gone (for as long as any supervise or
service holds the pipe, see §7).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import Callable, Mapping, NoReturn

from .. import errors, execenv

PROG = "svscanboot"
DEFAULT_DIR = "/etc/service"
# The script's first line; Debian's build keeps /command first too.
PATH = "/command:/usr/local/bin:/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin:/usr/X11R6/bin"
DISPLAY = ("service", "errors:", "." * 400)


def main(argv: list[str]) -> int:
    """Further arguments are ignored, as the script ignores them."""
    dir = argv[1] if len(argv) > 1 else DEFAULT_DIR
    boot = choose_boot(os.environ)
    return boot(dir, programs_dir(argv[0]))


def choose_boot(environ: Mapping[str, str]) -> Callable[[str, str], int]:
    """How to start svscan: systemd_boot when systemd started this process and wants
    to hear from it or reads its output, classic_boot otherwise (systemd.md §4.2).

    NOTIFY_SOCKET set: a manager waits for READY=1 from its main process, which only
    an exec'd svscan can send (a pipeline would leave svscanboot as the main pid and
    the unit would time out). JOURNAL_STREAM naming our stderr: the output is read by
    journald, where readproctitle would hide it in a process title. Both are checked
    as they are now, not merely inherited: JOURNAL_STREAM and INVOCATION_ID stay in
    the environment of everything a unit starts (a terminal emulator run as a user
    unit passes them to every shell in it), so INVOCATION_ID alone, or a JOURNAL_STREAM
    that no longer names fd 2, is not taken for systemd. (An svscanboot started from
    a shell under systemd thus keeps the pipeline its user asked for.)
    """
    if environ.get("NOTIFY_SOCKET"):
        return systemd_boot
    stream = environ.get("JOURNAL_STREAM")
    if stream:
        from ..notifier import stderr_is_journal
        if stderr_is_journal(stream):
            return systemd_boot
    return classic_boot


# What systemd_boot passes on to svscan, besides PATH: the protocol variables (svscan
# takes them and hides them from its children) and svscan's own switches.
PASSED = (b"NOTIFY_SOCKET", b"WATCHDOG_USEC", b"WATCHDOG_PID", b"JOURNAL_STREAM",
          b"PYSVSCAN_JOURNAL", b"PYSVSCAN_JOURNAL_SOCKET")


def systemd_boot(dir: str, bindir: str) -> int:
    """systemd.md §4.2: stop what an earlier svscan left running (quietly, as the
    classic script does), then become `svscan DIR` in journal mode: exec, so that the
    main pid, WATCHDOG_PID and NotifyAccess=main all name svscan; stdin, stdout and
    stderr stay what systemd gave; the environment is PATH plus systemd's variables,
    as daemontools' `env - PATH=...` gave."""
    env = {b"PATH": os.fsencode(PATH), b"PYSVSCAN_JOURNAL": b"1"}
    env.update((name, value) for name, value in os.environb.items() if name in PASSED)
    try:
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return errors.fatal(PROG, "unable to open /dev/null: ", e)
    try:
        wait_for({spawn(f"{bindir}/svc", ["svc", "-dx", *leftovers(dir)],
                        {b"PATH": env[b"PATH"]}, stdin=null, stdout=null, stderr=null)})
    except OSError as e:
        return errors.fatal(PROG, "unable to fork: ", e)
    finally:
        os.close(null)
    path = f"{bindir}/svscan"
    try:
        os.execve(path, ["svscan", dir], env)
    except OSError as e:
        return errors.fatal(PROG, f"unable to run {path}: ", e)


def classic_boot(dir: str, bindir: str) -> int:
    """daemontools.md §7, steps 2-4 in order (step 1 is PATH above)."""
    make_notify_dir()  # first: a warning reaches the caller's stderr, not /dev/null
    try:
        to_dev_null()
    except OSError as e:
        return errors.fatal(PROG, "unable to open /dev/null: ", e)
    shell_env = dict(os.environb)
    shell_env[b"PATH"] = os.fsencode(PATH)
    clean_env = {b"PATH": os.fsencode(PATH)}
    try:
        wait_for({spawn(f"{bindir}/svc", ["svc", "-dx", *leftovers(dir)], shell_env)})
    except OSError as e:
        return errors.fatal(PROG, "unable to fork: ", e)
    try:
        read_end, write_end = os.pipe()
    except OSError as e:
        return errors.fatal(PROG, "unable to create pipe: ", e)
    try:
        scanner = spawn(f"{bindir}/svscan", ["svscan", dir], clean_env,
                        stdout=write_end, stderr=write_end)
        display = spawn(f"{bindir}/readproctitle", ["readproctitle", *DISPLAY], clean_env,
                        stdin=read_end)
    except OSError as e:
        return errors.fatal(PROG, "unable to fork: ", e)
    # readproctitle sees end of input only when no process holds the write end.
    os.close(read_end)
    os.close(write_end)
    return wait_for({scanner, display}).get(display, errors.EXIT_TEMPORARY)


def make_notify_dir() -> None:
    """What tmpfiles.d does at boot under systemd, for a host without it (systemd.md
    §4.5): the directory of supervise's notify sockets, 0755 so that services of any
    uid reach them. Failing (not root) is no error: supervise then uses abstract names.
    Each level is made and opened relative to the one above, never through a symbolic
    link: a link or a file already there is left alone, with a warning (supervise
    refuses it too: notify_server.notify_dir_problem)."""
    from ..notify_server import DEFAULT_NOTIFY_DIR
    above = None
    for path in (os.path.dirname(DEFAULT_NOTIFY_DIR), DEFAULT_NOTIFY_DIR):
        fd = make_dir_at(above, path, DEFAULT_NOTIFY_DIR)
        if above is not None:
            os.close(above)
        if fd is None:
            return
        above = fd
    if above is not None:
        os.close(above)


def make_dir_at(above: int | None, path: str, goal: str) -> int | None:
    """mkdir `path` 0755 (its last component in directory `above`, if given) unless it
    exists, and return a descriptor of it; None if it cannot be made (silently) or is
    not a real directory (with a warning that `goal` cannot be made)."""
    name = path if above is None else os.path.basename(path)
    try:
        os.mkdir(name, 0o755, dir_fd=above)
        made = True
    except FileExistsError:
        made = False
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=above)
    except OSError:
        kind = "a symbolic link" if os.path.islink(path) else "not a directory"
        errors.warn(PROG, f"unable to make {goal}: {path} is {kind}")
        return None
    if made:
        try:
            os.fchmod(fd, 0o755)  # whatever the umask
        except OSError:
            pass
    return fd


def programs_dir(argv0: str) -> str:
    """The directory this program's file is in, symlinks resolved: where its sibling
    programs are installed (the venv's bin, or /usr/bin in a package)."""
    return os.path.dirname(os.path.realpath(argv0))


def to_dev_null() -> None:
    """stdin, stdout and stderr from and to /dev/null, as the script's `exec` lines."""
    fd = os.open("/dev/null", os.O_RDWR)
    for target in (0, 1, 2):
        if fd != target:
            os.dup2(fd, target)
    if fd > 2:
        os.close(fd)


def leftovers(dir: str) -> list[bytes]:
    """What dash makes of `DIR/* DIR/*/log`: names not starting with `.`, in byte order,
    a `log` kept if lstat finds it, and a pattern that matches nothing passed as is."""
    base = os.fsencode(dir)
    try:
        names = sorted(n for n in os.listdir(base) if not n.startswith(b"."))
    except OSError:
        names = []
    services = [base + b"/" + n for n in names]
    logs = [s + b"/log" for s in services if os.path.lexists(s + b"/log")]
    return (services or [base + b"/*"]) + (logs or [base + b"/*/log"])


def spawn(path: str, argv: list[str | bytes], env: Mapping[bytes, bytes], *,
          stdin: int | None = None, stdout: int | None = None,
          stderr: int | None = None) -> int:
    """fork and exec `path`, with the given descriptors moved onto 0, 1 and 2; every
    other inherited descriptor is passed on, as the shell does. An exec failure is
    reported on the child's stderr (for svscan: the pipe, so `ps` shows it)."""
    pid = os.fork()
    if pid:
        return pid
    code = errors.EXIT_TEMPORARY
    try:
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            if fd is not None:
                os.dup2(fd, target)
        try:
            os.execve(path, argv, env)
        except OSError as e:
            errors.fatal(PROG, f"unable to run {path}: ", e)
    finally:
        os._exit(code)


def wait_for(pids: set[int]) -> dict[int, int]:
    """Wait until every one of `pids` has ended; their exit statuses in the shell's
    terms (128 + N for a process killed by signal N)."""
    statuses: dict[int, int] = {}
    while not pids <= statuses.keys():
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid in pids:
            code = os.waitstatus_to_exitcode(status)
            statuses[pid] = code if code >= 0 else 128 - code
    return statuses


def run() -> NoReturn:
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
