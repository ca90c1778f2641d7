"""envdir DIR CHILD...: run CHILD with variables set and removed by the files in DIR."""

from __future__ import annotations

import os
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv

PROG = "envdir"


def read_file(name: bytes) -> bytes:
    """openreadclose(): the whole file, opened non-blocking as the C does, so a FIFO
    without a writer reads as empty instead of hanging. A name that vanished or is a
    dangling symlink reads as empty too (daemontools.md §21.3: the C reuses the previous
    file's bytes there, which is a bug)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def setting(name: bytes, data: bytes) -> bytes:
    """The pathexec_env() entry for one file: `NAME` alone (remove) for an empty file,
    else `NAME=` and its first line, trailing blanks cut (not `\\r`), NULs made `\\n`."""
    if not data:
        return name
    value = data.split(b"\n", 1)[0].rstrip(b" \t").replace(b"\0", b"\n")
    return name + b"=" + value


def main(argv: list[str]) -> int:
    """daemontools.md §16, step by step."""
    if len(argv) < 3:
        return errors.usage(PROG, "envdir dir child", errors.EXIT_TEMPORARY)
    dir, child = argv[1], argv[2:]
    try:
        origin = os.open(".", os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        return errors.fatal(PROG, "unable to switch to current directory: ", e)
    try:
        os.chdir(dir)
    except OSError as e:
        return errors.fatal(PROG, f"unable to switch to directory {dir}: ", e)
    try:
        names = os.listdir(b".")
    except OSError as e:
        return errors.fatal(PROG, f"unable to read directory {dir}: ", e)
    edits: list[bytes] = []
    for name in names:
        if name.startswith(b"."):
            continue
        try:
            data = read_file(name)
        except OSError as e:
            return errors.fatal(PROG, f"unable to read {dir}/{os.fsdecode(name)}: ", e)
        edits.append(setting(name, data))
    try:
        os.fchdir(origin)
    except OSError as e:
        return errors.fatal(PROG, "unable to switch to starting directory: ", e)
    os.close(origin)
    # PATH is still envdir's own, whatever DIR sets (§1.4)
    return execenv.exec_child(PROG, child, execenv.edited_environment(edits))


def run() -> NoReturn:
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
