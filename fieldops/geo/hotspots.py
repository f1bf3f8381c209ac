"""Hot spots: density clustering of incidents in metres (space, or space and time), and a heat grid.

Pure and vectorised: GeoDataFrames in, GeoDataFrames out; no database, no clock. Points are
projected to a metric CRS (Montréal: EPSG:32188) before any distance is measured.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Final

import numpy as np
import pandas as pd
import shapely
from geopandas import GeoDataFrame, GeoSeries
from numpy.typing import NDArray
from scipy import sparse
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from fieldops.geo.crs import MONTREAL_MTM8, WGS84, require_crs, to_metric

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


def _check_incidents(incidents: GeoDataFrame, *, columns: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming every problem with the incident frame at once."""
    require_crs(incidents, WGS84)
    problems = [f"missing column '{c}'" for c in columns if c not in incidents.columns]
    geoms = incidents.geometry.to_numpy()
    if len(geoms):
        bad = ~(shapely.get_type_id(geoms) == 0) | shapely.is_empty(geoms)
        if bad.any():
            problems.append(f"{int(bad.sum())} geometries are not non-empty points")
    if "report_count" in incidents.columns and len(incidents):
        counts = incidents["report_count"].to_numpy()
        if not np.issubdtype(counts.dtype, np.number) or (counts < 1).any():
            problems.append("report_count must be a whole number of at least 1")
    if problems:
        raise ValueError("incident frame: " + "; ".join(problems))


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number above 0, got {value}")


def _seconds(column: pd.Series) -> NDArray[np.float64]:
    """Seconds since the epoch of a column of tz-aware instants (naive ones are refused)."""
    stamps = pd.to_datetime(column)
    if getattr(stamps.dt, "tz", None) is None:
        raise ValueError(f"column '{column.name}' must hold tz-aware instants")
    return ((stamps - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)


def _metric_xy(incidents: GeoDataFrame, metric_crs: str) -> NDArray[np.float64]:
    metric = to_metric(incidents.geometry, metric_crs)
    return np.column_stack([metric.x.to_numpy(), metric.y.to_numpy()])


def core_threshold(
    total_reports: int,
    *,
    radius_m: float,
    min_reports: int,
    density_ratio: float,
    area_m2: float | None,
) -> int:
    """Reports a circle of ``radius_m`` must hold to be the core of a hot spot.

    At least ``min_reports``, and, when the served ``area_m2`` is known, at least
    ``density_ratio`` times the reports such a circle holds on average across the area:
    in a surge of thousands of reports the whole city is dense, and a hot spot must stand
    out from it, not merely exist.

    >>> core_threshold(40, radius_m=200, min_reports=5, density_ratio=3, area_m2=5e8)
    5
    >>> core_threshold(150_000, radius_m=200, min_reports=5, density_ratio=3, area_m2=5e8)
    114
    """
    if min_reports < 1:
        raise ValueError(f"min_reports must be at least 1, got {min_reports}")
    if area_m2 is None:
        return min_reports
    _check_positive("area_m2", area_m2)
    _check_positive("density_ratio", density_ratio)
    average = total_reports * math.pi * radius_m * radius_m / area_m2
    return max(min_reports, math.ceil(density_ratio * average))


def cluster_incidents(
    incidents: GeoDataFrame,
    *,
    radius_m: float = 200.0,
    min_reports: int = 5,
    window: timedelta | None = None,
    area_m2: float | None = None,
    density_ratio: float = 3.0,
    metric_crs: str = MONTREAL_MTM8,
) -> NDArray[np.intp]:
    """Hot-spot label of each incident (``NOISE`` for none), by DBSCAN in projected metres.

    Each incident weighs its ``report_count``: an incident is a core point when the
    incidents within ``radius_m`` (itself included) carry at least ``min_reports`` reports,
    so twenty reports in one street make one hot spot, merged into one incident or not.
    Given the served ``area_m2``, the bar rises with the city-wide density (see
    `core_threshold`).
    With ``window``, two incidents are neighbours only if they are also close in time: the
    gap between their report periods (``first_report_at`` .. ``last_report_at``) is at most
    ``window`` (ST-DBSCAN). Labels count from 0 in the order DBSCAN finds the hot spots.

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
    >>> cluster_incidents(frame, radius_m=100, min_reports=5).tolist()
    [0, 0, -1]
    """
    _check_incidents(incidents, columns=REQUIRED_COLUMNS)
    _check_positive("radius_m", radius_m)
    weights = incidents["report_count"].to_numpy(dtype=np.float64)
    threshold = core_threshold(
        int(weights.sum()),
        radius_m=radius_m,
        min_reports=min_reports,
        density_ratio=density_ratio,
        area_m2=area_m2,
    )
    if window is not None and window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    if len(incidents) == 0:
        return np.empty(0, dtype=np.intp)
    xy = _metric_xy(incidents, metric_crs)
    if window is None:
        model = DBSCAN(eps=radius_m, min_samples=threshold)
        return np.asarray(model.fit_predict(xy, sample_weight=weights), dtype=np.intp)

    # ST-DBSCAN: the spatial neighbourhood graph (one bulk radius query), minus the edges
    # whose report periods lie more than ``window`` apart, clustered as a precomputed graph.
    graph = NearestNeighbors(radius=radius_m).fit(xy).radius_neighbors_graph(xy, mode="distance")
    first_s = _seconds(incidents["first_report_at"])
    last_s = _seconds(incidents["last_report_at"])
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    cols = graph.indices
    gap_s = np.maximum(first_s[rows], first_s[cols]) - np.minimum(last_s[rows], last_s[cols])
    keep = gap_s <= window.total_seconds()
    # Built from (data, indices, indptr), so zero distances (one address reported twice)
    # stay stored entries: DBSCAN counts only stored entries as neighbours.
    kept_per_row = np.bincount(rows[keep], minlength=graph.shape[0])
    indptr = np.concatenate([[0], np.cumsum(kept_per_row)])
    timed = sparse.csr_matrix((graph.data[keep], cols[keep], indptr), shape=graph.shape)
    model = DBSCAN(eps=radius_m, min_samples=threshold, metric="precomputed")
    return np.asarray(model.fit_predict(timed, sample_weight=weights), dtype=np.intp)


def _empty_hotspots() -> GeoDataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in HOTSPOT_COLUMNS})
    return GeoDataFrame(frame, geometry=GeoSeries([], crs=WGS84), crs=WGS84)


