"""GeoJSON features of the map's layers, built column-wise (the page and the API share them).

Incidents carry only what the map draws (the popup asks the API for the rest); coordinates
are rounded to 6 decimals (about 0.1 m), which is finer than any report's position.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd
import shapely
from geopandas import GeoDataFrame
from shapely.geometry import mapping

from fieldops.geo.crs import WGS84, require_crs

Feature = dict[str, Any]

INCIDENT_PROPERTIES: Final = (
    "service_code",
    "status",
    "priority",
    "district_id",
    "report_count",
)
# Filled once crews and dispatch exist; the page already shows them when present.
INCIDENT_OPTIONAL: Final = ("crew", "eta_at")
CREW_PROPERTIES: Final = ("name", "status", "position_at", "stale")
CREW_OPTIONAL: Final = ("incident_id", "eta_at")
EMERGENCY_PROPERTIES: Final = ("name", "hazard", "declared_at")
COORDINATE_DECIMALS: Final = 6


def collection(features: list[Feature]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}


def plain(value: Any) -> Any:
    """A JSON-ready scalar: instants as ISO 8601 text, NaN, NaT and NA as null."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def property_records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """One dict of JSON-ready values per row, for the ``columns`` the frame has."""
    present = [c for c in columns if c in frame.columns]
    table = frame[present]
    # Plain integer, boolean and text columns come out of to_dict JSON-ready already.
    needs_cleaning = [
        c
        for c in present
        if not (
            isinstance(table[c].dtype, pd.StringDtype)
            or (
                isinstance(table[c].dtype, np.dtype)
                and (np.issubdtype(table[c].dtype, np.integer) or table[c].dtype == np.bool_)
            )
        )
    ]
    records: list[dict[str, Any]] = table.to_dict("records")
    if needs_cleaning:
        for record in records:
            for column in needs_cleaning:
                record[column] = plain(record[column])
    return records


def point_features(
    ids: Sequence[Any], lon: Any, lat: Any, records: list[dict[str, Any]]
) -> list[Feature]:
    """Point features from parallel columns (no per-feature geometry objects)."""
    lon_r = np.round(np.asarray(lon, dtype=np.float64), COORDINATE_DECIMALS).tolist()
    lat_r = np.round(np.asarray(lat, dtype=np.float64), COORDINATE_DECIMALS).tolist()
    return [
        {
            "type": "Feature",
            "id": feature_id,
            "geometry": {"type": "Point", "coordinates": [x, y]},
            "properties": props,
        }
        for feature_id, x, y, props in zip(ids, lon_r, lat_r, records, strict=True)
    ]


def incident_table_features(table: pd.DataFrame) -> list[Feature]:
    """Incident features from a plain table with ``id``, ``lon``, ``lat`` and the properties."""
    records = property_records(table, INCIDENT_PROPERTIES + INCIDENT_OPTIONAL)
    return point_features(table["id"].tolist(), table["lon"], table["lat"], records)


def _frame_points(frame: GeoDataFrame) -> tuple[Any, Any]:
    require_crs(frame, WGS84)
    coords = shapely.get_coordinates(frame.geometry.to_numpy())
    if len(coords) != len(frame):
        raise ValueError("every geometry must be one point")
    return coords[:, 0], coords[:, 1]


def incident_features(frame: GeoDataFrame) -> list[Feature]:
    """Incident features from a GeoDataFrame of points (EPSG:4326) with ``id`` and
    `INCIDENT_PROPERTIES` (``crew`` and ``eta_at`` when known)."""
    lon, lat = _frame_points(frame)
    records = property_records(frame, INCIDENT_PROPERTIES + INCIDENT_OPTIONAL)
    return point_features(frame["id"].tolist(), lon, lat, records)


def crew_features(frame: GeoDataFrame) -> list[Feature]:
    """Crew features: ``id``, `CREW_PROPERTIES` (``stale`` true when the position is too old
    to trust), and ``incident_id``/``eta_at`` when assigned."""
    if len(frame) == 0:
        return []
    lon, lat = _frame_points(frame)
    records = property_records(frame, CREW_PROPERTIES + CREW_OPTIONAL)
    return point_features(frame["id"].tolist(), lon, lat, records)


def _shape_features(frame: GeoDataFrame, columns: Sequence[str], id_column: str) -> list[Feature]:
    require_crs(frame, WGS84)
    geoms = shapely.set_precision(frame.geometry.to_numpy(), 10**-COORDINATE_DECIMALS)
    records = property_records(frame, columns)
    return [
        {
            "type": "Feature",
            "id": plain(feature_id),
            "geometry": mapping(geom),
            "properties": props,
        }
        for feature_id, geom, props in zip(frame[id_column], geoms, records, strict=True)
    ]


def emergency_features(frame: GeoDataFrame) -> list[Feature]:
    """Declared emergency areas: polygons with ``id`` and `EMERGENCY_PROPERTIES`."""
    if len(frame) == 0:
        return []
    return _shape_features(frame, EMERGENCY_PROPERTIES, "id")


def hotspot_features(frame: GeoDataFrame) -> list[Feature]:
    """Hot spots as `fieldops.geo.hotspots.find_hotspots` returns them: outline polygons
    with every summary column as a property (``bbox`` and ``centroid`` as arrays)."""
    if len(frame) == 0:
        return []
    table = pd.DataFrame(
        {
            "hotspot_id": frame["hotspot_id"],
            "member_count": frame["member_count"],
            "report_count": frame["report_count"],
            "dominant_group": frame["dominant_group"],
            "groups": frame["groups"],
            "first_report_at": frame["first_report_at"],
            "last_report_at": frame["last_report_at"],
            "bbox": np.round(
                frame[["min_lon", "min_lat", "max_lon", "max_lat"]].to_numpy(dtype=np.float64),
                COORDINATE_DECIMALS,
            ).tolist(),
            "centroid": np.round(
                frame[["centroid_lon", "centroid_lat"]].to_numpy(dtype=np.float64),
                COORDINATE_DECIMALS,
            ).tolist(),
            "incident_ids": frame["incident_ids"],
        }
    )
    shaped = GeoDataFrame(table, geometry=frame.geometry.to_numpy(), crs=frame.crs)
    return _shape_features(shaped, list(table.columns), "hotspot_id")


def heat_features(frame: GeoDataFrame) -> list[Feature]:
    """Heat cells as `fieldops.geo.hotspots.heat_cells` returns them: centre points."""
    lon, lat = _frame_points(frame)
    records = property_records(frame, ("incident_count", "report_count"))
    ids = [f"{x}:{y}" for x, y in zip(frame["cell_x"], frame["cell_y"], strict=True)]
    return point_features(ids, lon, lat, records)
