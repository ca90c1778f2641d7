"""pysvscan: the friendly face over the same on-disk state the classic programs use.

The 17 classic programs keep daemontools' exact argument syntax; this command is
click-based and is free to be helpful. This module is only the click layer: each
command's work is in its own module (services, addremove, logs, waiting, doctor,
metrics), imported when the command runs, so that `pysvscan status` starts fast.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from typing import Any, Callable, Iterator, TypeVar

import click

from . import services
from .services import default_scandir

DEFAULT_SVDIR = "/etc/sv"  # where `add` writes services: runit's convention
SVDIR_VARIABLE = "PYSVSCAN_SVDIR"
EXIT_NOT_AS_WANTED = 3   # status: like `systemctl is-active`
EXIT_WAIT_ERROR = 2      # wait: 1 is the timeout


@contextlib.contextmanager
def user_errors(code: int = 1) -> Iterator[None]:
    """The modules' one-line errors (services.UserError) as click errors."""
    try:
        yield
    except services.UserError as e:
        error = click.ClickException(str(e))
        error.exit_code = code
        raise error from None


def complete_service(ctx: click.Context, param: click.Parameter,
                     incomplete: str) -> list[str]:
    """Shell completion of NAME: the services of the scan directory given so far."""
    scandir = ctx.params.get("scandir") or default_scandir()
    try:
        names = services.service_names(scandir)
    except OSError:
        return []
    return [n for n in names if n.startswith(incomplete)]


F = TypeVar("F", bound=Callable[..., Any])


def scandir_option(f: F) -> F:
    """--scandir, the same for every subcommand; eager, so that the completion of
    NAME arguments already knows it."""
    return click.option(
        "--scandir", metavar="DIR", envvar=services.SCANDIR_VARIABLE,
        default=services.DEFAULT_SCANDIR, show_default=True, show_envvar=True,
        is_eager=True, help="The scan directory svscan runs on.")(f)


def expand(scandir: str, names: tuple[str, ...]) -> list[str]:
    """NAME arguments as status and doctor take them: NAME means NAME and NAME/log;
    none means every service."""
    if not names:
        try:
            return services.service_names(scandir)
        except OSError as e:
            raise click.ClickException(f"unable to read {scandir}: {e.strerror}") from None
    out: list[str] = []
    with user_errors():
        for name in names:
            path = services.resolve(scandir, name)
            out.append(name)
            if "/" not in name and os.path.isdir(os.path.join(path, "log")):
                out.append(f"{name}/log")
    return list(dict.fromkeys(out))


def is_path(arg: str) -> bool:
    """`/srv/service`, `./service`, `..`: a directory, where a NAME cannot be."""
    return arg.startswith(("/", "./", "../")) or arg in (".", "..")


def use_color() -> bool | None:
    """None: click decides (colour on a terminal only); never with NO_COLOR set."""
    return False if os.environ.get("NO_COLOR") else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pysvscan")
def cli() -> None:
    """Supervise services the daemontools way: status, add, remove, logs, wait,
    doctor and metrics over the same files as svc(8) and svstat(8).

    Exit status: 0 success, 1 error, 2 usage error; status exits 3 when a service
    is not as wanted, wait exits 1 on timeout and 2 on an error.
    """


STATE_COLORS = {"up": "green", "down": "yellow", "paused": "yellow",
                "not supervised": "red", "unknown": "red"}


def table_row(s: services.ServiceState, now: int) -> list[str]:
    ready = "-" if s.ready is None else ("yes" if s.ready else "no")
    last = "-"
    if s.last_exit is not None:
        last = f"{s.last_exit.text()}, {services.duration(s.last_exit.seconds_ago(now))} ago"
    return [s.name, s.state, str(s.pid) if s.pid else "-", services.duration(s.seconds),
            "up" if s.normally_up else "down", s.want or "-", ready,
            str(s.restarts) if s.error is None else "-", last,
            s.log.text(s.dir) if s.log is not None else "-"]


HEADER = ["NAME", "STATE", "PID", "TIME", "NORMALLY", "WANT", "READY", "RESTARTS",
          "LAST-EXIT", "LOG"]


