"""pysvscan: the friendly face over the same on-disk state the classic programs use.

The 17 classic programs keep daemontools' exact argument syntax; this command is
click-based and is free to be helpful (tables, a demo, and more in later releases).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys

import click

from . import status as status_mod
from . import tai64

DEFAULT_SCANDIR = "/etc/service"


def service_dirs(scandir: str) -> list[str]:
    """Every service svscan would supervise, with its log/ service after it."""
    names = []
    for name in sorted(os.listdir(scandir)):
        path = os.path.join(scandir, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        names.append(name)
        if os.path.isdir(os.path.join(path, "log")):
            names.append(f"{name}/log")
    return names


def row(scandir: str, name: str, now: int) -> list[str]:
    """NAME STATE PID SECONDS NORMALLY PAUSED WANT for one service directory."""
    origin = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            os.chdir(os.path.join(scandir, name))
        except OSError as e:
            return [name, f"unable to chdir: {e.strerror}", "-", "-", "-", "-", "-"]
        found = status_mod.probe()
    finally:
        os.fchdir(origin)
        os.close(origin)
    normally = "up" if found.normally_up else "down"
    st = found.status
    if st is None:
        state = "not supervised" if not found.running else (found.error or "unknown")
        return [name, state, "-", "-", normally, "-", "-"]
    want = {status_mod.WANT_UP: "up", status_mod.WANT_DOWN: "down"}.get(st.want, "once")
    return [name, "up" if st.pid else "down", str(st.pid) if st.pid else "-",
            str(st.seconds_since(now)), normally, "yes" if st.pid and st.paused else "no", want]


@click.group()
@click.version_option(package_name="pysvscan")
def cli() -> None:
    """Supervise services the daemontools way; see also svscan(8), svc(8), svstat(8)."""


@cli.command()
@click.argument("scandir", default=DEFAULT_SCANDIR, type=click.Path(file_okay=False))
def status(scandir: str) -> None:
    """Print a table of every service in SCANDIR (default /etc/service)."""
    try:
        names = service_dirs(scandir)
    except OSError as e:
        raise click.ClickException(f"unable to read {scandir}: {e.strerror}") from None
    now = tai64.now()[0]
    rows = [["NAME", "STATE", "PID", "SECONDS", "NORMALLY", "PAUSED", "WANT"]]
    rows += [row(scandir, name, now) for name in names]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


DEMO_HELLO = """#!/bin/sh
# pysvscan demo: a numbered line every second on stdout (into log/), errors too.
exec 2>&1
n=0
while :; do
    n=$((n + 1))
    echo "hello $n"
    sleep 1
done
"""

DEMO_LOG = """#!/bin/sh
# pysvscan demo logger: hello's output, stamped, in ./main (rotated at 100 kB, 5 kept).
exec {bindir}/multilog t s100000 n5 ./main
"""


def write_executable(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def lay_out_demo(scandir: str) -> None:
    """A scan directory holding `hello` and `hello/log`, created if missing."""
    os.makedirs(os.path.join(scandir, "hello", "log"), exist_ok=True)
    write_executable(os.path.join(scandir, "hello", "run"), DEMO_HELLO)
    bindir = shlex.quote(os.path.dirname(sys.executable))
    write_executable(os.path.join(scandir, "hello", "log", "run"), DEMO_LOG.format(bindir=bindir))


def svscan_command(scandir: str) -> list[str]:
    """This installation's own svscan (never a C one found earlier on PATH)."""
    script = os.path.join(os.path.dirname(sys.executable), "svscan")
    if os.access(script, os.X_OK):
        return [script, scandir]
    return [sys.executable, "-c", "from pysvscan.commands.svscan import run; run()", scandir]


@cli.command()
@click.argument("scandir", default="demo/service", type=click.Path(file_okay=False))
def demo(scandir: str) -> None:
    """Lay out a demo scan directory and run svscan on it in the foreground.

    svscan runs in a session of its own, so Ctrl-C reaches only this command, which
    turns it into SIGTERM: svscan then stops every service in order and exits.
    """
    lay_out_demo(scandir)
    bindir = os.path.dirname(sys.executable)
    hello = os.path.join(scandir, "hello")
    click.echo(f"svscan is supervising {scandir}: hello prints a line a second, which "
               f"multilog keeps in {hello}/log/main\nIn another terminal:\n"
               f"  {bindir}/svstat {hello} {hello}/log\n"
               f"  {bindir}/svc -d {hello}      # down; -u up, -t restart, -p/-c pause\n"
               f"  {bindir}/pysvscan status {scandir}\n"
               f"  tail -f {hello}/log/main/current | {bindir}/tai64nlocal\n"
               "Ctrl-C (or SIGTERM to this process) stops everything in order.", err=True)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        argv = svscan_command(scandir)
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(111)

    def forward(signum: int, frame: object) -> None:
        os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    _, wstatus = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(wstatus))


def run() -> None:
    cli(prog_name="pysvscan")
