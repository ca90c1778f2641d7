"""Process titles for supervise children forked (not exec'd) from svscan.

`ps -ef` shows /proc/PID/cmdline, which the kernel reads from the process's own argv
memory. Rewriting that memory through /proc/self/mem needs no extension module and no
import beyond the standard library the process already has, so each forked child pays
a few syscalls and nothing else (bench/proctitle_cost.py measures the alternatives).
"""

from __future__ import annotations

import os


def _areas() -> tuple[int, int, int, int]:
    """(arg_start, arg_end, env_start, env_end) from /proc/self/stat fields 48-51."""
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2:].split()
    arg_start, arg_end, env_start, env_end = (int(x) for x in fields[45:49])
    return arg_start, arg_end, env_start, env_end


def set_title(words: list[str]) -> bool:
    """Make `ps` show `words` as this process's command line; False if it cannot.

    The words are written NUL-separated like a real argv and the rest of the argv area
    is cleared. A title longer than that area overflows into the environment strings
    (space-separated, as setproctitle(3) does: the kernel then reads up to the first
    NUL); Python keeps its own copy of the environment, and children get os.environ.
    """
    title = b"\0".join(os.fsencode(w) for w in words)
    try:
        arg_start, arg_end, env_start, env_end = _areas()
        size = arg_end - arg_start
        if len(title) < size:
            data = title + b"\0" * (size - len(title))
        elif env_start == arg_end and len(title) < env_end - arg_start:
            data = title.replace(b"\0", b" ") + b"\0"
        else:
            data = title[:size - 1].replace(b"\0", b" ") + b"\0"
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(arg_start)
            mem.write(data)
        with open("/proc/self/comm", "wb", buffering=0) as comm:
            comm.write(os.fsencode(os.path.basename(words[0]))[:15])
    except (OSError, ValueError, IndexError):
        return False
    return True
