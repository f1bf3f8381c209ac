"""The live map's change feed: open incidents, crews and declared emergencies as GeoJSON, and
what changed after a cursor (incident event ids)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, Final

import geopandas
import numpy as np
import orjson
import pandas as pd
from geopandas import GeoDataFrame
from sqlalchemy.orm import Session

from fieldops.emergencies.repo import active_emergencies, area_shape
from fieldops.geo.crs import WGS84
from fieldops.mapping import geojson, repo

# How far below the new cursor the feed looks for ids a concurrent writer had taken but not
# committed yet (PostgreSQL sequences hand out ids before commit, so commits can land out
# of order); the client asks for those ids again for a while.
GAP_WINDOW: Final = 10_000
MAX_GAPS: Final = 200


def table_of(rows: Collection[Any], columns: list[str]) -> pd.DataFrame:
    """Query rows as a DataFrame with these column names (empty rows keep the columns)."""
    return pd.DataFrame(list(rows), columns=columns)


def incident_columns(with_open: bool = False) -> list[str]:
    """Names of `repo.MAP_COLUMNS` (and ``is_open``), in order."""
    names = [c.key for c in repo.MAP_COLUMNS]
    return [*names, "is_open"] if with_open else names


def crews_frame(session: Session, *, now: datetime, stale_after: timedelta) -> GeoDataFrame:
    """Every crew where it was last seen (its depot before its first fix), with its status,
    ``stale`` when the fix is older than ``stale_after`` (or missing), and its active
    assignment's incident and ETA."""
    rows = repo.crew_rows(session)
    table = table_of(
        rows,
        ["id", "name", "status", "last_lon", "last_lat", "position_at", "depot_lon", "depot_lat"],
    )
    fixed = table["last_lon"].notna() & table["last_lat"].notna()
    lon = table["last_lon"].where(fixed, table["depot_lon"]).astype(float)
    lat = table["last_lat"].where(fixed, table["depot_lat"]).astype(float)
    fix_at = pd.to_datetime(table["position_at"], utc=True)
    table["stale"] = ~fixed | fix_at.isna() | (fix_at < pd.Timestamp(now - stale_after))
    table["position_at"] = fix_at
    jobs = table_of(
        repo.active_assignment_rows(session),
        ["incident_id", "crew_id", "crew_name", "status", "assigned_at", "eta_s"],
    ).drop_duplicates("crew_id", keep="last")
    eta_at = pd.to_datetime(jobs["assigned_at"], utc=True) + pd.to_timedelta(
        jobs["eta_s"].astype(float), unit="s"
    )
    by_crew = pd.DataFrame(
        {"incident_id": jobs["incident_id"].to_numpy(), "eta_at": eta_at.to_numpy()},
        index=jobs["crew_id"].to_numpy(),
    )
    table["incident_id"] = table["id"].map(by_crew["incident_id"]).astype("Int64")
    table["eta_at"] = table["id"].map(by_crew["eta_at"])
    columns = ["id", "name", "status", "position_at", "stale", "incident_id", "eta_at"]
    return GeoDataFrame(table[columns], geometry=geopandas.points_from_xy(lon, lat), crs=WGS84)


def emergencies_frame(session: Session, *, now: datetime) -> GeoDataFrame:
    """Emergencies active at ``now``, with their areas."""
    rows = active_emergencies(session, now=now)
    return GeoDataFrame(
        {
            "id": [e.id for e in rows],
            "name": [e.name for e in rows],
            "hazard": [e.hazard for e in rows],
            "declared_at": pd.to_datetime([e.declared_at for e in rows], utc=True),
        },
        geometry=[area_shape(e) for e in rows],
        crs=WGS84,
    )


def _version(features: list[geojson.Feature]) -> str:
    return hashlib.sha256(orjson.dumps(features)).hexdigest()[:16]


