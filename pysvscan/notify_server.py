"""supervise as a NOTIFY_SOCKET server: readiness, watchdog and `supervise/notify-state`
for a service that opts in with files in its directory (systemd.md §2.2-2.6).

    sd-notify        empty, `main` or `all`: a notify socket, NOTIFY_SOCKET for ./run
    watchdog         seconds: WATCHDOG_USEC and WATCHDOG_PID for ./run; implies sd-notify
    ready-timeout    seconds: a service not ready in time gets SIGTERM (then SIGKILL)
    notification-fd  N (3-1023): s6's readiness pipe; the service writes a newline to fd N

supervise.prepare imports this module only for a directory that has sd-notify, watchdog
or notification-fd (ready-timeout alone is never read: nothing could make the service
ready), and then runs a NotifySupervisor: the plain Supervisor plus the socket, the pipe
and the timers. Every other service runs the plain Supervisor and never loads this code,
which matters because svscan's forked supervise processes share its memory.

A malformed or unreadable file is reported (`supervise: warning: ignoring DIR/watchdog:
...`) and then counts as absent; with nothing left, supervise is plain daemontools.
"""

from __future__ import annotations

import os
import select
import stat
import time

import _signal  # not `signal`: see execenv.exec_signal_state
import _socket  # not `socket`: its enums cost 4 ms and memory shared by every child

try:
    from _sha256 import sha256  # Python 3.11; hashlib would load OpenSSL
except ImportError:  # pragma: no cover - later Pythons
    from hashlib import sha256

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time and memory shared by every child
    from typing import Callable, NoReturn, TypeVar
    T = TypeVar("T")

from . import errors, execenv, tai64
from .status import Status
from .commands.supervise import (FORK_FAILURE_PAUSE, PROG, START_PAUSE, Supervisor, exec_run,
                                 replace_file)

# The directory of path sockets, made by tmpfiles.d (systemd) or svscanboot (sysvinit);
# tests point it elsewhere (abstract-name fallback).
DEFAULT_NOTIFY_DIR = "/run/pysvscan/notify"
NOTIFY_DIR = os.environ.get("PYSVSCAN_NOTIFY_DIR", DEFAULT_NOTIFY_DIR)
SOCKET_FILE = "supervise/notify-socket"
NOTIFY_STATE = "supervise/notify-state"  # read by svstat (svstat.NOTIFY_STATE)
MESSAGE_MAX = 4096        # systemd's NOTIFY_BUFFER_MAX: longer datagrams are dropped
FDS_MAX = 768             # systemd's limit of descriptors in one message
STATUS_MAX = 256          # characters of STATUS= kept
SECONDS_MAX = 1e9
FD_RANGE = range(3, 1024)
REFUSAL_QUIET = 10.0      # at most one "refused" warning this often
PING_WRITE_INTERVAL = 1.0  # a watchdog ping alone rewrites notify-state at most this often
ABORT_GRACE = 5.0         # SIGABRT to SIGKILL when there is no watchdog timeout (trigger)
_ANCILLARY = _socket.CMSG_SPACE(12) + _socket.CMSG_SPACE(4 * FDS_MAX)
_DROP_FLAGS = _socket.MSG_TRUNC | _socket.MSG_CTRUNC
_SCRUBBED = (b"NOTIFY_SOCKET", b"WATCHDOG_USEC", b"WATCHDOG_PID")


# -- the files -------------------------------------------------------------------------------

