"""Hot spots: density clustering of incidents in metres (space, or space and time), and a heat grid.

Pure and vectorised: GeoDataFrames in, GeoDataFrames out; no database, no clock. Points are
projected to a metric CRS (Montréal: EPSG:32188) before any distance is measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Final

import numpy as np
import pandas as pd
import pyproj
import shapely
from geopandas import GeoDataFrame, GeoSeries
from numpy.typing import NDArray
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from fieldops.geo.crs import MONTREAL_MTM8, WGS84, require_crs

NOISE: Final = -1
"""The label `cluster_incidents` gives an incident that belongs to no hot spot."""

REQUIRED_COLUMNS: Final = (
    "id",
    "service_group",
    "report_count",
    "first_report_at",
    "last_report_at",
)
"""Columns an incident frame must carry (besides point geometries in EPSG:4326)."""

HOTSPOT_COLUMNS: Final = (
    "hotspot_id",
    "member_count",
    "report_count",
    "dominant_group",
    "groups",
    "first_report_at",
    "last_report_at",
    "min_lon",
    "min_lat",
    "max_lon",
    "max_lat",
    "centroid_lon",
    "centroid_lat",
    "incident_ids",
)
HEAT_COLUMNS: Final = ("cell_x", "cell_y", "incident_count", "report_count")

_EPOCH: Final = pd.Timestamp(0, tz="UTC")


@dataclass(frozen=True)
class HotspotOptions:
    """How hot spots are found.

    ``radius_m``: neighbourhood radius. ``min_reports``: reports (incidents weighted by
    their ``report_count``) a neighbourhood must hold for its centre to be a core point.
    ``window``: when set, neighbours must also be close in time (ST-DBSCAN): the gap
    between their report periods is at most ``window``. ``area_m2`` (the served area) and
    ``density_ratio``: when the area is known, the bar rises to ``density_ratio`` times
    the city-wide average (see `core_threshold`). ``buffer_m``: how far a hot spot's outline
    reaches beyond its outermost members.
    """

    radius_m: float = 200.0
    min_reports: int = 5
    window: timedelta | None = None
    area_m2: float | None = None
    density_ratio: float = 3.0
    buffer_m: float = 25.0
    metric_crs: str = MONTREAL_MTM8

    def check(self) -> None:
        """Raise ``ValueError`` naming every option out of range."""
        problems = []
        for name in ("radius_m", "buffer_m", "density_ratio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a finite number above 0, got {value}")
        if self.min_reports < 1:
            problems.append(f"min_reports must be at least 1, got {self.min_reports}")
        if self.window is not None and self.window <= timedelta(0):
            problems.append(f"window must be positive, got {self.window}")
        if self.area_m2 is not None and not (math.isfinite(self.area_m2) and self.area_m2 > 0):
            problems.append(f"area_m2 must be a finite number above 0, got {self.area_m2}")
        if problems:
            raise ValueError("; ".join(problems))


def _check_incidents(incidents: GeoDataFrame, *, columns: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming every problem with the incident frame at once."""
    require_crs(incidents, WGS84)
    problems = [f"missing column '{c}'" for c in columns if c not in incidents.columns]
    geoms = incidents.geometry.to_numpy()
    if len(geoms):
        bad = (shapely.get_type_id(geoms) != 0) | shapely.is_empty(geoms)
        if bad.any():
            problems.append(f"{int(bad.sum())} geometries are not non-empty points")
        else:
            xy = shapely.get_coordinates(geoms)
            # NaN fails both comparisons, so it counts as outside too.
            outside = ~((np.abs(xy[:, 0]) <= 180) & (np.abs(xy[:, 1]) <= 90))
            if outside.any():
                problems.append(f"{int(outside.sum())} points are not lon/lat in degrees")
    if "report_count" in incidents.columns and len(incidents):
        counts = incidents["report_count"].to_numpy()
        if not np.issubdtype(counts.dtype, np.integer) or (counts < 1).any():
            problems.append("report_count must be a whole number of at least 1")
    if problems:
        raise ValueError("incident frame: " + "; ".join(problems))


@lru_cache(maxsize=8)
def _transformer(metric_crs: str) -> pyproj.Transformer:
    target = pyproj.CRS.from_user_input(metric_crs)
    if not (target.is_projected and all(a.unit_name == "metre" for a in target.axis_info)):
        raise ValueError(f"{target.to_string()} is not a projected CRS in metres")
    return pyproj.Transformer.from_crs(WGS84, target, always_xy=True)


