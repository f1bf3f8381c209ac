"""Hot spots: weighted (ST-)DBSCAN in metres, hot-spot summaries and the heat grid. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyproj
import pytest
from geopandas import GeoDataFrame, points_from_xy
from sklearn.cluster import DBSCAN

from fieldops.geo.crs import MONTREAL_MTM8, to_metric
from fieldops.geo.hotspots import (
    HOTSPOT_COLUMNS,
    NOISE,
    HotspotOptions,
    cluster_incidents,
    core_threshold,
    find_hotspots,
    heat_cells,
    summarise_hotspots,
)

GEOD = pyproj.Geod(ellps="WGS84")
PLATEAU = (-73.5800, 45.5230)
VERDUN = (-73.5680, 45.4580)
AT = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)


def walk(start: tuple[float, float], azimuth: float, distances_m: list[float]) -> list[tuple]:
    """Points ``distances_m`` metres from ``start`` along ``azimuth`` (degrees)."""
    n = len(distances_m)
    lons, lats, _ = GEOD.fwd([start[0]] * n, [start[1]] * n, [azimuth] * n, distances_m)
    return list(zip(lons, lats, strict=True))


def frame(
    points: list[tuple[float, float]],
    *,
    groups: list[str] | None = None,
    reports: list[int] | None = None,
    first: list[datetime] | None = None,
    last: list[datetime] | None = None,
    first_id: int = 1,
) -> GeoDataFrame:
    n = len(points)
    first = first or [AT] * n
    return GeoDataFrame(
        {
            "id": np.arange(first_id, first_id + n, dtype=np.int64),
            "service_group": groups or ["water"] * n,
            "report_count": np.asarray(reports or [1] * n, dtype=np.int64),
            "first_report_at": pd.to_datetime(first, utc=True),
            "last_report_at": pd.to_datetime(last or first, utc=True),
        },
        geometry=points_from_xy([p[0] for p in points], [p[1] for p in points]),
        crs="EPSG:4326",
    )


def test_twenty_flooded_basements_in_one_street_are_one_hot_spot() -> None:
    street = walk(PLATEAU, 60.0, [i * 15.0 for i in range(20)])
    at = [AT + timedelta(minutes=7 * i) for i in range(20)]
    incidents = frame(street, first=at, first_id=101)

    found = find_hotspots(incidents)

    assert len(found) == 1
    spot = found.iloc[0]
    assert spot["member_count"] == 20
    assert spot["report_count"] == 20
    assert spot["hotspot_id"] == 101
    assert spot["dominant_group"] == "water"
    assert spot["groups"] == {"water": 20}
    assert spot["incident_ids"] == list(range(101, 121))
    assert spot["first_report_at"] == pd.Timestamp(AT)
    assert spot["last_report_at"] == pd.Timestamp(at[-1])
    lons, lats = [p[0] for p in street], [p[1] for p in street]
    assert (spot["min_lon"], spot["max_lon"]) == pytest.approx((min(lons), max(lons)))
    assert (spot["min_lat"], spot["max_lat"]) == pytest.approx((min(lats), max(lats)))
    # The outline holds every member and reaches ~buffer_m beyond the street.
    assert found.geometry.iloc[0].covers(incidents.union_all())
    outline_m = to_metric(found).geometry.iloc[0]
    assert 25 * 285 < outline_m.area < 2 * 25 * (285 + 50)


def test_one_incident_carrying_many_merged_reports_is_a_hot_spot() -> None:
    incidents = frame([PLATEAU, VERDUN], reports=[20, 1])

    found = find_hotspots(incidents)

    assert found["member_count"].tolist() == [1]
    assert found["report_count"].tolist() == [20]


@pytest.mark.parametrize(("reports", "spots"), [(4, 0), (5, 1)])
def test_a_core_needs_min_reports_within_the_radius(reports: int, spots: int) -> None:
    points = walk(PLATEAU, 0.0, [0.0] + [190.0] * (reports - 1))

    found = find_hotspots(frame(points), HotspotOptions(radius_m=200, min_reports=5))

    assert len(found) == spots


def test_far_apart_clusters_are_separate_and_lone_incidents_are_noise() -> None:
    a = walk(PLATEAU, 90.0, [i * 30.0 for i in range(6)])
    b = walk(VERDUN, 90.0, [i * 30.0 for i in range(8)])
    lone = walk(PLATEAU, 180.0, [1500.0])
    incidents = frame(
        a + b + lone, groups=["roads"] * 6 + ["trees"] * 6 + ["water"] * 2 + ["water"]
    )

    labels = cluster_incidents(incidents)
    found = summarise_hotspots(incidents, labels)

    assert labels.tolist() == [0] * 6 + [1] * 8 + [NOISE]
    # Most reports first; the Verdun spot has 6 trees and 2 water incidents.
    assert found["member_count"].tolist() == [8, 6]
    assert found["hotspot_id"].tolist() == [7, 1]
    assert found["dominant_group"].tolist() == ["trees", "roads"]
    assert found["groups"].tolist() == [{"trees": 6, "water": 2}, {"roads": 6}]


def test_dominant_group_counts_reports_and_breaks_ties_alphabetically() -> None:
    points = walk(PLATEAU, 0.0, [0.0, 10.0, 20.0, 30.0])
    weighted = frame(points, groups=["water", "roads", "roads", "trees"], reports=[5, 1, 1, 1])
    tied = frame(points, groups=["water", "water", "roads", "roads"])

    assert find_hotspots(weighted, HotspotOptions(min_reports=2))["dominant_group"][0] == "water"
    assert find_hotspots(tied, HotspotOptions(min_reports=2))["dominant_group"][0] == "roads"


def test_a_time_window_splits_reports_of_one_place_far_apart_in_time() -> None:
    points = walk(PLATEAU, 45.0, [i * 20.0 for i in range(10)])
    first = [AT] * 5 + [AT + timedelta(days=10)] * 5
    incidents = frame(points, first=first)

    spatial = find_hotspots(incidents)
    timed = find_hotspots(incidents, HotspotOptions(window=timedelta(hours=24)))

    assert spatial["member_count"].tolist() == [10]
    assert sorted(timed["member_count"].tolist()) == [5, 5]
    assert sorted(timed["first_report_at"].tolist()) == [
        pd.Timestamp(AT),
        pd.Timestamp(AT + timedelta(days=10)),
    ]


def test_overlapping_report_periods_are_close_in_time() -> None:
    points = walk(PLATEAU, 45.0, [i * 20.0 for i in range(6)])
    # Each incident was reported over a week; they overlap, so the gap between them is 0.
    first = [AT + timedelta(days=i) for i in range(6)]
    last = [t + timedelta(days=7) for t in first]
    incidents = frame(points, first=first, last=last)

    found = find_hotspots(incidents, HotspotOptions(window=timedelta(hours=1)))

    assert found["member_count"].tolist() == [6]


def test_in_a_surge_the_bar_rises_with_the_city_wide_density() -> None:
    rng = np.random.default_rng(7)
    # 1,000 incidents spread over 3 km x 3 km, and one tight cluster of 60.
    spread = walk(VERDUN, 0.0, [0.0])[0]
    east_m = rng.uniform(-1500, 1500, 1000)
    north_m = rng.uniform(-1500, 1500, 1000)
    lons, lats, _ = GEOD.fwd(
        [spread[0]] * 1000,
        [spread[1]] * 1000,
        np.degrees(np.arctan2(east_m, north_m)),
        np.hypot(east_m, north_m),
    )
    tight = walk(PLATEAU, 30.0, list(rng.uniform(0, 60, 60)))
    incidents = frame(list(zip(lons, lats, strict=True)) + tight)

    fixed = find_hotspots(incidents)
    relative = find_hotspots(incidents, HotspotOptions(area_m2=3000.0 * 3000.0))

    assert fixed["member_count"].max() > 900  # the whole background percolates
    assert relative["member_count"].tolist() == [60]


def test_core_threshold() -> None:
    assert core_threshold(10_000, HotspotOptions(min_reports=5)) == 5
    assert core_threshold(40, HotspotOptions(radius_m=200, area_m2=5e8)) == 5
    # 150,000 reports over 500 km²: 37.7 per 200 m circle on average, times 3.
    assert core_threshold(150_000, HotspotOptions(radius_m=200, area_m2=5e8)) == 114


def test_matches_scikit_learn_dbscan_on_noise_and_core_partition() -> None:
    rng = np.random.default_rng(11)
    centres = walk(PLATEAU, 120.0, [0.0, 900.0, 1800.0, 2700.0])
    points = []
    for lon, lat in centres:
        az = rng.uniform(0, 360, 150)
        dist = np.abs(rng.normal(0, 120, 150))
        lons, lats, _ = GEOD.fwd([lon] * 150, [lat] * 150, az, dist)
        points += list(zip(lons, lats, strict=True))
    reports = rng.integers(1, 4, len(points)).tolist()
    incidents = frame(points, reports=reports)
    xy = to_metric(incidents.geometry, MONTREAL_MTM8).get_coordinates().to_numpy()

    ours = cluster_incidents(incidents, HotspotOptions(radius_m=60, min_reports=12))
    model = DBSCAN(eps=60, min_samples=12).fit(xy, sample_weight=np.asarray(reports))
    theirs = model.labels_

    assert np.array_equal(ours == NOISE, theirs == NOISE)
    core = np.zeros(len(points), dtype=bool)
    core[model.core_sample_indices_] = True
    pairs = set(zip(ours[core].tolist(), theirs[core].tolist(), strict=True))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    assert len(pairs) > 1


def test_no_incident_and_no_hot_spot_give_empty_frames_with_the_columns() -> None:
    empty = frame([])
    assert cluster_incidents(empty).tolist() == []
    for found in (find_hotspots(empty), find_hotspots(frame([PLATEAU, VERDUN]))):
        assert len(found) == 0
        assert list(found.columns) == [*HOTSPOT_COLUMNS, "geometry"]
        assert found.crs == "EPSG:4326"


def test_a_frame_in_another_crs_is_refused() -> None:
    metric = to_metric(frame([PLATEAU]))
    with pytest.raises(ValueError, match="expected CRS EPSG:4326, got EPSG:32188"):
        find_hotspots(metric)


def test_every_problem_with_a_frame_is_named_at_once() -> None:
    broken = frame([PLATEAU, VERDUN], reports=[1, 0]).drop(columns=["service_group"])
    with pytest.raises(ValueError, match=r"missing column 'service_group'.*report_count must"):
        find_hotspots(broken)


def test_naive_report_times_are_refused_with_a_window() -> None:
    naive = frame(walk(PLATEAU, 0.0, [0.0, 10.0]))
    naive["first_report_at"] = naive["first_report_at"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="first_report_at' must hold tz-aware instants"):
        find_hotspots(naive, HotspotOptions(window=timedelta(hours=1), min_reports=1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (HotspotOptions(radius_m=0), "radius_m must be a finite number above 0"),
        (HotspotOptions(min_reports=0), "min_reports must be at least 1"),
        (HotspotOptions(window=timedelta(0)), "window must be positive"),
        (HotspotOptions(area_m2=float("nan")), "area_m2 must be a finite number"),
        (HotspotOptions(buffer_m=-1, radius_m=float("inf")), "radius_m.*; buffer_m"),
    ],
)
def test_options_out_of_range_are_refused(options: HotspotOptions, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        find_hotspots(frame([PLATEAU]), options)


def test_heat_cells_count_incidents_and_reports_per_cell() -> None:
    near = walk(PLATEAU, 90.0, [0.0, 5.0, 10.0])
    incidents = frame([*near, VERDUN], reports=[1, 2, 3, 4])

    cells = heat_cells(incidents, cell_m=500.0)

    assert sorted(cells["incident_count"].tolist()) == [1, 3]
    assert sorted(cells["report_count"].tolist()) == [4, 6]
    assert int(cells["incident_count"].sum()) == 4
    # Each centre lies in its own cell, within half a diagonal of its incidents.
    centre = cells.loc[cells["incident_count"] == 3].geometry.iloc[0]
    _az, _back, dist_m = GEOD.inv(centre.x, centre.y, PLATEAU[0], PLATEAU[1])
    assert dist_m < 500 * 2**0.5 / 2 + 1


def test_heat_cells_of_nothing_is_empty() -> None:
    cells = heat_cells(frame([]))
    assert len(cells) == 0
    assert {"cell_x", "cell_y", "incident_count", "report_count"} <= set(cells.columns)
