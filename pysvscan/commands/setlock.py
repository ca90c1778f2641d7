"""setlock [-nNxX] FILE CHILD: run CHILD holding an exclusive flock on FILE; CHILD
inherits the lock descriptor, so the lock lasts until every copy of it is closed."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv, lock, sgetopt

PROG = "setlock"
USAGE = "setlock [ -nNxX ] file program [ arg ... ]"


def main(argv: list[str]) -> int:
    """daemontools.md §18: options (later -n/-N and -x/-X win), open, lock, run."""
    try:
        parsed = sgetopt.parse(argv, "nNxX")
    except sgetopt.OptionError:
        return errors.usage(PROG, USAGE)
    no_delay = quiet = False
    for letter, _ in parsed.options:
        if letter in "nN":
            no_delay = letter == "n"
        else:
            quiet = letter == "x"
    if len(parsed.args) < 2:
        return errors.usage(PROG, USAGE)
    file, child = parsed.args[0], parsed.args[1:]

    try:  # O_APPEND|O_CREAT, 0600: never truncated; the child's, so not close-on-exec
        fd = lock.open_lockfile(file, inheritable=True)
    except OSError as e:
        return 0 if quiet else errors.fatal(PROG, f"unable to open {file}: ", e)
    try:
        if no_delay:
            lock.lock_exnb(fd)
        else:
            lock.lock_ex(fd)
    except OSError as e:
        return 0 if quiet else errors.fatal(PROG, f"unable to lock {file}: ", e)
    return execenv.exec_child(PROG, child)  # reported even with -x, as the C does


def run() -> NoReturn:
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