def _metric_xy(geoms: NDArray[np.object_], metric_crs: str) -> NDArray[np.float64]:
    """Easting and northing in metres of each point, as an (n, 2) array."""
    lonlat = shapely.get_coordinates(geoms)
    x_m, y_m = _transformer(metric_crs).transform(lonlat[:, 0], lonlat[:, 1])
    return np.column_stack([x_m, y_m])


def _seconds(column: pd.Series) -> NDArray[np.float64]:
    """Seconds since the epoch of a column of tz-aware instants (naive ones are refused)."""
    stamps = pd.to_datetime(column)
    if getattr(stamps.dt, "tz", None) is None:
        raise ValueError(f"column '{column.name}' must hold tz-aware instants")
    return ((stamps - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)


def core_threshold(total_reports: int, options: HotspotOptions) -> int:
    """Reports a circle of ``options.radius_m`` must hold to be the core of a hot spot.

    At least ``min_reports``, and, when the served ``area_m2`` is known, at least
    ``density_ratio`` times the reports such a circle holds on average across the area:
    in a surge of thousands of reports the whole city is dense, and a hot spot must stand
    out from it, not merely exist.

    >>> core_threshold(40, HotspotOptions(radius_m=200, min_reports=5, area_m2=5e8))
    5
    >>> core_threshold(150_000, HotspotOptions(radius_m=200, min_reports=5, area_m2=5e8))
    114
    """
    if options.area_m2 is None:
        return options.min_reports
    average = total_reports * math.pi * options.radius_m**2 / options.area_m2
    return max(options.min_reports, math.ceil(options.density_ratio * average))


def _dbscan(
    xy_m: NDArray[np.float64],
    weights: NDArray[np.float64],
    *,
    radius_m: float,
    threshold: int,
    period_s: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
    window_s: float | None = None,
) -> NDArray[np.intp]:
    """Weighted (ST-)DBSCAN on metric coordinates, without a per-point loop.

    One KD-tree query lists every pair at most ``radius_m`` apart; with a window, pairs
    whose report periods lie further apart in time are dropped. A point is core when its
    own weight and its neighbours' reach ``threshold``; hot spots are the connected
    components of core points; a border point (not core, next to a core point) joins the
    hot spot of its lowest-numbered core neighbour. Labels count from 0, in the order of
    each hot spot's lowest-numbered core point.
    """
    n = len(xy_m)
    labels = np.full(n, NOISE, dtype=np.intp)
    if n == 0:
        return labels
    pairs = cKDTree(xy_m).query_pairs(radius_m, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    if period_s is not None and window_s is not None:
        first_s, last_s = period_s
        gap_s = np.maximum(first_s[i], first_s[j]) - np.minimum(last_s[i], last_s[j])
        close = gap_s <= window_s
        i, j = i[close], j[close]
    around = (
        weights
        + np.bincount(i, weights=weights[j], minlength=n)
        + np.bincount(j, weights=weights[i], minlength=n)
    )
    core = around >= threshold
    if not core.any():
        return labels
    both = core[i] & core[j]
    links = sparse.coo_matrix(
        (np.ones(int(both.sum()), dtype=np.int8), (i[both], j[both])), shape=(n, n)
    )
    _count, component = connected_components(links, directed=False)
    # Components are numbered by their lowest point; renumber the core ones from 0.
    _kept, core_labels = np.unique(component[core], return_inverse=True)
    labels[core] = core_labels
    to_i = core[j] & ~core[i]
    to_j = core[i] & ~core[j]
    border = np.concatenate([i[to_i], j[to_j]])
    via = np.concatenate([j[to_i], i[to_j]])
    if len(border):
        order = np.lexsort((via, border))
        border, via = border[order], via[order]
        first = np.concatenate([[True], border[1:] != border[:-1]])
        labels[border[first]] = labels[via[first]]
    return labels


def _cluster(
    incidents: GeoDataFrame, xy_m: NDArray[np.float64], options: HotspotOptions
) -> NDArray[np.intp]:
    weights = incidents["report_count"].to_numpy(dtype=np.float64)
    threshold = core_threshold(int(weights.sum()), options)
    if options.window is None:
        return _dbscan(xy_m, weights, radius_m=options.radius_m, threshold=threshold)
    period_s = (_seconds(incidents["first_report_at"]), _seconds(incidents["last_report_at"]))
    return _dbscan(
        xy_m,
        weights,
        radius_m=options.radius_m,
        threshold=threshold,
        period_s=period_s,
        window_s=options.window.total_seconds(),
    )


def cluster_incidents(
    incidents: GeoDataFrame, options: HotspotOptions | None = None
) -> NDArray[np.intp]:
    """Hot-spot label of each incident (``NOISE`` for none), by DBSCAN in projected metres.

    Each incident weighs its ``report_count``: an incident is a core point when the
    incidents within ``radius_m`` (itself included) carry at least the `core_threshold`
    of reports, so twenty reports in one street make one hot spot, whether intake merged
    them into one incident or not. With ``options.window``, two incidents are neighbours
    only if they are also close in time (ST-DBSCAN).

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> from geopandas import GeoDataFrame, points_from_xy
    >>> at = datetime(2026, 5, 4, tzinfo=UTC)
    >>> frame = GeoDataFrame(
    ...     {"id": [1, 2, 3], "service_group": ["water"] * 3, "report_count": [3, 2, 1],
    ...      "first_report_at": [at] * 3, "last_report_at": [at] * 3},
    ...     geometry=points_from_xy([-73.5800, -73.5805, -73.6500], [45.5230, 45.5231, 45.45]),
    ...     crs="EPSG:4326",
    ... )
    >>> cluster_incidents(frame, HotspotOptions(radius_m=100, min_reports=5)).tolist()
    [0, 0, -1]
    """
    options = options or HotspotOptions()
    options.check()
    _check_incidents(incidents, columns=REQUIRED_COLUMNS)
    return _cluster(
        incidents, _metric_xy(incidents.geometry.to_numpy(), options.metric_crs), options
    )


def _empty_hotspots() -> GeoDataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in HOTSPOT_COLUMNS})
    return GeoDataFrame(frame, geometry=GeoSeries([], crs=WGS84), crs=WGS84)


