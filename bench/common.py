"""What every benchmark reports: rows of one table, medians, and ratios against a peer."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POSTGIS_ENV = "FIELDOPS_BENCH_POSTGIS_URL"


class Skip(Exception):
    """This part of a benchmark cannot run here (its reason becomes a row)."""


def postgis_base_url() -> str:
    """``$FIELDOPS_BENCH_POSTGIS_URL``, else the URL ``scripts/postgis.sh fieldops_bench``
    prints after installing and starting PostGIS where missing; Skip when neither works."""
    url = os.environ.get(POSTGIS_ENV, "").strip()
    if url:
        return url
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "postgis.sh"), "fieldops_bench"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Skip(f"{POSTGIS_ENV} unset and scripts/postgis.sh failed: {exc}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Skip(f"{POSTGIS_ENV} unset and scripts/postgis.sh failed: {last}")
    return lines[-1].strip()


@dataclass(frozen=True)
class Row:
    """One measured figure.

    ``peer`` names what the figure is compared with in the same run and ``ratio``
    is ours divided by the peer's (so for throughput higher is better, for
    latency lower is better). ``target`` is the goal in words, ``met`` whether
    this run reached it (``None`` where there is no target).
    """

    bench: str
    case: str
    value: float
    unit: str
    peer: str = ""
    peer_value: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


def median_seconds(fn: Callable[[], object], *, repeat: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