def print_table(states: list[services.ServiceState], now: int) -> None:
    rows = [HEADER] + [table_row(s, now) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    color = use_color()
    for n, r in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(r[:-1], widths)] + [r[-1]]
        if n == 0:
            cells = [click.style(c, bold=True) for c in cells]
        else:
            s = states[n - 1]
            fg = STATE_COLORS[s.state] if not (s.state == "down" and s.as_wanted) else None
            cells[1] = click.style(cells[1], fg=fg, bold=not s.as_wanted)
        click.echo("  ".join(cells), color=color)


@cli.command(epilog="""\b
Examples:
  pysvscan status                   every service of /etc/service
  pysvscan status web db            web and db, with their log services
  pysvscan status /srv/service      every service of another scan directory
  pysvscan status --json web | jq '.services[0].pid'
  pysvscan status -q web || echo "web is not up"
""")
@click.argument("names", nargs=-1, metavar="[NAME]... | [SCANDIR]",
                shell_complete=complete_service)
@scandir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see pysvscan(1)).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing: the exit status says it.")
def status(names: tuple[str, ...], scandir: str, as_json: bool, quiet: bool) -> int:
    """Show the state of services, one row each.

    One row per service and log service: state, pid, for how long, normally
    up/down, wanted state, readiness, restarts, last exit, where its output goes.

    NAME is a service of the scan directory (NAME/log its logger); NAME stands for
    both. A single argument that is a path (starts with /, ./ or ../) is the scan
    directory itself.

    Exit status: 0 every service listed is as wanted (up, or down when wanted down),
    3 some service is not, 1 error (an unknown NAME, an unreadable status).
    """
    if len(names) == 1 and is_path(names[0]):
        if not os.path.isdir(names[0]):
            raise click.ClickException(f"unable to read {names[0]}: No such file or "
                                       "directory")
        scandir, names = names[0], ()
    listed = expand(scandir, names)
    from . import tai64
    states, _ = services.read_all(scandir, listed)
    now = tai64.now()[0]
    if as_json:
        import json
        doc = {"version": 1, "scandir": scandir,
               "services": [services.as_json(s, now) for s in states]}
        if not quiet:
            click.echo(json.dumps(doc, indent=2))
    elif not quiet:
        print_table(states, now)
    unknown = [s for s in states if s.state == "unknown"]
    for s in unknown:
        click.echo(f"Error: {s.name}: {s.error}", err=True)
    if unknown:
        return 1
    return 0 if all(s.as_wanted for s in states) else EXIT_NOT_AS_WANTED


@cli.command(epilog="""\b
Examples:
  pysvscan add web --user www --env PORT=8080 -- /usr/bin/python3 -m http.server 8080
  pysvscan add worker --log journal --down -- /usr/local/bin/worker --queue jobs
  pysvscan add clock --svdir /srv/sv --scandir /srv/service -- sh -c 'date; sleep 60'
""")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, metavar="-- COMMAND...")
@click.option("--user", metavar="USER", help="Run COMMAND as USER (setuidgid).")
@click.option("--env", "env", multiple=True, metavar="K=V",
              help="Set a variable through envdir (NAME/env/K); repeatable.")
@click.option("--log", "log", type=click.Choice(["dir", "journal", "none"]),
              default="dir", show_default=True,
              help="dir: multilog t ./main in log/; journal: multilog J in log/; "
                   "none: no log/ (output goes where svscan's does).")
@click.option("--down", is_flag=True, help="Do not start it until svc -u (a down file).")
@click.option("--svdir", metavar="DIR", envvar=SVDIR_VARIABLE, default=DEFAULT_SVDIR,
              show_default=True, show_envvar=True,
              help="Where the service directory is written.")
@scandir_option
def add(name: str, command: tuple[str, ...], user: str | None, env: tuple[str, ...],
        log: str, down: bool, svdir: str, scandir: str) -> None:
    """Create service NAME running COMMAND and start it.

    Writes SVDIR/NAME (run, env/, down, log/run), renames it into place whole, links
    it into the scan directory (a symlink renamed into place) and tells svscan to
    rescan (SIGALRM), so it starts at once. Each word after -- is one argument of
    COMMAND; run execs it. Refuses a NAME with '/' or a leading '.', and a NAME that
    exists in SVDIR or in the scan directory. Exit status 0, or 1 on error.
    """
    from . import addremove
    with user_errors():
        addremove.add_service(name, list(command), svdir=svdir, scandir=scandir,
                              user=user, env=addremove.parse_env(env), log=log,
                              down=down, say=click.echo)


