"""Historical replay: a drill's arrivals taken from a real Montréal 311 export.

The export is read by intake's own parser (``fieldops.intake.montreal311.read_export``), so a
replayed row is exactly the report ``fieldops import-311`` would make of it; only its instant
moves: a window of real time [since, until) is squeezed into the drill, ``speedup`` real
hours per drill hour. Rows the parser skips are counted by why (no coordinates, or anything
else); rows outside the window are counted too. No database, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from fieldops.drills.spec import Replay, as_datetime
from fieldops.drills.world import Arrival, jitter
from fieldops.intake.montreal311 import read_export

# The parser's reason for a row without coordinates starts with these words.
NO_COORDINATES = "no coordinates"


@dataclass
class ReplayCounts:
    """What happened to the rows of the replayed exports (summed over every [[replay]])."""

    rows_read: int = 0
    skipped_no_coordinates: int = 0
    skipped_other: int = 0
    outside_window: int = 0
    other_service: int = 0
    replayed: int = 0  # arrivals made from the rows (scale may drop or repeat rows)
    speedup: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "rows_read": self.rows_read,
            "skipped_no_coordinates": self.skipped_no_coordinates,
            "skipped_other": self.skipped_other,
            "outside_window": self.outside_window,
            "other_service": self.other_service,
            "replayed": self.replayed,
            "speedup": [round(s, 3) for s in self.speedup],
        }


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def replay_arrivals(
    replays: list[Replay],
    paths: list[Path],
    *,
    first_stream: int,
    start: datetime,
    duration_h: float,
    fit_h: float,
    scale: float,
    keywords: dict[str, str],
    timezone: str,
    rng: np.random.Generator,
    counts: ReplayCounts,
) -> list[Arrival]:
    """Every replayed arrival of the drill, in time order; ``paths[k]`` is replays[k]'s file.

    Without a ``speedup`` the window is fitted into ``fit_h`` drill hours (the scenario's
    duration), and a shorter run (``duration_h``) stops part-way through it.

    ``scale`` below 1 keeps each row with that probability; above 1 a row is repeated
    (its integer part, plus one more with the fractional part's probability), each copy
    within the next drill hour and ``jitter_m`` around it, as more callers about the same
    thing would be.
    """
    zone = ZoneInfo(timezone)
    end_s = duration_h * 3600.0
    out: list[Arrival] = []
    for k, (replay, path) in enumerate(zip(replays, paths, strict=True)):
        parsed = read_export(path, keywords=keywords, timezone=timezone)
        counts.rows_read += len(parsed.rows) + len(parsed.skipped)
        for problem in parsed.skipped:
            if problem.message.startswith(NO_COORDINATES):
                counts.skipped_no_coordinates += 1
            else:
                counts.skipped_other += 1
        since = _aware(as_datetime(replay.since), zone)
        until = _aware(as_datetime(replay.until), zone)
        window_h = (until - since).total_seconds() / 3600.0
        speedup = replay.speedup or window_h / fit_h
        counts.speedup.append(speedup)
        wanted = set(replay.services)
        rows = []
        for line, report in sorted(parsed.rows, key=lambda r: (r[1].requested_at or since, r[0])):
            at = report.requested_at or since
            if wanted and report.service_code not in wanted:
                counts.other_service += 1
                continue
            offset_s = (at - since).total_seconds() / speedup
            if not since <= at < until or offset_s >= end_s:
                counts.outside_window += 1
                continue
            rows.append((line, report, offset_s))
        copies = _copies(scale, len(rows), rng)
        for (line, report, offset_s), n in zip(rows, copies.tolist(), strict=True):
            for copy in range(n):
                lon, lat, delay_s = report.lon, report.lat, 0.0
                if copy:
                    delay_s = float(rng.uniform(0, 3600.0))
                    if replay.jitter_m > 0:
                        lons, lats = jitter(np.array([lon]), np.array([lat]), replay.jitter_m, rng)
                        lon, lat = float(lons[0]), float(lats[0])
                at_s = offset_s + delay_s
                if at_s >= end_s:
                    continue
                out.append(
                    Arrival(
                        at=start + timedelta(seconds=round(at_s, 3)),
                        stream=first_stream + k,
                        service_code=report.service_code,
                        lon=round(lon, 7),
                        lat=round(lat, 7),
                        priority=None,
                        duplicate=copy > 0,
                        origin=f"{report.source_ref or 'row'}@{path.name}:{line}"
                        + (f"#{copy}" if copy else ""),
                    )
                )
    counts.replayed += len(out)
    out.sort(key=lambda a: (a.at, a.stream))
    return out


def _copies(scale: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """How many arrivals each row makes: ``scale`` on average, at most one apart."""
    whole = int(scale)
    extra = rng.uniform(0, 1, size=n) < (scale - whole)
    return np.full(n, whole, dtype=int) + extra.astype(int)
