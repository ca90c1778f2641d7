"""Diagnostics in daemontools' words: the errno table, `prog: fatal:` lines, exit codes.

The C programs never use strerror(); they print their own short texts (Appendix A
of daemontools.md), and operators' scripts grep for them. Each line reaches fd 2
in one write(), as the C 256-byte buffer does.
"""

from __future__ import annotations

import errno as E
import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time the classic programs cannot spare
    from typing import Callable, NoReturn

EXIT_PERMANENT = 100
EXIT_TEMPORARY = 111

# First matching row wins in the C table; on Linux EWOULDBLOCK == EAGAIN.
_TEXTS: dict[int, str] = {
    0: "no error",
    E.EINTR: "interrupted system call",
    E.ENOMEM: "out of memory",
    E.ENOENT: "file does not exist",
    E.ETXTBSY: "text busy",
    E.EIO: "input/output error",
    E.EEXIST: "file already exists",
    E.ETIMEDOUT: "timed out",
    E.EINPROGRESS: "operation in progress",
    E.EAGAIN: "temporary failure",
    E.EPIPE: "broken pipe",
    E.EPERM: "permission denied",
    E.EACCES: "access denied",
    E.ENXIO: "device not configured",
    E.EPROTO: "protocol error",
    E.EISDIR: "is a directory",
    E.ECONNREFUSED: "connection refused",
    E.ENOTDIR: "not a directory",
    E.ESRCH: "no such process",
    E.E2BIG: "argument list too long",
    E.ENOEXEC: "exec format error",
    E.EBADF: "file descriptor not open",
    E.ECHILD: "no child processes",
    E.EDEADLK: "operation would cause deadlock",
    E.EFAULT: "bad address",
    E.ENOTBLK: "not a block device",
    E.EBUSY: "device busy",
    E.EXDEV: "cross-device link",
    E.ENODEV: "device does not support operation",
    E.EINVAL: "invalid argument",
    E.ENFILE: "system cannot open more files",
    E.EMFILE: "process cannot open more files",
    E.ENOTTY: "not a tty",
    E.EFBIG: "file too big",
    E.ENOSPC: "out of disk space",
    E.ESPIPE: "unseekable descriptor",
    E.EROFS: "read-only file system",
    E.EMLINK: "too many links",
    E.EDOM: "input out of range",
    E.ERANGE: "output out of range",
    E.EALREADY: "operation already in progress",
    E.ENOTSOCK: "not a socket",
    E.EDESTADDRREQ: "destination address required",
    E.EMSGSIZE: "message too long",
    E.EPROTOTYPE: "incorrect protocol type",
    E.ENOPROTOOPT: "protocol not available",
    E.EPROTONOSUPPORT: "protocol not supported",
    E.ESOCKTNOSUPPORT: "socket type not supported",
    E.EOPNOTSUPP: "operation not supported",
    E.EPFNOSUPPORT: "protocol family not supported",
    E.EAFNOSUPPORT: "address family not supported",
    E.EADDRINUSE: "address already used",
    E.EADDRNOTAVAIL: "address not available",
    E.ENETDOWN: "network down",
    E.ENETUNREACH: "network unreachable",
    E.ENETRESET: "network reset",
    E.ECONNABORTED: "connection aborted",
    E.ECONNRESET: "connection reset",
    E.ENOBUFS: "out of buffer space",
    E.EISCONN: "already connected",
    E.ENOTCONN: "not connected",
    E.ESHUTDOWN: "socket shut down",
    E.ETOOMANYREFS: "too many references",
    E.ELOOP: "symbolic link loop",
    E.ENAMETOOLONG: "file name too long",
    E.EHOSTDOWN: "host down",
    E.EHOSTUNREACH: "host unreachable",
    E.ENOTEMPTY: "directory not empty",
    E.EUSERS: "too many users",
    E.EDQUOT: "disk quota exceeded",
    E.ESTALE: "stale NFS file handle",
    E.EREMOTE: "too many levels of remote in path",
    E.ENOLCK: "no locks available",
    E.ENOSYS: "system call not available",
    E.ENOSTR: "not a stream device",
    E.ETIME: "timer expired",
    E.ENOSR: "out of stream resources",
    E.ENOMSG: "no message of desired type",
    E.EBADMSG: "bad message type",
    E.EIDRM: "identifier removed",
    E.ENONET: "machine not on network",
    E.ENOLINK: "link severed",
    E.EADV: "advertise error",
    E.ESRMNT: "srmount error",
    E.ECOMM: "communication error",
    E.EMULTIHOP: "multihop attempted",
    E.EREMCHG: "remote address changed",
}


def errtext(err: int | OSError | None) -> str:
    """The C table's words for an errno (or an OSError); `unknown error` otherwise."""
    if isinstance(err, OSError):
        err = err.errno
    if err is None:
        return "unknown error"
    return _TEXTS.get(err, "unknown error")


def write_fd2(data: bytes) -> None:
    """Bytes to fd 2, in one write() when the kernel takes them; a closed stderr is
    not fatal."""
    try:
        while data:
            data = data[os.write(2, data):]
    except OSError:
        pass


def write_line(text: str) -> None:
    """One diagnostic line to fd 2 in a single write(). Encoded as argv and file names
    are decoded, so an undecodable byte of theirs (surrogate-escaped) goes out as the
    raw byte it was."""
    write_fd2(os.fsencode(text + "\n"))


write_to_fd2 = write_line


def divert(sink: Callable[[str], None] | None) -> None:
    """Send every later diagnostic of this process to `sink` instead of fd 2 (None:
    back to fd 2). svscan's journal mode sends its own lines, and those of each
    supervise it forks, to journald this way (systemd.md §3.4). Callers reach
    write_line through this module, so rebinding it here reaches them all."""
    global write_line
    write_line = sink or write_to_fd2


def warn(prog: str, text: str, err: int | OSError | None = None) -> None:
    """`prog: warning: text[ERR]`: the program carries on."""
    write_line(f"{prog}: warning: {text}{errtext(err) if err is not None else ''}")


def fatal(prog: str, text: str, err: int | OSError | None = None,
          code: int = EXIT_TEMPORARY) -> int:
    """`prog: fatal: text[ERR]`; returns the exit code so `main` can `return fatal(...)`."""
    write_line(f"{prog}: fatal: {text}{errtext(err) if err is not None else ''}")
    return code


def usage(prog: str, text: str, code: int = EXIT_PERMANENT) -> int:
    """`prog: usage: text`: a fixed string, whatever name the program was run under."""
    write_line(f"{prog}: usage: {text}")
    return code


def run_main(prog: str, main: Callable[[list[str]], int]) -> NoReturn:
    """Console-script entry: no Python traceback ever reaches an operator."""
    try:
        code = main(sys.argv)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # a bug of ours: say so in one line, in the program's voice
        detail = errtext(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        code = fatal(prog, f"internal error: {detail}")
    try:
        if sys.stdout is not None:  # None when the program was started with fd 1 closed
            sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
