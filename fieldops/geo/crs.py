"""Coordinate reference systems: the two FieldOps uses, checks, and short-range metric offsets."""

from __future__ import annotations

from typing import Final, TypeVar

import numpy as np
import pyproj
from geopandas import GeoDataFrame, GeoSeries
from numpy.typing import ArrayLike, NDArray

WGS84: Final = "EPSG:4326"
"""Longitude/latitude on WGS 84: how every geometry is stored and exchanged."""

MONTREAL_MTM8: Final = "EPSG:32188"
"""NAD83 / MTM zone 8, Montréal's projected CRS in metres: project here before measuring."""

# WGS 84 ellipsoid: semi-major axis and first eccentricity squared.
_A_M: Final = 6_378_137.0
_F: Final = 1.0 / 298.257223563
_E2: Final = _F * (2.0 - _F)

FrameT = TypeVar("FrameT", GeoDataFrame, GeoSeries)


def _crs_name(crs: pyproj.CRS) -> str:
    return crs.to_string()


def require_crs(frame: GeoDataFrame | GeoSeries, crs: str | pyproj.CRS) -> None:
    """Raise ``ValueError`` unless ``frame`` is in ``crs``.

    Axis order is ignored, because GeoPandas geometries are always stored x (longitude or
    easting) first: ``OGC:CRS84`` and ``EPSG:4326`` therefore count as the same CRS.

    Examples
    --------
    >>> from geopandas import GeoSeries
    >>> from shapely import Point
    >>> require_crs(GeoSeries([Point(-73.57, 45.50)], crs=WGS84), WGS84)
    >>> require_crs(GeoSeries([Point(-73.57, 45.50)], crs=WGS84), MONTREAL_MTM8)
    Traceback (most recent call last):
    ...
    ValueError: expected CRS EPSG:32188, got EPSG:4326
    """
    expected = pyproj.CRS.from_user_input(crs)
    actual = frame.crs
    if actual is None:
        raise ValueError(f"expected CRS {_crs_name(expected)}, got a frame with no CRS")
    if not actual.equals(expected, ignore_axis_order=True):
        raise ValueError(f"expected CRS {_crs_name(expected)}, got {_crs_name(actual)}")


def _is_metric(crs: pyproj.CRS) -> bool:
    return crs.is_projected and all(axis.unit_name == "metre" for axis in crs.axis_info)


def to_metric(frame: FrameT, crs: str | pyproj.CRS = MONTREAL_MTM8) -> FrameT:
    """Return ``frame`` projected to ``crs``, a projected CRS whose axes are in metres.

    Raises ``ValueError`` if ``frame`` has no CRS or ``crs`` is not a metric projection.

    Examples
    --------
    >>> from geopandas import GeoSeries
    >>> from shapely import Point
    >>> points = GeoSeries([Point(-73.57, 45.50), Point(-73.56, 45.50)], crs=WGS84)
    >>> metric = to_metric(points)
    >>> round(float(metric.iloc[0].distance(metric.iloc[1])))
    782
    """
    target = pyproj.CRS.from_user_input(crs)
    if not _is_metric(target):
        raise ValueError(f"{_crs_name(target)} is not a projected CRS in metres")
    if frame.crs is None:
        raise ValueError(f"cannot project a frame with no CRS to {_crs_name(target)}")
    return frame.to_crs(target)


def local_metres(
    lon0: float, lat0: float, lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """East and north offsets in metres of ``(lon, lat)`` from ``(lon0, lat0)``, all WGS 84 degrees.

    An equirectangular approximation on the WGS 84 ellipsoid, with the radii of curvature
    taken at the mid latitude of each pair: ``hypot(dx_m, dy_m)`` is within 0.001 % of the
    geodesic distance up to 5 km away and within 0.2 % up to 100 km (for |lat| < 85).
    Vectorised over ``lon`` and ``lat``; longitudes wrap across the antimeridian. Meant for
    short-range work (duplicate radii, nearest crew) where projecting a frame would cost more
    than the answer is worth.

    Examples
    --------
    >>> dx_m, dy_m = local_metres(-73.57, 45.50, [-73.56, -73.57], [45.50, 45.51])
    >>> [round(float(v)) for v in dx_m], [round(float(v)) for v in dy_m]
    ([782, 0], [0, 1111])
    """
    lon_deg = np.asarray(lon, dtype=np.float64)
    lat_deg = np.asarray(lat, dtype=np.float64)
    dlon_rad = np.radians((lon_deg - lon0 + 180.0) % 360.0 - 180.0)
    dlat_rad = np.radians(lat_deg - lat0)
    lat_mid_rad = np.radians((lat_deg + lat0) / 2.0)
    sin2 = np.sin(lat_mid_rad) ** 2
    w = np.sqrt(1.0 - _E2 * sin2)
    prime_vertical_m = _A_M / w
    meridional_m = _A_M * (1.0 - _E2) / (w * w * w)
    dx_m = prime_vertical_m * np.cos(lat_mid_rad) * dlon_rad
    dy_m = meridional_m * dlat_rad
    return dx_m, dy_m


def meridional_radius_m(lat_deg: float) -> float:
    """Radius of curvature of the WGS 84 meridian at ``lat_deg``, in metres (least at the equator).

    >>> round(meridional_radius_m(0.0))
    6335439
    """
    sin2 = np.sin(np.radians(lat_deg)) ** 2
    return float(_A_M * (1.0 - _E2) / (1.0 - _E2 * sin2) ** 1.5)


def parallel_radius_m(lat_deg: float) -> float:
    """Radius of the WGS 84 parallel at ``lat_deg``, in metres (shrinks towards the poles).

    >>> round(parallel_radius_m(0.0))
    6378137
    """
    lat_rad = np.radians(lat_deg)
    return float(_A_M * np.cos(lat_rad) / np.sqrt(1.0 - _E2 * np.sin(lat_rad) ** 2))
