"""`pysvscan metrics`: the services' state in Prometheus' exposition format, through
prometheus_client (an optional dependency, imported only here).

Every scrape reads the state afresh (a custom collector), so the figures are those of
the moment, as `pysvscan status` would show them. `--listen` serves them over HTTP on
the one address given; `--textfile` writes them once, atomically, for node_exporter's
textfile collector.

    pysvscan_service_up{service}                  1 if the service's process runs
    pysvscan_service_supervised{service}          1 if a supervise runs for it
    pysvscan_service_wanted_up{service}           1 if supervise wants it up
    pysvscan_service_normally_up{service}         0 if it has a `down` file
    pysvscan_service_paused{service}              1 if paused (svc -p)
    pysvscan_service_ready{service}               1 if ready (opted-in services only)
    pysvscan_service_uptime_seconds{service}      seconds up (0 when down)
    pysvscan_service_restarts_total{service}      restarts since supervise started
    pysvscan_service_exits_total{service}         exits since supervise started
    pysvscan_service_watchdog_kills_total{service}  (opted-in services only)
    pysvscan_services                             service directories, logs included
    pysvscan_svscan_up                            1 if an svscan runs on the scan dir
    pysvscan_svscan_start_time_seconds            its start, unix time
    pysvscan_svscan_cpu_seconds_total             its CPU time (reaped children too)
    pysvscan_svscan_resident_memory_bytes         its resident memory
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, Iterator

from . import procinfo, services


class MissingLibrary(services.UserError):
    """prometheus_client is not installed (one line for the user)."""


def require_library() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise MissingLibrary("prometheus_client is not installed (Debian package "
                             "python3-prometheus-client, or pip install "
                             "'pysvscan[metrics]')") from None


class ServiceCollector:
    """A prometheus_client collector reading the scan directory at each collect()."""

    def __init__(self, scandir: str) -> None:
        self.scandir = scandir

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def gauge(name: str, doc: str) -> Any:
            return GaugeMetricFamily(f"pysvscan_{name}", doc, labels=["service"])

        def counter(name: str, doc: str) -> Any:
            return CounterMetricFamily(f"pysvscan_{name}", doc, labels=["service"])

        try:
            names = services.service_names(self.scandir)
        except OSError:
            names = []
        states, svscan = services.read_all(self.scandir, names)
        up = gauge("service_up", "1 if the service's process is running")
        supervised = gauge("service_supervised", "1 if a supervise runs for the service")
        wanted = gauge("service_wanted_up", "1 if supervise wants the service up")
        normally = gauge("service_normally_up", "0 if the service has a down file")
        paused = gauge("service_paused", "1 if the service is paused (svc -p)")
        ready = gauge("service_ready", "1 if the service said it is ready "
                      "(services that opt in to readiness only)")
        uptime = gauge("service_uptime_seconds", "Seconds since the service started "
                       "(0 when down)")
        restarts = counter("service_restarts", "Restarts since its supervise started")
        exits = counter("service_exits", "Exits since its supervise started")
        kills = counter("service_watchdog_kills", "Watchdog kills since the service's "
                        "supervise started (services that opt in only)")
        for s in states:
            label = [s.name]
            running = s.error is None and bool(s.pid)
            up.add_metric(label, int(running))
            supervised.add_metric(label, int(s.supervised))
            wanted.add_metric(label, int(s.want == "up"))
            normally.add_metric(label, int(s.normally_up))
            paused.add_metric(label, int(s.paused))
            uptime.add_metric(label, (s.seconds or 0) if running else 0)
            restarts.add_metric(label, s.restarts)
            exits.add_metric(label, s.exits)
            if s.ready is not None:
                ready.add_metric(label, int(s.ready))
            if s.watchdog_kills is not None:
                kills.add_metric(label, s.watchdog_kills)
        yield from (up, supervised, wanted, normally, paused, ready, uptime, restarts,
                    exits, kills)
        yield GaugeMetricFamily("pysvscan_services", "Service directories in the scan "
                                "directory, log services included", value=len(states))
        yield GaugeMetricFamily("pysvscan_svscan_up", "1 if an svscan runs on the scan "
                                "directory", value=int(svscan is not None))
        if svscan is not None:
            yield from svscan_metrics(svscan.pid)


def svscan_metrics(pid: int) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    started = procinfo.start_time(pid)
    if started is not None:
        yield GaugeMetricFamily("pysvscan_svscan_start_time_seconds",
                                "When svscan started, in unix time", value=started)
    cpu = procinfo.cpu_seconds(pid)
    if cpu is not None:
        yield CounterMetricFamily("pysvscan_svscan_cpu_seconds", "CPU time of svscan "
                                  "and of its reaped children", value=cpu)
    rss = procinfo.resident_bytes(pid)
    if rss is not None:
        yield GaugeMetricFamily("pysvscan_svscan_resident_memory_bytes",
                                "Resident memory of the svscan process", value=rss)


def registry(scandir: str) -> Any:
    from prometheus_client import CollectorRegistry
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServiceCollector(scandir))
    return reg


def exposition(scandir: str) -> bytes:
    from prometheus_client import generate_latest
    return generate_latest(registry(scandir))


def write_textfile(scandir: str, path: str) -> None:
    """Written to a temporary name next to PATH and renamed over it, so that
    node_exporter never reads half a file."""
    from prometheus_client import write_to_textfile
    write_to_textfile(path, registry(scandir))


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT, [IPV6]:PORT; ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad --listen {text!r}: give ADDRESS:PORT, e.g. 127.0.0.1:9101")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def serve(scandir: str, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve /metrics on host:port only, one request at a time, until SIGTERM or
    SIGINT; `announce(text)` is told the address once it is bound."""
    import socket
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    class Quiet(WSGIRequestHandler):
        timeout = 10  # a client that never sends its request cannot hold the server

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def handle_error(self, request: Any, client_address: Any) -> None:
            error = sys.exc_info()[1]  # one line, not socketserver's traceback
            sys.stderr.write(f"pysvscan: metrics: {client_address[0]}: "
                             f"{type(error).__name__}: {error}\n")

    app = make_wsgi_app(registry(scandir))

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        """The exposition, or a 500 and one line on stderr (not wsgiref's traceback)."""
        try:
            return app(environ, start_response)
        except Exception as e:  # noqa: BLE001  keep serving the next scrape
            sys.stderr.write(f"pysvscan: metrics: {type(e).__name__}: {e}\n")
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"collecting the metrics failed\n"]

    httpd = make_server(host, port, guarded, Server, Quiet)

    # SIGTERM and SIGINT only wake the loop below, between two requests: an exception
    # raised inside one, wsgiref's handler would take for the application's error and
    # go on serving.
    import select
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    bound = httpd.server_address
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    announce(f"serving metrics of {scandir} on http://{shown}:{bound[1]}/metrics")
    httpd.timeout = None  # handle_request() sleeps until a client comes: no polling
    try:
        while True:
            ready, _, _ = select.select([httpd.socket, wake_r], [], [])  # until one comes
            if wake_r in ready and {signal.SIGTERM, signal.SIGINT} & set(os.read(wake_r, 512)):
                break
            if httpd.socket in ready:
                httpd.handle_request()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    sys.exit(0)

