"""Property tests of the pure geometry: districting, duplicate search, hot spots, CRS helpers
and emergency areas, on degenerate shapes, antimeridian and pole coordinates, NaN and
infinities, and empty inputs. Each must answer correctly or refuse with a ValueError (or
InvalidInput naming the field) that says what is wrong; never crash otherwise, never
answer a wrong district."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyproj
import pytest
import shapely
from fuzz_support import RELIABILITY
from geopandas import GeoDataFrame, GeoSeries, points_from_xy
from hypothesis import given, note, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from fieldops.emergencies.area import parse_area
from fieldops.errors import InvalidInput
from fieldops.geo.crs import WGS84, local_metres, require_crs, to_metric
from fieldops.geo.districting import NOT_FOUND, DistrictIndex
from fieldops.geo.duplicates import bbox_around, nearest_within
from fieldops.geo.hotspots import HotspotOptions, cluster_incidents, find_hotspots, heat_cells

GEOD = pyproj.Geod(ellps="WGS84")
AT = datetime(2026, 5, 4, tzinfo=UTC)
ODD = [math.nan, math.inf, -math.inf, 1e308, -1e308]
LON = st.floats(-180, 180, allow_nan=False)
LAT = st.floats(-90, 90, allow_nan=False)
ANY_FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ODD))


# --- districting ---------------------------------------------------------------------------


@st.composite
def tilings(draw: st.DrawFn) -> tuple[list[Polygon], float, float, float, float]:
    """Adjacent boxes tiling a rectangle anywhere on the globe, up to the antimeridian
    and the poles: shared borders everywhere, exact answers known."""
    columns, rows = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    width, height = (
        draw(st.sampled_from([1e-4, 0.01, 0.5, 7.0])),
        draw(st.sampled_from([1e-4, 0.3, 5.0])),
    )
    lon0 = draw(st.floats(-180, 180 - columns * width))
    lat0 = draw(st.floats(-90, 90 - rows * height))
    if draw(st.booleans()):  # flush against the antimeridian and a pole
        lon0, lat0 = 180 - columns * width, 90 - rows * height
    cells = [
        box(lon0 + i * width, lat0 + j * height, lon0 + (i + 1) * width, lat0 + (j + 1) * height)
        for j in range(rows)
        for i in range(columns)
    ]
    return cells, lon0, lat0, width, height


def _expected(cells: list[Polygon], lon: float, lat: float) -> int:
    """The first district (in index order) whose polygon holds the point, border included."""
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return NOT_FOUND
    return next((k for k, c in enumerate(cells) if c.intersects(Point(lon, lat))), NOT_FOUND)


@settings(RELIABILITY, max_examples=60)
@given(tiling=tilings(), u=st.lists(st.floats(-0.2, 1.2), min_size=1, max_size=8), data=st.data())
def test_a_point_gets_the_first_district_that_holds_it_or_none(
    tiling: tuple[list[Polygon], float, float, float, float], u: list[float], data: Any
) -> None:
    cells, lon0, lat0, width, height = tiling
    columns = round((cells[-1].bounds[2] - lon0) / width)
    rows = round((cells[-1].bounds[3] - lat0) / height)
    v = data.draw(st.lists(st.floats(-0.2, 1.2), min_size=len(u), max_size=len(u)))
    lons = [lon0 + a * columns * width for a in u]
    lats = [lat0 + b * rows * height for b in v]
    # Points exactly on borders and corners, and points that are not numbers.
    lons += [lon0 + width, lon0, cells[-1].bounds[2], math.nan, math.inf]
    lats += [lat0 + height, lat0, cells[-1].bounds[3], lat0, -math.inf]
    index = DistrictIndex(list(range(len(cells))), cells, grid_size=data.draw(st.integers(1, 64)))

    found = index.locate_many(lons, lats)

    expected = [_expected(cells, x, y) for x, y in zip(lons, lats, strict=True)]
    assert found.tolist() == expected
    singles = [index.locate(x, y) for x, y in zip(lons, lats, strict=True)]
    assert singles == [None if e == NOT_FOUND else e for e in expected]


def test_no_points_give_an_empty_answer_of_the_same_shape() -> None:
    index = DistrictIndex(["a"], [box(0, 0, 1, 1)])
    assert index.locate_many([], []).shape == (0,)
    assert index.locate_many(np.empty((0, 3)), np.empty((0, 3))).shape == (0, 3)
    with pytest.raises(ValueError, match="lon has shape"):
        index.locate_many([0.5, 0.5], [0.5])


@pytest.mark.parametrize(
    ("polygon", "reason"),
    [
        (Polygon(), "geometry is empty"),
        (None, "geometry is missing"),
        (Polygon([(0, 0), (1, 1), (2, 2), (0, 0)]), "geometry is invalid"),
        (
            Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)]),
            r"geometry is invalid \(Self-intersection",
        ),
        (LineString([(0, 0), (1, 1)]), "geometry is a LineString"),
        (Point(0, 0).buffer(0), "geometry is empty"),
    ],
)
def test_a_degenerate_district_is_refused_naming_it(polygon: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"district 'bad' \(position 1\): {reason}"):
        DistrictIndex(["good", "bad"], [box(0, 0, 1, 1), polygon])


def test_no_districts_or_a_frame_without_its_crs_are_refused() -> None:
    with pytest.raises(ValueError, match="no districts"):
        DistrictIndex([], [])
    frame = GeoDataFrame({"code": []}, geometry=GeoSeries([]))
    with pytest.raises(ValueError, match="no CRS"):
        DistrictIndex.from_frame(frame, key_column="code")
    empty = GeoDataFrame({"code": []}, geometry=GeoSeries([], crs=WGS84))
    with pytest.raises(ValueError, match="no districts"):
        DistrictIndex.from_frame(empty, key_column="code")


# --- duplicates: the search box and the nearest candidate ---------------------------------


@settings(RELIABILITY, max_examples=150)
@given(
    lon=LON,
    lat=st.one_of(LAT, st.sampled_from([90.0, -90.0, 89.9999, -89.9999, 0.0])),
    radius_m=st.floats(0, 50_000),
    bearing=st.floats(-180, 180),
    fraction=st.floats(0, 1),
)
def test_the_search_box_holds_every_point_within_the_radius(
    lon: float, lat: float, radius_m: float, bearing: float, fraction: float
) -> None:
    min_lon, min_lat, max_lon, max_lat = bbox_around(lon, lat, radius_m)
    assert -180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90

    end_lon, end_lat, _ = GEOD.fwd(lon, lat, bearing, radius_m * fraction)
    note(f"box {(min_lon, min_lat, max_lon, max_lat)}, reached {(end_lon, end_lat)}")
    # A point reached across the antimeridian is on the other side: the box spans it all.
    # Within the geodesic's own rounding (1e-9 degrees is 0.1 mm).
    assert min_lat - 1e-9 <= end_lat <= max_lat + 1e-9
    assert min_lon - 1e-9 <= end_lon <= max_lon + 1e-9 or (min_lon, max_lon) == (-180.0, 180.0)


@settings(RELIABILITY, max_examples=80)
@given(lon=ANY_FLOAT, lat=ANY_FLOAT, radius_m=ANY_FLOAT)
def test_a_position_or_radius_that_is_not_one_is_refused(
    lon: float, lat: float, radius_m: float
) -> None:
    valid = (
        math.isfinite(lon)
        and math.isfinite(lat)
        and -180 <= lon <= 180
        and -90 <= lat <= 90
        and math.isfinite(radius_m)
        and radius_m >= 0
    )
    if valid:
        assert len(bbox_around(lon, lat, radius_m)) == 4
        assert nearest_within(lon, lat, [], [], radius_m) is None
        return
    with pytest.raises(ValueError, match=r"position|radius_m"):
        bbox_around(lon, lat, radius_m)
    with pytest.raises(ValueError, match=r"position|radius_m"):
        nearest_within(lon, lat, [0.0], [0.0], radius_m)


@settings(RELIABILITY, max_examples=80)
@given(
    lon=st.sampled_from([-73.58, 179.9999, -179.9999, 0.0]),
    lat=st.sampled_from([45.52, 0.0, 84.0, -60.0]),
    offsets=st.lists(
        st.tuples(st.floats(-0.01, 0.01), st.floats(-0.01, 0.01), st.booleans()), max_size=12
    ),
    radius_m=st.floats(0, 2000),
)
def test_the_nearest_candidate_is_the_nearest_and_nan_ones_never_match(
    lon: float, lat: float, offsets: list[tuple[float, float, bool]], radius_m: float
) -> None:
    cand_lon = [((lon + dx + 180) % 360) - 180 if ok else math.nan for dx, _, ok in offsets]
    cand_lat = [max(-90.0, min(90.0, lat + dy)) for _, dy, _ in offsets]

    found = nearest_within(lon, lat, cand_lon, cand_lat, radius_m)

    distances = [
        math.hypot(*(float(v) for v in local_metres(lon, lat, x, y)))
        if math.isfinite(x)
        else math.inf
        for x, y in zip(cand_lon, cand_lat, strict=True)
    ]
    # Within a micrometre either answer is right (squares of tiny distances underflow).
    if found is None:
        assert all(d > radius_m - 1e-6 for d in distances)
    else:
        assert math.isfinite(cand_lon[found])
        assert distances[found] <= radius_m + 1e-6
        assert distances[found] <= min(distances) + 1e-6


def test_metric_offsets_wrap_across_the_antimeridian() -> None:
    dx_m, dy_m = local_metres(179.9999, 0.0, [-179.9999], [0.0])
    assert 0 < float(dx_m[0]) < 30 and float(dy_m[0]) == 0.0
    with pytest.raises(ValueError, match="no CRS"):
        to_metric(GeoSeries([Point(0, 0)]))
    with pytest.raises(ValueError, match="not a projected CRS in metres"):
        to_metric(GeoSeries([Point(0, 0)], crs=WGS84), WGS84)
    with pytest.raises(ValueError, match="expected CRS EPSG:4326"):
        require_crs(GeoSeries([Point(0, 0)], crs="EPSG:32188"), WGS84)


# --- hot spots -----------------------------------------------------------------------------


def _incidents(
    lons: list[float], lats: list[float], counts: list[int] | None = None
) -> GeoDataFrame:
    n = len(lons)
    return GeoDataFrame(
        {
            "id": list(range(1, n + 1)),
            "service_group": ["water"] * n,
            "report_count": counts or [1] * n,
            "first_report_at": [AT] * n,
            "last_report_at": [AT] * n,
        },
        geometry=points_from_xy(lons, lats),
        crs=WGS84,
    )


@settings(RELIABILITY, max_examples=40)
@given(
    points=st.lists(
        st.tuples(st.floats(-73.62, -73.55), st.floats(45.49, 45.53), st.integers(1, 4)),
        max_size=30,
    ),
    radius_m=st.floats(10, 500),
    min_reports=st.integers(1, 12),
)
def test_hot_spots_account_for_every_incident_once(
    points: list[tuple[float, float, int]], radius_m: float, min_reports: int
) -> None:
    frame = _incidents([p[0] for p in points], [p[1] for p in points], [p[2] for p in points])
    options = HotspotOptions(radius_m=radius_m, min_reports=min_reports)

    labels = cluster_incidents(frame, options)
    spots = find_hotspots(frame, options)

    assert labels.shape == (len(points),)
    assert set(labels.tolist()) <= {-1, *range(len(spots))}
    members = sorted(i for ids in spots["incident_ids"] for i in ids)
    assert members == sorted(int(i) for i in frame["id"][labels != -1])
    assert int(spots["report_count"].sum()) == int(frame["report_count"][labels != -1].sum())
    cells = heat_cells(frame)
    assert int(cells["report_count"].sum()) == int(frame["report_count"].sum())


@pytest.mark.parametrize("bad", ODD)
def test_an_incident_at_a_position_that_is_not_a_place_is_refused(bad: float) -> None:
    frame = _incidents([-73.58, bad], [45.52, 45.52])
    for compute in (cluster_incidents, find_hotspots, heat_cells):
        with pytest.raises(
            ValueError, match=r"incident frame: 1 (points are not lon/lat|geometries)"
        ):
            compute(frame)


def test_no_incidents_give_no_hot_spots_and_no_heat() -> None:
    frame = _incidents([], [])
    assert cluster_incidents(frame).shape == (0,)
    assert len(find_hotspots(frame)) == 0
    assert len(heat_cells(frame)) == 0


# --- emergency areas -----------------------------------------------------------------------

CITY = [box(-74.0, 45.4, -73.4, 45.75)]
JSON_VALUE = st.recursive(
    st.one_of(
        st.none(), st.booleans(), ANY_FLOAT, st.integers(-(2**70), 2**70), st.text(max_size=8)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
RING = st.lists(st.tuples(st.floats(-74.0, -73.4), st.floats(45.4, 45.75)), min_size=3, max_size=8)


@settings(RELIABILITY, max_examples=150)
@given(
    geojson=st.one_of(
        JSON_VALUE,
        st.fixed_dictionaries(
            {"type": st.sampled_from(["Polygon", "MultiPolygon"]), "coordinates": JSON_VALUE}
        ),
        RING.map(lambda r: {"type": "Polygon", "coordinates": [[*map(list, r), list(r[0])]]}),
        st.lists(ANY_FLOAT, min_size=2, max_size=2).map(
            lambda p: {"type": "Polygon", "coordinates": [[p, [-73.6, 45.5], [-73.5, 45.6], p]]}
        ),
    )
)
def test_any_area_is_a_valid_multipolygon_or_a_problem_naming_the_field(geojson: Any) -> None:
    try:
        area = parse_area(geojson, CITY, field="area")
    except InvalidInput as exc:
        assert exc.problems and all(p.field == "area" for p in exc.problems)
        assert exc.detail.startswith("area: ")
        return
    assert isinstance(area, MultiPolygon) and area.is_valid and not area.is_empty
    assert shapely.intersects(area, CITY[0])