class Config:
    """What the service directory asked for; `policy` None: no socket."""

    __slots__ = ("policy", "watchdog", "ready_timeout", "notification_fd")

    def __init__(self, policy: str | None, watchdog: float, ready_timeout: float,
                 notification_fd: int | None) -> None:
        self.policy, self.watchdog = policy, watchdog
        self.ready_timeout, self.notification_fd = ready_timeout, notification_fd

    def supervisor(self, dir: str, wakeup_r: int, control: int, want_up: bool,
                   opened: list[int], plain: type[Supervisor] = Supervisor,
                   notifying: type[NotifySupervisor] | None = None) -> Supervisor:
        """prepare()'s Supervisor for this service, the socket made and added to
        `opened` (supervise holds the lock, so a stale socket path is its own).

        Made here, in the process that prepares (svscan for its children): the
        descriptor then travels to the one child like every other prepared one, and
        it is close-on-exec, so ./run never holds it. `plain`, `notifying`: the classes
        to make (a systemd unit's main supervise has its own)."""
        sock, address = -1, ""
        if self.policy is not None:
            if (bound := open_socket(dir)) is not None:
                sock, address = bound
                opened.append(sock)
                write_socket_file(dir, address)
            else:  # nothing can reach supervise: no watchdog, no deadline to miss
                self.policy, self.watchdog = None, 0.0
                if self.notification_fd is None:
                    return plain(dir, wakeup_r, control, want_up)
        return (notifying or NotifySupervisor)(dir, wakeup_r, control, want_up, self, sock,
                                               address)


def read_config(dir: str) -> Config | None:
    """Read the four files in this order; None when none of them turns anything on."""
    policy = setting(dir, "sd-notify", policy_of, "neither main nor all")
    watchdog = setting(dir, "watchdog", seconds_of, "not a number of seconds")
    ready_timeout = setting(dir, "ready-timeout", seconds_of, "not a number of seconds")
    notification_fd = setting(dir, "notification-fd", fd_of,
                              "not a descriptor number from 3 to 1023")
    if policy is None and watchdog:
        policy = "main"
    if policy is None and notification_fd is None:
        return None
    return Config(policy, watchdog or 0.0, ready_timeout or 0.0, notification_fd)


