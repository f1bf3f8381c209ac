"""The escalation tick at scale, on SpatiaLite and PostGIS: an idle tick over 100,000 open
incidents, a tick with 1,000 steps due (a no-op action runner, and the real
EscalationActions through ``Jobs.escalation_tick``), and the steps fired per second.

Set-up (not measured): migrate, load the demo city, put a notify_supervisor-only policy in
force, then bulk-insert the incidents (opened over the past hour, so their dispatch
deadlines fall over the next hour) and their planned steps with SQLAlchemy Core. Every
measured tick runs what the scheduler runs: ``fire_due`` in one ``unit_of_work`` (claim,
fire, settle, commit), on a clock moved so that exactly the wanted number of steps are due.
The clock only moves forward, so each measured tick fires the next 1,000 steps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from geoalchemy2.shape import to_shape
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from bench.common import Row, Skip, median_seconds, postgis_base_url
from fieldops.catalog.models import ServiceType
from fieldops.city import load_city
from fieldops.clock import ManualClock
from fieldops.db.base import ewkt_point
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
from fieldops.db.migrate import upgrade
from fieldops.districts.repo import list_districts
from fieldops.escalation import repo
from fieldops.escalation.models import EscalationStep, StepStatus
from fieldops.escalation.policy import (
    Action,
    Anchors,
    Deadline,
    LadderStep,
    Policy,
    Rule,
    plan_steps,
)
from fieldops.escalation.service import ActionRunner, Fired, fire_due, load_policy
from fieldops.geo.routing import StraightLineOnly
from fieldops.incidents.models import Incident, IncidentStatus
from fieldops.notifications.models import Notification
from fieldops.scheduler import Jobs

BENCH = "escalation"
ROOT = Path(__file__).resolve().parents[1]
LAYERS = ROOT / "layers"
TEMPLATE = "fieldops_template"

# The bench clock starts here; every deadline is after it.
T0 = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
OPENED_OVER = timedelta(hours=1)
SERVICE = "pothole"  # no service-specific rule: the bench policy's "*" rule applies
DUE_PER_TICK = 1000
IDLE_TARGET_S = 0.010
TICK_TARGET_S = 0.5
# One rule, notify_supervisor at each deadline an open incident has: dispatch deadlines fall
# over the hour after T0, arrive deadlines over the hour after that, resolve later still.
BENCH_RULE = Rule(
    name="bench: tell the supervisor at every deadline",
    services=["*"],
    dispatch_s=3600,
    acknowledge_s=600,
    arrive_s=7200,
    resolve_s=14400,
    ladder=[
        LadderStep(deadline=Deadline.DISPATCH, action=Action.NOTIFY_SUPERVISOR),
        LadderStep(deadline=Deadline.ARRIVE, action=Action.NOTIFY_SUPERVISOR),
        LadderStep(deadline=Deadline.RESOLVE, action=Action.NOTIFY_SUPERVISOR),
    ],
)


STEP_COLUMNS = (
    "incident_id", "key", "deadline", "action", "deadline_at", "due_at", "status", "reason",
    "planned_at", "settled_at",
)  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    incidents: int
    repeat: int  # measured repeats of each timed case (after a warm-up)
    real_repeat: int  # of the tick with the real actions (seconds each)
    idle_repeat: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(incidents=20_000, repeat=3, real_repeat=2, idle_repeat=21)
        return cls(incidents=100_000, repeat=9, real_repeat=7, idle_repeat=51)


# --- backends ------------------------------------------------------------------------------


@contextlib.contextmanager
def spatialite_url() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="fieldops-bench-escalation-"))
    try:
        yield f"sqlite:///{folder / 'fieldops.db'}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgis_url() -> Iterator[str]:
    """A database of this run's own, copied from the PostGIS template, dropped afterwards."""
    base = postgis_base_url()
    if base.startswith("postgresql://"):
        base = "postgresql+psycopg://" + base.removeprefix("postgresql://")
    name = f"fieldops_bench_esc_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    except sa.exc.SQLAlchemyError as exc:
        admin.dispose()
        reason = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).splitlines()[0]
        raise Skip(f"PostGIS at {make_url(base)!r}: cannot create a database: {reason}") from None
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


# --- set-up (not measured) -----------------------------------------------------------------


