"""supervise as a NOTIFY_SOCKET server (systemd.md §2.2-2.6), with real clients and processes.

Unprivileged layer: no journald, no systemd. The clients are the real ones a service
would use: python-systemd's `systemd.daemon.notify` (Debian's python3-systemd, under
/usr/bin/python3), the `sdnotify` package (this venv) and Debian's `systemd-notify`
(package systemd). Every supervise gets PYSVSCAN_NOTIFY_DIR: a directory that does not
exist (so the socket falls back to its abstract name, as when /run/pysvscan/notify is
not writable) or a scratch one (path sockets); /run is never touched.

A service under `sd-notify` = `all` runs in a session of its own, out of reach of the
`procs` fixture's process-group kill: at teardown the `services` fixture kills each
supervise (or svscan) by process group first, so that nothing restarts a service, then,
by process group too, every service pid a test has seen and the one in each status file.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PY, Processes, status_pid, supervise_ready, wait_until, write_script

PY3 = "/usr/bin/python3"             # Debian's interpreter: python3-systemd lives there
VENV_PY = sys.executable              # has sdnotify
SYSTEMD_NOTIFY = "/usr/bin/systemd-notify"
PATH = "/usr/bin:/bin"
NO_CORE = "import resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
READY_LINE = re.compile(r"^(\S+): up \(pid (\d+)\) (\d+) seconds(.*)$")


def require_python_systemd() -> None:
    cp = subprocess.run([PY3, "-c", "import systemd.daemon"], capture_output=True)
    if cp.returncode != 0:
        pytest.fail(f"{PY3} cannot import systemd.daemon: install Debian's python3-systemd "
                    "(apt-get install python3-systemd)", pytrace=False)


def require_systemd_notify() -> None:
    if not os.access(SYSTEMD_NOTIFY, os.X_OK):
        pytest.fail(f"{SYSTEMD_NOTIFY} not found: install Debian's package systemd",
                    pytrace=False)


class Services:
    """Service directories under one root, each with its supervise; kills what they
    started, by process group, at teardown."""

    def __init__(self, procs: Processes, root: Path) -> None:
        self.procs, self.root = procs, root
        self.notify_dir = root / "no-such-dir"   # abstract names unless a test says otherwise
        self.dirs: list[Path] = []
        self.seen: set[int] = set()
        self.supervisors: list[subprocess.Popen[bytes]] = []

    def make(self, name: str, run: str, **files: str) -> Path:
        d = self.root / name
        d.mkdir(parents=True)
        write_script(d / "run", run)
        for file, text in files.items():
            (d / file.replace("_", "-")).write_text(text)
        self.dirs.append(d)
        return d

    def env(self) -> dict[str, str]:
        return {"PATH": PATH, "PYSVSCAN_NOTIFY_DIR": str(self.notify_dir)}

    def start(self, argv: list[str], stderr: Path, cwd: Path | None = None
              ) -> subprocess.Popen[bytes]:
        """supervise or svscan, in a session of its own (the `procs` fixture's)."""
        with open(stderr, "wb") as err:
            proc = self.procs.start(argv, cwd=cwd, env=self.env(), stderr=err.fileno())
        self.supervisors.append(proc)
        return proc

    def supervise(self, d: Path) -> subprocess.Popen[bytes]:
        proc = self.start([PY.bin("supervise"), d.name], self.stderr_path(d), cwd=d.parent)
        wait_until(lambda: supervise_ready(d), 10, message=f"supervise {d.name}")
        return proc

    def stderr_path(self, d: Path) -> Path:
        return self.root / f"{d.name}.stderr"

    def stderr(self, d: Path) -> str:
        return self.stderr_path(d).read_text()

    def pid(self, d: Path, other_than: tuple[int, ...] = (), timeout: float = 10.0) -> int:
        """The service's pid in supervise/status once it is not one of `other_than`."""
        def current() -> int:
            pid = status_pid(d)
            return pid if pid and pid not in other_than else 0
        pid = wait_until(current, timeout, message=f"a new pid for {d.name}")
        self.seen.add(pid)
        return pid

    def cleanup(self) -> None:
        """Supervisors first (a service killed under a live supervise would be started
        again, in a new session under `all`), then every service pid seen or last
        recorded, with its process group."""
        for proc in self.supervisors:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=10)
        for d in self.dirs:
            self.seen.add(status_pid(d))
        for pid in self.seen - {0}:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


