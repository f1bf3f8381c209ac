"""The simulated world of a drill, pure numpy: when and where reports arrive.

No database, no clock: the runner hands in the sampling areas and a seeded Generator, so one
scenario and one seed always give the same arrivals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from fieldops.drills.spec import Arrivals

M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class SamplingArea:
    """Where one stream of reports lands: inside ``shape``, or at one of ``points``."""

    shape: BaseGeometry | None = None
    points: NDArray[np.float64] | None = None  # (n, 2) lon, lat
    jitter_m: float = 0.0


@dataclass(frozen=True)
class Arrival:
    at: datetime
    stream: int  # index of the [[arrivals]] table
    service_code: str
    lon: float
    lat: float
    priority: int | None
    duplicate: bool  # placed next to an earlier report of the same stream on purpose
    origin: str = ""  # a replayed row: its source reference, file and line


def arrival_offsets_s(
    rate_per_h: list[tuple[float, float]],
    *,
    duration_h: float,
    scale: float,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Poisson arrival instants (seconds from the start) of a piecewise-constant rate."""
    bounds = [h for h, _ in rate_per_h] + [float("inf")]
    out: list[NDArray[np.float64]] = []
    for (start_h, rate), end_h in zip(rate_per_h, bounds[1:], strict=True):
        end_h = min(end_h, duration_h)
        if end_h <= start_h or rate <= 0:
            continue
        n = rng.poisson(rate * scale * (end_h - start_h))
        out.append(rng.uniform(start_h * 3600.0, end_h * 3600.0, size=n))
    return np.sort(np.concatenate(out)) if out else np.empty(0)


def jitter(
    lon: NDArray[np.float64], lat: NDArray[np.float64], radius_m: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Points moved a uniform distance up to ``radius_m`` in a random direction."""
    angle = rng.uniform(0, 2 * np.pi, size=len(lon))
    dist = radius_m * np.sqrt(rng.uniform(0, 1, size=len(lon)))
    dlat = dist * np.sin(angle) / M_PER_DEG_LAT
    dlon = dist * np.cos(angle) / (M_PER_DEG_LAT * np.cos(np.radians(lat)))
    return lon + dlon, lat + dlat


def sample_points(
    area: SamplingArea,
    n: int,
    *,
    rng: np.random.Generator,
    served: Callable[[NDArray[np.float64], NDArray[np.float64]], NDArray[np.bool_]],
) -> NDArray[np.float64]:
    """``n`` points of ``area`` that the city serves (``served`` says which are)."""
    if n == 0:
        return np.empty((0, 2))
    if area.points is not None:
        pts = area.points[served(area.points[:, 0], area.points[:, 1])]
        if len(pts) == 0:
            raise ValueError("no point of the area lies in a served district")
        chosen = pts[rng.integers(0, len(pts), size=n)]
        if area.jitter_m > 0:
            lon, lat = jitter(chosen[:, 0], chosen[:, 1], area.jitter_m, rng)
            chosen = np.column_stack([lon, lat])
        return chosen
    assert area.shape is not None
    shapely.prepare(area.shape)
    minx, miny, maxx, maxy = area.shape.bounds
    found: list[NDArray[np.float64]] = []
    have = 0
    for _ in range(200):  # rejection sampling; thin shapes take a few rounds
        lon = rng.uniform(minx, maxx, size=max(4 * n, 64))
        lat = rng.uniform(miny, maxy, size=len(lon))
        keep = shapely.contains_xy(area.shape, lon, lat)
        keep[keep] &= served(lon[keep], lat[keep])
        found.append(np.column_stack([lon[keep], lat[keep]]))
        have += int(keep.sum())
        if have >= n:
            break
    pts = np.concatenate(found)
    if len(pts) < n:
        raise ValueError("the area is too small or outside every served district")
    return pts[:n]


def generate_arrivals(
    streams: list[Arrivals],
    areas: list[SamplingArea],
    *,
    start: datetime,
    duration_h: float,
    scale: float,
    rng: np.random.Generator,
    served: Callable[[NDArray[np.float64], NDArray[np.float64]], NDArray[np.bool_]],
) -> list[Arrival]:
    """Every report of the drill, in time order (ties: stream order)."""
    out: list[Arrival] = []
    for k, (stream, area) in enumerate(zip(streams, areas, strict=True)):
        offsets = arrival_offsets_s(stream.rate_per_h, duration_h=duration_h, scale=scale, rng=rng)
        n = len(offsets)
        pts = sample_points(area, n, rng=rng, served=served)
        dup = rng.uniform(0, 1, size=n) < stream.duplicate_probability
        dup[0:1] = False
        # A duplicate repeats one of the last few reports of its stream, a few metres off.
        back = rng.integers(1, 6, size=n)
        for i in np.flatnonzero(dup):
            j = max(int(i) - int(back[i]), 0)
            lon, lat = jitter(pts[j : j + 1, 0], pts[j : j + 1, 1], stream.duplicate_radius_m, rng)
            if bool(served(lon, lat)[0]):
                pts[i] = (lon[0], lat[0])
            else:
                dup[i] = False
        if stream.priority_mix:
            keys = sorted(stream.priority_mix)
            weights = np.array([stream.priority_mix[p] for p in keys], dtype=float)
            prio: list[int | None] = [
                int(keys[c]) for c in rng.choice(len(keys), size=n, p=weights / weights.sum())
            ]
        else:
            prio = [None] * n
        out.extend(
            Arrival(
                at=start + timedelta(seconds=round(float(offsets[i]), 3)),
                stream=k,
                service_code=stream.service,
                lon=round(float(pts[i, 0]), 7),
                lat=round(float(pts[i, 1]), 7),
                priority=prio[i],
                duplicate=bool(dup[i]),
            )
            for i in range(n)
        )
    out.sort(key=lambda a: (a.at, a.stream))
    return out
