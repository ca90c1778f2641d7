"""Process titles: what `ps` shows for supervise children forked (not exec'd) by svscan.

`ps -ef` shows /proc/PID/cmdline, which the kernel reads from the process's own argv
memory; `ps -e`, `pkill` and `killall` use /proc/PID/comm. A child rewrites both
through /proc/self/mem and /proc/self/comm, with an image that svscan computed before
forking: no extension module, and only a few system calls in the child.
(bench/proctitle_cost.py measures this against the alternatives.)
"""

from __future__ import annotations

import os
import struct

NAME_MAX = 255
ROOM_VARIABLE = "PYSVSCAN_TITLE_ROOM"  # see make_room()


def _areas() -> tuple[int, int, int, int]:
    """(arg_start, arg_end, env_start, env_end) from /proc/self/stat fields 48-51."""
    fd = os.open("/proc/self/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    fields = data[data.rindex(b")") + 2:].split()
    arg_start, arg_end, env_start, env_end = (int(x) for x in fields[45:49])
    return arg_start, arg_end, env_start, env_end


class Title:
    """This process's argv area; a forked child inherits the same addresses."""

    def __init__(self) -> None:
        self.arg_start, self.arg_end, env_start, env_end = _areas()
        # A title may overflow into the environment strings only if they follow argv.
        self.limit = env_end if env_start == self.arg_end else self.arg_end

    def room(self) -> int:
        """The longest title (in bytes, NUL included) that can be shown whole."""
        return self.limit - self.arg_start

    def image(self, words: list[str]) -> bytes:
        """The bytes to write at arg_start for `words`.

        Words are NUL-separated like a real argv and the rest of the argv area is
        cleared. A title longer than the argv area continues into the environment
        strings, space-separated, as setproctitle(3) does: the kernel then reads up to
        the first NUL. Python keeps its own copy of the environment (os.environ).
        """
        title = b"\0".join(os.fsencode(w) for w in words)
        size = self.arg_end - self.arg_start
        if len(title) < size:
            return title + b"\0" * (size - len(title))
        if len(title) < self.room():
            return title.replace(b"\0", b" ") + b"\0"
        return title[:size - 1].replace(b"\0", b" ") + b"\0"

    def show(self, image: bytes, comm: bytes) -> None:
        """Rewrite this process's command line with `image` and its comm with `comm`."""
        fd = os.open("/proc/self/mem", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, image, self.arg_start)
        finally:
            os.close(fd)
        fd = os.open("/proc/self/comm", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, comm[:15])
        finally:
            os.close(fd)


def set_title(words: list[str]) -> bool:
    """Rename this process: `ps` shows `words`, `ps -e` the first word's basename."""
    try:
        title = Title()
        title.show(title.image(words), os.fsencode(os.path.basename(words[0])))
    except (OSError, ValueError, IndexError):
        return False
    return True


def make_room(needed: int, argv: list[str]) -> None:
    """Re-exec this program once if its argv and environment strings cannot hold a
    title of `needed` bytes (started with a near-empty environment, `ps` would cut
    long service names): a padding variable after argv makes the room, and is then
    dropped from os.environ so that no child inherits it. The script itself is
    exec'd again, not the interpreter, so the process keeps its name (comm)."""
    if os.environ.pop(ROOM_VARIABLE, None) is not None:
        return
    try:
        if Title().room() >= needed or not os.access(argv[0], os.X_OK):
            return
        env = dict(os.environ)
        env[ROOM_VARIABLE] = "x" * needed
        os.execve(argv[0], argv, env)
    except (OSError, ValueError, IndexError):
        pass  # titles are cut, nothing else changes


def last_argument(mem: int) -> tuple[int, bytes]:
    """(address, bytes) of the last string in this process's argv memory, read through
    `mem`, a descriptor on /proc/self/mem: what /proc/PID/cmdline and `ps` show as the
    last word, and so readproctitle's display area. Rewriting it in place, without its
    terminating NUL, keeps every argument boundary where the kernel put it."""
    arg_start, arg_end, _, _ = _areas()
    area = os.pread(mem, arg_end - arg_start, arg_start)
    end = len(area) - 1 if area.endswith(b"\0") else len(area)
    start = area.rfind(b"\0", 0, end) + 1
    return arg_start + start, area[start:end]


def start_at_own_name(name: str) -> bool:
    """Make /proc/PID/cmdline (and `ps`) begin at this program's own name, as if it had
    been exec'd directly rather than through `#!/usr/bin/python3`: the argv area starts
    with the interpreter's path and then the script's, whose last component is `name`,
    so moving the area's start to that component hides the interpreter and keeps every
    argument and boundary in place. Uses prctl(PR_SET_MM_MAP), which needs
    CAP_CHECKPOINT_RESTORE or CAP_SYS_RESOURCE; False (nothing changed) otherwise."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/proc/self/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        fields = [int(x) for x in data[data.rindex(b")") + 2:].split()[22:49]]
        field = dict(zip(range(25, 52), fields))  # /proc/PID/stat field numbers
        arg_start, arg_end = field[48], field[49]
        mem = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            area = os.pread(mem, arg_end - arg_start, arg_start)
        finally:
            os.close(mem)
        own = b"/" + os.fsencode(name) + b"\0"
        first = area.find(b"\0") + 1  # the script's path follows the interpreter's
        second = area.find(b"\0", first) + 1
        if not first or not second or not area[first - 1:second].endswith(own):
            return False
        libc.sbrk.restype = ctypes.c_void_p
        mm_map = struct.pack(  # struct prctl_mm_map; no auxv, exe_fd -1: both unchanged
            "=11QQII", field[26], field[27], field[45], field[46], field[47], libc.sbrk(0),
            field[28], arg_start + second - len(own) + 1, arg_end, field[50], field[51],
            0, 0, 0xFFFFFFFF)
        buf = ctypes.create_string_buffer(mm_map, len(mm_map))
        return libc.prctl(_PR_SET_MM, _PR_SET_MM_MAP, buf, ctypes.c_ulong(len(mm_map)),
                          ctypes.c_ulong(0)) == 0
    except (ImportError, OSError, ValueError, IndexError, AttributeError, struct.error):
        return False


_PR_SET_MM, _PR_SET_MM_MAP = 35, 14