@pytest.fixture
def services(procs: Processes, tmp_path: Path) -> Iterator[Services]:
    s = Services(procs, tmp_path)
    try:
        yield s
    finally:
        s.cleanup()


def svstat(d: Path) -> str:
    cp = PY.run("svstat", d.name, cwd=d.parent)
    assert cp.returncode == 0 and cp.stderr == b"", cp
    return cp.stdout.decode().rstrip("\n")


def notify_state(d: Path) -> dict[str, str]:
    try:
        text = (d / "supervise" / "notify-state").read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines())


def environ(d: Path) -> dict[bytes, bytes]:
    """What the run script saved of its own exec-time environment (file `environ`)."""
    data = wait_until(lambda: (d / "environ").exists() and (d / "environ").read_bytes(), 10,
                      message=f"{d.name}/environ")
    return dict(entry.split(b"=", 1) for entry in data.split(b"\0") if entry)


def abstract_name(d: Path) -> str:
    key = hashlib.sha256(os.fsencode(os.path.realpath(d))).hexdigest()[:16]
    return f"@pysvscan/notify/{key}"


def wait_ready(d: Path, timeout: float = 10.0) -> re.Match[str]:
    def ready() -> re.Match[str] | None:
        m = READY_LINE.match(svstat(d))
        return m if m and m[4].startswith(", ready ") else None
    return wait_until(ready, timeout, message=f"svstat {d.name} to say ready")


# A run script's first lines: record the signal state, descriptors and environment it
# was given. The signal lines are read by the shell itself: dash blocks every signal
# around its vfork(), so a child reading /proc/$$/status could see that instant.
PREAMBLE = """#!/bin/sh
while IFS= read -r line; do
    case $line in SigBlk:*|SigIgn:*) echo "$line";; esac
done < /proc/$$/status > signals
ls -l /proc/$$/fd/ > fds
cat /proc/$$/environ > environ
"""
DELAY = 1.0  # before a client reports ready

PYTHON_SYSTEMD_CLIENT = """import time
import systemd.daemon
systemd.daemon.notify("READY=1\\nSTATUS=python-systemd: serving")
time.sleep(1000)
"""
SDNOTIFY_CLIENT = """import time
import sdnotify
sdnotify.SystemdNotifier(debug=True).notify("READY=1\\nSTATUS=sdnotify: serving")
time.sleep(1000)
"""
# systemd-notify sends READY=1 then BARRIER=1 and waits (5 s in 252) for supervise to
# close the barrier's descriptor. As root it sends READY=1 as its parent (the service
# pid), as any other user as itself: `all` accepts both.
SYSTEMD_NOTIFY_RUN = PREAMBLE + f"""sleep {DELAY}
start=$(date +%s%N)
{SYSTEMD_NOTIFY} --ready --status="systemd-notify: serving"
rc=$?
end=$(date +%s%N)
echo "$rc $(( (end - start) / 1000000 ))" > notify-result
exec sleep 1000
"""

