"""Setting up a drill's world: its districts, sampling areas, crews and recording sender."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from shapely.geometry import Polygon
from sqlalchemy import event
from sqlalchemy.orm import Session

from fieldops.crews.spec import CrewSpec
from fieldops.drills.spec import Scenario
from fieldops.drills.world import SamplingArea
from fieldops.notifications.models import Notification


class RecordingSender:
    """The drill's sender: keeps what was sent, so the report can prove where it went."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, notification: Notification) -> None:
        self.sent.append((notification.recipient, notification.subject))


def fast_sqlite(engine: sa.Engine) -> None:
    # A drill database is thrown away after the report: skip the fsync of every commit.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous=OFF")


def district_lookup(session: Session) -> tuple[dict[str, int], dict[int, str], dict[int, Any]]:
    from fieldops.districts.repo import district_shapes, list_districts

    by_key: dict[str, int] = {}
    codes: dict[int, str] = {}
    for d in list_districts(session):
        by_key[d.code] = d.id
        by_key[d.name] = d.id
        codes[d.id] = d.code
    shapes = {i: g for i, _, g in district_shapes(session)}
    return by_key, codes, shapes


def sampling_areas(
    scenario: Scenario, layers_dir: Path, district_ids: dict[str, int], shapes: dict[int, Any]
) -> list[SamplingArea]:
    from shapely import union_all

    from fieldops.layers import load_vector_layer, read_catalog

    entries = {e.name: e for e in read_catalog(layers_dir / "catalog.toml")}
    areas = []
    for stream in scenario.arrivals:
        area = stream.area
        if area.layer:
            entry = entries[area.layer]
            if entry.path.suffix.lower() == ".csv":
                table = pd.read_csv(entry.path)
                if area.column:
                    table = table[table[area.column].astype(str).isin(area.values)]
                table = table.dropna(subset=[area.lon_column, area.lat_column])
                pts = table[[area.lon_column, area.lat_column]].to_numpy(dtype=float)
                areas.append(SamplingArea(points=pts, jitter_m=area.jitter_m))
                continue
            frame = load_vector_layer(entry).frame
            if area.column:
                frame = frame[frame[area.column].astype(str).isin(area.values)]
            kinds = set(frame.geom_type)
            if kinds <= {"Point"}:
                pts = np.column_stack([frame.geometry.x, frame.geometry.y])
                areas.append(SamplingArea(points=pts, jitter_m=area.jitter_m))
            else:
                areas.append(SamplingArea(shape=union_all(frame.geometry.to_numpy())))
        elif area.districts:
            areas.append(
                SamplingArea(shape=union_all([shapes[district_ids[d]] for d in area.districts]))
            )
        else:
            areas.append(SamplingArea(shape=Polygon(area.polygon)))
    return areas


def crew_specs(
    scenario: Scenario,
    session: Session,
    district_ids: dict[str, int],
    codes: dict[int, str],
    shapes: dict[int, Any],
) -> list[CrewSpec]:
    specs = []
    for group in scenario.crews.group:
        for k in range(group.count):
            district = district_ids[group.districts[k % len(group.districts)]]
            if group.depot is not None:
                depot = group.depot
            else:
                p = shapes[district].representative_point()
                depot = (round(p.x, 6), round(p.y, 6))
            specs.append(
                CrewSpec(
                    name=f"{group.name} {k + 1}",
                    skills=group.skills,
                    capacity=group.capacity,
                    district=codes[district],
                    depot=depot,
                    shift=group.shift,
                )
            )
    return specs