def summarise_hotspots(
    incidents: GeoDataFrame,
    labels: NDArray[np.intp],
    *,
    buffer_m: float = 25.0,
    metric_crs: str = MONTREAL_MTM8,
) -> GeoDataFrame:
    """One row per hot spot of ``labels``, most reports first.

    Columns: ``hotspot_id`` (the smallest member incident id: stable while that incident
    stays in the hot spot), ``member_count`` (incidents), ``report_count``,
    ``dominant_group`` (the service group with most reports; ties go to the name first in
    alphabetical order), ``groups`` (incidents per group), ``first_report_at`` and
    ``last_report_at`` (tz-aware UTC), the members' extent (``min_lon`` .. ``max_lat``),
    ``centroid_lon``/``centroid_lat`` and ``incident_ids``; the geometry is the members'
    convex hull grown by ``buffer_m`` metres (EPSG:4326).
    """
    _check_incidents(incidents, columns=REQUIRED_COLUMNS)
    labels = np.asarray(labels)
    if labels.shape != (len(incidents),):
        raise ValueError(f"labels must have one entry per incident, got shape {labels.shape}")
    _check_positive("buffer_m", buffer_m)
    members = labels != NOISE
    if not members.any():
        return _empty_hotspots()

    xy = _metric_xy(incidents.loc[members], metric_crs)
    lonlat = shapely.get_coordinates(incidents.geometry.to_numpy()[members])
    table = pd.DataFrame(
        {
            "label": labels[members],
            "id": incidents["id"].to_numpy()[members],
            "group": incidents["service_group"].to_numpy()[members],
            "reports": incidents["report_count"].to_numpy()[members],
            "first_report_at": pd.to_datetime(incidents["first_report_at"]).to_numpy()[members],
            "last_report_at": pd.to_datetime(incidents["last_report_at"]).to_numpy()[members],
            "lon": lonlat[:, 0],
            "lat": lonlat[:, 1],
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    ).sort_values(["label", "id"], kind="stable")
    by_label = table.groupby("label", sort=True)
    summary = by_label.agg(
        hotspot_id=("id", "min"),
        member_count=("id", "size"),
        report_count=("reports", "sum"),
        first_report_at=("first_report_at", "min"),
        last_report_at=("last_report_at", "max"),
        min_lon=("lon", "min"),
        min_lat=("lat", "min"),
        max_lon=("lon", "max"),
        max_lat=("lat", "max"),
    )
    summary["incident_ids"] = by_label["id"].agg(list)

    per_group = table.groupby(["label", "group"], sort=True).agg(
        reports=("reports", "sum"), incidents=("id", "size")
    )
    dominant = (
        per_group.reset_index()
        .sort_values(["label", "reports", "group"], ascending=[True, False, True], kind="stable")
        .drop_duplicates("label")
        .set_index("label")["group"]
    )
    summary["dominant_group"] = dominant
    counts = per_group["incidents"]
    summary["groups"] = [
        dict(counts.xs(label, level="label").items()) for label in summary.index.to_numpy()
    ]

    # Hulls in metres, all at once: one MultiPoint per hot spot (rows are sorted by label).
    codes = np.searchsorted(summary.index.to_numpy(), table["label"].to_numpy())
    hulls = shapely.convex_hull(shapely.multipoints(table[["x", "y"]].to_numpy(), indices=codes))
    metric_hulls = GeoSeries(shapely.buffer(hulls, buffer_m, quad_segs=4), crs=metric_crs)
    centroids = GeoSeries(shapely.centroid(hulls), crs=metric_crs).to_crs(WGS84)
    summary["centroid_lon"] = centroids.x.to_numpy()
    summary["centroid_lat"] = centroids.y.to_numpy()
    geometry = metric_hulls.to_crs(WGS84).to_numpy()
    frame = GeoDataFrame(
        summary.reset_index(drop=True)[list(HOTSPOT_COLUMNS)], geometry=geometry, crs=WGS84
    )
    for column in ("first_report_at", "last_report_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.sort_values(
        ["report_count", "hotspot_id"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)


def find_hotspots(
    incidents: GeoDataFrame,
    *,
    radius_m: float = 200.0,
    min_reports: int = 5,
    window: timedelta | None = None,
    area_m2: float | None = None,
    density_ratio: float = 3.0,
    buffer_m: float = 25.0,
    metric_crs: str = MONTREAL_MTM8,
) -> GeoDataFrame:
    """The hot spots of ``incidents``: `cluster_incidents` then `summarise_hotspots`."""
    labels = cluster_incidents(
        incidents,
        radius_m=radius_m,
        min_reports=min_reports,
        window=window,
        area_m2=area_m2,
        density_ratio=density_ratio,
        metric_crs=metric_crs,
    )
    return summarise_hotspots(incidents, labels, buffer_m=buffer_m, metric_crs=metric_crs)


def heat_cells(
    incidents: GeoDataFrame, *, cell_m: float = 250.0, metric_crs: str = MONTREAL_MTM8
) -> GeoDataFrame:
    """Incidents and reports per square cell of ``cell_m`` metres, for a heat layer.

    One row per non-empty cell: its integer grid position (``cell_x``, ``cell_y``, in
    ``metric_crs``), ``incident_count``, ``report_count``, and the cell centre as a point
    in EPSG:4326. Rows are in grid order.

    Examples
    --------
    >>> from datetime import UTC, datetime
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
    _check_positive("cell_m", cell_m)
    if len(incidents) == 0:
        empty = pd.DataFrame({c: pd.Series(dtype=np.int64) for c in HEAT_COLUMNS})
        return GeoDataFrame(empty, geometry=GeoSeries([], crs=WGS84), crs=WGS84)
    cells = np.floor(_metric_xy(incidents, metric_crs) / cell_m).astype(np.int64)
    keys, inverse = np.unique(cells, axis=0, return_inverse=True)
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