CLIENTS = {
    "python-systemd": ("main", PY3, PYTHON_SYSTEMD_CLIENT),
    "sdnotify": ("main", VENV_PY, SDNOTIFY_CLIENT),
    "systemd-notify": ("all", None, None),
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_client_reports_ready_after_a_delay(services: Services, client: str) -> None:
    """`, not ready` until the client's READY=1, then `, ready N seconds`; NOTIFY_SOCKET
    is the abstract fallback name; STATUS= lands in notify-state; status stays 18 bytes;
    ./run holds no socket and starts with a clean signal state."""
    policy, interpreter, code = CLIENTS[client]
    if client == "python-systemd":
        require_python_systemd()
    if client == "systemd-notify":
        require_systemd_notify()
        run = SYSTEMD_NOTIFY_RUN
    else:
        run = PREAMBLE + f"sleep {DELAY}\nexec {interpreter} ./client.py\n"
    d = services.make("svc", run, sd_notify=f"{policy}\n")
    if code:
        (d / "client.py").write_text(code)
    services.supervise(d)
    pid = services.pid(d)
    first = svstat(d)
    assert re.fullmatch(rf"svc: up \(pid {pid}\) \d+ seconds, not ready", first), first
    m = wait_ready(d)
    assert int(m[2]) == pid and int(m[3]) >= int(m[4].split()[2]), m[0]
    state = notify_state(d)
    assert state["pid"] == str(pid) and state["state"] == "ready", state
    assert state["status"] == f"{client}: serving", state
    assert (d / "supervise" / "status").stat().st_size == 18
    address = (d / "supervise" / "notify-socket").read_text()
    assert address == abstract_name(d) + "\n"
    env = environ(d)
    assert env[b"NOTIFY_SOCKET"] == address.strip().encode()
    assert b"WATCHDOG_USEC" not in env and b"WATCHDOG_PID" not in env
    assert "socket:" not in (d / "fds").read_text(), (d / "fds").read_text()
    assert (d / "signals").read_text() == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    if client == "systemd-notify":
        result = d / "notify-result"  # written by ./run once systemd-notify has returned
        wait_until(lambda: result.exists() and result.read_text().endswith("\n"), 10,
                   message="systemd-notify --ready to return")
        rc, ms = result.read_text().split()
        assert rc == "0" and int(ms) < 2000, f"systemd-notify --ready: exit {rc} after {ms} ms"
        assert "refused" not in services.stderr(d), services.stderr(d)


WATCHDOG_CLIENT = NO_CORE + """import os, signal, time
import sdnotify
n = sdnotify.SystemdNotifier(debug=True)
first = not os.path.exists("ran")
open("ran", "a").close()
if first:  # ignores SIGABRT: only the SIGKILL that follows ends it
    signal.signal(signal.SIGABRT, signal.SIG_IGN)
n.notify("READY=1")
for _ in range(3 if first else 10**6):
    time.sleep(0.2)
    n.notify("WATCHDOG=1")
time.sleep(1000)
"""


def test_watchdog_expiry_aborts_then_kills_and_restarts(services: Services) -> None:
    """WATCHDOG_USEC/WATCHDOG_PID given; pings stop -> SIGABRT, ignored -> SIGKILL one
    timeout later; supervise restarts the service as usual (new pid, ready again)."""
    d = services.make("wd", PREAMBLE + f"exec {VENV_PY} ./client.py\n", watchdog="1\n")
    (d / "client.py").write_text(WATCHDOG_CLIENT)
    services.supervise(d)
    first = services.pid(d)
    env = environ(d)
    assert env[b"WATCHDOG_USEC"] == b"1000000" and env[b"WATCHDOG_PID"] == str(first).encode()
    assert env[b"NOTIFY_SOCKET"] == abstract_name(d).encode()
    second = services.pid(d, other_than=(first,), timeout=15)
    err = services.stderr(d)
    assert (f"supervise: warning: watchdog timeout for wd (1 seconds), sending SIGABRT to "
            f"pid {first}\n") in err, err
    assert f"supervise: warning: wd still running, sending SIGKILL to pid {first}\n" in err
    wait_ready(d)
    state = notify_state(d)
    assert state["pid"] == str(second) and state["watchdog_kills"] == "1", state
    assert state["watchdog_usec"] == "1000000" and state["watchdog_last"].startswith("@4")
    assert (d / "supervise" / "status").stat().st_size == 18
    time.sleep(1.5)  # the second run keeps pinging: it stays
    assert status_pid(d) == second and "ready" in svstat(d)


TRIGGER_CLIENT = NO_CORE + """import os, time
import systemd.daemon
first = not os.path.exists("ran")
open("ran", "a").close()
systemd.daemon.notify("READY=1")
if first:
    systemd.daemon.notify("WATCHDOG=trigger")
time.sleep(1000)
"""


def test_watchdog_trigger_acts_at_once(services: Services) -> None:
    """WATCHDOG=trigger: SIGABRT now, long before the 30-second timeout."""
    require_python_systemd()
    d = services.make("trig", f"#!/bin/sh\nexec {PY3} ./client.py\n", watchdog="30\n")
    (d / "client.py").write_text(TRIGGER_CLIENT)
    services.supervise(d)
    first = services.pid(d)
    started = time.monotonic()
    second = services.pid(d, other_than=(first,), timeout=15)
    assert time.monotonic() - started < 10
    assert (f"supervise: warning: watchdog triggered by trig, sending SIGABRT to pid {first}\n"
            in services.stderr(d))
    wait_ready(d)
    assert notify_state(d)["watchdog_kills"] == "1" and status_pid(d) == second


CHILD_CLIENT = """import time
import systemd.daemon
systemd.daemon.notify("READY=1\\nSTATUS=from a child")
time.sleep(2)  # alive while supervise checks where it comes from
"""


@pytest.mark.parametrize("policy", ["main", "all"])
def test_credentials_policy(services: Services, policy: str) -> None:
    """A child process of the service (not the pid supervise forked): `main` refuses its
    READY=1 with a warning naming both pids, `all` accepts it."""
    require_python_systemd()
    d = services.make("cred", f"#!/bin/sh\n{PY3} ./child.py &\necho $! > child\n"
                              "exec sleep 1000\n", sd_notify=policy)
    (d / "child.py").write_text(CHILD_CLIENT)
    services.supervise(d)
    pid = services.pid(d)
    child = int(wait_until(lambda: (d / "child").exists() and (d / "child").read_text(), 10,
                           message="the child's pid"))
    services.seen.add(child)
    if policy == "all":
        wait_ready(d)
        assert notify_state(d)["status"] == "from a child"
        session = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3]
        assert session == str(pid), "under `all` the service leads its own session"
        return
    wait_until(lambda: notify_state(d).get("rejected") == "1", 10, message="a refusal")
    assert (f"supervise: warning: notification for cred from pid {child} refused: only pid "
            f"{pid} may send (sd-notify main)\n") in services.stderr(d)
    assert svstat(d).endswith(", not ready")
    assert notify_state(d)["status"] == ""


