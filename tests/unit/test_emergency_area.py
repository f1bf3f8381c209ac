"""The emergency area, pure: GeoJSON checked and turned into a MultiPolygon, every problem
named at once, never repaired; bounding boxes and point containment."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from fieldops.emergencies.area import (
    MAX_VERTICES,
    as_multipolygon,
    bbox_of,
    contains_points,
    overlaps_any,
    parse_area,
)
from fieldops.errors import InvalidInput

# Two districts side by side: west [0, 10] x [0, 10] and east [10, 20] x [0, 10], in
# degrees (the checks do not care which city).
WEST, EAST = box(0, 0, 10, 10), box(10, 0, 20, 10)
CITY = [WEST, EAST]


def ring(*points: tuple[float, float]) -> list[list[float]]:
    return [list(p) for p in [*points, points[0]]]


def polygon(*rings: Any) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


SQUARE = ring((1, 1), (3, 1), (3, 3), (1, 3))


def reasons(geojson: Any, districts: list[Any] = CITY, **options: Any) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        parse_area(geojson, districts, **options)
    assert {p.field for p in caught.value.problems} == {options.get("field", "area")}
    return [p.reason for p in caught.value.problems]


# --- what is accepted ----------------------------------------------------------------------


def test_a_polygon_becomes_a_one_part_multipolygon_exactly_as_given() -> None:
    area = parse_area(polygon(SQUARE), CITY)

    assert isinstance(area, MultiPolygon)
    assert len(area.geoms) == 1
    assert list(area.geoms[0].exterior.coords) == [tuple(p) for p in SQUARE]


def test_a_multipolygon_and_holes_are_kept() -> None:
    hole = ring((1.5, 1.5), (1.5, 2.5), (2.5, 2.5), (2.5, 1.5))
    geojson = {
        "type": "MultiPolygon",
        "coordinates": [[SQUARE, hole], [ring((5, 5), (6, 5), (6, 6), (5, 6))]],
    }

    area = parse_area(geojson, CITY)

    assert len(area.geoms) == 2
    assert len(area.geoms[0].interiors) == 1
    assert area.area == pytest.approx(4 - 1 + 1)


def test_heights_are_dropped_and_a_wgs84_crs_member_is_accepted() -> None:
    geojson = polygon([[x, y, 12.5] for x, y in SQUARE])
    geojson["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}

    area = parse_area(geojson, CITY)

    assert not area.has_z


def test_an_area_partly_outside_the_city_is_accepted() -> None:
    assert parse_area(polygon(ring((-5, -5), (1, -5), (1, 1), (-5, 1))), CITY).bounds == (
        -5,
        -5,
        1,
        1,
    )


def test_exactly_the_vertex_limit_is_accepted() -> None:
    assert MAX_VERTICES == 5000
    # 4 positions with the closing one: a limit of 4 lets a square through.
    assert parse_area(polygon(SQUARE), CITY, max_vertices=5).is_valid
    assert parse_area(polygon(SQUARE), CITY, max_vertices=5) == parse_area(polygon(SQUARE), CITY)


# --- what is refused, and why -------------------------------------------------------------


@pytest.mark.parametrize(
    ("geojson", "expected"),
    [
        (
            polygon(ring((1, 1), (3, 3), (3, 1), (1, 3))),
            "not a valid polygon: Self-intersection[2 2]",
        ),
        (
            # Two parts that overlap: the MultiPolygon is invalid, not merged.
            {
                "type": "MultiPolygon",
                "coordinates": [[SQUARE], [ring((2, 2), (4, 2), (4, 4), (2, 4))]],
            },
            "not a valid polygon: Self-intersection[2 3]",
        ),
        (
            polygon(SQUARE, ring((5, 5), (5, 6), (6, 6), (6, 5))),
            "not a valid polygon: Hole lies outside shell[5 5]",
        ),
    ],
    ids=["bow-tie", "overlapping-parts", "hole-outside"],
)
def test_an_invalid_geometry_is_refused_with_shapelys_reason_and_never_repaired(
    geojson: dict[str, Any], expected: str
) -> None:
    assert reasons(geojson) == [expected]


def test_an_area_that_overlaps_no_district_is_outside_the_city() -> None:
    far = polygon(ring((30, 30), (31, 30), (31, 31), (30, 31)))
    touching = polygon(ring((20, 0), (25, 0), (25, 5), (20, 5)))  # shares only a border

    for geojson in (far, touching):
        assert reasons(geojson) == ["lies outside the city: it overlaps none of its districts"]
    assert reasons(polygon(SQUARE), districts=[]) == [
        "lies outside the city: it overlaps none of its districts"
    ]


def test_too_many_vertices() -> None:
    circle = shapely.Point(5, 5).buffer(2, quad_segs=1300)  # 5201 positions
    geojson = polygon([list(p) for p in circle.exterior.coords])

    assert reasons(geojson) == [
        f"has {len(circle.exterior.coords)} vertices; at most 5000 are allowed"
    ]


@pytest.mark.parametrize(
    ("geojson", "expected"),
    [
        (None, "must be a GeoJSON Polygon or MultiPolygon geometry object"),
        (
            "POLYGON((1 1, 3 1, 3 3, 1 1))",
            "must be a GeoJSON Polygon or MultiPolygon geometry object",
        ),
        (
            {"type": "Point", "coordinates": [1, 1]},
            "must be a GeoJSON Polygon or MultiPolygon, not 'Point'",
        ),
        (
            {"type": "Feature", "geometry": polygon(SQUARE)},
            "must be a GeoJSON Polygon or MultiPolygon, not 'Feature'",
        ),
        (polygon(), "coordinates: a polygon is a non-empty list of linear rings"),
        (
            {"type": "MultiPolygon", "coordinates": []},
            "coordinates: a MultiPolygon is a non-empty list of polygons",
        ),
        (
            {"type": "MultiPolygon", "coordinates": [[]]},
            "polygon 0: a polygon is a non-empty list of linear rings",
        ),
        (
            polygon([[1, 1], [3, 1], [1, 1]]),
            "coordinates ring 0: a ring needs at least 4 positions, got 3",
        ),
        (
            polygon([[1, 1], [3, 1], [3, 3], [1, 3]]),
            "coordinates ring 0: the ring is not closed (first and last positions differ)",
        ),
        (
            polygon([[1, 1], [3, "1"], [3, 3], [1, 1]]),
            "coordinates ring 0: position 1 is not [longitude, latitude]",
        ),
        (
            polygon([[1, 1], [3, True], [3, 3], [1, 1]]),
            "coordinates ring 0: position 1 is not [longitude, latitude]",
        ),
        (
            polygon([[1, 1], [3], [3, 3], [1, 1]]),
            "coordinates ring 0: position 1 is not [longitude, latitude]",
        ),
        (
            polygon("1 1 3 3"),
            "coordinates ring 0: a ring is a list of [longitude, latitude] positions",
        ),
    ],
)
def test_malformed_geojson_is_named(geojson: Any, expected: str) -> None:
    assert reasons(geojson) == [expected]


def test_projected_coordinates_and_other_crs_are_refused() -> None:
    metres = polygon(ring((297000, 5040000), (298000, 5040000), (298000, 5041000)))
    mtm = polygon(SQUARE)
    mtm["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32188"}}
    nan = polygon(ring((1, 1), (float("nan"), 1), (3, 3)))

    assert reasons(metres) == [
        "position (297000.0, 5040000.0) is not a longitude/latitude in EPSG:4326 "
        "(projected coordinates, or latitude and longitude swapped?)"
    ]
    assert reasons(mtm) == [
        "must be in EPSG:4326 (longitude, latitude); crs 'urn:ogc:def:crs:EPSG::32188' is not"
    ]
    assert reasons(nan) == ["coordinates must be finite numbers"]


def test_every_problem_is_reported_at_once_under_the_field_named() -> None:
    geojson = polygon([[x * 1000, y * 1000] for x, y in SQUARE])
    geojson["crs"] = {"type": "name", "properties": {"name": "EPSG:3857"}}

    found = reasons(geojson, field="zone", max_vertices=3)

    assert found == [
        "must be in EPSG:4326 (longitude, latitude); crs 'EPSG:3857' is not",
        "has 5 vertices; at most 3 are allowed",
        "position (1000.0, 1000.0) is not a longitude/latitude in EPSG:4326 "
        "(projected coordinates, or latitude and longitude swapped?)",
    ]
    with pytest.raises(InvalidInput, match=r"^zone: must be in EPSG:4326 .*; zone: has 5 vertices"):
        parse_area(geojson, CITY, field="zone", max_vertices=3)


# --- helpers --------------------------------------------------------------------------------


def test_overlaps_any_needs_shared_surface() -> None:
    assert overlaps_any(box(9, 9, 11, 11), CITY)
    assert not overlaps_any(box(20, 0, 21, 1), CITY)
    assert not overlaps_any(box(0, 0, 1, 1), [])


def test_as_multipolygon_flattens_a_union_of_districts() -> None:
    union = shapely.union_all([WEST, EAST, box(30, 30, 31, 31)])
    collection = shapely.GeometryCollection([WEST, MultiPolygon([box(30, 30, 31, 31)])])

    assert as_multipolygon(union).area == pytest.approx(201)
    assert len(as_multipolygon(collection).geoms) == 2
    assert as_multipolygon(Polygon(SQUARE)).geom_type == "MultiPolygon"


def test_bbox_and_containment_count_the_border_as_inside() -> None:
    area = parse_area(polygon(SQUARE), CITY)

    assert bbox_of(area) == (1.0, 1.0, 3.0, 3.0)
    inside = contains_points(area, [2, 1, 3, 0.5, 3.01], [2, 2, 3, 2, 2])
    assert inside.dtype == np.bool_
    assert inside.tolist() == [True, True, True, False, False]
    assert contains_points(area, [], []).tolist() == []