def populate(engine: Engine, n: int) -> np.ndarray:
    """Migrate, load the city and the bench policy, insert ``n`` open incidents and their
    planned steps; returns every step's due instant as sorted microseconds after T0."""
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    loaded_at = T0 - OPENED_OVER - timedelta(minutes=5)
    with unit_of_work(sessions) as session:
        load_city(session, LAYERS, now=loaded_at)
        load_policy(session, Policy((BENCH_RULE,)), source="bench", now=loaded_at)
        places = []
        for district in list_districts(session):
            point = to_shape(district.geom).representative_point()
            places.append((district.id, point.x, point.y))
        group = session.scalars(
            sa.select(ServiceType.group).where(ServiceType.code == SERVICE)
        ).one()

    # Opened evenly over the hour before T0 (to the microsecond, so every due instant is
    # distinct and "exactly 1,000 due" is exact).
    span_us = int(OPENED_OVER.total_seconds() * 1e6)
    opened_us = -span_us + (np.arange(1, n + 1, dtype=np.int64) * span_us) // n
    windows = {d: int(BENCH_RULE.window(d).total_seconds() * 1e6) for d in Deadline}

    def at(offset_us: int) -> datetime:
        return T0 + timedelta(microseconds=offset_us)

    rows: list[dict[str, Any]] = []
    for i, offset in enumerate(opened_us.tolist()):
        district_id, lon, lat = places[i % len(places)]
        opened = at(offset)
        rows.append(
            {
                "id": i + 1,
                "service_code": SERVICE,
                "service_group": group,
                "status": IncidentStatus.OPEN.value,
                "is_open": True,
                "priority": 3,
                "district_id": district_id,
                "lon": lon,
                "lat": lat,
                "geom": ewkt_point(lon, lat),
                "address": "",
                "description": "bench",
                "opened_at": opened,
                "updated_at": opened,
                "closed_at": None,
                "first_report_at": opened,
                "last_report_at": opened,
                "report_count": 1,
                "status_notes": "",
                "dispatch_due_at": at(offset + windows[Deadline.DISPATCH]),
                "acknowledge_due_at": None,
                "arrive_due_at": at(offset + windows[Deadline.ARRIVE]),
                "resolve_due_at": at(offset + windows[Deadline.RESOLVE]),
                "snoozed_until": None,
                "emergency_id": None,
                "service_notice": "",
            }
        )
    incidents = Incident.__table__
    # The keys the planner itself would give (so a later re-plan finds them in place).
    plan = plan_steps(BENCH_RULE, Anchors(opened_at=T0, assigned_at=None, assignment_id=None))
    due_columns = {
        Deadline.DISPATCH: incidents.c.dispatch_due_at,
        Deadline.ARRIVE: incidents.c.arrive_due_at,
        Deadline.RESOLVE: incidents.c.resolve_due_at,
    }
    with engine.begin() as conn:
        for start in range(0, n, 5_000):
            conn.execute(sa.insert(Incident), rows[start : start + 5_000])
        for step in plan:
            assert step.due_at == step.deadline_at, "the bench ladder has no after_s"
            due = due_columns[step.deadline]
            conn.execute(
                sa.insert(EscalationStep).from_select(
                    STEP_COLUMNS,
                    sa.select(
                        incidents.c.id,
                        sa.literal(step.key, sa.String),
                        sa.literal(str(step.deadline), sa.String),
                        sa.literal(str(step.action), sa.String),
                        due,
                        due,
                        sa.literal(StepStatus.PLANNED.value, sa.String),
                        sa.literal(f"planned by rule {BENCH_RULE.name!r}", sa.String),
                        incidents.c.opened_at,
                        sa.null(),
                    ),
                )
            )
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('incidents', 'id'), max(id)) FROM incidents"
            )
    if engine.dialect.name == "postgresql":
        # What autovacuum does within a minute of a bulk load; without it the planner
        # guesses at an empty table's statistics.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    due_us = np.concatenate(
        [opened_us + windows[s.deadline] for s in plan]  # after_s is 0 (checked above)
    )
    due_us.sort()
    return due_us


# --- measuring -----------------------------------------------------------------------------


class NoopActions:
    """An action runner that does nothing: what is left is the tick's own cost."""

    def begin(
        self, session: Session, due: Sequence[tuple[Incident, EscalationStep]], *, now: datetime
    ) -> NoopActions:
        return self

    def catch_up(self, incident: Incident) -> None:
        pass

    def fire(self, incident: Incident, step: EscalationStep) -> str:
        return "bench: nothing done"

    def finish(self) -> dict[int, str]:
        return {}


