"""`pysvscan logs`: a service's lines from its multilog directory (archives, then
`current`, labels in local time as tai64nlocal shows them) or from the journal.

Where they are is read from the service, as `pysvscan status` shows it: the first
directory of the multilog that log/run runs; the journal when that multilog has a J
action and no directory, or when the service has no log/ and svscan runs in journal
mode. In the journal every line of a service carries SERVICE=NAME (svscan's journal
mode, multilog's J, supervise's own messages about it), so that is the match.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import zlib
from typing import Iterator

from . import procinfo, services, watch
from .commands import tai64nlocal


class NoLogs(services.UserError):
    """Why a service's lines cannot be shown (one line for the user)."""


def find_source(scandir: str, name: str) -> tuple[str, str]:
    """("dir", DIRECTORY) or ("journal", SERVICE-NAME)."""
    path = services.resolve(scandir, name)
    if name.endswith("/log"):  # the logger's own complaints: its stderr
        return "journal", name
    target = services.log_target(path, None)
    if target.dirs:
        return "dir", target.dirs[0]
    if target.logger:
        if target.journal:
            return "journal", name
        raise NoLogs(f"{path}/log/run does not run multilog: its lines are wherever it "
                     "puts them")
    svscan = procinfo.find_svscan(scandir)
    if svscan is not None and svscan.journal is False:
        raise NoLogs(f"{name} has no log/ and svscan (pid {svscan.pid}) is not in journal "
                     "mode: its output goes to svscan's own standard error")
    return "journal", name


def journal_argv(service: str, lines: int, follow: bool) -> list[str]:
    journalctl = shutil.which("journalctl") or shutil.which(
        "journalctl", path="/usr/bin:/bin")
    if journalctl is None:
        raise NoLogs("journalctl not found (Debian package systemd)")
    argv = [journalctl, "--no-pager", "-n", str(lines), f"SERVICE={service}"]
    return argv + ["-f"] if follow else argv


def archives(logdir: str) -> list[str]:
    """The rotated files, oldest first: TAI64N names sort in time order."""
    try:
        names = os.listdir(logdir)
    except OSError as e:
        raise NoLogs(f"unable to read {logdir}: {e.strerror}") from None
    return sorted(n for n in names if n.startswith("@") and n.endswith((".s", ".u")))


def read_archive(path: str) -> bytes:
    """An archive's lines; gzip'ed by a `!gzip` processor or not; b'' if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return b""
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return b""
    return data


def last_lines(chunks: Iterator[bytes], count: int) -> list[bytes]:
    """The last `count` whole lines of the data, given newest chunk first."""
    found: list[bytes] = []
    for data in chunks:
        if len(found) >= count:
            break
        body = data[:-1] if data.endswith(b"\n") else data
        lines = [line + b"\n" for line in body.split(b"\n")] if data else []
        found[:0] = lines[-(count - len(found)):]
    return found[-count:] if count else []


def show(data: bytes) -> None:
    """Whole lines, labels converted to local time."""
    if data:
        sys.stdout.buffer.write(tai64nlocal.convert_lines(data))
        sys.stdout.buffer.flush()


def open_current(logdir: str) -> int | None:
    try:
        return os.open(os.path.join(logdir, "current"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise NoLogs(f"unable to read {logdir}/current: {e.strerror}") from None


def read_rest(fd: int) -> bytes:
    chunks = []
    while data := os.read(fd, 1 << 16):
        chunks.append(data)
    return b"".join(chunks)


def show_dir(logdir: str, lines: int, follow: bool) -> None:
    """The last `lines` lines, then (with `follow`) every new one, across rotations."""
    fd = open_current(logdir)  # first: what it holds is read through this descriptor
    current = read_rest(fd) if fd is not None else b""
    whole = current[:current.rfind(b"\n") + 1]
    partial = current[len(whole):]

    def newest_first() -> Iterator[bytes]:
        yield whole
        for name in reversed(archives(logdir)):
            yield read_archive(os.path.join(logdir, name))

    if lines:
        show(b"".join(last_lines(newest_first(), lines)))
    elif not os.path.isdir(logdir):
        raise NoLogs(f"no log directory {logdir}")
    if follow:
        follow_dir(logdir, fd, partial)
    elif fd is not None:
        os.close(fd)


def follow_dir(logdir: str, fd: int | None, partial: bytes) -> None:
    """Print lines as multilog appends them, across rotations: when `current` has been
    renamed to an archive, the rest of it is read through the old descriptor, then
    any archive made after it (several rotations while we slept), then the new
    `current`. An archive rewritten by a `!processor` is a new file that cannot be
    matched to the old one: then only the old descriptor and the new `current` are
    read."""
    with watch.Watcher() as watcher:
        if not watcher.add(logdir, watch.LOGDIR_EVENTS):
            raise NoLogs(f"no log directory {logdir}")
        while True:
            if fd is None:
                fd = open_current(logdir)
            if fd is not None:
                partial += read_rest(fd)
                try:
                    rotated = (os.stat(os.path.join(logdir, "current")).st_ino
                               != os.fstat(fd).st_ino)
                except FileNotFoundError:
                    rotated = False  # between rename and create: wait for the new one
                if rotated:
                    partial += read_rest(fd)  # what was written before the rename
                    old, fd = fd, open_current(logdir)
                    partial += archived_since(logdir, os.fstat(old).st_ino, fd)
                    os.close(old)
                end = partial.rfind(b"\n") + 1
                show(partial[:end])
                partial = partial[end:]
                if rotated:
                    continue
            watcher.wait(None)


def archived_since(logdir: str, old_ino: int, fd: int | None) -> bytes:
    """The archives made after the one holding inode `old_ino`, up to the file that
    `fd` (the new current) reads, should that one have been archived already."""
    new_ino = os.fstat(fd).st_ino if fd is not None else -1
    data = []
    after = False
    for name in archives(logdir):
        path = os.path.join(logdir, name)
        try:
            ino = os.stat(path).st_ino
        except OSError:
            continue
        if ino == new_ino:
            break
        if after:
            data.append(read_archive(path))
        after = after or ino == old_ino
    return b"".join(data)
