"""CRS constants, the CRS check, projection to metres and short-range metric offsets."""

from __future__ import annotations

from pathlib import Path

import geopandas
import numpy as np
import pandas as pd
import pyproj
import pytest
from shapely.geometry import Point

from fieldops.geo.crs import MONTREAL_MTM8, WGS84, local_metres, require_crs, to_metric

ROOT = Path(__file__).resolve().parents[2]
DATA_DIRS = (ROOT / "layers",)
GEOD = pyproj.Geod(ellps="WGS84")


def data_file(name: str) -> Path:
    for folder in DATA_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} is in none of {[str(d) for d in DATA_DIRS]}")


def points(crs: str | None = WGS84) -> geopandas.GeoDataFrame:
    return geopandas.GeoDataFrame(
        {"name": ["city hall", "olympic stadium"]},
        geometry=[Point(-73.5540, 45.5088), Point(-73.5516, 45.5580)],
        crs=crs,
    )


def test_constants():
    assert pyproj.CRS(WGS84).to_epsg() == 4326
    assert pyproj.CRS(MONTREAL_MTM8).to_epsg() == 32188


def test_require_crs_accepts_a_match():
    require_crs(points(), WGS84)
    require_crs(points().geometry, pyproj.CRS(WGS84))
    require_crs(points("OGC:CRS84"), WGS84)


def test_require_crs_names_both_crs_on_a_mismatch():
    with pytest.raises(ValueError, match="expected CRS EPSG:32188, got EPSG:4326"):
        require_crs(points(), MONTREAL_MTM8)


def test_require_crs_refuses_a_frame_without_crs():
    with pytest.raises(ValueError, match="expected CRS EPSG:4326, got a frame with no CRS"):
        require_crs(points(None), WGS84)


def test_to_metric_projects_to_mtm8_and_measures_metres():
    metric = to_metric(points())
    assert metric.crs.to_epsg() == 32188
    _, _, geodesic_m = GEOD.inv(-73.5540, 45.5088, -73.5516, 45.5580)
    planar_m = metric.geometry.iloc[0].distance(metric.geometry.iloc[1])
    assert planar_m == pytest.approx(geodesic_m, rel=1e-3)
    assert list(metric["name"]) == ["city hall", "olympic stadium"]


def test_to_metric_reproduces_the_citys_own_mtm8_coordinates():
    frame = pd.read_csv(data_file("requetes311_rats_2016_2017.csv")).dropna(
        subset=["LOC_LONG", "LOC_LAT", "LOC_X", "LOC_Y"]
    )
    lonlat = geopandas.GeoSeries.from_xy(frame["LOC_LONG"], frame["LOC_LAT"], crs=WGS84)
    metric = to_metric(lonlat)
    np.testing.assert_allclose(metric.x, frame["LOC_X"], atol=0.01)
    np.testing.assert_allclose(metric.y, frame["LOC_Y"], atol=0.01)


@pytest.mark.parametrize("target", [WGS84, "EPSG:2263"])
def test_to_metric_refuses_a_crs_not_in_metres(target):
    with pytest.raises(ValueError, match="is not a projected CRS in metres"):
        to_metric(points(), crs=target)


def test_to_metric_refuses_a_frame_without_crs():
    with pytest.raises(ValueError, match="cannot project a frame with no CRS to EPSG:32188"):
        to_metric(points(None))


@pytest.mark.parametrize("lat0", [45.5088, 0.0, -33.9, 60.0, 84.9])
@pytest.mark.parametrize("distance_m", [1.0, 100.0, 1_000.0, 5_000.0])
def test_local_metres_matches_the_geodesic_within_5_km(lat0, distance_m):
    lon0 = -73.554
    azimuths = np.arange(0.0, 360.0, 7.5)
    n = azimuths.size
    lon, lat, _ = GEOD.fwd(np.full(n, lon0), np.full(n, lat0), azimuths, np.full(n, distance_m))
    dx_m, dy_m = local_metres(lon0, lat0, lon, lat)
    np.testing.assert_allclose(np.hypot(dx_m, dy_m), distance_m, rtol=1e-5)


def test_local_metres_signs_and_shape():
    dx_m, dy_m = local_metres(-73.554, 45.5, [[-73.55, -73.56], [-73.554, -73.554]], 45.5)
    assert dx_m.shape == (2, 2)
    assert dx_m[0, 0] > 0 > dx_m[0, 1]
    np.testing.assert_array_equal(dy_m, 0.0)
    _, dy_m = local_metres(-73.554, 45.5, -73.554, [45.51, 45.49])
    assert dy_m[0] > 0 > dy_m[1]


def test_local_metres_wraps_across_the_antimeridian():
    dx_m, dy_m = local_metres(179.999, 0.0, -179.999, 0.0)
    _, _, geodesic_m = GEOD.inv(179.999, 0.0, -179.999, 0.0)
    assert float(dx_m) == pytest.approx(geodesic_m, rel=1e-6)
    assert float(dy_m) == 0.0
