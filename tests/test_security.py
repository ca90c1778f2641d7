"""Access control (issue 8, requirement 6): who may control a service, who may notify it,
what pysvscan leaves writable, and how /run/pysvscan/notify is made.

* supervise/ is 0700 and its FIFOs 0600 whatever the umask, exactly as the C makes
  them, so `nobody` cannot svc, svok or svstat a root service: the C's words and exit
  codes, with pysvscan's clients and the C's alike (run through our setuidgid).
* The notify socket is the one thing meant to be reachable by any uid (systemd.md §2.4:
  services drop privileges), so the policy does the filtering: a READY=1 from a process
  the policy does not cover is counted, logged once, and changes nothing.
* After a run under umask 0 with every optional file in use (notify socket and state,
  history, multilog's archives, state and `=` file), nothing is group- or
  world-writable except that socket (0666, the documented exception).
* /run/pysvscan and /run/pysvscan/notify made safely: in a private mount namespace
  with an empty /run (tests/journald_ns.sh --no-journald), a symbolic link or a file
  put there first is neither followed nor replaced; svscanboot and supervise warn and
  supervise falls back to the abstract socket name. Needs root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import (C, PY, Processes, Tree, make_service, require_c_reference,
                      start_supervise, status_pid, supervise_ready, wait_until, write_script)
from test_bad_input import open_root  # noqa: F401  (the fixture: a dir nobody reaches)
from test_supervise_notify import (PATH, Services, abstract_name, notify_state,  # noqa: F401
                                   services, svstat)

SLEEP_RUN = "#!/bin/sh\nexec sleep 1000\n"
JOURNALD_NS = Path(__file__).resolve().parent / "journald_ns.sh"
NOBODY = 65534


def tree_ids(tree: Tree) -> str:
    return tree.name


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"{why} needs root (euid {os.geteuid()})", pytrace=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# ---------------------------------------------------------------------------------------
# supervise/ and its FIFOs

@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
@pytest.mark.parametrize("tree", [PY, C], ids=tree_ids)
def test_supervise_directory_and_fifo_modes(tree: Tree, umask: int, tmp_path: Path,
                                            procs: Processes) -> None:
    """Modes fixed by supervise itself, not by the umask: only status (0644 minus the
    umask, as in C) follows it, and it is never writable by others."""
    if tree is C:
        require_c_reference()
    sv = make_service(tmp_path, "sv", SLEEP_RUN)
    start_supervise(procs, tree, sv, umask=umask)
    wait_until(lambda: supervise_ready(sv) and status_pid(sv), message="supervise and run")
    sup = sv / "supervise"
    found = {p.name: (stat.S_IFMT(p.lstat().st_mode), mode(p)) for p in sup.iterdir()}
    assert mode(sup) == 0o700 and sup.is_dir()
    assert found == {"lock": (stat.S_IFREG, 0o600), "control": (stat.S_IFIFO, 0o600),
                     "ok": (stat.S_IFIFO, 0o600), "status": (stat.S_IFREG, 0o644 & ~umask)}


@pytest.mark.parametrize("client", [PY, C], ids=tree_ids)
@pytest.mark.parametrize("supervisor", [PY, C], ids=tree_ids)
def test_nobody_cannot_control_a_root_service(supervisor: Tree, client: Tree,
                                              open_root: Path, procs: Processes) -> None:
    """`setuidgid nobody svc -d sv` on a root service (supervised under umask 0, so
    the modes are supervise's own): the reference's warning and exit 0, and the service
    stays up with want up; svok and svstat say `access denied` in their own words."""
    require_c_reference()
    sv = make_service(open_root, "sv", SLEEP_RUN)
    start_supervise(procs, supervisor, sv, umask=0)
    pid = wait_until(lambda: supervise_ready(sv) and status_pid(sv), message="supervise")
    before = (sv / "supervise" / "status").read_bytes()

    def as_nobody(program: str, *args: str) -> tuple[int, bytes, bytes]:
        cp = subprocess.run([PY.bin("setuidgid"), "nobody", client.bin(program), *args],
                            cwd=open_root, capture_output=True, timeout=10)
        assert b"Traceback" not in cp.stdout + cp.stderr, cp
        return cp.returncode, cp.stdout, cp.stderr

    assert as_nobody("svc", "-d", "sv") == (
        0, b"", b"svc: warning: unable to control sv: access denied\n")
    assert as_nobody("svc", "-dx", "sv", "sv") == (
        0, b"", b"svc: warning: unable to control sv: access denied\n" * 2)
    assert as_nobody("svok", "sv") == (
        111, b"", b"svok: fatal: unable to open sv/supervise/ok: access denied\n")
    assert as_nobody("svstat", "sv") == (
        0, b"sv: unable to open supervise/ok: access denied\n", b"")
    # Straight at the FIFO, without svc: the kernel refuses it as well.
    cp = subprocess.run([PY.bin("setuidgid"), "nobody", "/bin/sh", "-c",
                         "echo d > sv/supervise/control"], cwd=open_root,
                        capture_output=True, timeout=10)
    assert cp.returncode != 0
    assert (sv / "supervise" / "status").read_bytes() == before
    assert status_pid(sv) == pid and before[17] == ord("u")


# ---------------------------------------------------------------------------------------
# The notify socket: reachable by anyone, obeyed only from the service

SENDER = """import socket, sys
address = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[2])):
    s.sendto(b"READY=1\\nSTATUS=forged", "\\0" + address[1:] if address[0] == "@" else address)