def setting(dir: str, name: str, parse: Callable[[bytes], T | None],
            complaint: str) -> T | None:
    """parse(contents without surrounding white space); None if the file is absent,
    and None after a warning if it is unreadable or parse() refuses it."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        errors.warn(PROG, f"unable to read {dir}/{name}: ", e)
        return None
    try:
        data = os.read(fd, 256)
    except OSError as e:
        errors.warn(PROG, f"unable to read {dir}/{name}: ", e)
        return None
    finally:
        os.close(fd)
    value = parse(data.strip()) if len(data) < 256 else None
    if value is None:
        errors.warn(PROG, f"ignoring {dir}/{name}: {complaint}")
    return value


def policy_of(text: bytes) -> str | None:
    return {b"": "main", b"main": "main", b"all": "all"}.get(text)


def seconds_of(text: bytes) -> float | None:
    """Decimal seconds, fractional allowed (`30`, `0.5`); 0 means off."""
    digits = text.replace(b".", b"", 1)
    if not digits.isdigit() or text.startswith(b".") or text.endswith(b"."):
        return None
    value = float(text)
    return value if value <= SECONDS_MAX else None


def fd_of(text: bytes) -> int | None:
    return int(text) if text.isdigit() and int(text) in FD_RANGE else None


def usec_of(text: str) -> int | None:
    """A decimal uint64, as systemd reads these fields; a longer number is refused
    (it would not even convert to a float)."""
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        return None
    value = int(text)
    return value if value < 1 << 64 else None


# -- the socket ------------------------------------------------------------------------------

def open_socket(dir: str) -> tuple[int, str] | None:
    """A datagram socket with SO_PASSCRED at NOTIFY_DIR/<h>.sock, or at the abstract
    @pysvscan/notify/<h> when that directory is unusable; <h>: 16 hex digits of the
    SHA-256 of the directory's real path (prepare has chdir'ed into it). Returns the
    raw descriptor (no socket object: svscan closes its copy by number after the fork)
    and the NOTIFY_SOCKET value, or None after a warning."""
    try:
        key = sha256(os.fsencode(os.getcwd())).hexdigest()[:16]
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC
                              | _socket.SOCK_NONBLOCK)
    except OSError as e:
        errors.warn(PROG, f"unable to create notify socket for {dir}: ", e)
        return None
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_PASSCRED, 1)
        address = bind_path(sock, f"{NOTIFY_DIR}/{key}.sock", dir)
        if address is None:
            address = f"@pysvscan/notify/{key}"
            sock.bind(b"\0" + address[1:].encode())
    except OSError as e:
        sock.close()
        errors.warn(PROG, f"unable to bind notify socket for {dir}: ", e)
        return None
    return sock.detach(), address


def bind_path(sock: _socket.socket, path: str, dir: str) -> str | None:
    """Bind to `path` if its directory is usable and safe; None: use an abstract name
    instead (also for a relative path, which NOTIFY_SOCKET cannot carry). Nothing is
    made or removed through a symbolic link, and only a stale socket is unlinked: a
    directory that is a link, a file, or writable by others, or a non-socket where the
    socket goes, is left alone with a warning."""
    if not path.startswith("/") or len(os.fsencode(path)) >= 108:  # sun_path
        return None
    why = notify_dir_problem(os.path.dirname(path))
    if why is None:
        try:
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                why = f"{path} exists and is not a socket"
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            return None
    if why is not None:
        if why:
            errors.warn(PROG, f"unable to bind notify socket for {dir} in "
                              f"{os.path.dirname(path)}: {why}")
        return None
    # Mode 0666: any uid may send, as to /run/systemd/notify (services drop
    # privileges). Set through the umask at bind, not by a chmod that would follow
    # whatever the path names a moment later.
    umask = os.umask(0o111)
    try:
        sock.bind(path)
    except OSError:
        return None
    finally:
        os.umask(umask)
    return path


def notify_dir_problem(path: str) -> str | None:
    """None if sockets may be made in `path`: it and its parent are real directories
    (lstat: a symbolic link does not count), owned by root or by supervise's user and
    writable by no one else (the parent may be sticky, as /tmp is). Otherwise why not,
    or '' when it is simply absent or out of reach (non-root use), which is no news."""
    for name in (os.path.dirname(path), path):
        try:
            st = os.lstat(name)
        except OSError:
            return ""
        if stat.S_ISLNK(st.st_mode):
            return f"{name} is a symbolic link"
        if not stat.S_ISDIR(st.st_mode):
            return f"{name} is not a directory"
        if st.st_uid not in (0, os.geteuid()):
            return f"{name} belongs to uid {st.st_uid}"
        if st.st_mode & 0o022 and not (name != path and st.st_mode & stat.S_ISVTX):
            return f"{name} is writable by others"
    return None


def write_socket_file(dir: str, address: str) -> None:
    """supervise/notify-socket: the NOTIFY_SOCKET value, one line, for tools."""
    replace_file(dir, SOCKET_FILE, os.fsencode(address) + b"\n")


def service_environment(address: str, watchdog: float) -> dict[bytes, bytes]:
    """./run's environment: supervise's own, with NOTIFY_SOCKET and WATCHDOG_USEC ours
    (never inherited ones); WATCHDOG_PID is added in the child, which knows its pid.
    A copy: the shared execenv.exec_environment() of other services stays as it is."""
    env = {k: v for k, v in execenv.exec_environment().items() if k not in _SCRUBBED}
    if address:
        env[b"NOTIFY_SOCKET"] = os.fsencode(address)
    if watchdog:
        env[b"WATCHDOG_USEC"] = b"%d" % round(watchdog * 1e6)
    return env


def label_now() -> str:
    return tai64.external(tai64.pack(*tai64.now()))


def session_and_parent(pid: int) -> tuple[int, int] | None:
    """(session id, parent pid) from /proc/PID/stat, None once the process is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 1024)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return int(fields[3]), int(fields[1])
    except (IndexError, ValueError):
        return None


# -- the supervisor --------------------------------------------------------------------------

