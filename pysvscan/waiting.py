"""`pysvscan wait`: block until services are up, ready or down, woken by inotify on
their supervise/ directories (and by pidfds), never by a polling loop.

    up      supervise runs and the service is running, not paused
    ready   up, and ready if it opted in to readiness (a service that does not
            notify is ready as soon as it is up)
    down    the service is not running: supervise says pid 0, or no supervise runs
            and the last pid it recorded is gone
"""

from __future__ import annotations

import os

from . import procinfo, services, tai64, watch
from .services import ServiceState
from .status import SIZE, Status

CONDITIONS = ("up", "ready", "down")


def recorded_pid(service_dir: str) -> int:
    """The pid in supervise/status whether or not a supervise runs (0 if none)."""
    try:
        with open(os.path.join(service_dir, "supervise", "status"), "rb") as f:
            return Status.unpack(f.read(SIZE)).pid
    except (OSError, ValueError):
        return 0


def holds(condition: str, state: ServiceState) -> bool:
    if condition == "down":
        if state.supervised:
            return state.error is None and not state.pid
        return not procinfo.alive(recorded_pid(state.dir))
    if state.state != "up":
        return False
    return condition == "up" or state.ready is not False


def wait_services(scandir: str, names: list[str], condition: str,
                  timeout: float | None) -> list[ServiceState]:
    """Wait until `condition` holds for every service at once; the services for which
    it still does not hold when `timeout` seconds have passed ([] on success)."""
    pending: list[ServiceState] = []

    def check(watcher: watch.Watcher) -> bool:
        now = tai64.now()[0]
        pending.clear()
        for name in names:
            path = os.path.join(scandir, name)
            watch.watch_service(watcher, path)
            if condition == "down" and (pid := recorded_pid(path)):
                watcher.add_pid(pid)  # its end, even with no supervise to record it
            state = services.read_state(scandir, name, now)
            if not holds(condition, state):
                pending.append(state)
        return not pending

    watch.wait_for(check, timeout)
    return list(pending)


def describe(state: ServiceState) -> str:
    """`web (down, wanted up)`, `db (up, not ready)`: why a service did not qualify."""
    text = state.state
    if state.state == "up" and state.ready is False:
        text += ", not ready"
    if state.want and state.state in ("up", "down", "paused") and state.want != "once":
        text += f", wanted {state.want}"
    return f"{state.name} ({text})"