@cli.command(epilog="""\b
Examples:
  pysvscan remove web               stop web and its log, delete /etc/sv/web
  pysvscan remove web --keep        the same, but keep the directory
""")
@click.argument("name", shell_complete=complete_service)
@click.option("--keep", is_flag=True, help="Keep the service directory.")
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="S", help="Seconds to wait for each supervise to exit, before "
                                 "svc -k.")
@scandir_option
def remove(name: str, keep: bool, timeout: float, scandir: str) -> None:
    """Stop service NAME and take it out, in the safe order.

    Unlinks NAME from the scan directory (a real directory there is renamed to
    .NAME), sends svc -dx to the service and waits until its supervise exited, then
    the same for NAME/log, and deletes the directory unless --keep. Exit status 0,
    or 1 on error (a service still running after --timeout is left unlinked).
    """
    from . import addremove
    with user_errors():
        addremove.remove_service(name, scandir=scandir, keep=keep, timeout=timeout,
                                 say=click.echo)


@cli.command(epilog="""\b
Examples:
  pysvscan logs web                 the last 10 lines
  pysvscan logs -n 100 -f web       the last 100, then new ones as they come
  pysvscan logs web/log             what web's logger itself complained about
""")
@click.argument("name", shell_complete=complete_service)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=10, show_default=True,
              metavar="N", help="How many past lines to show.")
@scandir_option
def logs(name: str, follow: bool, lines: int, scandir: str) -> None:
    """Show the output of service NAME.

    From the first directory of its log/run's multilog (current and archives, the
    TAI64N labels in local time as tai64nlocal shows them), or from the journal
    (journalctl SERVICE=NAME) when its logger uses multilog's J action only, or when
    it has no log/ and svscan runs in journal mode. NAME/log: the logger's own
    messages, from the journal. Exit status 0, or 1 on error.
    """
    from . import logs as logs_mod
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends it quietly
    with user_errors():
        kind, where = logs_mod.find_source(scandir, name)
        if kind == "journal":
            argv = logs_mod.journal_argv(where, lines, follow)
            sys.stdout.flush()
            os.execv(argv[0], argv)
        logs_mod.show_dir(where, lines, follow)


@cli.command(epilog="""\b
Examples:
  pysvscan wait --up web db                 both up, within 60 s
  pysvscan add api -- ./server && pysvscan wait --ready --timeout 30 api
  svc -d /etc/service/web && pysvscan wait --down web
""")
@click.argument("names", nargs=-1, required=True, metavar="NAME...",
                shell_complete=complete_service)
@click.option("--up", "condition", flag_value="up", help="Until running (not paused).")
@click.option("--ready", "condition", flag_value="ready",
              help="Until up and ready (a service that does not notify: up).")
@click.option("--down", "condition", flag_value="down", help="Until not running.")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              metavar="S", help="Give up after S seconds (0: check once).")
@scandir_option
def wait(names: tuple[str, ...], condition: str | None, timeout: float,
         scandir: str) -> int:
    """Wait until every NAME is up, ready or down.

    Woken by changes of supervise/status and notify-state (inotify), not by
    polling. Exit status 0 when the state holds for all, 1 on timeout (saying which
    did not get there), 2 on error (an unknown NAME).
    """
    if condition is None:
        raise click.UsageError("say what to wait for: --up, --ready or --down")
    from . import waiting
    with user_errors(EXIT_WAIT_ERROR):
        for name in names:
            services.resolve(scandir, name)
    missing = waiting.wait_services(scandir, list(dict.fromkeys(names)), condition, timeout)
    if missing:
        click.echo(f"Error: timed out after {timeout:g} s waiting for "
                   f"{', '.join(waiting.describe(s) for s in missing)} to be {condition}",
                   err=True)
        return 1
    return 0


@cli.command(epilog="""\b
Examples:
  pysvscan doctor                   svscan and every service
  pysvscan doctor web               svscan, web and web/log
""")
@click.argument("name", required=False, shell_complete=complete_service)
@scandir_option
def doctor(name: str | None, scandir: str) -> int:
    """Diagnose svscan and each service, with fixes.

    The chain from svscan down to each service: svscan running (and its systemd
    unit), run usable, supervise running, the process up as wanted, no restart
    loop, the log pipe wired, supervise/ permissions.

    Exit status 0 when every check passed, 1 when one failed (or on error).
    """
    from . import doctor as doctor_mod
    if not os.path.isdir(scandir):
        raise click.ClickException(f"unable to read {scandir}: No such file or directory")
    names = expand(scandir, (name,) if name else ())
    failed = False
    color = use_color()
    marks = {True: ("ok", "green"), False: ("FAIL", "red"), None: ("--", None)}
    for title, checks in doctor_mod.diagnose(scandir, names):
        if title:
            click.echo(click.style(title, bold=True), color=color)
        for check in checks:
            word, fg = marks[check.ok]
            click.echo(f"  {click.style(word.ljust(4), fg=fg, bold=check.ok is False)}  "
                       f"{check.text}", color=color)
            if check.fix:
                click.echo(f"        fix: {check.fix}")
            failed |= check.ok is False
    return 1 if failed else 0