RAW_CLIENT = """import array, os, select, socket, time
address = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect("\\0" + address[1:] if address.startswith("@") else address)

def closed_by_supervise(message):
    # send a pipe's write end along; supervise closing it makes the read end hang up
    r, w = os.pipe()
    s.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))])
    os.close(w)
    p = select.poll()
    p.register(r, 0)
    return bool(p.poll(3000))

s.send(b"EXTEND_TIMEOUT_USEC=5000000")       # ready-timeout is 1 s
s.send(b"STATUS=a NUL\\0inside")              # dropped
s.send(b"STATUS=" + b"x" * 5000)              # dropped: over 4096 bytes
s.send(b"X_UNKNOWN=1\\nERRNO=42")
fdstore = closed_by_supervise(b"FDSTORE=1")
time.sleep(2)
s.send("READY=1\\nSTATUS=extended \\u2713".encode())
barrier = closed_by_supervise(b"BARRIER=1")
open("result", "w").write(f"{fdstore} {barrier}")
while not os.path.exists("go-on"):
    time.sleep(0.05)
s.send(b"RELOADING=1\\nMONOTONIC_USEC=1")
closed_by_supervise(b"BARRIER=1")
open("reloading", "w").close()
time.sleep(1000)
"""


def test_messages_fds_extend_and_drops(services: Services) -> None:
    """EXTEND_TIMEOUT_USEC keeps a slow service from its ready-timeout; a NUL or an
    oversized datagram is dropped and counted; unknown keys ignored; ERRNO kept;
    every received descriptor closed (FDSTORE=1, BARRIER=1); RELOADING=1 changes the
    state, not the time of readiness."""
    d = services.make("raw", f"#!/bin/sh\nexec {VENV_PY} ./client.py\n", sd_notify="",
                      ready_timeout="1")
    (d / "client.py").write_text(RAW_CLIENT)
    services.supervise(d)
    pid = services.pid(d)
    wait_ready(d)
    assert (d / "result").read_text() == "True True"
    state = notify_state(d)
    assert state["pid"] == str(pid) and status_pid(d) == pid, "not killed by ready-timeout"
    assert state["dropped"] == "2" and state["errno"] == "42", state
    assert state["status"] == "extended \u2713" and state["rejected"] == "0", state
    ready = state["ready"]
    (d / "go-on").touch()
    wait_until(lambda: (d / "reloading").exists(), 10, message="RELOADING=1 sent")
    state = notify_state(d)
    assert state["state"] == "reloading" and state["ready"] == ready, state
    assert ", ready " in svstat(d)  # still serving while it reloads
    assert services.stderr(d) == ""


