"""Use cases of districts: loading them from a layer."""

from __future__ import annotations

import geopandas as gpd
import shapely
from sqlalchemy.orm import Session

from fieldops.db.base import SRID
from fieldops.districts.models import District
from fieldops.districts.repo import list_districts
from fieldops.errors import InvalidInput
from fieldops.geo.crs import WGS84, require_crs, to_metric


def load_districts(
    session: Session,
    frame: gpd.GeoDataFrame,
    *,
    code_column: str,
    name_column: str,
    kind_column: str,
    metric_crs: str,
) -> tuple[int, int]:
    """Insert or update districts from a polygon layer, matched on code; returns (added, updated).

    The frame must be EPSG:4326 with valid polygons (``fieldops.layers`` repairs them on load).
    """
    require_crs(frame, WGS84)
    missing = [c for c in (code_column, name_column, kind_column) if c not in frame.columns]
    if missing:
        raise InvalidInput(f"district layer lacks column(s) {', '.join(missing)}")
    codes = frame[code_column].astype(str)
    if codes.duplicated().any():
        dupes = sorted(set(codes[codes.duplicated()]))
        raise InvalidInput(f"district codes repeat: {', '.join(dupes)}")

    multi = shapely.force_2d(frame.geometry.values)
    multi = [g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in multi]
    areas = to_metric(frame, metric_crs).geometry.area.to_numpy()
    existing = {d.code: d for d in list_districts(session)}
    added = updated = 0
    for code, name, kind, geom, area in zip(
        codes, frame[name_column], frame[kind_column], multi, areas, strict=True
    ):
        ewkt = f"SRID={SRID};{geom.wkt}"
        row = existing.get(code)
        if row is None:
            session.add(District(code=code, name=name, kind=kind, area_m2=float(area), geom=ewkt))
            added += 1
        else:
            row.name, row.kind, row.area_m2, row.geom = name, kind, float(area), ewkt
            updated += 1
    session.flush()
    return added, updated