"""


@pytest.mark.parametrize("policy", ["main", "all"])
def test_foreign_ready_is_ignored_and_logged_once(services: Services, open_root: Path,
                                                  policy: str) -> None:
    """A path socket (0666, reachable by every uid): READY=1 from the test process
    (root) and from a process running as nobody, five each, are all counted as
    rejected; one warning names the first sender and the service's pid; the service
    stays `not ready` and its STATUS untouched."""
    services.notify_dir = open_root / "notify"  # where nobody reaches the socket
    services.notify_dir.mkdir(mode=0o755)
    d = services.make("svc", SLEEP_RUN, sd_notify=policy)
    services.supervise(d)
    pid = services.pid(d)
    address = wait_until(lambda: (d / "supervise" / "notify-socket").exists()
                         and (d / "supervise" / "notify-socket").read_text().strip(),
                         message="notify-socket")
    assert address.startswith(str(services.notify_dir))
    assert mode(Path(address)) == 0o666  # the documented exception (systemd.md §2.4)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for _ in range(5):
            s.sendto(b"READY=1\nSTATUS=forged", address)
    cp = subprocess.run([PY.bin("setuidgid"), "nobody", "/usr/bin/python3", "-c", SENDER,
                         address, "5"], capture_output=True, timeout=10)
    assert cp.returncode == 0, cp
    wait_until(lambda: notify_state(d).get("rejected") == "10", message="10 rejections")
    state = notify_state(d)
    assert (state["state"], state["ready"], state["status"]) == ("starting", "", "")
    assert svstat(d).endswith(", not ready")
    why = (f"only pid {pid} may send (sd-notify main)" if policy == "main"
           else f"not pid {pid}, its session or its descendants (sd-notify all)")
    assert services.stderr(d) == (f"supervise: warning: notification for svc from pid "
                                  f"{os.getpid()} refused: {why}\n")
    assert status_pid(d) == pid


# ---------------------------------------------------------------------------------------
# Nothing group- or world-writable

MULTILOG_RUN = (f"#!/bin/sh\nexec {PY.bin('multilog')} t s4096 n3 '!cat' =st ./main\n")
CHATTY_RUN = """#!/bin/sh
if [ ! -e {mark} ]; then
    : > {mark}
    i=0
    while [ $i -lt 200 ]; do echo "line $i of a chatty service"; i=$((i+1)); done
fi
exec sleep 1000
"""


def writable_by_others(root: Path, ours: set[Path]) -> list[str]:
    """Every path under root (root included) not in `ours` with a g+w or o+w bit."""
    found = []
    for path in [root, *root.rglob("*")]:
        if path in ours:
            continue
        st = path.lstat()
        if st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode):
            found.append(f"{path.relative_to(root.parent)} {stat.filemode(st.st_mode)}")
    return found


def test_nothing_created_is_writable_by_others(services: Services, tmp_path: Path) -> None:
    """svscan under umask 0 runs a service with a notify socket and a logger that
    rotates through a processor into archives; the service is killed once (history).
    Walked while running and again after svscan's SIGTERM shutdown."""
    scan = tmp_path / "scan"
    services.root = scan
    services.notify_dir = tmp_path / "notify"
    services.notify_dir.mkdir(mode=0o755)
    d = services.make("a", CHATTY_RUN.format(mark=tmp_path / "printed"), sd_notify="main")
    (d / "log").mkdir()
    write_script(d / "log" / "run", MULTILOG_RUN)
    ours = {scan, d, d / "run", d / "sd-notify", d / "log", d / "log" / "run"}
    svscan = services.start(["/bin/sh", "-c", 'umask 0 && exec "$@"', "sh",
                             PY.bin("svscan"), str(scan)], tmp_path / "svscan.stderr")
    first = services.pid(d)
    main = d / "log" / "main"
    wait_until(lambda: (main / "current").exists()
               and b"line 199 " in (main / "current").read_bytes(), message="every line")
    assert len(list(main.glob("@*.s"))) == 2
    socket_name = Path((d / "supervise" / "notify-socket").read_text().strip()).name
    assert (services.notify_dir / socket_name).is_socket()
    assert PY.run("svc", "-k", str(d)).returncode == 0
    services.pid(d, other_than=(first,))
    wait_until((d / "supervise" / "history").exists, message="supervise/history")
    assert {"history", "notify-state", "notify-socket", "status"} <= \
        {p.name for p in (d / "supervise").iterdir()}
    assert {"lock", "state", "current"} <= {p.name for p in main.iterdir()}
    assert (d / "log" / "st").is_file()
    for when in ("running", "after shutdown"):
        assert writable_by_others(scan, ours) == [], when
        sockets = list(services.notify_dir.iterdir())
        assert all(s.is_socket() and mode(s) == 0o666 for s in sockets), (when, sockets)
        if when == "running":
            assert len(sockets) == 1
            svscan.send_signal(15)
            assert svscan.wait(timeout=30) == 0
    assert mode(main / "current") == 0o744 and mode(main / "lock") == 0o600
    assert mode(d / "log" / "st") == 0o600 and mode(main) == 0o700
    assert not list(services.notify_dir.iterdir())


