"""Road travel times on street graphs, with a straight-line model where the roads end.

One shortest-path search per destination serves every origin at once: the search runs
on the reversed graph from the destination, so crews travelling *to* an incident cost
one search, not one per crew. Pure: arrays in, arrays out; no database, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pyproj
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from fieldops.geo.crs import MONTREAL_MTM8, WGS84

ROAD = "road"
STRAIGHT_LINE = "straight_line"

# Free-flow speeds in km/h by OSM highway class when an edge has no usable maxspeed.
DEFAULT_SPEED_KMH = {
    "motorway": 90.0,
    "motorway_link": 60.0,
    "trunk": 70.0,
    "trunk_link": 50.0,
    "primary": 50.0,
    "primary_link": 40.0,
    "secondary": 50.0,
    "secondary_link": 40.0,
    "tertiary": 40.0,
    "tertiary_link": 30.0,
    "residential": 30.0,
    "unclassified": 30.0,
    "living_street": 15.0,
    "service": 20.0,
}
FALLBACK_SPEED_KMH = 30.0
_FIRST_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class StraightLine:
    """Travel where no road graph reaches: crow-flies distance x detour, at a fixed speed."""

    detour: float = 1.35
    speed_mps: float = 30 / 3.6

    def seconds(self, distance_m: NDArray[np.float64]) -> NDArray[np.float64]:
        return distance_m * self.detour / self.speed_mps


@dataclass(frozen=True)
class Travel:
    """Seconds from each origin to the destination and the model each figure came from."""

    seconds: NDArray[np.float64]
    model: NDArray[np.str_]


def edge_speed_kmh(maxspeed: str | None, highway: str | None) -> float:
    """Speed of an OSM edge: the first number of maxspeed, else a default for its class."""
    if maxspeed:
        found = _FIRST_NUMBER.search(maxspeed)
        if found and float(found.group()) > 0:
            return float(found.group())
    if highway:
        for cls in re.findall(r"[a-z_]+", highway):
            if cls in DEFAULT_SPEED_KMH:
                return DEFAULT_SPEED_KMH[cls]
    return FALLBACK_SPEED_KMH


class StreetGraph:
    """A directed road graph with edge travel times, searchable from any point.

    >>> g = StreetGraph.from_arrays(
    ...     lon=[-73.60, -73.59], lat=[45.52, 45.52], edge_from=[0, 1], edge_to=[1, 0],
    ...     edge_seconds=[60.0, 60.0])
    >>> t = g.travel_to(-73.59, 45.52, [-73.60], [45.52])
    >>> (round(float(t.seconds[0])), str(t.model[0]))
    (60, 'road')
    """

    def __init__(
        self,
        *,
        lon: ArrayLike,
        lat: ArrayLike,
        edge_from: ArrayLike,
        edge_to: ArrayLike,
        edge_seconds: ArrayLike,
        metric_crs: str = MONTREAL_MTM8,
        snap_limit_m: float = 250.0,
        off_road: StraightLine = StraightLine(),
    ) -> None:
        self.lon = np.asarray(lon, dtype=float)
        self.lat = np.asarray(lat, dtype=float)
        n = len(self.lon)
        u, v = np.asarray(edge_from, dtype=np.int64), np.asarray(edge_to, dtype=np.int64)
        w = np.asarray(edge_seconds, dtype=float)
        if n == 0 or len(u) == 0:
            raise ValueError("a street graph needs nodes and edges")
        if (w <= 0).any() or not np.isfinite(w).all():
            raise ValueError("edge travel times must be positive and finite")
        self._to_metric = pyproj.Transformer.from_crs(WGS84, metric_crs, always_xy=True)
        x, y = self._to_metric.transform(self.lon, self.lat)
        self._tree = cKDTree(np.column_stack([x, y]))
        # Parallel edges keep their fastest: csr_matrix would add them up.
        order = np.lexsort((w, v, u))
        u, v, w = u[order], v[order], w[order]
        first = np.ones(len(u), dtype=bool)
        first[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
        u, v, w = u[first], v[first], w[first]
        # Reversed: a search from the destination gives every origin's time *to* it.
        self._reversed = csr_matrix((w, (v, u)), shape=(n, n))
        self.snap_limit_m = snap_limit_m
        self.off_road = off_road

    @property
    def node_count(self) -> int:
        return len(self.lon)

    @classmethod
    def from_arrays(cls, **kwargs: Any) -> StreetGraph:
        return cls(**kwargs)

    @classmethod
    def from_graphml(
        cls, paths: Sequence[Path], *, metric_crs: str = MONTREAL_MTM8, snap_limit_m: float = 250.0
    ) -> StreetGraph:
        """Merge OSM drive graphs (GraphML as OSMnx writes it); shared OSM nodes join them."""
        index: dict[str, int] = {}
        lon: list[float] = []
        lat: list[float] = []
        edge_from: list[int] = []
        edge_to: list[int] = []
        seconds: list[float] = []
        for path in paths:
            graph = nx.read_graphml(path)
            for node, data in graph.nodes(data=True):
                if node not in index:
                    index[node] = len(lon)
                    lon.append(float(data["x"]))
                    lat.append(float(data["y"]))
            for a, b, data in graph.edges(data=True):
                speed = edge_speed_kmh(data.get("maxspeed"), data.get("highway"))
                length = max(float(data.get("length", 0.0)), 0.5)
                edge_from.append(index[a])
                edge_to.append(index[b])
                seconds.append(length / (speed / 3.6))
        return cls(
            lon=lon,
            lat=lat,
            edge_from=edge_from,
            edge_to=edge_to,
            edge_seconds=seconds,
            metric_crs=metric_crs,
            snap_limit_m=snap_limit_m,
        )

    def _snap(
        self, lon: NDArray[np.float64], lat: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
        x, y = self._to_metric.transform(lon, lat)
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        dist, node = self._tree.query(np.column_stack([x, y]))
        return np.asarray(dist), np.asarray(node), x, y

    def travel_to(self, lon: float, lat: float, from_lon: ArrayLike, from_lat: ArrayLike) -> Travel:
        """Seconds from every origin to (lon, lat): by road where both ends are near the
        graph and connected, else by the straight-line model."""
        return self.travel_matrix(from_lon, from_lat, [lon], [lat])[0]

    def travel_matrix(
        self, from_lon: ArrayLike, from_lat: ArrayLike, to_lon: ArrayLike, to_lat: ArrayLike
    ) -> list[Travel]:
        """For each destination, the travel from every origin (one graph search each)."""
        o_lon, o_lat = (
            np.atleast_1d(np.asarray(from_lon, float)),
            np.atleast_1d(np.asarray(from_lat, float)),
        )
        d_lon, d_lat = (
            np.atleast_1d(np.asarray(to_lon, float)),
            np.atleast_1d(np.asarray(to_lat, float)),
        )
        o_snap, o_node, o_x, o_y = self._snap(o_lon, o_lat)
        d_snap, d_node, d_x, d_y = self._snap(d_lon, d_lat)
        on_graph = d_snap <= self.snap_limit_m
        road = np.full((len(d_lon), len(o_lon)), np.inf)
        if on_graph.any():
            found = dijkstra(self._reversed, directed=True, indices=d_node[on_graph])
            road[on_graph] = np.atleast_2d(found)[:, o_node]
        # The walk from a point to its nearest node is driven like the off-road model.
        road += self.off_road.seconds(o_snap)[None, :] + self.off_road.seconds(d_snap)[:, None]
        origin_ok = (o_snap <= self.snap_limit_m)[None, :]
        use_road = origin_ok & on_graph[:, None] & np.isfinite(road)
        crow = np.hypot(o_x[None, :] - d_x[:, None], o_y[None, :] - d_y[:, None])
        straight = self.off_road.seconds(crow)
        seconds = np.where(use_road, road, straight)
        model = np.where(use_road, ROAD, STRAIGHT_LINE)
        return [Travel(seconds[i], model[i]) for i in range(len(d_lon))]


class StraightLineOnly:
    """The travel model of a city with no street graph loaded."""

    def __init__(self, metric_crs: str = MONTREAL_MTM8, off_road: StraightLine = StraightLine()):
        self._to_metric = pyproj.Transformer.from_crs(WGS84, metric_crs, always_xy=True)
        self.off_road = off_road

    def travel_matrix(
        self, from_lon: ArrayLike, from_lat: ArrayLike, to_lon: ArrayLike, to_lat: ArrayLike
    ) -> list[Travel]:
        ox, oy = self._to_metric.transform(np.atleast_1d(from_lon), np.atleast_1d(from_lat))
        dx, dy = self._to_metric.transform(np.atleast_1d(to_lon), np.atleast_1d(to_lat))
        crow = np.hypot(
            np.asarray(ox)[None, :] - np.asarray(dx)[:, None],
            np.asarray(oy)[None, :] - np.asarray(dy)[:, None],
        )
        seconds = self.off_road.seconds(crow)
        return [Travel(row, np.full(len(row), STRAIGHT_LINE)) for row in seconds]

    def travel_to(self, lon: float, lat: float, from_lon: ArrayLike, from_lat: ArrayLike) -> Travel:
        return self.travel_matrix(from_lon, from_lat, [lon], [lat])[0]
