"""Process titles: what `ps -ef` shows for supervise children forked (not exec'd) by svscan.

`ps -ef` shows /proc/PID/cmdline, which the kernel reads from the process's own argv
memory; `ps -e` shows /proc/PID/comm. Both are rewritten through /proc/self/mem and
/proc/self/comm: no extension module and no import beyond the standard library.

svscan *lends* a title to each child: it writes `supervise NAME` over its own argv,
forks, and writes its own title back. The child keeps the page holding the title and
runs no title code at all. Running the same code in each child instead costs about
300 kB of copied pages per child, as bench/proctitle_cost.py measures.
"""

from __future__ import annotations

import os


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
    """This process's argv area and comm, with their original contents kept for restore."""

    def __init__(self) -> None:
        self.arg_start, self.arg_end, env_start, env_end = _areas()
        # A title may overflow into the environment strings only if they follow argv.
        self.limit = env_end if env_start == self.arg_end else self.arg_end
        self.mem = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
        self.original = os.pread(self.mem, self.limit - self.arg_start, self.arg_start)
        with open("/proc/self/comm", "rb") as f:
            self.original_comm = f.read().rstrip(b"\n")
        self.written = 0

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
        if len(title) < self.limit - self.arg_start:
            return title.replace(b"\0", b" ") + b"\0"
        return title[:size - 1].replace(b"\0", b" ") + b"\0"

    def set(self, words: list[str]) -> bool:
        """Show `words` in ps from now on; False if the kernel refused."""
        try:
            self.show(self.image(words))
            self.show_comm(os.path.basename(words[0]))
        except OSError:
            return False
        return True

    def show(self, image: bytes) -> None:
        """Write an `image()` over the argv area (raises OSError if refused)."""
        os.pwrite(self.mem, image, self.arg_start)
        if len(image) > self.written:
            self.written = len(image)

    def restore(self) -> None:
        """Put back the original argv bytes that `show` overwrote."""
        try:
            os.pwrite(self.mem, self.original[:self.written], self.arg_start)
        except OSError:
            pass

    def show_comm(self, name: str) -> None:
        write_comm(name)

    def restore_comm(self) -> None:
        try:
            write_comm(os.fsdecode(self.original_comm))
        except OSError:
            pass


def write_comm(name: str) -> None:
    """/proc/self/comm: what `ps -e` and `top` show (15 bytes at most)."""
    fd = os.open("/proc/self/comm", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, os.fsencode(name)[:15])
    finally:
        os.close(fd)


def set_title(words: list[str]) -> bool:
    """Rename this process for good (a program renaming itself, not lending a title)."""
    try:
        title = Title()
    except (OSError, ValueError, IndexError):
        return False
    try:
        return title.set(words)
    finally:
        os.close(title.mem)