# ---------------------------------------------------------------------------------------
# /run/pysvscan/notify in a private /run

def in_private_run(setup: str, *argv: str) -> list[str]:
    """argv run in a private mount namespace with an empty tmpfs /run, after the shell
    commands `setup`; every step execs, so the process is argv's program."""
    require_root("a private /run (mount namespace, tmpfs)")
    for tool in ("unshare", "mount"):
        if shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin") is None:
            pytest.fail(f"{tool} is missing: install Debian's util-linux and mount",
                        pytrace=False)
    return [str(JOURNALD_NS), "--no-journald", "--", "/bin/sh", "-c",
            f'set -e\n{setup}\nexec /usr/bin/env -u PWD "$@"', "sh", *argv]


def path_socket(d: Path) -> str:
    key = hashlib.sha256(os.fsencode(os.path.realpath(d))).hexdigest()[:16]
    return f"/run/pysvscan/notify/{key}.sock"


# (id, shell set-up in the namespace given $T, the level that is refused and how)
OBSTACLES = [
    ("run-pysvscan-symlink", 'ln -s "$T" /run/pysvscan',
     "/run/pysvscan is a symbolic link"),
    ("run-pysvscan-file", 'echo keep > /run/pysvscan',
     "/run/pysvscan is not a directory"),
    ("notify-symlink", 'mkdir -m 0755 /run/pysvscan && ln -s "$T" /run/pysvscan/notify',
     "/run/pysvscan/notify is a symbolic link"),
    ("notify-file", 'mkdir -m 0755 /run/pysvscan && echo keep > /run/pysvscan/notify',
     "/run/pysvscan/notify is not a directory"),
]


def obstacle_left_alone(seen: Path, target: Path, case: str) -> None:
    """The namespace's /run (through /proc/PID/root) still has the obstacle, untouched,
    and nothing was made in the link's target."""
    assert list(target.iterdir()) == [], f"{case}: made through the link"
    level = seen / "pysvscan" if case.startswith("run-") else seen / "pysvscan" / "notify"
    if case.endswith("symlink"):
        assert os.readlink(level) == str(target)
    else:
        assert level.is_file() and level.read_text() == "keep\n"


@pytest.mark.parametrize("case", OBSTACLES, ids=[c[0] for c in OBSTACLES])
def test_svscanboot_does_not_follow_or_clobber(case: tuple[str, str, str], tmp_path: Path,
                                               procs: Processes) -> None:
    """svscanboot warns on its own stderr (before it sends that to /dev/null) and makes
    nothing; the supervise of an opted-in service warns too (into readproctitle's
    title, where svscan's children write) and binds the abstract name instead."""
    name, setup, why = case
    target = tmp_path / "elsewhere"
    target.mkdir()
    root = tmp_path / "service"
    ready = make_service(root, "ready", SLEEP_RUN)
    (ready / "sd-notify").write_text("main\n")
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        boot = procs.start(in_private_run(setup, PY.bin("svscanboot"), str(root)),
                           env={"PATH": PATH, "T": str(target)}, stderr=f.fileno())
    socket_file = ready / "supervise" / "notify-socket"
    wait_until(socket_file.exists, message="supervise's notify-socket file")
    assert socket_file.read_text() == abstract_name(ready) + "\n"
    wait_until(lambda: status_pid(ready), message="the service")
    obstacle_left_alone(Path(f"/proc/{boot.pid}/root/run"), target, name)
    warning = f"supervise: warning: unable to bind notify socket for ready in " \
              f"/run/pysvscan/notify: {why}\n"

    def title() -> bytes:
        for child in Path(f"/proc/{boot.pid}/task/{boot.pid}/children").read_text().split():
            words = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if any(w.endswith(b"readproctitle") for w in words[:2]):
                return words[-2] if words[-1] == b"" else words[-1]
        return b""
    wait_until(lambda: warning.encode() in title(), message="supervise's warning")
    assert err.read_text() == f"svscanboot: warning: unable to make /run/pysvscan/notify: {why}\n"


