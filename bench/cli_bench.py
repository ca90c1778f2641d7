"""(cli) wall time of one `pysvscan status` over 500 running services (issue 7: under
200 ms, absolute), with `--json` beside it as information.

pysvscan's svscan supervises the services (the command reads pysvscan's files; the C
tree has no such command, so the C column stays empty). Each call is a whole process,
interpreter start-up and click included, as an operator's would be.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness import PY_IMPL, Tree, log, make_services, run_tool
from report import Row, summary

SERVICES = 500
STATUS_LIMIT_MS = 200.0
SETTLE = 1.0  # after all are up: supervise's start pause over, status files quiet


def status_ms(scandir: Path, runs: int, *extra: str) -> dict[str, object]:
    """Wall time of `pysvscan status --scandir SCANDIR` over `runs` calls, after one
    checked warm-up call (every service listed, exit 0)."""
    argv = [PY_IMPL.tool("pysvscan"), "status", "--scandir", str(scandir), *extra]
    _, out = run_tool(argv, capture=True)
    rows = out.stdout.decode().count("\n") - 1
    if out.returncode or (not extra and rows != SERVICES):
        raise RuntimeError(f"pysvscan status: rc={out.returncode}, {rows} rows, "
                           f"{out.stderr[-200:]!r}")
    return summary([run_tool(argv)[0] * 1000 for _ in range(runs)])


def cli_rows(runs: int) -> list[Row]:
    with Tree(PY_IMPL) as tree:
        services = make_services(tree.scandir, [f"s{i:03d}" for i in range(SERVICES)])
        log(f"cli: {SERVICES} services under pysvscan's svscan")
        tree.start()
        tree.wait_all_up(services, 60)
        time.sleep(SETTLE)
        table = status_ms(tree.scandir, runs)
        as_json = status_ms(tree.scandir, runs, "--json")
    return [Row("cli", f"(cli) pysvscan status, {SERVICES} services", "ms", None,
                table["median"], f"py < {STATUS_LIMIT_MS:g} ms",
                table["median"] < STATUS_LIMIT_MS, {"pysvscan": table}),
            Row("cli-json", "    same, --json (info)", "ms", None, as_json["median"], "",
                None, {"pysvscan": as_json})]
