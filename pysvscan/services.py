"""One service's state as the `pysvscan` command shows it: status, wait, doctor, metrics.

Read from the same files as svstat (the 18-byte supervise/status, supervise/ok, down,
svstat's reading of supervise/notify-state) plus pysvscan's supervise/history, and the
service's log/run for where its output goes. Nothing here writes.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from . import procinfo, status as status_mod, tai64
from .commands import svstat

DEFAULT_SCANDIR = "/etc/service"
SCANDIR_VARIABLE = "PYSVSCAN_SCANDIR"
HISTORY = "supervise/history"         # supervise.HISTORY (not imported: see svstat)
NOTIFY_STATE = svstat.NOTIFY_STATE
WANTS = {status_mod.WANT_UP: "up", status_mod.WANT_DOWN: "down"}
# probe()'s words when no supervise runs (or never ran) for the directory
NOT_SUPERVISED = ("supervise not running", "unable to open supervise/ok: file does not exist")


class UserError(Exception):
    """What the `pysvscan` command reports as one line and a non-zero exit, never as a
    traceback: a refusal, a bad name, something missing. The commands' own errors
    (addremove.Refused, logs.NoLogs ...) derive from it."""


class NoSuchService(UserError):
    """A NAME that is not a service of the scan directory."""


def default_scandir() -> str:
    return os.environ.get(SCANDIR_VARIABLE) or DEFAULT_SCANDIR


def service_names(scandir: str) -> list[str]:
    """Every service svscan would supervise, each followed by its log/ service; entries
    starting with `.` and anything not a directory are skipped, as svscan does."""
    names = []
    for name in sorted(os.listdir(scandir)):
        path = os.path.join(scandir, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        names.append(name)
        if os.path.isdir(os.path.join(path, "log")):
            names.append(f"{name}/log")
    return names


def check_name(name: str) -> None:
    """NAME or NAME/log, NAME a plain directory name of the scan directory."""
    main, _, log = name.partition("/")
    if not main or main.startswith(".") or (log and log != "log") or "\0" in name:
        raise NoSuchService(f"bad service name {name!r}: give NAME or NAME/log, "
                            "where NAME is an entry of the scan directory")


def resolve(scandir: str, name: str) -> str:
    """The directory of service `name`; NoSuchService unless it is one."""
    check_name(name)
    if not os.path.isdir(scandir):
        raise NoSuchService(f"unable to read {scandir}: No such file or directory")
    path = os.path.join(scandir, name)
    if not os.path.isdir(path):
        raise NoSuchService(f"no service {name!r} in {scandir}")
    return path


@dataclass(frozen=True)
class LastExit:
    """How the service last ended, from supervise/history's `last_exit=` line."""

    how: str     # "exit", "signal", or "unknown" (an adopted run: svscan reaped it)
    code: int | None  # exit status or signal number; None when unknown
    pid: int
    when: int    # TAI64 label seconds

    def seconds_ago(self, now: int) -> int:
        return max(0, now - self.when)

    def text(self) -> str:
        """`exit 3`, or the signal's name: `SIGKILL`, or `unknown`."""
        if self.code is None:
            return "unknown"
        if self.how == "exit":
            return f"exit {self.code}"
        import signal
        try:
            return signal.Signals(self.code).name
        except ValueError:
            return f"signal {self.code}"


def parse_last_exit(text: str) -> LastExit | None:
    """`exit 3 pid 123 at @4000…`, `signal 9 pid 123 at @4000…`, or `unknown pid 123
    at @4000…` for a run supervise adopted and so could not wait for."""
    words = text.split()
    if words[:1] == ["unknown"]:
        words.insert(1, "")
    if len(words) != 6 or words[0] not in ("exit", "signal", "unknown") or words[2] != "pid":
        return None
    label = words[5]
    try:
        code = None if words[0] == "unknown" else int(words[1])
        return LastExit(words[0], code, int(words[3]), int(label[1:17], 16))
    except ValueError:
        return None


