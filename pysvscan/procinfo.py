"""What /proc tells the `pysvscan` command about svscan and the processes it supervises.

The on-disk state in supervise/ says what supervise believes; /proc says what is
really running: which svscan serves a scan directory (to poke it after `add`, and for
`doctor` and `metrics`), whether a pid is alive, which pipe a process writes to.
Every reader returns None when the process is gone or not ours to look at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import notifier


@dataclass(frozen=True)
class Svscan:
    """An svscan process serving a scan directory.

    `python`: pysvscan's own, which rescans on SIGALRM; the C svscan of daemontools
    has no handler for it and would die of it. `journal`: whether the output of
    services without log/ goes to the journal (None: cannot tell)."""

    pid: int
    python: bool
    journal: bool | None

    def rescans_on_alarm(self) -> bool:
        """SIGALRM makes it rescan: pysvscan's svscan once it set its handlers up
        (before, as for daemontools' svscan at any time, SIGALRM would kill it)."""
        return self.python and catches(self.pid, 14)


def read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, pgrp, session, ...]."""
    text = read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    return text[text.rindex(")") + 2:].split()


def parent(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    fields = stat_fields(pid) if pid > 0 else None
    return bool(fields) and fields[0] not in ("Z", "X")


def comm(pid: int) -> str | None:
    text = read_text(f"/proc/{pid}/comm")
    return text.rstrip("\n") if text is not None else None


def link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def fd_target(pid: int, fd: int) -> str | None:
    """What descriptor `fd` of `pid` is (`pipe:[123]`, a path ...)."""
    return link(f"/proc/{pid}/fd/{fd}")


def environ(pid: int) -> dict[str, str]:
    """The environment the process started with ({} when unreadable). svscan removes
    systemd's variables from its own os.environ, but /proc keeps the original strings,
    which is what tells how it was started."""
    text = read_text(f"/proc/{pid}/environ") or ""
    return dict(entry.partition("=")[::2] for entry in text.split("\0") if "=" in entry)


def journal_mode(pid: int) -> bool | None:
    """svscan's journal mode, decided as svscan decides it (notifier.journal_mode):
    PYSVSCAN_JOURNAL=1/0, else whether its stderr is the JOURNAL_STREAM systemd gave."""
    env = environ(pid)
    if not env and read_text(f"/proc/{pid}/environ") is None:
        return None
    forced = env.get(notifier.JOURNAL_VARIABLE)
    if forced in ("0", "1"):
        return forced == "1"
    stream = env.get("JOURNAL_STREAM", "")
    dev, sep, ino = stream.partition(":")
    if not sep:
        return False
    try:
        st = os.stat(f"/proc/{pid}/fd/2")
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return None


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (SigCgt of /proc/PID/status)."""
    for line in (read_text(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def is_python(pid: int) -> bool:
    exe = link(f"/proc/{pid}/exe") or ""
    return os.path.basename(exe).startswith("python")


def serves(pid: int, scandir: str) -> bool:
    """svscan chdirs into its scan directory: its cwd names the directory it serves."""
    return comm(pid) == "svscan" and link(f"/proc/{pid}/cwd") == scandir


def find_svscan(scandir: str, hints: tuple[int, ...] = ()) -> Svscan | None:
    """The svscan serving `scandir`. `hints` are pids of running services: a service's
    parent is its supervise and that one's parent svscan, so two reads usually find
    it; otherwise every process is looked at."""
    real = os.path.realpath(scandir)
    found = 0
    for pid in hints[:3]:
        grandparent = parent(parent(pid) or 0) or 0
        if grandparent > 1 and serves(grandparent, real):
            found = grandparent
            break
    if not found:
        try:
            entries = os.listdir("/proc")
        except OSError:
            return None
        for entry in entries:
            if entry.isdigit() and serves(int(entry), real):
                found = int(entry)
                break
    if not found:
        return None
    return Svscan(found, is_python(found), journal_mode(found))


def systemd_unit(pid: int) -> str | None:
    """The systemd unit whose cgroup holds `pid` (e.g. `pysvscan.service`), if any."""
    return unit_of_cgroup(read_text(f"/proc/{pid}/cgroup") or "")


def unit_of_cgroup(text: str) -> str | None:
    """The last `.service` or `.scope` in the unified hierarchy's path (`0::/...`), or
    in the name=systemd one of a legacy layout."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers in ("", "name=systemd"):
            units = [p for p in path.split("/") if p.endswith((".service", ".scope"))]
            if units:
                return units[-1]
    return None


def boot_time() -> float:
    for line in (read_text("/proc/stat") or "").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def start_time(pid: int) -> float | None:
    """Unix time at which the process started."""
    fields = stat_fields(pid)
    if not fields:
        return None
    return boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of the process and of its reaped children."""
    fields = stat_fields(pid)
    if not fields:
        return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def resident_bytes(pid: int) -> int | None:
    text = read_text(f"/proc/{pid}/statm")
    if not text:
        return None
    return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE")
