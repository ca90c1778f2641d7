"""`pysvscan metrics`: scraped over HTTP on loopback and parsed with prometheus_client's
own parser; the textfile; the errors."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from conftest import PY, Processes, make_service, status_pid, wait_until
from test_cli import pysvscan, start_svscan

Samples = dict[tuple[str, str], float]


def samples(text: str) -> Samples:
    """{(sample name, service label or ''): value}."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, s.labels.get("service", ""))] = s.value
    return out


def start_server(procs: Processes, scandir: Path) -> tuple[subprocess.Popen[bytes], str]:
    server = procs.start([PY.bin("pysvscan"), "metrics", "--listen", "127.0.0.1:0",
                          "--scandir", str(scandir)], stderr=subprocess.PIPE)
    assert server.stderr is not None
    assert select.select([server.stderr], [], [], 20)[0], "no announcement"
    line = server.stderr.readline().decode()
    prefix = f"serving metrics of {scandir} on "
    assert line.startswith(prefix), line
    return server, line[len(prefix):].strip()


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=20) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        return samples(reply.read().decode())


def listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp has them) of LISTEN sockets on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, _, hexport = fields[1].rpartition(":")
            if int(hexport, 16) == port and fields[3] == "0A":
                found.append(addr)
    return found


def test_metrics_over_http(tmp_path: Path, procs: Processes) -> None:
    scandir = tmp_path / "service"
    web = make_service(scandir, "web", "#!/bin/sh\nexec sleep 1000\n",
                       log="#!/bin/sh\nexec cat > /dev/null\n")
    make_service(scandir, "idle", "#!/bin/sh\nexec sleep 1000\n", down=True)
    api = make_service(scandir, "api", "#!/bin/sh\necho >&3\nexec sleep 1000\n")
    (api / "notification-fd").write_text("3\n")
    svscan = start_svscan(procs, scandir)
    first = wait_until(lambda: status_pid(web) and status_pid(web / "log") and status_pid(api)
                       and status_pid(web))
    server, url = start_server(procs, scandir)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert url == f"http://127.0.0.1:{port}/metrics"
    assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1 only

    got = wait_until(lambda: (m := scrape(url))[("pysvscan_service_ready", "api")] == 1 and m,
                     message="api ready")
    assert got[("pysvscan_service_up", "web")] == 1
    assert got[("pysvscan_service_up", "web/log")] == 1
    assert got[("pysvscan_service_up", "idle")] == 0
    assert got[("pysvscan_service_supervised", "idle")] == 1
    assert got[("pysvscan_service_wanted_up", "idle")] == 0
    assert got[("pysvscan_service_normally_up", "idle")] == 0
    assert got[("pysvscan_service_restarts_total", "web")] == 0
    assert got[("pysvscan_service_watchdog_kills_total", "api")] == 0
    assert ("pysvscan_service_ready", "web") not in got  # web does not notify
    assert got[("pysvscan_service_uptime_seconds", "web")] >= 0
    assert got[("pysvscan_services", "")] == 4
    assert got[("pysvscan_svscan_up", "")] == 1
    started = float(Path(f"/proc/{svscan.pid}/stat").read_text().rpartition(")")[2].split()[19])
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    assert abs(got[("pysvscan_svscan_start_time_seconds", "")]
               - (boot + started / os.sysconf("SC_CLK_TCK"))) < 1
    assert got[("pysvscan_svscan_resident_memory_bytes", "")] > 1_000_000

    PY.run("svc", "-k", web)  # read afresh at each scrape
    wait_until(lambda: status_pid(web) not in (0, first))
    wait_until(lambda: scrape(url)[("pysvscan_service_restarts_total", "web")] == 1,
               message="restart counted")
    assert scrape(url)[("pysvscan_service_exits_total", "web")] == 1

    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0


def test_metrics_textfile_and_stdout(tmp_path: Path, procs: Processes) -> None:
    scandir = tmp_path / "service"
    web = make_service(scandir, "web", "#!/bin/sh\nexec sleep 1000\n")
    start_svscan(procs, scandir)
    wait_until(lambda: status_pid(web))
    out = tmp_path / "collector"
    out.mkdir()
    (out / "pysvscan.prom").write_text("stale\n")
    r = pysvscan("metrics", "--textfile", out / "pysvscan.prom", "--scandir", scandir)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    got = samples((out / "pysvscan.prom").read_text())
    assert got[("pysvscan_service_up", "web")] == 1
    assert [p.name for p in out.iterdir()] == ["pysvscan.prom"]  # renamed over, no temp left
    r = pysvscan("metrics", "--scandir", scandir)
    assert r.returncode == 0
    assert samples(r.stdout)[("pysvscan_service_up", "web")] == 1


def test_metrics_errors(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        r = pysvscan("metrics", "--listen", f"127.0.0.1:{port}", "--scandir", tmp_path)
    finally:
        holder.close()
    assert r.returncode == 1
    assert r.stderr == f"Error: unable to listen on 127.0.0.1:{port}: Address already in use\n"
    r = pysvscan("metrics", "--listen", "localhost", "--scandir", tmp_path)
    assert r.returncode == 1
    assert r.stderr == ("Error: bad --listen 'localhost': give ADDRESS:PORT, "
                        "e.g. 127.0.0.1:9101\n")
    r = pysvscan("metrics", "--textfile", tmp_path / "no" / "m.prom", "--scandir", tmp_path)
    assert r.returncode == 1 and r.stderr.startswith(f"Error: unable to write {tmp_path}/no/")
    assert r.stderr.count("\n") == 1
    r = pysvscan("metrics", "--listen", "127.0.0.1:1", "--textfile", "x")
    assert r.returncode == 2 and "give --listen or --textfile, not both" in r.stderr

    # without prometheus_client (hidden by a package of the same name that fails)
    fake = tmp_path / "hide" / "prometheus_client"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    r = pysvscan("metrics", "--scandir", tmp_path,
                 env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(fake.parent)})
    assert r.returncode == 1
    assert r.stderr == ("Error: prometheus_client is not installed (Debian package "
                        "python3-prometheus-client, or pip install 'pysvscan[metrics]')\n")


def test_metrics_server_stops_on_sigterm_and_sigint_even_mid_scrape(
        tmp_path: Path, procs: Processes) -> None:
    """A signal that lands while a scrape is served must not be taken for an error of
    that scrape (wsgiref's handler catches everything): the server stops, exit 0."""
    import threading
    scandir = tmp_path / "service"
    for i in range(50):  # scrapes that take a while
        make_service(scandir, f"s{i:02d}", "#!/bin/sh\nexec sleep 1000\n", down=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        server, url = start_server(procs, scandir)
        done = threading.Event()

        def scrape_on() -> None:
            while not done.is_set():
                try:
                    scrape(url)
                except OSError:
                    return

        threads = [threading.Thread(target=scrape_on, daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        wait_until(lambda: any(t.is_alive() for t in threads), message="scrapes")
        server.send_signal(sig)
        try:
            assert server.wait(timeout=10) == 0
        finally:
            done.set()