class NotifySupervisor(Supervisor):
    """Supervisor plus the notify socket, the s6 pipe, the watchdog and ready timers.

    The loop is the plain one, through its hooks: two more kinds of wake-up (a
    datagram, a pipe read, in serve_fds), the deadlines (check_deadlines) and a poll
    timeout from the nearest one (timeout_ms). Readiness state belongs to one run of
    ./run: it is reset at every pid change (start, death), which is also when
    notify-state is rewritten (before status, so a reader that sees the new pid in
    status finds the new run's notify-state) or removed.
    """

    __slots__ = ("policy", "watchdog", "ready_timeout", "notification_fd", "sock_fd", "sock",
                 "address", "env", "pipe", "state", "ready", "status_text", "errno_text",
                 "wd_timeout", "wd_last", "wd_label", "ready_deadline", "kill_at",
                 "watchdog_kills", "watchdog_killed", "rejected", "dropped", "quiet_until",
                 "suppressed", "mainpid_warned", "dirty", "pinged", "written_at")

    def __init__(self, dir: str, wakeup_r: int, control: int, want_up: bool, config: Config,
                 sock: int, address: str) -> None:
        super().__init__(dir, wakeup_r, control, want_up)
        self.policy, self.watchdog = config.policy, config.watchdog
        self.ready_timeout, self.notification_fd = config.ready_timeout, config.notification_fd
        self.sock_fd, self.sock, self.address = sock, None, address
        self.env = service_environment(address, config.watchdog)
        self.pipe = -1
        self.watchdog_kills, self.watchdog_killed = 0, ""
        self.rejected = self.dropped = self.suppressed = 0
        self.quiet_until = self.written_at = 0.0
        self.mainpid_warned = self.dirty = self.pinged = False
        self.clear_run()
        if sock >= 0:
            self.idle.register(sock, select.POLLIN)
            self.pausing.register(sock, select.POLLIN)

    def clear_run(self) -> None:
        """Readiness state of a new run of ./run (or of none, when pid is 0)."""
        self.state, self.ready, self.status_text, self.errno_text = "starting", "", "", ""
        self.wd_timeout, self.wd_last, self.wd_label = self.watchdog, 0.0, ""
        self.kill_at = 0.0
        self.ready_deadline = (time.monotonic() + self.ready_timeout
                               if self.pid and self.ready_timeout else 0.0)

    def arm(self) -> None:
        super().arm()
        if self.sock_fd >= 0:
            self.sock = _socket.socket(fileno=self.sock_fd)

    def serve(self) -> int:
        try:
            return super().serve()
        finally:  # no stale socket or state for tools to find
            if self.address.startswith("/"):
                remove(self.address)
            remove(NOTIFY_STATE)
            remove(SOCKET_FILE)

    # -- runs of ./run ---------------------------------------------------------------------

    def pid_change(self) -> None:
        super().pid_change()
        self.close_pipe()
        self.clear_run()
        self.write_state()

    def history_extra(self) -> str:
        return f"watchdog_kills={self.watchdog_kills}\n"

    def adopt(self, pid: int, pidfd: int, old: Status) -> None:
        """Supervisor.adopt, with the readiness the earlier supervise recorded for that
        run: it will not say READY=1 twice. The watchdog gets a full period."""
        super().adopt(pid, pidfd, old)
        self.clear_run()
        try:
            with open(NOTIFY_STATE, "rb") as f:
                kept = dict(line.partition(b"=")[::2] for line in f.read(8192).split(b"\n"))
        except OSError:
            kept = {}
        if kept.get(b"pid") == b"%d" % pid:
            self.state = kept.get(b"state", b"starting").decode("utf-8", "replace")
            self.ready = kept.get(b"ready", b"").decode("ascii", "replace")
            self.status_text = kept.get(b"status", b"").decode("utf-8", "replace")
            if self.ready:
                self.ready_deadline = 0.0
                if self.wd_timeout:
                    self.wd_last, self.wd_label = time.monotonic(), label_now()
        self.write_state()

    def try_start(self, after_death: bool = False) -> None:
        """Supervisor.try_start (copied, not shared: the plain class stays exactly as
        it was, memory layout included), with the s6 pipe made before the fork and
        the child's own set-up (exec_service)."""
        pipe = None
        if self.notification_fd is not None:
            try:
                pipe = os.pipe2(os.O_CLOEXEC)
            except OSError as e:
                errors.warn(PROG, f"unable to create notification pipe for {self.dir}: ", e)
        try:
            child = os.fork()
        except OSError as e:
            for fd in pipe or ():
                os.close(fd)
            if after_death:
                self.record_death()
            errors.warn(PROG, f"unable to fork for {self.dir}, sleeping 60 seconds: ", e)
            self.deep_sleep(FORK_FAILURE_PAUSE)
            self.retry_start = self.woken = True
            return
        if child == 0:
            self.exec_service(pipe)
        self.paused = False
        self.pid = child
        self.starts += 1
        self.pid_change()
        if pipe is not None:
            os.close(pipe[1])
            os.set_blocking(pipe[0], False)
            self.pipe = pipe[0]
            self.idle.register(self.pipe, select.POLLIN)
            self.pausing.register(self.pipe, select.POLLIN)
        self.announce()
        if after_death:
            self.write_history()
        self.deep_sleep(START_PAUSE)

    def exec_service(self, pipe: tuple[int, int] | None) -> NoReturn:
        """The forked child: its own session under `all` (so the policy can recognise
        its processes), the pipe's write end at fd N, WATCHDOG_PID = its pid."""
        env = self.env
        try:
            if self.policy == "all":
                os.setsid()
            if pipe is not None:
                if pipe[1] == self.notification_fd:
                    os.set_inheritable(pipe[1], True)
                else:
                    os.dup2(pipe[1], self.notification_fd)  # type: ignore[arg-type]
            if self.watchdog:
                env = {**env, b"WATCHDOG_PID": b"%d" % os.getpid()}
            exec_run(self.dir, self.exec_ignored, self.exec_blocked, env)
        except OSError as e:
            errors.fatal(PROG, f"unable to start {self.dir}/run: ", e)
        finally:  # whatever happens, this child never returns into supervise's loop
            os._exit(errors.EXIT_TEMPORARY)

    def close_pipe(self) -> None:
        if self.pipe >= 0:
            self.idle.unregister(self.pipe)
            self.pausing.unregister(self.pipe)
            os.close(self.pipe)
            self.pipe = -1

    def command(self, byte: str) -> None:
        """Supervisor.command; `d` ends the watchdog (the service is being stopped);
        a pause suspends both timers, and `c` gives them a full period again."""
        was_paused = self.paused
        super().command(byte)
        if byte == "d" and self.pid:
            self.set_state("stopping")
            if self.dirty:
                self.write_state()
        elif was_paused and not self.paused:
            now = time.monotonic()
            if self.wd_last:
                self.wd_last = now
            if self.ready_deadline:
                self.ready_deadline = now + self.ready_timeout

    # -- the loop --------------------------------------------------------------------------

    def serve_fds(self, events: list[tuple[int, int]]) -> None:
        """Datagrams and the pipe, in the loop before reaping (the last words of a dying
        run count) and during the pause after a start (READY=1 keeps its time)."""
        for fd, _ in events:
            if fd != self.wakeup_r and fd != self.control:
                self.serve_fd(fd)

    def serve_fd(self, fd: int) -> None:
        if fd == self.sock_fd:
            self.receive()
        elif fd == self.pipe:
            self.read_pipe()
        now = time.monotonic()
        if self.dirty or (self.pinged and now - self.written_at >= PING_WRITE_INTERVAL):
            self.write_state()

    def timeout_ms(self) -> float:
        deadlines = []
        if self.pid:
            if self.kill_at:
                deadlines.append(self.kill_at)
            if not self.paused and self.state != "stopping":
                if self.wd_last and self.wd_timeout:
                    deadlines.append(self.wd_last + self.wd_timeout)
                if self.ready_deadline:
                    deadlines.append(self.ready_deadline)
        idle = super().timeout_ms()  # IDLE_TIMEOUT, or the retry of a failed status write
        if not deadlines:
            return idle
        return min(idle, max(0.0, min(deadlines) - time.monotonic()) * 1000 + 1)

    def check_deadlines(self) -> None:
        if not self.pid:
            return
        now = time.monotonic()
        if self.kill_at and now >= self.kill_at:
            self.kill_at = 0.0
            errors.warn(PROG, f"{self.dir} still running, sending SIGKILL to pid {self.pid}")
            self.signal_service(_signal.SIGKILL)
        if self.paused or self.state == "stopping":
            return
        if self.wd_last and self.wd_timeout and now >= self.wd_last + self.wd_timeout:
            self.abort(f"watchdog timeout for {self.dir} ({self.wd_timeout:g} seconds)")
        if self.ready_deadline and now >= self.ready_deadline:
            self.ready_deadline = 0.0
            errors.warn(PROG, f"{self.dir} not ready after {self.ready_timeout:g} seconds, "
                              f"sending SIGTERM to pid {self.pid}")
            self.signal_service(_signal.SIGTERM)
            self.signal_service(_signal.SIGCONT)
            self.kill_at = now + self.ready_timeout

    def abort(self, why: str) -> None:
        """The watchdog's action: SIGABRT now, SIGKILL one timeout later if the process
        still lives; the usual restart follows its death."""
        if not self.pid or self.kill_at:
            return
        errors.warn(PROG, f"{why}, sending SIGABRT to pid {self.pid}")
        self.signal_service(_signal.SIGABRT)
        self.signal_service(_signal.SIGCONT)
        self.kill_at = time.monotonic() + (self.wd_timeout or ABORT_GRACE)
        self.wd_last = 0.0
        self.watchdog_kills += 1
        self.watchdog_killed = label_now()
        self.dirty = True
        self.write_state()

    # -- messages --------------------------------------------------------------------------

    def receive(self) -> None:
        """Every queued datagram; every descriptor that came with one is closed once it
        is handled, which is what completes a BARRIER=1 (systemd-notify --ready).
        A message that is only BARRIER=1 changes nothing, so, as systemd does, it is
        answered whoever sent it: systemd-notify sends it with its own pid even when
        it sent READY=1 as its parent."""
        assert self.sock is not None
        while True:
            try:
                data, ancillary, flags, _ = self.sock.recvmsg(
                    MESSAGE_MAX, _ANCILLARY, _socket.MSG_CMSG_CLOEXEC)
            except OSError:  # BlockingIOError: drained
                return
            pid, fds = 0, []
            for level, kind, payload in ancillary:
                if level != _socket.SOL_SOCKET:
                    continue
                if kind == _socket.SCM_RIGHTS:
                    fds += memoryview(payload[:len(payload) & ~3]).cast("i").tolist()
                elif kind == _socket.SCM_CREDENTIALS and len(payload) >= 12:
                    pid = memoryview(payload[:4]).cast("i")[0]
            try:
                if data.rstrip(b"\n") != b"BARRIER=1":  # for anyone, as in systemd
                    self.handle(data, flags, pid)
            finally:
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def handle(self, data: bytes, flags: int, pid: int) -> None:
        if flags & _DROP_FLAGS or b"\0" in data or pid <= 0:
            self.dropped += 1
            self.dirty = True
            return
        if not self.authorized(pid):
            self.rejected += 1
            self.dirty = True
            return self.refuse(pid)
        now = time.monotonic()
        for line in data.decode("utf-8", "replace").split("\n"):
            key, sep, value = line.partition("=")
            if sep:
                self.assign(key, value, now)

    def assign(self, key: str, value: str, now: float) -> None:
        """One KEY=VALUE, with systemd's meaning; unknown keys are ignored."""
        match key, value:
            case "READY", "1":
                self.became_ready(now)
            case "RELOADING", "1":
                self.set_state("reloading")
            case "STOPPING", "1":
                self.set_state("stopping")
            case "STATUS", _:
                if (text := value[:STATUS_MAX]) != self.status_text:
                    self.status_text, self.dirty = text, True
            case "ERRNO", _:
                if usec_of(value) is not None and value != self.errno_text:
                    self.errno_text, self.dirty = value, True
            case "WATCHDOG", "1":
                if self.wd_timeout:
                    self.wd_last, self.wd_label, self.pinged = now, label_now(), True
            case "WATCHDOG", "trigger":
                self.abort(f"watchdog triggered by {self.dir}")
            case "WATCHDOG_USEC", _:
                if (usec := usec_of(value)) is not None:
                    self.dirty |= usec / 1e6 != self.wd_timeout
                    self.wd_timeout = usec / 1e6
                    if usec and (self.wd_last or self.ready):
                        self.wd_last = now
            case "EXTEND_TIMEOUT_USEC", _:
                if (usec := usec_of(value)) is not None and self.ready_deadline:
                    self.ready_deadline = max(self.ready_deadline, now + usec / 1e6)
            case "MAINPID", _:
                if not self.mainpid_warned:
                    self.mainpid_warned = True
                    errors.warn(PROG, f"MAINPID= from {self.dir} ignored: supervise "
                                      f"watches pid {self.pid}, the process it started")

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.dirty = state, True

    def became_ready(self, now: float) -> None:
        """The first READY=1 of a run dates readiness; a later one (after RELOADING=1)
        only changes the state back."""
        if not self.ready:
            self.ready, self.dirty = label_now(), True
        self.set_state("ready")
        self.ready_deadline = 0.0
        if self.wd_timeout:  # the watchdog is armed by readiness, as in systemd
            self.wd_last, self.wd_label, self.pinged = now, label_now(), True

    def read_pipe(self) -> None:
        """s6: a newline on the notification fd means ready; then the pipe is closed."""
        try:
            data = os.read(self.pipe, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if b"\n" in data:
            self.became_ready(time.monotonic())
            self.close_pipe()
        elif not data:
            self.close_pipe()

    def authorized(self, pid: int) -> bool:
        """`main`: the pid supervise forked (it stays through exec chains). `all`: also
        any process of its session (it runs setsid) or descended from it."""
        if not self.pid:
            return False
        if pid == self.pid:
            return True
        if self.policy != "all":
            return False
        for _ in range(64):
            found = session_and_parent(pid)
            if found is None:
                return False
            session, pid = found
            if session == self.pid or pid == self.pid:
                return True
            if pid <= 1:
                return False
        return False

    def refuse(self, pid: int) -> None:
        """One warning per REFUSAL_QUIET seconds, naming both pids, like systemd's."""
        now = time.monotonic()
        if now < self.quiet_until:
            self.suppressed += 1
            return
        if not self.pid:
            why = "the service is not running"
        elif self.policy == "all":
            why = f"not pid {self.pid}, its session or its descendants (sd-notify all)"
        else:
            why = f"only pid {self.pid} may send (sd-notify main)"
        more = f" ({self.suppressed} more refused)" if self.suppressed else ""
        errors.warn(PROG, f"notification for {self.dir} from pid {pid} refused: {why}{more}")
        self.quiet_until, self.suppressed = now + REFUSAL_QUIET, 0

    # -- supervise/notify-state ------------------------------------------------------------

    def write_state(self) -> None:
        """KEY=VALUE lines (systemd.md §2.6), rewritten by rename; removed while down."""
        self.dirty = self.pinged = False
        self.written_at = time.monotonic()
        if not self.pid:
            return remove(NOTIFY_STATE)
        text = (f"pid={self.pid}\nstate={self.state}\nready={self.ready}\n"
                f"status={self.status_text}\nerrno={self.errno_text}\n"
                f"watchdog_usec={round(self.wd_timeout * 1e6)}\n"
                f"watchdog_last={self.wd_label}\nwatchdog_kills={self.watchdog_kills}\n"
                f"watchdog_killed={self.watchdog_killed}\nrejected={self.rejected}\n"
                f"dropped={self.dropped}\n")
        replace_file(self.dir, NOTIFY_STATE, text.encode())


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
