"""District matching speed: DistrictIndex against a plain geopandas.sjoin on the same points."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import geopandas
import numpy as np

from bench.common import Row, median_seconds
from fieldops.geo.districting import NOT_FOUND, DistrictIndex

BENCH = "districting"
ROOT = Path(__file__).resolve().parents[1]
DATA_DIRS = (ROOT / "layers",)
MONTREAL_BBOX = (-73.9966, 45.3854, -73.4739, 45.7076)
SINGLE_CALLS = 10_000
SJOIN_SINGLE_CALLS = 200


def _districts() -> geopandas.GeoDataFrame:
    for folder in DATA_DIRS:
        path = folder / "limadmin.geojson"
        if path.is_file():
            return geopandas.read_file(path)
    raise FileNotFoundError(f"limadmin.geojson is in none of {[str(d) for d in DATA_DIRS]}")


def _random_points(n: int, seed: int = 2017) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    min_lon, min_lat, max_lon, max_lat = MONTREAL_BBOX
    return rng.uniform(min_lon, max_lon, n), rng.uniform(min_lat, max_lat, n)


def _sjoin_positions(
    points: geopandas.GeoDataFrame, districts: geopandas.GeoDataFrame
) -> np.ndarray:
    joined = geopandas.sjoin(points, districts, predicate="within")
    positions = np.full(len(points), NOT_FOUND)
    positions[joined.index.to_numpy()] = joined["index_right"].to_numpy()
    return positions


def run(quick: bool = False) -> list[Row]:
    """Measure bulk and single-point district matching; ``quick`` uses 20,000 points."""
    districts = _districts()
    index = DistrictIndex.from_frame(districts, key_column="NOM")
    n_points = 20_000 if quick else 200_000
    repeat = 5 if quick else 7
    lon, lat = _random_points(n_points)
    points = geopandas.GeoDataFrame(geometry=geopandas.points_from_xy(lon, lat), crs=districts.crs)

    ours = index.locate_many(lon, lat)
    theirs = _sjoin_positions(points, districts)
    if not np.array_equal(ours, theirs):
        differ = int((ours != theirs).sum())
        raise AssertionError(f"DistrictIndex and sjoin disagree on {differ} of {n_points} points")

    ours_s = median_seconds(lambda: index.locate_many(lon, lat), repeat=repeat)
    sjoin_s = median_seconds(
        lambda: geopandas.sjoin(points, districts, predicate="within"), repeat=repeat
    )
    ours_pps = n_points / ours_s
    sjoin_pps = n_points / sjoin_s
    bulk_ratio = ours_pps / sjoin_pps

    single_lon = lon[:SINGLE_CALLS].tolist()
    single_lat = lat[:SINGLE_CALLS].tolist()
    locate = index.locate

    def locate_loop() -> None:
        for x, y in zip(single_lon, single_lat, strict=True):
            locate(x, y)

    locate_us = median_seconds(locate_loop, repeat=repeat) / SINGLE_CALLS * 1e6

    one_point_frames = [points.iloc[[i]] for i in range(SJOIN_SINGLE_CALLS)]

    def sjoin_loop() -> None:
        for frame in one_point_frames:
            geopandas.sjoin(frame, districts, predicate="within")

    sjoin_one_us = median_seconds(sjoin_loop, repeat=repeat) / SJOIN_SINGLE_CALLS * 1e6

    return [
        Row(
            bench=BENCH,
            case=f"locate_many, {n_points:,} random points in the Montréal bbox",
            value=ours_pps,
            unit="points/s",
            peer="geopandas.sjoin(predicate='within')",
            peer_value=sjoin_pps,
            ratio=bulk_ratio,
            target="≥5x sjoin",
            met=bulk_ratio >= 5.0,
        ),
        Row(
            bench=BENCH,
            case=f"locate, one point per call (loop of {SINGLE_CALLS:,})",
            value=locate_us,
            unit="µs/call",
            peer="geopandas.sjoin on a one-point frame",
            peer_value=sjoin_one_us,
            ratio=locate_us / sjoin_one_us,
            target="<20 µs",
            met=locate_us < 20.0,
        ),
    ]


def _print(rows: list[Row]) -> None:
    for row in rows:
        peer = f"{row.peer_value:,.1f}" if row.peer_value is not None else "-"
        ratio = f"{row.ratio:.3g}" if row.ratio is not None else "-"
        print(
            f"{row.bench} | {row.case} | {row.value:,.1f} {row.unit} | "
            f"peer {row.peer}: {peer} | ratio {ratio} | target {row.target} | met {row.met}"
        )


if __name__ == "__main__":
    started = time.perf_counter()
    _print(run(quick="--quick" in sys.argv[1:]))
    print(f"({time.perf_counter() - started:.1f} s)")