def key_values(path: str, limit: int = 16384) -> dict[str, str] | None:
    """KEY=VALUE lines of supervise/history or notify-state; None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = data.decode(errors="replace")
    return dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)


@dataclass(frozen=True)
class LogTarget:
    """Where a service's standard output goes.

    `logger`: it has a log/ service reading it; `dirs`: that logger's multilog
    directories (absolute); `journal`: lines reach the journal (multilog's J action,
    or svscan's journal mode for a service without log/; None: cannot tell)."""

    logger: bool
    dirs: tuple[str, ...]
    journal: bool | None

    def text(self, service_dir: str) -> str:
        """`log/main`, `journal`, `log/main,journal`, `log/run` (a logger that is not
        multilog) or `svscan` (svscan's own output: no log/, no journal mode)."""
        parts = [os.path.relpath(d, service_dir) for d in self.dirs]
        if self.journal:
            parts.append("journal")
        if parts:
            return ",".join(parts)
        return "log/run" if self.logger else "svscan"


def multilog_actions(run_script: str) -> list[str] | None:
    """The arguments of the multilog that log/run execs, or None when no line of it
    runs multilog (found by name, after any exec chain: `exec setuidgid log multilog
    t ./main`)."""
    for line in run_script.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, word in enumerate(words):
            if os.path.basename(word) == "multilog":
                return words[i + 1:]
    return None


def log_target(service_dir: str, unlogged_journal: bool | None) -> LogTarget:
    """LogTarget of the service in `service_dir`; `unlogged_journal` is svscan's
    journal mode, which decides for a service without log/."""
    log_dir = os.path.join(service_dir, "log")
    if not os.path.isdir(log_dir):
        return LogTarget(False, (), unlogged_journal)
    try:
        with open(os.path.join(log_dir, "run"), "rb") as f:
            script = f.read(65536).decode(errors="replace")
    except OSError:
        return LogTarget(True, (), False)
    actions = multilog_actions(script) or []
    dirs = tuple(os.path.normpath(os.path.join(log_dir, a)) for a in actions
                 if a.startswith(("/", ".")))
    return LogTarget(True, dirs, any(a.startswith("J") for a in actions))


@dataclass
class ServiceState:
    """Everything the `pysvscan` command reports about one service directory."""

    name: str
    dir: str
    supervised: bool = False      # a supervise holds supervise/ok
    error: str | None = None      # svstat's words for the step that failed
    pid: int = 0
    seconds: int | None = None    # in the current state (up or down)
    since: float | None = None    # unix time of the last pid change
    normally_up: bool = True
    paused: bool = False
    want: str | None = None       # "up", "down", "once"
    ready: bool | None = None     # None: does not opt in to readiness
    ready_seconds: int | None = None
    starts: int = 0               # supervise/history, since supervise started
    exits: int = 0
    last_exit: LastExit | None = None
    recent_exits: int = 0         # exits in the last 60 seconds
    watchdog_kills: int | None = None
    log: LogTarget | None = None  # read_all's; None for a log service itself

    @property
    def state(self) -> str:
        """up, down, paused, not supervised, or unknown (status unreadable)."""
        if self.error is not None:
            return "not supervised" if self.error in NOT_SUPERVISED else "unknown"
        if not self.pid:
            return "down"
        return "paused" if self.paused else "up"

    @property
    def restarts(self) -> int:
        """Starts after the first; supervise/history exists only once the service
        has ended, so without it there was no restart."""
        return max(self.starts - 1, 0) if self.starts else self.exits

    @property
    def as_wanted(self) -> bool:
        """Supervised and in the state it is wanted in: up and running when wanted
        up, down when wanted down; anything goes after `svc -o` (want once)."""
        if self.error is not None:
            return False
        if self.want == "up":
            return bool(self.pid) and not self.paused
        if self.want == "down":
            return not self.pid
        return True

    def is_log(self) -> bool:
        return self.name.endswith("/log")


def read_state(scandir: str, name: str, now: int) -> ServiceState:
    """The state of `name`, read from inside its directory (as svstat reads it);
    the current directory is restored."""
    path = os.path.join(scandir, name)
    found = ServiceState(name, path)
    origin = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            os.chdir(path)
        except OSError as e:
            found.error = f"unable to chdir to {path}: {e.strerror}"
            return found
        read_inside(found, now)
    finally:
        os.fchdir(origin)
        os.close(origin)
    return found


def read_inside(found: ServiceState, now: int) -> None:
    """Fill `found` from the files of the current directory."""
    probed = status_mod.probe()
    found.normally_up = probed.normally_up
    found.supervised = probed.running
    st = probed.status
    if probed.error is not None or st is None:
        found.error = probed.error or "unable to read supervise/status"
        return
    # pysvscan's supervise goes from a dead pid straight to the next one, so a
    # service that dies at once shows a pid until its restart: not running is down
    found.pid = st.pid if st.pid and procinfo.alive(st.pid) else 0
    found.seconds = st.seconds_since(now)
    found.since = tai64.to_unix(st.when) + st.nsec / 1e9
    found.paused = bool(found.pid and st.paused)
    found.want = WANTS.get(st.want, "once")
    history = key_values(HISTORY)
    if history:
        found.starts = int_or(history.get("starts"), 0)
        found.exits = int_or(history.get("exits"), 0)
        found.last_exit = parse_last_exit(history.get("last_exit", ""))
        found.recent_exits = len(history.get("recent_exits", "").split())
    if any(os.access(name, os.F_OK) for name in svstat.NOTIFY_FILES):
        # opted in: not ready while down; the watchdog's kills are in notify-state
        # while the service runs, and in history (written at each end) otherwise
        found.ready = False
        found.watchdog_kills = int_or((history or {}).get("watchdog_kills"), 0)
        when = svstat.ready_since(found.pid) if found.pid else None
        if when is not None:
            found.ready = when != svstat.NOT_READY
            found.ready_seconds = max(0, now - when) if found.ready else None
            state = key_values(NOTIFY_STATE) or {}
            found.watchdog_kills = int_or(state.get("watchdog_kills"), found.watchdog_kills)


def int_or(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def read_all(scandir: str, names: list[str]) -> tuple[list[ServiceState], procinfo.Svscan | None]:
    """Every service's state with its log target, and the svscan serving the scan
    directory (looked for from the running services' pids first), whose journal
    mode decides where the output of a service without log/ goes."""
    now = tai64.now()[0]
    states = [read_state(scandir, name, now) for name in names]
    svscan = procinfo.find_svscan(scandir, tuple(s.pid for s in states if s.pid))
    journal = svscan.journal if svscan else None
    for s in states:
        if not s.is_log():
            s.log = log_target(s.dir, journal)
    return states, svscan


def duration(seconds: int | None) -> str:
    """42s, 5m12s, 3h05m, 2d04h: short enough for a table column."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def as_json(s: ServiceState, now: int) -> dict[str, object]:
    """One service of `pysvscan status --json` (documented in README and pysvscan(1))."""
    last = None
    if s.last_exit is not None:
        last = {"how": s.last_exit.how, "code": s.last_exit.code, "pid": s.last_exit.pid,
                "seconds_ago": s.last_exit.seconds_ago(now)}
    log = None
    if s.log is not None:
        log = {"logger": s.log.logger, "dirs": list(s.log.dirs), "journal": s.log.journal}
    return {"name": s.name, "dir": s.dir, "state": s.state, "error": s.error,
            "supervised": s.supervised, "pid": s.pid or None, "seconds": s.seconds,
            "since": s.since, "normally": "up" if s.normally_up else "down",
            "want": s.want, "paused": s.paused, "ready": s.ready,
            "ready_seconds": s.ready_seconds, "restarts": s.restarts, "exits": s.exits,
            "recent_exits": s.recent_exits, "last_exit": last,
            "watchdog_kills": s.watchdog_kills, "log": log, "as_wanted": s.as_wanted}
