"""The one table a bench run prints: each Cascade figure beside its baseline, as a ratio.

``ratio`` is Cascade ÷ baseline. For rates (per second) higher is better; for times
(ms, s) and memory lower is better; the ``target`` column says which way and how far
(the targets of issue 10, "Done when" 2).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass
class Row:
    figure: str  #: "3", "4", ...
    what: str
    backend: str  #: sqlite | postgresql | redis
    baseline: str  #: what the baseline is
    baseline_value: float | None
    value: float | None
    unit: str
    target: str = ""
    note: str = ""  #: shown when there is no value, or beside it (p50/p99, sizes)

    @property
    def ratio(self) -> str:
        if self.value is None or not self.baseline_value:
            return "—"
        return f"{self.value / self.baseline_value:.2f}x"


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".strip()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def render(rows: list[Row], heading: list[str]) -> str:
    lines = [
        *heading,
        "",
        "| # | figure | backend | baseline | baseline value | Cascade | ratio | target | notes |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        cascade = number(row.value, row.unit) if row.value is not None else "n/a"
        lines.append(
            f"| {row.figure} | {row.what} | {row.backend} | {row.baseline} | "
            f"{number(row.baseline_value, row.unit)} | {cascade} | {row.ratio} | "
            f"{row.target} | {row.note} |"
        )
    return "\n".join(lines) + "\n"


def header(mode: str, loadgen: str) -> list[str]:
    return [
        "# Cascade benchmark",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- mode: {mode}",
        f"- load generator: {loadgen}",
        "- everything colocated on this machine: one private redis-server, the database "
        "(SQLite file or a PostgreSQL database of its own), API, worker, beat and load generator",
        "- ratio = Cascade ÷ baseline, both measured in this run on the same Redis and database",
    ]


def write(text: str) -> None:
    RESULTS.write_text(text)
