"""One multilog log directory: set-up and crash recovery, rotation, archives, processor.

daemontools.md §11 (Log directory layout, Directory setup, Writing and rotation, Error
handling). Every operation works relative to the directory's descriptor, so multilog
never depends on its working directory; a runtime failure warns `…, pausing: ERR`,
sleeps 5 s and retries the same step, and input waits meanwhile: nothing is dropped.

`write()` is the C's per-chunk write rule (c_write), which decides where files end;
`write_through()` is the shortcut for data that cannot reach the rotation threshold.
"""

from __future__ import annotations

import os
import stat
import time

import _signal

from . import errors, execenv, lock, tai64

PROG = "multilog"
PAUSE = 5.0
DEFAULT_SIZE = 99999
DEFAULT_NUM = 10
MIN_SIZE, MAX_SIZE = 4096, 16777215
MIN_NUM = 2
NEAR_FULL = 2000  # files end at a line end once they hold size - 2000 bytes
C_BUFFER = 512    # the C's output buffer per log directory
ARCHIVE_LEN = 25  # '@' + 24 hex digits: what counts as an archive, and its sort key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, TypeVar
    T = TypeVar("T")


def pausing(text: str, step: Callable[[], T]) -> T:
    """Run `step` until it succeeds, warning `text, pausing: ERR` and sleeping 5 s
    after each failure, as every runtime step of multilog does."""
    while True:
        try:
            return step()
        except OSError as e:
            errors.warn(PROG, f"{text}, pausing: ", e)
            time.sleep(PAUSE)


def leading_number(text: str) -> int:
    """scan_ulong: the leading decimal digits, none giving 0, wrapping at 2^64."""
    digits = len(text) - len(text.lstrip("0123456789"))
    return int(text[:digits]) % (1 << 64) if digits else 0


