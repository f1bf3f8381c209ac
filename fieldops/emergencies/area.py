"""An emergency's area, pure: GeoJSON checked and turned into one valid MultiPolygon, its
bounding box, and which points lie in it. No session, no HTTP, no clock."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from fieldops.errors import FieldProblem, InvalidInput

MAX_VERTICES: Final = 5000
"""A drawn area larger than this is a mistake (or a pasted coastline): refuse it."""

# The names a GeoJSON ``crs`` member may give for WGS84 longitude/latitude (RFC 7946
# drops the member; older writers still send it).
WGS84_NAMES: Final = frozenset(
    {
        "urn:ogc:def:crs:OGC:1.3:CRS84",
        "urn:ogc:def:crs:OGC::CRS84",
        "urn:ogc:def:crs:EPSG::4326",
        "EPSG:4326",
        "CRS84",
    }
)

Ring = list[tuple[float, float]]
BBox = tuple[float, float, float, float]


def _position(value: Any) -> tuple[float, float] | None:
    """A GeoJSON position as (lon, lat); a third (height) value is dropped. None if malformed."""
    if not isinstance(value, list | tuple) or not 2 <= len(value) <= 3:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    return float(value[0]), float(value[1])


def _rings(polygon: Any, where: str, problems: list[str]) -> list[Ring] | None:
    """The rings of one GeoJSON polygon's coordinates, each checked as RFC 7946 asks."""
    if not isinstance(polygon, list | tuple) or not polygon:
        problems.append(f"{where}: a polygon is a non-empty list of linear rings")
        return None
    rings: list[Ring] = []
    for r, raw in enumerate(polygon):
        name = f"{where} ring {r}"
        if not isinstance(raw, list | tuple):
            problems.append(f"{name}: a ring is a list of [longitude, latitude] positions")
            return None
        ring = [_position(p) for p in raw]
        bad = next((k for k, p in enumerate(ring) if p is None), None)
        if bad is not None:
            problems.append(f"{name}: position {bad} is not [longitude, latitude]")
            return None
        points = [p for p in ring if p is not None]
        if len(points) < 4:
            problems.append(f"{name}: a ring needs at least 4 positions, got {len(points)}")
            return None
        if points[0] != points[-1]:
            problems.append(f"{name}: the ring is not closed (first and last positions differ)")
            return None
        rings.append(points)
    return rings


def _crs_problem(geojson: Mapping[str, Any]) -> str | None:
    crs = geojson.get("crs")
    if crs is None:
        return None
    name = crs.get("properties", {}).get("name") if isinstance(crs, Mapping) else None
    if name in WGS84_NAMES:
        return None
    return f"must be in EPSG:4326 (longitude, latitude); crs {name or crs!r} is not"


def _out_of_range(rings: Sequence[Ring]) -> str | None:
    for ring in rings:
        for lon, lat in ring:
            if not (math.isfinite(lon) and math.isfinite(lat)):
                return "coordinates must be finite numbers"
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                return (
                    f"position ({lon}, {lat}) is not a longitude/latitude in EPSG:4326 "
                    "(projected coordinates, or latitude and longitude swapped?)"
                )
    return None