SUPERVISE_OBSTACLES = OBSTACLES + [
    ("notify-writable-by-others", "mkdir -m 0755 /run/pysvscan && "
     "mkdir -m 0777 /run/pysvscan/notify", "/run/pysvscan/notify is writable by others"),
    ("notify-owned-by-nobody", "mkdir -m 0755 /run/pysvscan && mkdir -m 0755 "
     f"/run/pysvscan/notify && chown {NOBODY} /run/pysvscan/notify",
     f"/run/pysvscan/notify belongs to uid {NOBODY}"),
    ("socket-name-is-a-file", "mkdir -p -m 0755 /run/pysvscan/notify && "
     'echo keep > "$SOCK"', "$SOCK exists and is not a socket"),
    ("socket-name-is-a-symlink", "mkdir -p -m 0755 /run/pysvscan/notify && "
     'ln -s "$T/x" "$SOCK"', "$SOCK exists and is not a socket"),
]


@pytest.mark.parametrize("case", SUPERVISE_OBSTACLES, ids=[c[0] for c in SUPERVISE_OBSTACLES])
def test_supervise_falls_back_to_an_abstract_name(case: tuple[str, str, str], tmp_path: Path,
                                                  procs: Processes) -> None:
    """supervise alone (no svscanboot before it): one warning, the abstract name, the
    service supervised as usual; nothing made, moved or removed at /run."""
    name, setup, why = case
    target = tmp_path / "elsewhere"
    target.mkdir()
    d = make_service(tmp_path, "sv", SLEEP_RUN)
    (d / "sd-notify").write_text("main\n")
    sock = path_socket(d)
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        proc = procs.start(in_private_run(setup, PY.bin("supervise"), "sv"), cwd=tmp_path,
                           env={"PATH": PATH, "T": str(target), "SOCK": sock},
                           stderr=f.fileno())
    wait_until(lambda: supervise_ready(d) and status_pid(d), message="supervise")
    assert (d / "supervise" / "notify-socket").read_text() == abstract_name(d) + "\n"
    seen = Path(f"/proc/{proc.pid}/root/run")
    if name.startswith("socket-name"):
        assert list(target.iterdir()) == []
        kept = seen / sock.removeprefix("/run/")
        if name.endswith("file"):
            assert kept.read_text() == "keep\n"
        else:
            assert os.readlink(kept) == f"{target}/x"
    elif name.startswith("notify-") and not name.endswith(("symlink", "file")):
        assert list((seen / "pysvscan" / "notify").iterdir()) == []
    else:
        obstacle_left_alone(seen, target, name)
    assert err.read_text() == (f"supervise: warning: unable to bind notify socket for sv in "
                               f"/run/pysvscan/notify: {why.replace('$SOCK', sock)}\n")


def test_supervise_binds_in_a_safe_directory(tmp_path: Path, procs: Processes) -> None:
    """The control case: /run/pysvscan/notify as tmpfiles.d makes it (root, 0755): the
    path socket, mode 0666, and a stale socket of an earlier supervise replaced."""
    d = make_service(tmp_path, "sv", SLEEP_RUN)
    (d / "sd-notify").write_text("main\n")
    sock = path_socket(d)
    setup = ('mkdir -p -m 0755 /run/pysvscan/notify && /usr/bin/python3 -c '
             '"import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)'
             '.bind(sys.argv[1])" "$SOCK"')
    err = tmp_path / "stderr"
    with open(err, "wb") as f:
        proc = procs.start(in_private_run(setup, PY.bin("supervise"), "sv"), cwd=tmp_path,
                           env={"PATH": PATH, "SOCK": sock}, stderr=f.fileno())
    wait_until(lambda: supervise_ready(d) and status_pid(d), message="supervise")
    assert (d / "supervise" / "notify-socket").read_text() == sock + "\n"
    bound = Path(f"/proc/{proc.pid}/root") / sock.removeprefix("/")
    assert bound.is_socket() and mode(bound) == 0o666
    assert err.read_text() == ""