def _summarise(
    incidents: GeoDataFrame,
    labels: NDArray[np.intp],
    xy_m: NDArray[np.float64],
    options: HotspotOptions,
) -> GeoDataFrame:
    members = labels != NOISE
    if not members.any():
        return _empty_hotspots()
    lonlat = shapely.get_coordinates(incidents.geometry.to_numpy()[members])
    table = pd.DataFrame(
        {
            "label": labels[members],
            "id": incidents["id"].to_numpy()[members],
            "group": incidents["service_group"].to_numpy()[members],
            "reports": incidents["report_count"].to_numpy()[members],
            "first_s": _seconds(incidents["first_report_at"])[members],
            "last_s": _seconds(incidents["last_report_at"])[members],
            "lon": lonlat[:, 0],
            "lat": lonlat[:, 1],
            "x": xy_m[members, 0],
            "y": xy_m[members, 1],
        }
    ).sort_values(["label", "id"], kind="stable")
    by_label = table.groupby("label", sort=True)
    summary = by_label.agg(
        hotspot_id=("id", "min"),
        member_count=("id", "size"),
        report_count=("reports", "sum"),
        first_s=("first_s", "min"),
        last_s=("last_s", "max"),
        min_lon=("lon", "min"),
        min_lat=("lat", "min"),
        max_lon=("lon", "max"),
        max_lat=("lat", "max"),
    )
    summary["incident_ids"] = by_label["id"].agg(list)
    for column, seconds in (("first_report_at", "first_s"), ("last_report_at", "last_s")):
        summary[column] = pd.to_datetime(summary[seconds].round(6), unit="s", utc=True)

    per_group = (
        table.groupby(["label", "group"], sort=True)
        .agg(reports=("reports", "sum"), incidents=("id", "size"))
        .reset_index()
    )
    dominant = (
        per_group.sort_values(
            ["label", "reports", "group"], ascending=[True, False, True], kind="stable"
        )
        .drop_duplicates("label")
        .set_index("label")["group"]
    )
    summary["dominant_group"] = dominant
    groups: dict[int, dict[str, int]] = {int(label): {} for label in summary.index}
    # One pass over (hot spot, group) rows: a few per hot spot, never one per incident.
    for label, group, count in zip(
        per_group["label"], per_group["group"], per_group["incidents"], strict=True
    ):
        groups[int(label)][str(group)] = int(count)
    summary["groups"] = [groups[int(label)] for label in summary.index]

    # Hulls in metres, all at once: one MultiPoint per hot spot (rows are sorted by label).
    codes = np.searchsorted(summary.index.to_numpy(), table["label"].to_numpy())
    hulls = shapely.convex_hull(shapely.multipoints(table[["x", "y"]].to_numpy(), indices=codes))
    outlines = GeoSeries(
        shapely.buffer(hulls, options.buffer_m, quad_segs=4), crs=options.metric_crs
    )
    centroids = GeoSeries(shapely.centroid(hulls), crs=options.metric_crs).to_crs(WGS84)
    summary["centroid_lon"] = centroids.x.to_numpy()
    summary["centroid_lat"] = centroids.y.to_numpy()
    frame = GeoDataFrame(
        summary.reset_index(drop=True)[list(HOTSPOT_COLUMNS)],
        geometry=outlines.to_crs(WGS84).to_numpy(),
        crs=WGS84,
    )
    return frame.sort_values(
        ["report_count", "hotspot_id"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)


def summarise_hotspots(
    incidents: GeoDataFrame, labels: NDArray[np.intp], options: HotspotOptions | None = None
) -> GeoDataFrame:
    """One row per hot spot of ``labels``, most reports first.

    Columns: ``hotspot_id`` (the smallest member incident id: stable while that incident
    stays in the hot spot), ``member_count`` (incidents), ``report_count``,
    ``dominant_group`` (the service group with most reports; ties go to the name first in
    alphabetical order), ``groups`` (incidents per group), ``first_report_at`` and
    ``last_report_at`` (tz-aware UTC), the members' extent (``min_lon`` .. ``max_lat``),
    ``centroid_lon``/``centroid_lat`` and ``incident_ids``; the geometry is the members'
    convex hull grown by ``options.buffer_m`` metres (EPSG:4326).
    """
    options = options or HotspotOptions()
    options.check()
    _check_incidents(incidents, columns=REQUIRED_COLUMNS)
    labels = np.asarray(labels)
    if labels.shape != (len(incidents),):
        raise ValueError(f"labels must have one entry per incident, got shape {labels.shape}")
    xy_m = _metric_xy(incidents.geometry.to_numpy(), options.metric_crs)
    return _summarise(incidents, labels, xy_m, options)


def find_hotspots(incidents: GeoDataFrame, options: HotspotOptions | None = None) -> GeoDataFrame:
    """The hot spots of ``incidents`` (`cluster_incidents` then `summarise_hotspots`),
    projecting the points once."""
    options = options or HotspotOptions()
    options.check()
    _check_incidents(incidents, columns=REQUIRED_COLUMNS)
    xy_m = _metric_xy(incidents.geometry.to_numpy(), options.metric_crs)
    return _summarise(incidents, _cluster(incidents, xy_m, options), xy_m, options)


def heat_cells(
    incidents: GeoDataFrame, *, cell_m: float = 250.0, metric_crs: str = MONTREAL_MTM8
) -> GeoDataFrame:
    """Incidents and reports per square cell of ``cell_m`` metres, for a heat layer.

    One row per non-empty cell: its integer grid position (``cell_x``, ``cell_y``, in
    ``metric_crs``), ``incident_count``, ``report_count``, and the cell centre as a point
    in EPSG:4326. Rows are in grid order.

    Examples
    --------
    >>> from geopandas import GeoDataFrame, points_from_xy
    >>> frame = GeoDataFrame(
    ...     {"report_count": [1, 4, 2]},
    ...     geometry=points_from_xy([-73.5800, -73.5801, -73.6500], [45.5230, 45.5231, 45.45]),
    ...     crs="EPSG:4326",
    ... )
    >>> heat_cells(frame, cell_m=500)[["incident_count", "report_count"]].values.tolist()
    [[1, 2], [2, 5]]
    """
    _check_incidents(incidents, columns=("report_count",))
    if not (math.isfinite(cell_m) and cell_m > 0):
        raise ValueError(f"cell_m must be a finite number above 0, got {cell_m}")
    if len(incidents) == 0:
        empty = pd.DataFrame({c: pd.Series(dtype=np.int64) for c in HEAT_COLUMNS})
        return GeoDataFrame(empty, geometry=GeoSeries([], crs=WGS84), crs=WGS84)
    cells = np.floor(_metric_xy(incidents.geometry.to_numpy(), metric_crs) / cell_m)
    keys, inverse = np.unique(cells.astype(np.int64), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    reports = incidents["report_count"].to_numpy(dtype=np.int64)
    centres = GeoSeries(shapely.points((keys + 0.5) * cell_m), crs=metric_crs).to_crs(WGS84)
    return GeoDataFrame(
        {
            "cell_x": keys[:, 0],
            "cell_y": keys[:, 1],
            "incident_count": np.bincount(inverse, minlength=len(keys)),
            "report_count": np.bincount(inverse, weights=reports, minlength=len(keys)).astype(
                np.int64
            ),
        },
        geometry=centres.to_numpy(),
        crs=WGS84,
    )
