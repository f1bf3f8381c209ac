"""DistrictIndex against real Montréal borough polygons and real 311 records."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box

from fieldops.geo.crs import MONTREAL_MTM8
from fieldops.geo.districting import NOT_FOUND, DistrictIndex

ROOT = Path(__file__).resolve().parents[2]
DATA_DIRS = (ROOT / "layers",)
MONTREAL_BBOX = (-73.9966, 45.3854, -73.4739, 45.7076)


def data_file(name: str) -> Path:
    for folder in DATA_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} is in none of {[str(d) for d in DATA_DIRS]}")


@pytest.fixture(scope="module")
def boroughs() -> geopandas.GeoDataFrame:
    return geopandas.read_file(data_file("limadmin.geojson"))


@pytest.fixture(scope="module")
def index(boroughs: geopandas.GeoDataFrame) -> DistrictIndex:
    return DistrictIndex.from_frame(boroughs, key_column="NOM")


@pytest.fixture(scope="module")
def requests_311() -> pd.DataFrame:
    frame = pd.read_csv(data_file("requetes311_rats_2016_2017.csv"))
    return frame[frame["LOC_LONG"].notna() & frame["LOC_LAT"].notna()].reset_index(drop=True)


def test_keys_are_the_key_column_in_row_order(boroughs, index):
    assert index.keys == tuple(boroughs["NOM"])
    assert len(index) == 34


def test_311_rows_land_in_the_borough_the_city_recorded(index, requests_311):
    assert len(requests_311) == 1218
    positions = index.locate_many(requests_311["LOC_LONG"], requests_311["LOC_LAT"])
    assert (positions != NOT_FOUND).all()
    found = [index.keys[p] for p in positions]
    agreement = np.mean(np.array(found) == requests_311["ARRONDISSEMENT_GEO"].to_numpy())
    assert agreement >= 0.99


def test_locate_agrees_with_locate_many_on_every_311_row(index, requests_311):
    lon = requests_311["LOC_LONG"].tolist()
    lat = requests_311["LOC_LAT"].tolist()
    positions = index.locate_many(lon, lat)
    for x, y, position in zip(lon, lat, positions, strict=True):
        assert index.locate(x, y) == index.keys[position]


def test_agrees_with_sjoin_on_random_points(boroughs, index):
    rng = np.random.default_rng(2016)
    min_lon, min_lat, max_lon, max_lat = MONTREAL_BBOX
    lon = rng.uniform(min_lon - 0.05, max_lon + 0.05, 20_000)
    lat = rng.uniform(min_lat - 0.05, max_lat + 0.05, 20_000)
    points = geopandas.GeoDataFrame(geometry=geopandas.points_from_xy(lon, lat), crs=boroughs.crs)
    joined = geopandas.sjoin(points, boroughs, predicate="within")
    expected = np.full(lon.size, NOT_FOUND)
    expected[joined.index.to_numpy()] = joined["index_right"].to_numpy()

    got = index.locate_many(lon, lat)

    assert (expected != NOT_FOUND).sum() > 5_000
    np.testing.assert_array_equal(got, expected)
    singles = [index.locate(x, y) for x, y in zip(lon[:2_000], lat[:2_000], strict=True)]
    assert singles == [index.keys[p] if p >= 0 else None for p in expected[:2_000]]


def test_a_coarse_grid_gives_the_same_answers(boroughs, index, requests_311):
    coarse = DistrictIndex.from_frame(boroughs, key_column="NOM", grid_size=1)
    lon, lat = requests_311["LOC_LONG"], requests_311["LOC_LAT"]
    np.testing.assert_array_equal(coarse.locate_many(lon, lat), index.locate_many(lon, lat))
    assert coarse.locate(-73.5540, 45.5088) == "Ville-Marie"


@pytest.mark.parametrize(
    ("lon", "lat", "expected"),
    [
        (-73.5540, 45.5088, "Ville-Marie"),  # Hôtel de ville
        (-73.5516, 45.5580, "Mercier-Hochelaga-Maisonneuve"),  # Stade olympique
        (-73.6080, 45.5200, "Outremont"),
        (-73.6480, 45.5160, "Mont-Royal"),
    ],
)
def test_landmarks(index, lon, lat, expected):
    assert index.locate(lon, lat) == expected
    assert index.keys[index.locate_many([lon], [lat])[0]] == expected


@pytest.mark.parametrize(
    ("lon", "lat"),
    [
        (0.0, 0.0),
        (math.nan, 45.5),
        (-73.55, math.nan),
        (math.inf, 45.5),
        (-73.55, -math.inf),
        (-73.515, 45.51),  # St. Lawrence, east of Île Sainte-Hélène
        (-73.52, 45.48),  # St. Lawrence, off L'Île-des-Sœurs
        (-74.5, 45.5),  # west of the island
    ],
)
def test_points_outside_every_district(boroughs, index, lon, lat):
    if math.isfinite(lon) and math.isfinite(lat):
        assert not boroughs.intersects(Point(lon, lat)).any()
    assert index.locate(lon, lat) is None
    assert index.locate_many([lon], [lat]).tolist() == [NOT_FOUND]


def test_locate_many_keeps_the_input_shape(index):
    lon = np.array([[-73.5540, 0.0], [-73.6080, -73.5516]])
    lat = np.array([[45.5088, 0.0], [45.5200, 45.5580]])
    positions = index.locate_many(lon, lat)
    assert positions.shape == (2, 2)
    assert positions.dtype == np.intp
    assert positions[0, 1] == NOT_FOUND
    assert index.keys[positions[1, 0]] == "Outremont"
    assert index.locate_many([], []).shape == (0,)


def test_locate_many_refuses_mismatched_shapes(index):
    with pytest.raises(ValueError, match=r"lon has shape \(2,\) but lat has shape \(3,\)"):
        index.locate_many([1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(1.0, 0.5), (1.0, 0.0), (1.0, 1.0), (1.0, 0.123456789)],
)
@pytest.mark.parametrize("order", [("west", "east"), ("east", "west")])
def test_a_shared_border_goes_to_the_first_district(lon, lat, order):
    shapes = {"west": box(0, 0, 1, 1), "east": box(1, 0, 2, 1)}
    index = DistrictIndex(list(order), [shapes[key] for key in order])
    assert index.locate(lon, lat) == order[0]
    assert index.locate_many([lon], [lat]).tolist() == [0]


@pytest.mark.parametrize(
    ("order", "expected"), [(("inner", "outer"), "inner"), (("outer", "inner"), "outer")]
)
def test_overlapping_districts_go_to_the_first_listed(order, expected):
    shapes = {"inner": box(0, 0, 10, 10), "outer": box(0, 0, 20, 20)}
    index = DistrictIndex(list(order), [shapes[key] for key in order])
    lon, lat = [5.0, 2.5, 15.0], [5.0, 7.5, 15.0]
    assert [index.locate(x, y) for x, y in zip(lon, lat, strict=True)] == [expected] * 2 + ["outer"]
    assert index.locate_many(lon, lat).tolist() == [order.index(expected)] * 2 + [
        order.index("outer")
    ]


def test_outer_edges_belong_to_their_district():
    index = DistrictIndex(["a"], [box(0, 0, 1, 1)])
    assert index.locate_many([0.0, 1.0, 1.0, 0.5], [0.0, 1.0, 0.5, 1.0]).tolist() == [0] * 4
    assert index.locate(1.0, 1.0) == "a"
    assert index.locate(1.0 + 1e-9, 1.0) is None


def test_holes_and_islands():
    ring = Polygon([(0, 0), (4, 0), (4, 4), (0, 4)], [[(1, 1), (3, 1), (3, 3), (1, 3)]])
    islands = MultiPolygon([box(1.5, 1.5, 2.5, 2.5), box(10, 10, 11, 11)])
    index = DistrictIndex(["ring", "islands"], [ring, islands])
    lon = [0.5, 1.2, 2.0, 10.5, 5.0]
    lat = [0.5, 1.2, 2.0, 10.5, 5.0]
    assert index.locate_many(lon, lat).tolist() == [0, -1, 1, 1, -1]
    assert [index.locate(x, y) for x, y in zip(lon, lat, strict=True)] == [
        "ring",
        None,
        "islands",
        "islands",
        None,
    ]


def test_building_leaves_the_callers_polygons_unprepared():
    polygon = box(0, 0, 1, 1)
    DistrictIndex(["a"], [polygon])
    assert not shapely.is_prepared(polygon)


def test_z_coordinates_are_ignored():
    polygon = Polygon([(0, 0, 5), (1, 0, 5), (1, 1, 5), (0, 1, 5)])
    assert DistrictIndex(["a"], [polygon]).locate(0.5, 0.5) == "a"


def test_from_frame_refuses_another_crs(boroughs):
    with pytest.raises(ValueError, match="expected CRS EPSG:4326, got EPSG:32188"):
        DistrictIndex.from_frame(boroughs.to_crs(MONTREAL_MTM8), key_column="NOM")


def test_from_frame_refuses_a_frame_without_crs(boroughs):
    with pytest.raises(ValueError, match="no CRS"):
        DistrictIndex.from_frame(boroughs.set_crs(None, allow_override=True), key_column="NOM")


def test_from_frame_refuses_a_missing_key_column(boroughs):
    with pytest.raises(ValueError, match="key column 'NAME' is not in the frame"):
        DistrictIndex.from_frame(boroughs, key_column="NAME")


def test_from_frame_refuses_missing_keys():
    frame = geopandas.GeoDataFrame(
        {"code": ["a", None]}, geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1)], crs="EPSG:4326"
    )
    with pytest.raises(ValueError, match=r"key column 'code' is missing at rows \[1\]"):
        DistrictIndex.from_frame(frame, key_column="code")


def test_from_frame_reports_every_bad_geometry_at_once():
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    frame = geopandas.GeoDataFrame(
        {"code": ["good", "bowtie", "empty", "point", "none"]},
        geometry=[box(0, 0, 1, 1), bowtie, Polygon(), Point(0, 0), None],
        crs="EPSG:4326",
    )
    with pytest.raises(ValueError) as raised:
        DistrictIndex.from_frame(frame, key_column="code")
    message = str(raised.value)
    assert "'bowtie' (position 1): geometry is invalid (Self-intersection" in message
    assert "'empty' (position 2): geometry is empty" in message
    assert "'point' (position 3): geometry is a Point, not a (multi)polygon" in message
    assert "'none' (position 4): geometry is missing" in message
    assert "'good'" not in message


@pytest.mark.parametrize(
    ("keys", "polygons", "message"),
    [
        (["a"], [box(0, 0, 1, 1), box(1, 1, 2, 2)], "1 keys for 2 polygons"),
        ([], [], "no districts"),
        (["a", "a"], [box(0, 0, 1, 1), box(1, 1, 2, 2)], "'a' \\(position 1\\): key is used twice"),
        ([None], [box(0, 0, 1, 1)], "position 0: key is missing"),
    ],
)
def test_constructor_refuses_bad_districts(keys, polygons, message):
    with pytest.raises(ValueError, match=message):
        DistrictIndex(keys, polygons)


def test_constructor_refuses_an_empty_grid():
    with pytest.raises(ValueError, match="grid_size must be at least 1, got 0"):
        DistrictIndex(["a"], [box(0, 0, 1, 1)], grid_size=0)