def test_notification_fd_and_ready_timeout(services: Services) -> None:
    """s6 style: a newline on fd 7 makes the service ready (no NOTIFY_SOCKET then);
    with ready-timeout, a service that never writes it gets SIGTERM and a new run."""
    s6 = services.make("s6", PREAMBLE + f"sleep {DELAY}\necho >&7\nexec sleep 1000\n",
                       notification_fd="7\n")
    slow = services.make("slow", "#!/bin/sh\nexec sleep 1000\n", notification_fd="7",
                         ready_timeout="1.5")
    services.supervise(s6)
    services.supervise(slow)
    pid = services.pid(s6)
    first_slow = services.pid(slow)
    assert svstat(s6).endswith(", not ready")
    wait_ready(s6)
    assert "pipe:" in [line for line in (s6 / "fds").read_text().splitlines()
                       if " 7 -> " in line][0]
    assert b"NOTIFY_SOCKET" not in environ(s6)
    assert not (s6 / "supervise" / "notify-socket").exists()
    assert status_pid(s6) == pid
    services.pid(slow, other_than=(first_slow,), timeout=15)
    assert (f"supervise: warning: slow not ready after 1.5 seconds, sending SIGTERM to pid "
            f"{first_slow}\n") in services.stderr(slow)
    assert svstat(slow).endswith(", not ready")


@pytest.mark.parametrize("text, seconds", [
    (b"30", 30.0), (b"0.5", 0.5), (b"0", 0.0), (b"1.", None), (b".5", None), (b"", None),
    (b"-1", None), (b"1e3", None), (b"1.2.3", None), (b" 3", None), (b"\xd9\xa3", None),
    (b"2000000000", None),
])
def test_seconds_of(text: bytes, seconds: float | None) -> None:
    """`watchdog` and `ready-timeout`: plain decimal seconds (white space around the
    whole file is stripped before this), fractions allowed, 0 = off."""
    from pysvscan.notify_server import seconds_of
    assert seconds_of(text) == seconds


@pytest.mark.parametrize("text, fd", [(b"3", 3), (b"1023", 1023), (b"2", None),
                                      (b"1024", None), (b"x", None), (b"", None)])
def test_fd_of(text: bytes, fd: int | None) -> None:
    from pysvscan.notify_server import fd_of
    assert fd_of(text) == fd


def test_one_set_of_names() -> None:
    """The file names and the state file, spelled out in three modules so that svstat
    and the plain supervise never import the server."""
    from pysvscan import notify_server
    from pysvscan.commands import supervise, svstat
    assert svstat.NOTIFY_FILES == supervise.NOTIFY_FILES == ("sd-notify", "watchdog",
                                                             "notification-fd")
    assert svstat.NOTIFY_STATE == notify_server.NOTIFY_STATE == "supervise/notify-state"


PREPARE = """import sys
from pysvscan.commands import supervise
sv = supervise.prepare(sys.argv[1])
print(type(sv).__name__, "pysvscan.notify_server" in sys.modules)
"""