def _shape(geojson: Any, problems: list[str], *, max_vertices: int) -> MultiPolygon | None:
    """Build the MultiPolygon exactly as given (never repaired); None and problems if it
    cannot be built."""
    if not isinstance(geojson, Mapping):
        problems.append("must be a GeoJSON Polygon or MultiPolygon geometry object")
        return None
    kind = geojson.get("type")
    if kind not in {"Polygon", "MultiPolygon"}:
        problems.append(f"must be a GeoJSON Polygon or MultiPolygon, not {kind!r}")
        return None
    crs = _crs_problem(geojson)
    if crs is not None:
        problems.append(crs)
    coordinates = geojson.get("coordinates")
    members = [coordinates] if kind == "Polygon" else coordinates
    if not isinstance(members, list | tuple) or not members:
        problems.append("coordinates: a MultiPolygon is a non-empty list of polygons")
        return None
    polygons: list[list[Ring]] = []
    for n, member in enumerate(members):
        rings = _rings(member, "coordinates" if kind == "Polygon" else f"polygon {n}", problems)
        if rings is None:
            return None
        polygons.append(rings)
    all_rings = [ring for rings in polygons for ring in rings]
    vertices = sum(len(ring) for ring in all_rings)
    if vertices > max_vertices:
        problems.append(f"has {vertices} vertices; at most {max_vertices} are allowed")
    out_of_range = _out_of_range(all_rings)
    if out_of_range is not None:
        problems.append(out_of_range)
        return None
    return MultiPolygon([Polygon(rings[0], rings[1:]) for rings in polygons])


def overlaps_any(area: BaseGeometry, districts: Sequence[BaseGeometry]) -> bool:
    """Whether ``area`` shares some surface with at least one district (touching a border
    is not enough)."""
    if not districts:
        return False
    shapes = np.asarray(districts, dtype=object)
    tree = shapely.STRtree(shapes)
    hits = tree.query(area, predicate="intersects")
    return bool(np.any(~shapely.touches(shapes[hits], area)))


def parse_area(
    geojson: Any,
    districts: Sequence[BaseGeometry],
    *,
    field: str = "area",
    max_vertices: int = MAX_VERTICES,
) -> MultiPolygon:
    """The emergency area a GeoJSON Polygon or MultiPolygon (EPSG:4326) describes.

    Every problem is gathered, then raised once as ``InvalidInput`` naming ``field``: a
    malformed or unclosed ring, coordinates that are not longitude/latitude, more than
    ``max_vertices`` positions, an invalid geometry (shapely's reason, such as
    ``Self-intersection[-73.85 45.48]``: the area is never repaired behind the caller's
    back), or an area that overlaps none of ``districts`` (outside the city).

    Examples
    --------
    >>> city = [Polygon([(0, 0), (10, 0), (10, 10), (0, 10)])]
    >>> square = {"type": "Polygon", "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]]]}
    >>> parse_area(square, city).geom_type
    'MultiPolygon'
    >>> bow_tie = {"type": "Polygon", "coordinates": [[[1, 1], [2, 2], [2, 1], [1, 2], [1, 1]]]}
    >>> parse_area(bow_tie, city)
    Traceback (most recent call last):
    ...
    fieldops.errors.InvalidInput: area: not a valid polygon: Self-intersection[1.5 1.5]
    """
    problems: list[str] = []
    area = _shape(geojson, problems, max_vertices=max_vertices)
    if area is not None:
        if not area.is_valid:
            problems.append(f"not a valid polygon: {shapely.is_valid_reason(area)}")
        elif not overlaps_any(area, districts):
            problems.append("lies outside the city: it overlaps none of its districts")
    if problems:
        raise InvalidInput(
            "; ".join(f"{field}: {p}" for p in problems), [FieldProblem(field, p) for p in problems]
        )
    assert area is not None
    return area


def as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """The polygons of ``geom`` (a union of districts, say) as one MultiPolygon."""
    polygons: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon) and not part.is_empty:
            polygons.append(part)
        elif isinstance(part, MultiPolygon):
            polygons.extend(q for q in part.geoms if not q.is_empty)
    return MultiPolygon(polygons)


def bbox_of(area: BaseGeometry) -> BBox:
    """(min_lon, min_lat, max_lon, max_lat)."""
    min_lon, min_lat, max_lon, max_lat = area.bounds
    return float(min_lon), float(min_lat), float(max_lon), float(max_lat)


def contains_points(area: BaseGeometry, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.bool_]:
    """Which points lie in the area, its border included (a report on the edge counts)."""
    return np.asarray(shapely.intersects_xy(area, lons, lats), dtype=bool)