class LogDir:
    """A directory action, with the settings in force where it appears in the script."""

    def __init__(self, name: str, size: int, num: int, processor: str | None) -> None:
        self.name = name
        self.size = size
        self.num = num
        self.processor = processor
        self.fd = -1         # the directory
        self.lock = -1
        self.current = -1
        self.bytes = 0       # size of `current`
        self.pending = bytearray()  # the C's output buffer, used near the threshold
        self.newlines = 0    # line ends written so far, counted for rotated()
        self.rotated: Callable[[], None] | None = None  # told once `current` is safe

    # -- start-up ---------------------------------------------------------------------

    def set_up(self, startdir: int) -> int | None:
        """Steps 1-4 of directory set-up; the exit code if one of them is fatal."""
        try:
            os.mkdir(self.name, 0o700, dir_fd=startdir)
        except OSError:
            pass
        try:
            self.fd = os.open(self.name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                              dir_fd=startdir)
        except OSError as e:
            return errors.fatal(PROG, f"unable to open directory {self.name}: ", e)
        try:
            self.lock = os.open("lock", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
                                | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
            lock.lock_exnb(self.lock)
        except OSError as e:
            return errors.fatal(PROG, f"unable to lock directory {self.name}: ", e)
        try:
            st = os.stat("current", dir_fd=self.fd)
        except FileNotFoundError:
            st = None
        except OSError as e:
            return errors.fatal(PROG, f"unable to stat {self.name}/current: ", e)
        if st is not None and st.st_mode & stat.S_IXUSR:
            return self.resume(st.st_size)
        return self.recover()

    def resume(self, size: int) -> int | None:
        """The last run stopped cleanly: append to its `current`."""
        try:
            self.current = self.open_current()
        except OSError as e:
            return errors.fatal(PROG, f"unable to append to {self.name}/current: ", e)
        try:
            os.fchmod(self.current, 0o644)
        except OSError as e:
            return errors.fatal(PROG, f"unable to set mode of {self.name}/current: ", e)
        self.bytes = size
        return None

    def recover(self) -> int | None:
        """After a crash: the processor state is lost, leftovers become archives."""
        for name in ("state", "newstate"):
            self.remove_quietly(name)
        try:
            processed = os.stat("processed", dir_fd=self.fd).st_mode & stat.S_IXUSR
        except FileNotFoundError:
            processed = 0
        except OSError as e:
            return errors.fatal(PROG, f"unable to stat {self.name}/processed: ", e)
        if processed:
            self.remove_quietly("previous")
            self.archive("processed", "s")
        else:
            self.remove_quietly("processed")
            self.archive("previous", "u")
        self.archive("current", "u")
        try:
            os.close(self.open_file("state", os.O_TRUNC))
        except OSError as e:
            return errors.fatal(PROG, f"unable to write to {self.name}/state: ", e)
        try:
            self.current = self.open_current()
        except OSError as e:
            return errors.fatal(PROG, f"unable to write to {self.name}/current: ", e)
        self.bytes = 0
        return None

    def remove_quietly(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass

    def open_file(self, name: str, flags: int) -> int:
        """open_append / open_trunc: created 0644 under multilog's umask 022; non-blocking
        as in C, so a FIFO left in the directory fails (ENXIO) instead of hanging."""
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | flags,
                       0o644, dir_fd=self.fd)

    def open_current(self) -> int:
        return self.open_file("current", os.O_APPEND)

    # -- writing ----------------------------------------------------------------------

    def room(self) -> int:
        """Bytes that can be written with write_through(): below the threshold where
        the C's chunk rule could cut a chunk or rotate."""
        return self.size - NEAR_FULL - self.bytes - 1

    def write_through(self, data: bytes) -> None:
        """Write data known to stay below the threshold, in as few calls as possible."""
        view = memoryview(data)
        done = 0
        while done < len(data):
            written = pausing(f"unable to write to {self.name}/current",
                              lambda: os.write(self.current, view[done:]))
            self.bytes += written
            if self.rotated is not None:
                self.newlines += data.count(b"\n", done, done + written)
            done += written

    def write(self, data: bytes, start: int, end: int) -> int:
        """c_write: write part of data[start:end], rotating as the C does; returns the
        number of bytes consumed."""
        if self.bytes >= self.size:
            self.rotate()
        length = end - start
        if self.bytes + length >= self.size:
            length = self.size - self.bytes
        if self.bytes + length >= self.size - NEAR_FULL:
            newline = data.rfind(b"\n", start, start + length)
            if newline >= 0:
                length = newline + 1 - start
        view = memoryview(data)[start:start + length]
        while True:  # a write of 0 bytes is retried like a failed one
            written = pausing(f"unable to write to {self.name}/current",
                              lambda: os.write(self.current, view))
            if written > 0:
                break
            time.sleep(PAUSE)
        self.bytes += written
        if self.rotated is not None:
            self.newlines += data.count(b"\n", start, start + written)
        if self.bytes >= self.size - NEAR_FULL and data[start + written - 1] == 0x0A:
            self.rotate()
        return written

    def write_all(self, data: bytes) -> None:
        """allwrite through c_write."""
        start = 0
        while start < len(data):
            start += self.write(data, start, len(data))

    # -- the C's 512-byte output buffer, for data near the threshold -------------------
    # Where a file ends depends on how the C cut its writes: lines go through a
    # 512-byte buffer that is flushed when full and before every read of stdin.
    # Near the threshold, multilog replays exactly those writes.

    def put(self, data: bytes) -> None:
        """substdio_put: what does not fit flushes the buffer; more than a buffer's
        worth is then written directly."""
        if len(data) > C_BUFFER - len(self.pending):
            self.flush()
            if len(data) > C_BUFFER:
                self.write_all(data)
                return
        self.pending += data

    def put_bytes(self, data: bytes) -> None:
        """The same bytes put one at a time (the rest of a long line)."""
        start = 0
        while start < len(data):
            if len(self.pending) == C_BUFFER:
                self.flush()
            take = min(C_BUFFER - len(self.pending), len(data) - start)
            self.pending += data[start:start + take]
            start += take

    def flush(self) -> None:
        if self.pending:
            data = bytes(self.pending)
            self.pending.clear()
            self.write_all(data)

    # -- rotation ---------------------------------------------------------------------

    def rotate(self) -> None:
        """fullcurrent: `current` becomes `previous`, then an archive (processed or not)."""
        name = self.name
        pausing(f"unable to write {name}/current to disk", lambda: os.fsync(self.current))
        os.close(self.current)
        pausing(f"unable to rename current to previous in directory {name}",
                lambda: os.rename("current", "previous", src_dir_fd=self.fd, dst_dir_fd=self.fd))
        if self.rotated is not None:  # what is in `previous` survives a crash from here
            self.rotated()
        self.current = pausing(f"unable to create {name}/current", self.open_current)
        self.bytes = 0
        pausing(f"unable to set mode of {name}/current", lambda: os.fchmod(self.current, 0o644))
        pausing(f"unable to set mode of {name}/previous",
                lambda: os.chmod("previous", 0o744, dir_fd=self.fd))
        if self.processor is None:
            self.archive("previous", "s")
            return
        self.run_processor()
        fd = pausing(f"unable to create {name}/processed",
                     lambda: self.open_file("processed", os.O_APPEND))
        pausing(f"unable to write {name}/processed to disk", lambda: os.fsync(fd))
        pausing(f"unable to set mode of {name}/processed", lambda: os.fchmod(fd, 0o744))
        os.close(fd)
        fd = pausing(f"unable to create {name}/newstate",
                     lambda: self.open_file("newstate", os.O_APPEND))
        pausing(f"unable to write {name}/newstate to disk", lambda: os.fsync(fd))
        os.close(fd)
        pausing(f"unable to remove {name}/previous",
                lambda: os.unlink("previous", dir_fd=self.fd))
        pausing(f"unable to rename newstate to state in directory {name}",
                lambda: os.rename("newstate", "state", src_dir_fd=self.fd, dst_dir_fd=self.fd))
        self.archive("processed", "s")

    def run_processor(self) -> None:
        """Run the processor until it exits 0, pausing after each failure (§11, §21.4)."""
        while True:
            pid = pausing(f"unable to fork for processor in {self.name}", os.fork)
            if pid == 0:
                self.processor_child()
            try:
                _, status = os.waitpid(pid, 0)
            except OSError as e:
                errors.warn(PROG, f"wait failed for processor in {self.name}, pausing: ", e)
                time.sleep(PAUSE)
            else:
                if os.WIFSIGNALED(status):
                    # the C prints whatever errno was left over; no test relies on it
                    errors.warn(PROG, f"processor crashed in {self.name}, pausing: ", 0)
                    time.sleep(PAUSE)
                elif os.WEXITSTATUS(status) == 0:
                    return
            errors.warn(PROG, f"processor failed in {self.name}, pausing")
            time.sleep(PAUSE)

    def processor_child(self) -> None:
        """In the fork: stdin previous, stdout processed, fd 4 state, fd 5 newstate,
        cwd the log directory, then /bin/sh -c PROCESSOR. Never returns."""
        try:
            for sig in (_signal.SIGTERM, _signal.SIGALRM):
                _signal.signal(sig, _signal.SIG_DFL)
            _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
            os.fchdir(self.fd)
            for target, name, flags in ((0, "previous", os.O_RDONLY),
                                        (1, "processed", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                        (4, "state", os.O_RDONLY),
                                        (5, "newstate", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                fd = os.open(name, flags, 0o644)
                if fd != target:
                    os.dup2(fd, target)
                    os.close(fd)
                else:
                    os.set_inheritable(fd, True)
            os.execve("/bin/sh", ["sh", "-c", self.processor or ""],
                      execenv.exec_environment())
        except OSError as e:
            errors.fatal(PROG, f"unable to run {self.processor}: ", e)
        finally:
            os._exit(errors.EXIT_TEMPORARY)

    def archive(self, name: str, code: str) -> None:
        """finish(): link `name` to @<now>.CODE unless a crash already did, unlink it,
        then delete the oldest archives until fewer than `num` remain."""
        while True:
            try:
                st = os.stat(name, dir_fd=self.fd)
                break
            except FileNotFoundError:
                return
            except OSError as e:
                errors.warn(PROG, f"unable to stat {self.name}/{name}, pausing: ", e)
                time.sleep(PAUSE)
        if st.st_nlink == 1:
            while True:
                target = tai64.external_now().decode() + "." + code
                try:
                    os.link(name, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)
                    break
                except OSError as e:
                    errors.warn(PROG, f"unable to link to {self.name}/{target}, pausing: ", e)
                    time.sleep(PAUSE)
        pausing(f"unable to remove {self.name}/{name}", lambda: os.unlink(name, dir_fd=self.fd))
        self.trim()

    def trim(self) -> None:
        while True:
            names = pausing(f"unable to read {self.name}", lambda: os.listdir(self.fd))
            archives = [n for n in names if n[:1] == "@" and len(n) >= ARCHIVE_LEN]
            if len(archives) < self.num:
                return
            oldest = min(n[:ARCHIVE_LEN] for n in archives)
            for n in archives:
                if n.startswith(oldest):
                    try:
                        os.unlink(n, dir_fd=self.fd)
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        errors.warn(PROG, f"unable to remove {self.name}/{n}, pausing: ", e)
                        time.sleep(PAUSE)
                    break

    # -- the end ----------------------------------------------------------------------

    def rotate_if_not_empty(self) -> None:
        """SIGALRM: an empty `current` is left alone."""
        if self.bytes > 0:
            self.rotate()

    def close_cleanly(self) -> None:
        """At EOF or SIGTERM: fsync, then mode 0744 marks a clean stop."""
        pausing(f"unable to write {self.name}/current to disk", lambda: os.fsync(self.current))
        pausing(f"unable to set mode of {self.name}/current",
                lambda: os.fchmod(self.current, 0o744))
