"""softlimit [-acdflmoprst N] CHILD: lower (or, with `=`, raise to the hard limit) soft
resource limits, then run CHILD. Hard limits are never touched."""

from __future__ import annotations

import errno
import resource

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import NoReturn

from .. import errors, execenv, sgetopt

PROG = "softlimit"
USAGE = ("softlimit [-a allbytes] [-c corebytes] [-d databytes] [-f filebytes] "
         "[-l lockbytes] [-m membytes] [-o openfiles] [-p processes] "
         "[-r residentbytes] [-s stackbytes] [-t cpusecs] child")

R = resource
# daemontools.md §17, Linux: the resources each option sets, in the C's order.
LIMITS: dict[str, tuple[int, ...]] = {
    "a": (R.RLIMIT_AS,),
    "c": (R.RLIMIT_CORE,),
    "d": (R.RLIMIT_DATA,),
    "f": (R.RLIMIT_FSIZE,),
    "l": (R.RLIMIT_MEMLOCK,),
    "m": (R.RLIMIT_DATA, R.RLIMIT_STACK, R.RLIMIT_MEMLOCK, R.RLIMIT_AS),
    "o": (R.RLIMIT_NOFILE,),
    "p": (R.RLIMIT_NPROC,),
    "r": (R.RLIMIT_RSS,),
    "s": (R.RLIMIT_STACK,),
    "t": (R.RLIMIT_CPU,),
}
SPEC = "".join(f"{letter}:" for letter in LIMITS)  # every option takes a number
RLIM_BITS = 1 << 64  # rlim_t: unsigned 64 bits; CPython hands values >= 2**63 over as negative


def scan_limit(arg: str) -> int | None:
    """scan_ulong's whole-argument rule: ASCII digits only, `` is 0, overflow wraps;
    None for anything else (`-5`, `0x10`, ` 5`, a non-ASCII digit)."""
    if arg and not (arg.isascii() and arg.isdigit()):
        return None
    value = 0
    for start in range(0, len(arg), 18):  # in pieces: int() refuses over 4300 digits
        piece = arg[start:start + 18]
        value = (value * 10 ** len(piece) + int(piece)) % RLIM_BITS
    return value


def set_soft(res: int, arg: str) -> int:
    """doit(): soft := hard for `=`, else min(N, hard); 0, or the exit code to end with."""
    try:
        soft, hard = resource.getrlimit(res)
    except OSError as e:
        return errors.fatal(PROG, "getrlimit failed: ", e)
    if arg == "=":
        soft = hard
    else:
        wanted = scan_limit(arg)
        if wanted is None:
            return errors.usage(PROG, USAGE)
        soft = min(wanted, hard % RLIM_BITS)
        if soft >= RLIM_BITS >> 1:
            soft -= RLIM_BITS
    try:
        resource.setrlimit(res, (soft, hard))
    except OSError as e:
        return errors.fatal(PROG, "setrlimit failed: ", e)
    except ValueError as e:  # CPython reports EINVAL and EPERM this way, errno dropped
        err = errno.EINVAL if "exceeds" in str(e) else errno.EPERM
        return errors.fatal(PROG, "setrlimit failed: ", err)
    return 0


def main(argv: list[str]) -> int:
    """daemontools.md §17. Each limit is set as its option is read, so an earlier bad
    number wins over a later bad option (`-m x -z`: usage line only)."""
    options = sgetopt.Options(argv, SPEC)
    try:
        for letter, arg in options:
            for res in LIMITS[letter]:
                code = set_soft(res, arg)
                if code:
                    return code
    except sgetopt.OptionError:
        return errors.usage(PROG, USAGE)
    if not options.args:
        return errors.usage(PROG, USAGE)
    return execenv.exec_child(PROG, options.args)


def run() -> NoReturn:
    execenv.undo_python_changes()
    errors.run_main(PROG, main)
