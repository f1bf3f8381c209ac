"""Setting up a drill's world: its database, city, crews, arrivals and recording sender."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from numpy.typing import NDArray
from shapely.geometry import Polygon
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewStatus
from fieldops.crews.service import Fix, load_crews, record_positions
from fieldops.crews.spec import CrewSpec
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
from fieldops.db.migrate import upgrade
from fieldops.dispatch.service import TravelModel
from fieldops.drills.model import STALE_AFTER, CrewSim, DrillOptions
from fieldops.drills.replay import ReplayCounts, replay_arrivals
from fieldops.drills.spec import Scenario
from fieldops.drills.world import Arrival, SamplingArea, generate_arrivals
from fieldops.intake.context import IntakeContext
from fieldops.notifications.models import Notification
from fieldops.notifications.service import Outbox
from fieldops.scheduler import Jobs


class RecordingSender:
    """The drill's sender: keeps what was sent, so the report can prove where it went."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, notification: Notification) -> None:
        self.sent.append((notification.recipient, notification.subject))


def fast_sqlite(engine: sa.Engine) -> None:
    # A drill database is thrown away after the report: skip the fsync of every commit.
    # Its pages stay in memory: a connection's cache holds at most the database's own pages
    # (tens of MB for a day of the bench's storm), read through a memory map.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous=OFF")
        dbapi_conn.execute("PRAGMA cache_size=-262144")
        dbapi_conn.execute("PRAGMA mmap_size=1073741824")
        dbapi_conn.execute("PRAGMA temp_store=MEMORY")


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
    district_ids: dict[str, int],
    codes: dict[int, str],
    shapes: dict[int, Any],
    *,
    crew_scale: float = 1.0,
) -> list[CrewSpec]:
    """Crews NAME 1..count of each group (count times ``crew_scale``, at least one)."""
    specs = []
    for group in scenario.crews.group:
        for k in range(max(1, round(group.count * crew_scale))):
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


@dataclass
class World:
    """Everything a drill runs on, built once before its first tick."""

    engine: Engine
    sessions: sessionmaker[Session]
    clock: ManualClock
    timezone: str
    context: IntakeContext
    district_ids: dict[str, int]
    crew_specs: list[CrewSpec]
    crews: dict[int, CrewSim]
    arrivals: list[Arrival]
    roster: frozenset[str]
    sender: RecordingSender
    travel: TravelModel
    jobs: Jobs

    def roll_shifts(self, now: datetime) -> None:
        """What a roster job does at each shift change: shifts follow the simulated day."""
        with unit_of_work(self.sessions) as session:
            load_crews(
                session,
                self.crew_specs,
                district_ids={c.district: self.district_ids[c.district] for c in self.crew_specs},
                now=now,
                timezone=self.timezone,
                roster="drill",
            )


def build_world(
    scenario: Scenario,
    *,
    db_url: str,
    layers_dir: Path,
    options: DrillOptions,
    start: datetime,
    end: datetime,
    rng: np.random.Generator,
    travel: TravelModel | None,
    replay: ReplayCounts,
) -> World:
    """Migrate the drill's database, load the city and the drill's crews at their depots,
    and draw every arrival (synthetic streams, then replayed exports) from ``rng``."""
    from fieldops.catalog.spec import read_city
    from fieldops.city import load_city
    from fieldops.dispatch.travel import load_travel_model
    from fieldops.layers import read_catalog

    engine = make_engine(db_url)
    if engine.dialect.name == "sqlite":
        fast_sqlite(engine)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    city_spec = read_city(layers_dir / "city.toml")
    city = city_spec.city
    crews: dict[int, CrewSim] = {}
    with unit_of_work(sessions) as session:
        load_city(session, layers_dir, now=start)
        district_ids, codes, shapes = district_lookup(session)
        if not scenario.crews.keep_city_roster:
            for crew in session.scalars(sa.select(Crew)):
                crew.status = CrewStatus.OFF_DUTY
        specs = crew_specs(scenario, district_ids, codes, shapes, crew_scale=options.crew_scale)
        load_crews(
            session,
            specs,
            district_ids={c: i for i, c in codes.items()},
            now=start,
            timezone=city.timezone,
            roster="drill",
        )
        session.flush()
        context = IntakeContext.load(session)
        for c in session.scalars(sa.select(Crew).order_by(Crew.id)):
            if c.status == CrewStatus.OFF_DUTY:
                continue
            record_positions(session, c.id, [Fix(c.depot_lon, c.depot_lat, start)], now=start)
            crews[c.id] = CrewSim(c.id, c.name, c.depot_lon, c.depot_lat)
    index = context.districts

    def served(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> NDArray[np.bool_]:
        return np.asarray(index.locate_many(lon, lat) >= 0)

    duration_h = (end - start).total_seconds() / 3600
    arrivals = generate_arrivals(
        scenario.arrivals,
        sampling_areas(scenario, layers_dir, district_ids, shapes),
        start=start,
        duration_h=duration_h,
        scale=options.scale,
        rng=rng,
        served=served,
    )
    if scenario.replay:
        entries = {e.name: e for e in read_catalog(layers_dir / "catalog.toml")}
        arrivals = sorted(
            arrivals
            + replay_arrivals(
                scenario.replay,
                [entries[r.layer].path if r.layer else Path(r.file or "") for r in scenario.replay],
                first_stream=len(scenario.arrivals),
                start=start,
                duration_h=duration_h,
                fit_h=scenario.drill.duration_h,
                scale=options.scale,
                keywords={w: s.code for s in city_spec.services for w in s.import_keywords},
                timezone=city.timezone,
                rng=rng,
                counts=replay,
            ),
            key=lambda a: (a.at, a.stream),
        )
    # The drill's own recipients: its crews, the supervisors of the districts it touches
    # and whoever the scenario lists. Anyone else is dropped by the exercise outbox.
    located = index.locate_many([a.lon for a in arrivals], [a.lat for a in arrivals])
    keys = index.keys
    touched = {
        codes[district_ids[d]]
        for d in [
            *(d for g in scenario.crews.group for d in g.districts),
            *(d for a in scenario.arrivals for d in a.area.districts),
            *(d for i in scenario.inject for d in i.districts),
        ]
    } | {codes[keys[i]] for i in set(located.tolist()) if i >= 0}
    roster = frozenset(
        [f"crew:{c}" for c in crews]
        + [f"supervisor:{code}" for code in sorted(touched)]
        + list(scenario.drill.roster)
    )
    sender = RecordingSender()
    if travel is None:
        travel = load_travel_model(layers_dir, metric_crs=city.metric_crs)
    model = travel
    clock = ManualClock(start)
    jobs = Jobs(
        sessions=sessions,
        clock=clock,
        travel=lambda: model,
        stale_after=STALE_AFTER,
        outbox=Outbox(exercise=True, roster=roster),
        sender=sender,
    )
    return World(
        engine=engine,
        sessions=sessions,
        clock=clock,
        timezone=city.timezone,
        context=context,
        district_ids=district_ids,
        crew_specs=specs,
        crews=crews,
        arrivals=arrivals,
        roster=roster,
        sender=sender,
        travel=model,
        jobs=jobs,
    )
