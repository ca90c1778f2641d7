"""Result rows, the side-by-side table and the JSON file: one shape for every benchmark,
so the table, `make bench` and later comparisons read the same data."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One line of the table: C and pysvscan figures measured in the same run."""

    key: str                 # benchmark letter and variant, e.g. "a100"
    label: str
    unit: str
    c: float | None
    py: float | None
    target: str              # human-readable, e.g. "py <= 5x C"
    ok: bool | None          # None: information only, never fails the run
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.c is None or self.py is None or self.c == 0:
            return None
        return self.py / self.c

    def verdict(self) -> str:
        return "info" if self.ok is None else ("PASS" if self.ok else "FAIL")


def ratio_row(key: str, label: str, unit: str, c: float, py: float, limit: float,
              detail: dict[str, Any] | None = None) -> Row:
    """A row whose target is py <= limit x C."""
    ok = py <= limit * c
    return Row(key, label, unit, c, py, f"py <= {limit:g}x C", ok, detail or {})


THROUGHPUT = "klines/s"


def throughput_row(key: str, label: str, c_seconds: float, py_seconds: float, lines: int,
                   limit: float, detail: dict[str, Any] | None = None) -> Row:
    """A row of throughputs (klines/s, higher is better) whose target is py >= limit x C:
    py/C is then C time / pysvscan time. The seconds stay in the detail."""
    c, py = lines / c_seconds / 1000, lines / py_seconds / 1000
    return Row(key, label, THROUGHPUT, c, py, f"py >= {limit:g}x C", py >= limit * c,
               {"lines": lines, "c_seconds": c_seconds, "py_seconds": py_seconds,
                **(detail or {})})


def error_row(key: str, label: str, err: BaseException) -> Row:
    return Row(key, label, "", None, None, "", False, {"error": f"{type(err).__name__}: {err}"})


def summary(xs: list[float]) -> dict[str, Any]:
    """Raw samples plus spread, so a noisy figure can be recognised in the JSON."""
    return {"n": len(xs), "median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "samples": list(xs)}  # in the order measured: a drift shows


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        text = f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"
    elif unit == "s":
        text = f"{value:.3f}"
    else:
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def fmt_ratio(row: Row) -> str:
    r = row.ratio
    if r is None:
        return "inf" if row.c == 0 and row.py else "-"
    return f"{r:.2f}x"


def table(rows: list[Row]) -> str:
    head = ("benchmark", "C", "pysvscan", "py/C", "target", "result")
    body = [(r.label, fmt(r.c, r.unit), fmt(r.py, r.unit), fmt_ratio(r), r.target,
             r.verdict()) for r in rows]
    out = render([head, *body], right=(1, 2, 3))
    if any(r.unit == THROUGHPUT for r in rows):
        out += (f"\n\n{THROUGHPUT} rows are throughputs, higher is better: their py/C is "
                "C time / pysvscan time (1M lines from a file)")
    return out


def render(lines: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> str:
    """Plain-text columns: numbers right-aligned, a rule under the header."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def one(line: tuple[str, ...]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([one(lines[0]), rule, *(one(line) for line in lines[1:])])


def write_json(path: Path, meta: dict[str, Any], rows: list[Row],
               extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta,
            "rows": [{**asdict(r), "ratio": r.ratio, "result": r.verdict()} for r in rows],
            **extra}
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(obj: object) -> object:
    return str(obj)