def tick(sessions: sessionmaker[Session], now: datetime, run_action: ActionRunner) -> list[Fired]:
    """What Jobs.escalation_tick does, with any action runner."""
    with unit_of_work(sessions) as session:
        return fire_due(session, now=now, run_action=run_action, limit=DUE_PER_TICK)


@contextlib.contextmanager
def counting_statements(engine: Engine) -> Iterator[list[int]]:
    """Counts the SQL statements sent to the database while inside."""
    counter = [0]

    def count(*_: Any) -> None:
        counter[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", count)


class DueWindows:
    """Moves the clock so that exactly ``k`` more steps are due than were fired so far."""

    def __init__(self, clock: ManualClock, due_us: np.ndarray) -> None:
        self.clock = clock
        self.due_us = due_us
        self.fired = 0

    def next(self, k: int) -> int:
        if self.fired + k > len(self.due_us):
            raise RuntimeError(f"only {len(self.due_us) - self.fired} planned steps left")
        self.clock.set(T0 + timedelta(microseconds=int(self.due_us[self.fired + k - 1])))
        self.fired += k
        return k


@dataclass
class Measured:
    n_incidents: int
    n_planned: int
    idle_s: float
    count_s: float
    claim_s: float
    noop_s: float
    noop_statements: int
    real_s: float
    real_statements: int
    setup_s: float
    load_average: float


def _timed_ticks(
    engine: Engine, windows: DueWindows, fire: Callable[[], Sequence[Fired]], repeat: int
) -> tuple[float, int]:
    """One warm-up tick (its SQL statements counted) then ``repeat`` timed ones, each with
    exactly DUE_PER_TICK steps due; returns the median time and the statement count."""
    times = []
    for n in range(1 + repeat):
        windows.next(DUE_PER_TICK)
        with counting_statements(engine) if n == 0 else contextlib.nullcontext([0]) as count:
            started = time.perf_counter()
            fired = fire()
            times.append(time.perf_counter() - started)
        if n == 0:
            statements = count[0]
        if len(fired) != DUE_PER_TICK or any(f.status != StepStatus.FIRED for f in fired):
            raise AssertionError(f"expected {DUE_PER_TICK} fired steps, got {len(fired)}")
    return statistics.median(times[1:]), statements


def measure(url: str, sizes: Sizes) -> Measured:
    engine = make_engine(url)
    try:
        began = time.perf_counter()
        due_us = populate(engine, sizes.incidents)
        setup_s = time.perf_counter() - began
        sessions = make_sessionmaker(engine)
        clock = ManualClock(T0)
        jobs = Jobs(
            sessions=sessions,
            clock=clock,
            travel=StraightLineOnly,
            stale_after=timedelta(minutes=5),
            tick_limit=DUE_PER_TICK,
        )

        # (a) idle: the clock is before the first deadline.
        assert int(due_us[0]) > 0
        assert jobs.escalation_tick() == []
        idle_s = median_seconds(jobs.escalation_tick, repeat=sizes.idle_repeat, warmup=3)
        planned = (
            sa.select(sa.func.count())
            .select_from(EscalationStep)
            .where(EscalationStep.status == StepStatus.PLANNED)
        )

        def count_planned() -> int:
            with sessions() as session:
                return int(session.scalar(planned) or 0)

        n_planned = count_planned()
        if n_planned != len(due_us):
            raise AssertionError(f"{n_planned} planned steps, {len(due_us)} inserted")
        count_s = median_seconds(count_planned, repeat=sizes.repeat)

        windows = DueWindows(clock, due_us)

        # The claim query alone (rolled back): what a tick costs before any step's work.
        windows.next(DUE_PER_TICK)
        windows.fired -= DUE_PER_TICK  # only looking: the next tick fires these

        def claim_only() -> int:
            with sessions() as session:
                claimed = len(repo.claim_due(session, now=clock.now(), limit=DUE_PER_TICK))
                session.rollback()
                return claimed

        assert claim_only() == DUE_PER_TICK
        claim_s = median_seconds(claim_only, repeat=sizes.repeat)

        # (b) 1,000 due: a no-op action runner, then the real actions through the job.
        noop_s, noop_statements = _timed_ticks(
            engine, windows, lambda: tick(sessions, clock.now(), NoopActions()), sizes.repeat
        )
        real_s, real_statements = _timed_ticks(
            engine, windows, jobs.escalation_tick, sizes.real_repeat
        )
        with sessions() as session:
            queued = session.scalar(sa.select(sa.func.count()).select_from(Notification))
        if queued != (1 + sizes.real_repeat) * DUE_PER_TICK:
            raise AssertionError(f"the real actions queued {queued} notifications")
        return Measured(
            n_incidents=sizes.incidents,
            n_planned=n_planned,
            idle_s=idle_s,
            count_s=count_s,
            claim_s=claim_s,
            noop_s=noop_s,
            noop_statements=noop_statements,
            real_s=real_s,
            real_statements=real_statements,
            setup_s=setup_s,
            load_average=os.getloadavg()[0],
        )
    finally:
        engine.dispose()


def rows_for(backend: str, m: Measured) -> list[Row]:
    on_postgis = backend == "PostGIS"
    open_ = f"{m.n_incidents:,} open incidents, {m.n_planned:,} planned steps"
    real_rate = DUE_PER_TICK / m.real_s
    noop_rate = DUE_PER_TICK / m.noop_s
    return [
        Row(
            bench=BENCH,
            case=f"{backend}: idle tick (nothing due), {open_}",
            value=m.idle_s * 1e3,
            unit="ms",
            peer="SELECT count(*) of planned steps",
            peer_value=m.count_s * 1e3,
            ratio=m.idle_s / m.count_s,
            target=f"<{IDLE_TARGET_S * 1e3:.0f} ms",
            met=m.idle_s < IDLE_TARGET_S,
        ),
        Row(
            bench=BENCH,
            case=f"{backend}: tick with {DUE_PER_TICK:,} due, no-op action runner "
            f"(claim + settle + commit; {m.noop_statements:,} SQL statements)",
            value=m.noop_s,
            unit="s",
            peer="the claim query alone (rolled back)",
            peer_value=m.claim_s,
            ratio=m.noop_s / m.claim_s,
            target=f"<{TICK_TARGET_S} s" if on_postgis else "",
            met=m.noop_s < TICK_TARGET_S if on_postgis else None,
        ),
        Row(
            bench=BENCH,
            case=f"{backend}: tick with {DUE_PER_TICK:,} due, real EscalationActions "
            f"(Jobs.escalation_tick; notify_supervisor = outbox + event; "
            f"{m.real_statements:,} SQL statements)",
            value=m.real_s,
            unit="s",
            peer="same tick, no-op action runner",
            peer_value=m.noop_s,
            ratio=m.real_s / m.noop_s,
            target=f"<{TICK_TARGET_S} s" if on_postgis else "",
            met=m.real_s < TICK_TARGET_S if on_postgis else None,
        ),
        Row(
            bench=BENCH,
            case=f"{backend}: steps fired per second, real EscalationActions "
            f"({DUE_PER_TICK:,} per tick)",
            value=real_rate,
            unit="steps/s",
            peer="no-op action runner",
            peer_value=noop_rate,
            ratio=real_rate / noop_rate,
        ),
        Row(
            bench=BENCH,
            case=f"{backend}: machine load when done (1-min load average; set-up, not "
            f"measured, took {m.setup_s:.0f} s)",
            value=m.load_average,
            unit=f"runnable tasks on {os.cpu_count()} cores",
        ),
    ]


def _skipped(name: str, reason: str) -> Row:
    return Row(bench=BENCH, case=f"{name}: skipped: {reason}", value=float("nan"), unit="")


def run(quick: bool = False) -> list[Row]:
    """Escalation tick figures per backend; ``quick`` uses 20,000 incidents."""
    sizes = Sizes.of(quick)
    rows: list[Row] = []
    for name, url_of in (("SpatiaLite", spatialite_url), ("PostGIS", postgis_url)):
        try:
            with url_of() as url:
                measured = measure(url, sizes)
        except Skip as exc:
            rows.append(_skipped(name, str(exc)))
            continue
        rows += rows_for(name, measured)
    return rows


if __name__ == "__main__":
    from rich.console import Console

    from bench.__main__ import print_rows

    started = time.perf_counter()
    console = Console() if Console().is_terminal else Console(width=240)
    print_rows(run(quick="--quick" in sys.argv[1:]), console=console)
    console.print(f"({time.perf_counter() - started:.0f} s)")