@cli.command(epilog="""\b
Examples:
  pysvscan metrics                                  print them once
  pysvscan metrics --listen 127.0.0.1:9101          serve http://127.0.0.1:9101/metrics
  pysvscan metrics --textfile /var/lib/prometheus/node-exporter/pysvscan.prom
""")
@click.option("--listen", metavar="ADDR:PORT",
              help="Serve /metrics over HTTP on this address only, until SIGTERM.")
@click.option("--textfile", metavar="PATH", type=click.Path(dir_okay=False),
              help="Write them to PATH atomically (node_exporter's textfile collector).")
@scandir_option
def metrics(listen: str | None, textfile: str | None, scandir: str) -> None:
    """Prometheus metrics of the services and of svscan.

    Metrics of every service (pysvscan_service_up, _ready, _uptime_seconds,
    _restarts_total, _watchdog_kills_total ...) and of svscan, read afresh at each
    scrape; the list is in pysvscan(1). Needs prometheus_client.

    Without --listen or --textfile they are printed once. Exit status 0, or 1 on
    error (the address in use, PATH unwritable, prometheus_client missing).
    """
    from . import metrics as metrics_mod
    if listen and textfile:
        raise click.UsageError("give --listen or --textfile, not both")
    if not os.path.isdir(scandir):
        raise click.ClickException(f"unable to read {scandir}: No such file or directory")
    with user_errors():
        metrics_mod.require_library()
        if listen:
            try:
                host, port = metrics_mod.parse_listen(listen)
            except ValueError as e:
                raise click.ClickException(str(e)) from None
            try:
                metrics_mod.serve(scandir, host, port, lambda text: click.echo(text, err=True))
            except OSError as e:
                raise click.ClickException(f"unable to listen on {listen}: "
                                           f"{e.strerror or e}") from None
        elif textfile:
            try:
                metrics_mod.write_textfile(scandir, textfile)
            except OSError as e:
                raise click.ClickException(f"unable to write {textfile}: "
                                           f"{e.strerror or e}") from None
        else:
            sys.stdout.buffer.write(metrics_mod.exposition(scandir))


@cli.command(epilog="""\b
Examples:
  pysvscan completion bash > /usr/share/bash-completion/completions/pysvscan
  pysvscan completion zsh > /usr/share/zsh/vendor-completions/_pysvscan
  eval "$(pysvscan completion bash)"          in the current shell only
""")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    click's completion; service names are completed from the scan directory. The
    packages install the bash and zsh ones. Exit status 0."""
    from click.shell_completion import get_completion_class
    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "pysvscan", "_PYSVSCAN_COMPLETE").source())


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


@cli.command(epilog="""\b
Example:
  pysvscan demo /tmp/demo/service     then, elsewhere: pysvscan status /tmp/demo/service
""")
@click.argument("scandir", default="demo/service", type=click.Path(file_okay=False))
def demo(scandir: str) -> None:
    """Run svscan on a demo scan directory, in the foreground.

    SCANDIR (default demo/service) gets a `hello` service and its logger.

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
    """The entry point: every error is one line and an exit status, never a traceback."""
    try:
        code = cli.main(prog_name="pysvscan", standalone_mode=False)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        click.echo(f"Error: {e.format_message()}{hint}", err=True)
        code = e.exit_code
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    except (click.Abort, KeyboardInterrupt):  # Ctrl-C (click turns it into Abort)
        code = 130
    except BrokenPipeError:
        code = 1
    except services.UserError as e:
        click.echo(f"Error: {e}", err=True)
        code = 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"Error: {where}{e.strerror or e}", err=True)
        code = 1
    except Exception as e:  # noqa: BLE001  a bug: still one line, with its kind
        click.echo(f"Error: internal error: {type(e).__name__}: {e}", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
