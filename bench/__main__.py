"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, print one table, and
write the rows to bench/results/latest.json. A missed target shows in the table, not in the
exit code; a benchmark that crashes makes the exit code 1 (the others still run)."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import Row
from fieldops.clock import SystemClock

# Every benchmark module, in the order they run: each has ``run(quick: bool) -> list[Row]``.
BENCHMARKS = [
    "districting",
    "intake_api",
    "dispatch",
    "escalation",
    "map_page",
    "drills",
    "reliability",
]
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01 or value == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def _met(met: bool | None) -> str:
    if met is None:
        return ""
    return "[green]yes[/green]" if met else "[bold red]NO[/bold red]"


def print_rows(rows: Sequence[Row], *, console: Console | None = None, title: str = "") -> None:
    """One table, one line per row."""
    table = Table(title=title or None, show_lines=False)
    for name, justify in (
        ("bench", "left"),
        ("case", "left"),
        ("value", "right"),
        ("unit", "left"),
        ("peer", "left"),
        ("peer value", "right"),
        ("ratio", "right"),
        ("target", "left"),
        ("met", "center"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            row.bench,
            row.case,
            _number(row.value),
            row.unit,
            row.peer,
            _number(row.peer_value),
            f"{row.ratio:.2f}" if row.ratio is not None else "—",
            row.target,
            _met(row.met),
        )
    (console or Console()).print(table)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(rows: Sequence[Row], *, path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **meta,
        "rows": [{k: _json_safe(v) for k, v in asdict(row).items()} for row in rows],
    }
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument(
        "--only",
        nargs="+",
        action="extend",
        metavar="NAME",
        choices=BENCHMARKS,
        help=f"run only these benchmarks (of: {', '.join(BENCHMARKS)})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    selected = [name for name in BENCHMARKS if not args.only or name in args.only]
    console = Console()
    if not console.is_terminal:
        # Piped into a file or a CI log: do not squeeze the table into 80 columns.
        console = Console(width=240)
    started_at = SystemClock().now()
    started = time.perf_counter()
    rows: list[Row] = []
    crashed: list[str] = []
    for name in selected:
        console.print(f"[dim]running {name}{' (quick)' if args.quick else ''}...[/dim]")
        begun = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            rows += module.run(args.quick)
        except Exception as exc:
            crashed.append(name)
            traceback.print_exc()
            rows.append(
                Row(
                    bench=name,
                    case=f"crashed: {exc.__class__.__name__}: {exc}",
                    value=float("nan"),
                    unit="",
                    met=False,
                )
            )
        console.print(f"[dim]{name}: {time.perf_counter() - begun:.1f} s[/dim]")
    elapsed = time.perf_counter() - started
    print_rows(rows, console=console, title=f"fieldops benchmarks ({elapsed:.0f} s)")
    write_results(
        rows,
        path=RESULTS,
        meta={
            "started_at": started_at.isoformat(),
            "quick": args.quick,
            "benchmarks": selected,
            "elapsed_s": round(elapsed, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
    )
    console.print(f"rows written to {RESULTS}")
    missed = [r for r in rows if r.met is False]
    if missed:
        console.print(f"{len(missed)} target(s) missed (see the met column).")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
