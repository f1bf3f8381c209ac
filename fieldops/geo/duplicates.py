"""Duplicate matching for intake: the nearest earlier report within a radius, and its search box."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from fieldops.geo.crs import local_metres, meridional_radius_m, parallel_radius_m

# Relative slack on the search box, far above float rounding and far below anything that
# would make the box a weaker prefilter.
_BOX_SLACK = 1e-9


def _check_position(lon: float, lat: float) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ValueError(f"position ({lon}, {lat}) is not finite")
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"position ({lon}, {lat}) is not a WGS 84 lon/lat in degrees")


def _check_radius(radius_m: float) -> None:
    if not (math.isfinite(radius_m) and radius_m >= 0.0):
        raise ValueError(f"radius_m must be a finite distance of at least 0, got {radius_m}")


def nearest_within(
    lon: float, lat: float, cand_lon: ArrayLike, cand_lat: ArrayLike, radius_m: float
) -> int | None:
    """Position of the candidate nearest to ``(lon, lat)`` within ``radius_m`` metres, or ``None``.

    Coordinates are WGS 84 degrees; ``cand_lon`` and ``cand_lat`` are 1-D and parallel. A
    candidate exactly ``radius_m`` away counts as within. Equally near candidates resolve to
    the lowest position; candidates with NaN coordinates are never matched. Distances use
    `fieldops.geo.crs.local_metres`, accurate to 0.001 % up to 5 km, which is the range this
    is meant for.

    Examples
    --------
    >>> nearest_within(-73.5700, 45.5000, [-73.5710, -73.5702, -73.5702], [45.5, 45.5, 45.5], 50)
    1
    >>> nearest_within(-73.5700, 45.5000, [-73.5710], [45.5], 50) is None
    True
    """
    _check_position(lon, lat)
    _check_radius(radius_m)
    cand_lon_deg = np.asarray(cand_lon, dtype=np.float64)
    cand_lat_deg = np.asarray(cand_lat, dtype=np.float64)
    if cand_lon_deg.ndim != 1 or cand_lon_deg.shape != cand_lat_deg.shape:
        raise ValueError(
            "cand_lon and cand_lat must be 1-D and of one length, got shapes "
            f"{cand_lon_deg.shape} and {cand_lat_deg.shape}"
        )
    if cand_lon_deg.size == 0:
        return None
    dx_m, dy_m = local_metres(lon, lat, cand_lon_deg, cand_lat_deg)
    distance2_m2 = dx_m * dx_m + dy_m * dy_m
    within = distance2_m2 <= radius_m * radius_m
    if not within.any():
        return None
    # argmin returns the first of equal minima: the lowest position wins a tie.
    return int(np.argmin(np.where(within, distance2_m2, np.inf)))


def bbox_around(lon: float, lat: float, radius_m: float) -> tuple[float, float, float, float]:
    """``(min_lon, min_lat, max_lon, max_lat)`` of a box holding every point within ``radius_m``.

    A cheap prefilter for a database query ahead of `nearest_within`: the box contains the
    whole geodesic circle on the WGS 84 ellipsoid at any latitude, and is barely larger than
    it. Where the circle reaches a pole, the box spans all longitudes up to that pole; where it
    crosses the antimeridian, the box spans all longitudes (so it never wraps).

    Examples
    --------
    >>> [round(v, 5) for v in bbox_around(-73.57, 45.50, 100.0)]
    [-73.57128, 45.4991, -73.56872, 45.5009]
    """
    _check_position(lon, lat)
    _check_radius(radius_m)
    # The meridian radius of curvature grows away from the equator, so the smallest one over
    # a first, deliberately loose latitude band bounds how far north or south the circle goes.
    loose_dlat = math.degrees(radius_m / meridional_radius_m(0.0))
    nearest_equator = 0.0 if abs(lat) <= loose_dlat else abs(lat) - loose_dlat
    dlat = math.degrees(radius_m / meridional_radius_m(nearest_equator)) * (1.0 + _BOX_SLACK)
    min_lat, max_lat = lat - dlat, lat + dlat
    if min_lat <= -90.0 or max_lat >= 90.0:
        return (-180.0, max(min_lat, -90.0), 180.0, min(max_lat, 90.0))
    # Any path of length radius_m stays inside that band, and the parallels are shortest at
    # the band's poleward edge, so that parallel bounds the longitude the circle can span.
    poleward = max(abs(min_lat), abs(max_lat))
    dlon = math.degrees(radius_m / parallel_radius_m(poleward)) * (1.0 + _BOX_SLACK)
    min_lon, max_lon = lon - dlon, lon + dlon
    if min_lon < -180.0 or max_lon > 180.0:
        return (-180.0, min_lat, 180.0, max_lat)
    return (min_lon, min_lat, max_lon, max_lat)