def _assign_crews(session: Session, features: list[geojson.Feature]) -> None:
    """Add ``crew`` and ``eta_at`` to the incidents that have an active assignment."""
    if not features:
        return
    ids = None if len(features) > 500 else [f["id"] for f in features]
    jobs = repo.active_assignment_rows(session, ids)
    if not jobs:
        return
    by_id = {f["id"]: f for f in features}
    for job in jobs:
        feature = by_id.get(job.incident_id)
        if feature is not None:
            feature["properties"]["crew"] = {"id": job.crew_id, "name": job.crew_name}
            eta_at = job.assigned_at + timedelta(seconds=float(job.eta_s))
            feature["properties"]["eta_at"] = eta_at.isoformat()


def _others(
    session: Session,
    *,
    now: datetime,
    stale_after: timedelta,
    crews_version: str | None,
    emergencies_version: str | None,
) -> dict[str, Any]:
    """Crews and declared emergencies, each sent only when it changed since the version the
    client holds (``None`` in the answer: nothing new)."""
    crews = geojson.crew_features(crews_frame(session, now=now, stale_after=stale_after))
    areas = geojson.emergency_features(emergencies_frame(session, now=now))
    crews_now, areas_now = _version(crews), _version(areas)
    return {
        "crews": geojson.collection(crews) if crews_now != crews_version else None,
        "crews_version": crews_now,
        "emergencies": geojson.collection(areas) if areas_now != emergencies_version else None,
        "emergencies_version": areas_now,
    }


def feed_snapshot(session: Session, *, now: datetime, stale_after: timedelta) -> dict[str, Any]:
    """Every open incident, every crew, every declared emergency, and the cursor to poll
    from.

    The cursor is read first: an event committed meanwhile is sent again by the next poll
    (applying a state twice changes nothing), never lost.
    """
    cursor = repo.latest_event_id(session)
    table = table_of(repo.open_incident_rows(session), incident_columns())
    incidents = geojson.incident_table_features(table)
    _assign_crews(session, incidents)
    return {
        "cursor": cursor,
        "snapshot": True,
        "more": False,
        "events": [],
        "gaps": [],
        "incidents": geojson.collection(incidents),
        **_others(
            session,
            now=now,
            stale_after=stale_after,
            crews_version=None,
            emergencies_version=None,
        ),
    }


def _missing_ids(after: int, cursor: int, seen: Collection[int]) -> list[int]:
    low = max(after, cursor - GAP_WINDOW)
    expected = np.arange(low + 1, cursor, dtype=np.int64)
    missing = np.setdiff1d(expected, np.fromiter(seen, dtype=np.int64), assume_unique=True)
    return [int(i) for i in missing[-MAX_GAPS:]]


def feed_changes(
    session: Session,
    *,
    after: int,
    now: datetime,
    stale_after: timedelta,
    gaps: Collection[int] = (),
    limit: int = 1000,
    crews_version: str | None = None,
    emergencies_version: str | None = None,
) -> dict[str, Any]:
    """Events after the cursor ``after`` (and those of ``gaps`` now committed), the current
    state of every incident they touch, the new cursor, the ids missing below it, and the
    crews and emergencies when they changed."""
    events = repo.events_since(session, after, also_ids=gaps, limit=limit)
    fresh = [e.id for e in events if e.id > after]
    cursor = max(fresh, default=after)
    touched = {e.incident_id for e in events}
    table = table_of(repo.incident_rows(session, touched), incident_columns(with_open=True))
    incidents = geojson.incident_table_features(table)
    _assign_crews(session, incidents)
    return {
        "cursor": cursor,
        "snapshot": False,
        "more": len(events) == limit,
        "events": [
            {
                "id": e.id,
                "incident_id": e.incident_id,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "kind": e.kind,
                "data": e.data,
            }
            for e in events
        ],
        "gaps": _missing_ids(after, cursor, fresh),
        "incidents": geojson.collection(incidents),
        **_others(
            session,
            now=now,
            stale_after=stale_after,
            crews_version=crews_version,
            emergencies_version=emergencies_version,
        ),
    }
