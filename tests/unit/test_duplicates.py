"""Duplicate matching: nearest report within a radius, and the search box around a point."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest

from fieldops.geo.crs import local_metres
from fieldops.geo.duplicates import bbox_around, nearest_within

GEOD = pyproj.Geod(ellps="WGS84")
CITY_HALL = (-73.5540, 45.5088)


def offsets(lon: float, lat: float, moves: list[tuple[float, float]]) -> tuple[list, list]:
    """Points at geodesic (azimuth_deg, distance_m) moves from (lon, lat)."""
    if not moves:
        return [], []
    azimuths = [azimuth for azimuth, _ in moves]
    distances = [distance for _, distance in moves]
    lons, lats, _ = GEOD.fwd([lon] * len(moves), [lat] * len(moves), azimuths, distances)
    return list(lons), list(lats)


@pytest.mark.parametrize(
    ("moves", "radius_m", "expected"),
    [
        ([(0, 47.0)], 50.0, 0),
        ([(0, 53.0)], 50.0, None),
        ([(90, 53.0), (270, 47.0)], 50.0, 1),
        ([(45, 30.0), (200, 10.0), (300, 20.0)], 50.0, 1),
        ([(135, 997.0)], 1_000.0, 0),
        ([(135, 1_003.0)], 1_000.0, None),
        ([(10, 5_003.0), (190, 4_997.0)], 5_000.0, 1),
        ([(0, 0.5)], 0.0, None),
        ([], 50.0, None),
    ],
)
def test_nearest_within_at_the_edge_of_the_radius(moves, radius_m, expected):
    cand_lon, cand_lat = offsets(*CITY_HALL, moves)
    assert nearest_within(*CITY_HALL, cand_lon, cand_lat, radius_m) == expected


def test_equally_near_candidates_go_to_the_lowest_position():
    cand_lon, cand_lat = offsets(*CITY_HALL, [(0, 30.0), (90, 20.0), (90, 20.0), (90, 20.0)])
    assert nearest_within(*CITY_HALL, cand_lon, cand_lat, 50.0) == 1
    assert nearest_within(*CITY_HALL, cand_lon[::-1], cand_lat[::-1], 50.0) == 0


def test_a_candidate_exactly_at_the_radius_counts():
    cand_lon, cand_lat = offsets(*CITY_HALL, [(60, 40.0)])
    dx_m, dy_m = local_metres(*CITY_HALL, cand_lon, cand_lat)
    radius_m = float(np.hypot(dx_m, dy_m)[0])
    assert nearest_within(*CITY_HALL, cand_lon, cand_lat, radius_m) == 0
    assert nearest_within(*CITY_HALL, cand_lon, cand_lat, math.nextafter(radius_m, 0)) is None


def test_a_zero_radius_matches_only_the_same_position():
    lon, lat = CITY_HALL
    assert nearest_within(lon, lat, [lon + 1e-7, lon], [lat, lat], 0.0) == 1


def test_candidates_without_coordinates_never_match():
    cand_lon, cand_lat = offsets(*CITY_HALL, [(0, 5.0), (0, 10.0)])
    cand_lon[0] = math.nan
    assert nearest_within(*CITY_HALL, np.array(cand_lon), np.array(cand_lat), 50.0) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((*CITY_HALL, [], [], -1.0), "radius_m must be a finite distance of at least 0, got -1.0"),
        ((*CITY_HALL, [], [], math.nan), "radius_m must be a finite distance"),
        ((math.nan, 45.5, [], [], 10.0), "not finite"),
        ((-73.5, 145.5, [], [], 10.0), "not a WGS 84 lon/lat"),
        ((*CITY_HALL, [1.0, 2.0], [1.0], 10.0), r"got shapes \(2,\) and \(1,\)"),
        ((*CITY_HALL, [[1.0]], [[1.0]], 10.0), "must be 1-D"),
    ],
)
def test_nearest_within_refuses_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        nearest_within(*args)


AZIMUTHS = np.arange(0.0, 360.0, 0.25)


def circle(lon: float, lat: float, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    n = AZIMUTHS.size
    lons, lats, _ = GEOD.fwd(
        np.full(n, lon), np.full(n, lat), AZIMUTHS, np.full(n, radius_m), return_back_azimuth=False
    )
    return np.asarray(lons), np.asarray(lats)


@pytest.mark.parametrize(
    ("lon", "lat"),
    [CITY_HALL, (0.0, 0.0), (151.2, -33.9), (-20.0, 60.0), (10.0, -84.9), (100.0, 84.9)],
)
@pytest.mark.parametrize("radius_m", [1.0, 50.0, 250.0, 5_000.0, 100_000.0])
def test_bbox_around_holds_the_whole_circle(lon, lat, radius_m):
    min_lon, min_lat, max_lon, max_lat = bbox_around(lon, lat, radius_m)
    lons, lats = circle(lon, lat, radius_m)
    assert (lons >= min_lon).all() and (lons <= max_lon).all()
    assert (lats >= min_lat).all() and (lats <= max_lat).all()


@pytest.mark.parametrize("radius_m", [25.0, 250.0, 5_000.0])
def test_bbox_around_is_tight_in_montreal(radius_m):
    min_lon, min_lat, max_lon, max_lat = bbox_around(*CITY_HALL, radius_m)
    lons, lats = circle(*CITY_HALL, radius_m)
    assert (max_lon - min_lon) <= (lons.max() - lons.min()) * 1.001
    assert (max_lat - min_lat) <= (lats.max() - lats.min()) * 1.001


def test_bbox_around_reaching_a_pole_spans_every_longitude():
    assert bbox_around(30.0, 89.99, 5_000.0)[0::2] == (-180.0, 180.0)
    assert bbox_around(30.0, 89.99, 5_000.0)[3] == 90.0
    assert bbox_around(30.0, -89.99, 5_000.0)[1] == -90.0


def test_bbox_around_crossing_the_antimeridian_spans_every_longitude():
    min_lon, min_lat, max_lon, max_lat = bbox_around(179.9999, 10.0, 1_000.0)
    assert (min_lon, max_lon) == (-180.0, 180.0)
    assert min_lat < 10.0 < max_lat


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-73.5, 91.0, 10.0), "not a WGS 84 lon/lat"),
        ((math.inf, 45.0, 10.0), "not finite"),
        ((-73.5, 45.0, -5.0), "radius_m must be a finite distance"),
    ],
)
def test_bbox_around_refuses_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        bbox_around(*args)