@pytest.mark.parametrize("files, expected, warning", [
    ({}, "Supervisor False", ""),
    ({"ready-timeout": "5"}, "Supervisor False", ""),  # alone it is never read
    ({"watchdog": "abc"}, "Supervisor True",
     "supervise: warning: ignoring X/watchdog: not a number of seconds\n"),
    ({"notification-fd": "2\n"}, "Supervisor True",
     "supervise: warning: ignoring X/notification-fd: not a descriptor number from 3 to 1023\n"),
    ({"sd-notify": "bogus", "watchdog": "2"}, "NotifySupervisor True",
     "supervise: warning: ignoring X/sd-notify: neither main nor all\n"),
    ({"sd-notify/": "", "ready-timeout": "x"}, "Supervisor True",
     "supervise: warning: unable to read X/sd-notify: is a directory\n"
     "supervise: warning: ignoring X/ready-timeout: not a number of seconds\n"),
    ({"watchdog": "0"}, "Supervisor True", ""),
], ids=["none", "ready-timeout-alone", "bad-watchdog", "bad-fd", "bad-policy", "unreadable",
        "watchdog-off"])
def test_files_read_at_start(tmp_path: Path, files: dict[str, str], expected: str,
                             warning: str) -> None:
    """Which Supervisor prepare() makes, whether the server module was even imported,
    and the warning for a malformed file (which then counts as absent)."""
    d = tmp_path / "X"
    d.mkdir()
    for name, text in files.items():
        if name.endswith("/"):
            (d / name).mkdir()
        else:
            (d / name).write_text(text)
    cp = subprocess.run([VENV_PY, "-c", PREPARE, "X"], cwd=tmp_path, capture_output=True,
                        env={"PATH": PATH, "PYSVSCAN_NOTIFY_DIR": str(tmp_path / "none")},
                        timeout=10)
    assert (cp.stdout.decode().strip(), cp.stderr.decode()) == (expected, warning)
    made = sorted(p.name for p in (d / "supervise").iterdir())
    if expected.startswith("Supervisor"):
        assert made == ["control", "lock", "ok", "status"], made


def test_opt_in_under_svscan_with_a_path_socket(services: Services, tmp_path: Path) -> None:
    """svscan forks an opted-in supervise next to a plain one: the plain one is
    untouched (environment, svstat, supervise/); the other gets a path socket, mode
    0666, held by its supervise only (not svscan, not ./run); SIGTERM to svscan stops
    both and removes the socket and the state files."""
    scan = tmp_path / "scan"
    services.root = scan
    services.notify_dir = tmp_path / "notify"
    services.notify_dir.mkdir()
    n = services.make("n", PREAMBLE + f"sleep {DELAY}\nexec {VENV_PY} ./client.py\n",
                      sd_notify="main")
    (n / "client.py").write_text(SDNOTIFY_CLIENT)
    plain = services.make("plain", PREAMBLE + "exec sleep 1000\n")
    svscan = services.start([PY.bin("svscan"), str(scan)], tmp_path / "svscan.stderr")
    for d in (n, plain):
        wait_until(lambda: supervise_ready(d), 10, message=f"supervise {d.name}")
    services.pid(n)
    plain_pid = services.pid(plain)
    wait_ready(n)
    key = hashlib.sha256(os.fsencode(os.path.realpath(n))).hexdigest()[:16]
    path = services.notify_dir / f"{key}.sock"
    assert (n / "supervise" / "notify-socket").read_text() == f"{path}\n"
    assert path.is_socket() and path.stat().st_mode & 0o777 == 0o666
    assert environ(n)[b"NOTIFY_SOCKET"] == os.fsencode(path)
    assert "socket:" not in (n / "fds").read_text()
    sockets = [os.readlink(f"/proc/{svscan.pid}/fd/{fd}")
               for fd in os.listdir(f"/proc/{svscan.pid}/fd")]
    assert not [s for s in sockets if s.startswith("socket:")], sockets
    assert re.fullmatch(rf"plain: up \(pid {plain_pid}\) \d+ seconds", svstat(plain))
    assert b"NOTIFY_SOCKET" not in environ(plain)
    assert sorted(p.name for p in (plain / "supervise").iterdir()) == \
        ["control", "lock", "ok", "status"]
    svscan.send_signal(signal.SIGTERM)
    assert svscan.wait(timeout=20) == 0
    assert not path.exists()
    assert not (n / "supervise" / "notify-state").exists()
    assert not (n / "supervise" / "notify-socket").exists()
    assert (tmp_path / "svscan.stderr").read_text() == ""
