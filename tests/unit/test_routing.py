"""Road travel times: OSM edge speeds, one-way streets, parallel edges, the snap limit and the
straight-line fallback, on hand-made graphs laid out in metres, then on the demo graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import pytest

from fieldops.geo.routing import (
    ROAD,
    STRAIGHT_LINE,
    StraightLineOnly,
    StreetGraph,
    edge_speed_kmh,
)

LAYERS = Path(__file__).resolve().parents[2] / "layers"
PLATEAU_GRAPH = LAYERS / "streets_plateau_mont_royal.graphml"
OUTREMONT_GRAPH = LAYERS / "streets_outremont.graphml"

MTM8 = "EPSG:32188"
TO_LONLAT = pyproj.Transformer.from_crs(MTM8, "EPSG:4326", always_xy=True)
TO_METRIC = pyproj.Transformer.from_crs("EPSG:4326", MTM8, always_xy=True)
# The straight-line model's cost of one metre: detour 1.35 at 30 km/h.
STRAIGHT_S_PER_M = 1.35 / (30 / 3.6)

# A corner of Montréal in MTM zone 8 metres; the hand-made graphs are laid out from here.
X0, Y0 = 298_000.0, 5_040_000.0


def lonlat(dx_m: float, dy_m: float) -> tuple[float, float]:
    """The (lon, lat) of the point dx_m east and dy_m north of (X0, Y0)."""
    lon, lat = TO_LONLAT.transform(X0 + dx_m, Y0 + dy_m)
    return float(lon), float(lat)


def graph(
    nodes: list[tuple[float, float]],
    edges: list[tuple[int, int, float]],
    *,
    snap_limit_m: float = 250.0,
) -> StreetGraph:
    """A street graph from nodes in metres from (X0, Y0) and (from, to, seconds) edges."""
    points = [lonlat(dx, dy) for dx, dy in nodes]
    return StreetGraph.from_arrays(
        lon=[p[0] for p in points],
        lat=[p[1] for p in points],
        edge_from=[e[0] for e in edges],
        edge_to=[e[1] for e in edges],
        edge_seconds=[e[2] for e in edges],
        metric_crs=MTM8,
        snap_limit_m=snap_limit_m,
    )


def travel(
    g: StreetGraph, origin: tuple[float, float], destination: tuple[float, float]
) -> tuple[float, str]:
    """(seconds, model) from one point to another, both in metres from (X0, Y0)."""
    o, d = lonlat(*origin), lonlat(*destination)
    result = g.travel_to(d[0], d[1], [o[0]], [o[1]])
    return float(result.seconds[0]), str(result.model[0])


A, B = (0.0, 0.0), (1000.0, 0.0)
C = (500.0, 800.0)


# --- edge speeds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maxspeed", "highway", "expected_kmh"),
    [
        ("50", None, 50.0),
        ("50", "residential", 50.0),  # a posted limit beats the class default
        ("['30', '50']", "secondary", 30.0),  # OSMnx lists: the first number
        ("40.5", None, 40.5),
        (None, "residential", 30.0),
        (None, "secondary", 50.0),
        (None, "motorway", 90.0),
        (None, "living_street", 15.0),
        (None, "['tertiary', 'residential']", 40.0),  # merged classes: the first known one
        (None, "['bogus', 'residential']", 30.0),
        (None, "unknown", 30.0),  # no such class: the fallback
        (None, None, 30.0),
        ("", "primary", 50.0),
        ("0", "secondary", 50.0),  # a zero limit is no limit: the class default
        ("signals", "primary", 50.0),  # no number in it: the class default
    ],
)
def test_edge_speed(maxspeed: str | None, highway: str | None, expected_kmh: float) -> None:
    assert edge_speed_kmh(maxspeed, highway) == expected_kmh


# --- hand-made graphs ----------------------------------------------------------------------


def test_a_one_way_street_is_driven_only_one_way() -> None:
    g = graph([A, B], [(0, 1, 60.0)])

    assert travel(g, A, B) == pytest.approx((60.0, ROAD))
    # No road from B back to A: the straight-line model, 1 km x 1.35 at 30 km/h.
    seconds, model = travel(g, B, A)
    assert model == STRAIGHT_LINE
    assert seconds == pytest.approx(1000 * STRAIGHT_S_PER_M)
    assert seconds == pytest.approx(162.0)


def test_against_a_one_way_the_road_goes_round_the_block() -> None:
    # A -> B directly; back from B only through C: 50 s + 50 s.
    g = graph([A, B, C], [(0, 1, 60.0), (1, 2, 50.0), (2, 0, 50.0)])

    assert travel(g, A, B) == pytest.approx((60.0, ROAD))
    assert travel(g, B, A) == pytest.approx((100.0, ROAD))
    # And A -> C drives A -> B -> C, not the missing C -> A street backwards.
    assert travel(g, A, C) == pytest.approx((110.0, ROAD))


def test_parallel_edges_keep_the_fastest_not_their_sum() -> None:
    g = graph([A, B], [(0, 1, 90.0), (0, 1, 45.0), (0, 1, 120.0), (1, 0, 70.0)])

    assert travel(g, A, B) == pytest.approx((45.0, ROAD))
    assert travel(g, B, A) == pytest.approx((70.0, ROAD))


def test_the_way_to_and_from_the_nearest_node_is_driven_like_the_straight_line_model() -> None:
    g = graph([A, B], [(0, 1, 60.0), (1, 0, 60.0)])

    # 100 m north of A (inside the 250 m snap limit) to 40 m east of B.
    seconds, model = travel(g, (0.0, 100.0), (1040.0, 0.0))

    assert model == ROAD
    assert seconds == pytest.approx(60.0 + 140 * STRAIGHT_S_PER_M)


@pytest.mark.parametrize(
    ("origin", "destination"),
    [
        ((0.0, 300.0), B),  # the origin is 300 m from the graph
        (A, (1000.0, -300.0)),  # the destination is
        ((0.0, 300.0), (1000.0, -300.0)),  # both are
    ],
)
def test_points_beyond_the_snap_limit_use_the_straight_line_and_say_so(
    origin: tuple[float, float], destination: tuple[float, float]
) -> None:
    g = graph([A, B], [(0, 1, 60.0), (1, 0, 60.0)])

    seconds, model = travel(g, origin, destination)

    crow_m = float(np.hypot(destination[0] - origin[0], destination[1] - origin[1]))
    assert model == STRAIGHT_LINE
    assert seconds == pytest.approx(crow_m * STRAIGHT_S_PER_M)


def test_the_snap_limit_is_a_setting() -> None:
    g = graph([A, B], [(0, 1, 60.0), (1, 0, 60.0)], snap_limit_m=400.0)

    seconds, model = travel(g, (0.0, 300.0), B)

    assert model == ROAD
    assert seconds == pytest.approx(60.0 + 300 * STRAIGHT_S_PER_M)


def test_travel_matrix_agrees_with_travel_to_for_every_destination() -> None:
    g = graph(
        [A, B, C, (2000.0, 0.0)],
        [(0, 1, 60.0), (1, 2, 50.0), (2, 0, 50.0), (1, 3, 70.0), (3, 1, 75.0)],
    )
    origins = [lonlat(*p) for p in [A, B, C, (2000.0, 10.0), (0.0, 900.0), (-50.0, 20.0)]]
    destinations = [lonlat(*p) for p in [A, (1000.0, 30.0), C, (2000.0, 0.0), (3000.0, 3000.0)]]
    o_lon, o_lat = [p[0] for p in origins], [p[1] for p in origins]

    rows = g.travel_matrix(o_lon, o_lat, [d[0] for d in destinations], [d[1] for d in destinations])

    assert len(rows) == len(destinations)
    for row, (d_lon, d_lat) in zip(rows, destinations, strict=True):
        single = g.travel_to(d_lon, d_lat, o_lon, o_lat)
        np.testing.assert_allclose(row.seconds, single.seconds)
        assert row.model.tolist() == single.model.tolist()
    # The far destination is off the graph for everyone; (0, 900) is off for every destination.
    assert set(rows[4].model.tolist()) == {STRAIGHT_LINE}
    assert {str(r.model[4]) for r in rows} == {STRAIGHT_LINE}
    assert str(rows[0].model[1]) == ROAD


@pytest.mark.parametrize(
    ("edge_seconds", "message"),
    [
        ([60.0, 0.0], "positive and finite"),
        ([60.0, -1.0], "positive and finite"),
        ([60.0, float("inf")], "positive and finite"),
        ([60.0, float("nan")], "positive and finite"),
    ],
)
def test_edge_times_must_be_positive_and_finite(edge_seconds: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreetGraph.from_arrays(
            lon=[-73.60, -73.59],
            lat=[45.52, 45.52],
            edge_from=[0, 1],
            edge_to=[1, 0],
            edge_seconds=edge_seconds,
        )


def test_a_graph_needs_nodes_and_edges() -> None:
    with pytest.raises(ValueError, match="needs nodes and edges"):
        StreetGraph.from_arrays(lon=[-73.6], lat=[45.5], edge_from=[], edge_to=[], edge_seconds=[])


def test_straight_line_only_is_the_same_model_as_the_fallback() -> None:
    model = StraightLineOnly(MTM8)
    a, b = lonlat(*A), lonlat(3000.0, 4000.0)

    result = model.travel_to(b[0], b[1], [a[0], b[0]], [a[1], b[1]])

    np.testing.assert_allclose(result.seconds, [5000 * STRAIGHT_S_PER_M, 0.0], atol=1e-6)
    assert result.model.tolist() == [STRAIGHT_LINE, STRAIGHT_LINE]


# --- the demo street graphs ----------------------------------------------------------------

# Two points in Le Plateau-Mont-Royal 1.47 km apart, and one in Outremont.
PLATEAU_DEPOT = (-73.5866, 45.5237)
PLATEAU_NORTH_EAST = (-73.5720, 45.5320)
OUTREMONT = (-73.6080, 45.5180)


@pytest.fixture(scope="module")
def demo_graph() -> StreetGraph:
    return StreetGraph.from_graphml([PLATEAU_GRAPH, OUTREMONT_GRAPH], metric_crs=MTM8)


def _crow_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    (ax, bx), (ay, by) = TO_METRIC.transform([a[0], b[0]], [a[1], b[1]])
    return float(np.hypot(ax - bx, ay - by))


@pytest.mark.parametrize(
    ("origin", "destination"),
    [
        (PLATEAU_DEPOT, PLATEAU_NORTH_EAST),
        (PLATEAU_NORTH_EAST, PLATEAU_DEPOT),
        (OUTREMONT, PLATEAU_DEPOT),
        (PLATEAU_DEPOT, OUTREMONT),
    ],
)
def test_demo_graphs_route_by_road_in_a_plausible_time(
    demo_graph: StreetGraph, origin: tuple[float, float], destination: tuple[float, float]
) -> None:
    result = demo_graph.travel_to(destination[0], destination[1], [origin[0]], [origin[1]])

    seconds = float(result.seconds[0])
    crow_m = _crow_m(origin, destination)
    assert str(result.model[0]) == ROAD
    assert 1_400 < crow_m < 2_000
    # Between 1 and 15 minutes, and no faster than the crow flies at the top speed (50 km/h).
    assert 60 < seconds < 15 * 60
    assert seconds > crow_m / (50 / 3.6)


def test_the_demo_graphs_are_merged_on_their_shared_nodes(demo_graph: StreetGraph) -> None:
    plateau_only = StreetGraph.from_graphml([PLATEAU_GRAPH], metric_crs=MTM8)
    outremont_only = StreetGraph.from_graphml([OUTREMONT_GRAPH], metric_crs=MTM8)

    # Each graph alone cannot take a crew from Outremont into the Plateau by road...
    alone = plateau_only.travel_to(*PLATEAU_DEPOT, [OUTREMONT[0]], [OUTREMONT[1]])
    assert str(alone.model[0]) == STRAIGHT_LINE
    alone = outremont_only.travel_to(*PLATEAU_DEPOT, [OUTREMONT[0]], [OUTREMONT[1]])
    assert str(alone.model[0]) == STRAIGHT_LINE
    # ...the merged one does, through the nodes both files share.
    merged = demo_graph.travel_to(*PLATEAU_DEPOT, [OUTREMONT[0]], [OUTREMONT[1]])
    assert str(merged.model[0]) == ROAD
    assert demo_graph.node_count < plateau_only.node_count + outremont_only.node_count
