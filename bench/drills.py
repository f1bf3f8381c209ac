"""Drill speed: the 24-hour winter storm (scenarios/winter_storm_2017.toml) grown to 20,000
reports, run in process as ``fieldops drill run`` runs it (the real intake, dispatch, crew
steps and scheduler jobs on a simulated clock, SpatiaLite file of its own), against the same
reports taken in by plain intake alone (``submit_many``, one call and one transaction per
scheduler tick, as the drill groups them) on a fresh database of the same kind.

The drill stops at a wall-time budget (300 s; 60 s with --quick): past it, the row says how
far the simulated day got and projects the whole day from the reports taken in so far
(linear in reports; the later hours carry a larger backlog, so the true time is longer).
The wall time of each part of the drill (intake, crew steps, dispatch, escalation...) is
reported as its share of the drill's time.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench.common import ROOT, Row
from bench.driver_time import DriverTime, driver_time
from fieldops.dispatch.service import TravelModel
from fieldops.drills.database import drill_database
from fieldops.drills.model import DrillOptions
from fieldops.drills.runner import Drill
from fieldops.drills.scenarios import load_checked
from fieldops.drills.spec import Scenario
from fieldops.drills.world import Arrival

LAYERS = ROOT / "layers"
SCENARIO = ROOT / "scenarios" / "winter_storm_2017.toml"
TARGET_REPORTS = 20_000
TARGET_S = 30.0


class OverBudget(Exception):
    """The drill ran past its wall-time budget."""


@dataclass(frozen=True)
class Measured:
    reports: int  # generated for the whole day
    taken_in: int  # reports the drill took in before it finished or stopped
    incidents_resolved: int | None
    setup_s: float
    run_s: float
    simulated_h: float
    finished: bool
    parts_s: dict[str, float]
    arrivals: list[Arrival]
    tick_s: int
    driver: DriverTime  # SQLite's own work during the run


def expected_reports(scenario: Scenario) -> float:
    """Reports a day of the scenario brings at size 1 (the integral of its rates)."""
    hours = scenario.drill.duration_h
    total = 0.0
    for stream in scenario.arrivals:
        bounds = [h for h, _ in stream.rate_per_h] + [hours]
        for (start, rate), end in zip(stream.rate_per_h, bounds[1:], strict=True):
            total += rate * max(0.0, min(end, hours) - start)
    return total


def run_drill(scenario: Scenario, scale: float, budget_s: float, travel: TravelModel) -> Measured:
    with (
        tempfile.TemporaryDirectory(prefix="fieldops-bench-drill-") as folder,
        drill_database(None, folder=Path(folder), token="bench", keep=False) as database,
    ):
        drill = Drill(
            scenario,
            db_url=database.url,
            layers_dir=LAYERS,
            options=DrillOptions(scale=scale, crew_scale=scale),
            travel=travel,
        )
        begun = time.perf_counter()
        drill.setup()
        setup_s = time.perf_counter() - begun
        begun = time.perf_counter()
        reached = [0.0]

        def watch(done: float) -> None:
            reached[0] = done
            if time.perf_counter() - begun > budget_s:
                raise OverBudget

        finished = True
        resolved: int | None = None
        try:
            with driver_time() as driver:
                result = drill.run(on_step=watch)
            resolved = int(result.timeline["resolved_at"].notna().sum())
        except OverBudget:
            finished = False
            drill.world.engine.dispose()
        run_s = time.perf_counter() - begun
    parts = {k: v for k, v in drill.timings_s.items() if k != "setup"}
    return Measured(
        reports=len(drill.arrivals),
        taken_in=drill.submitted + drill.rejected,
        incidents_resolved=resolved,
        setup_s=setup_s,
        run_s=run_s,
        simulated_h=reached[0] * scenario.drill.duration_h,
        finished=finished,
        parts_s=parts,
        arrivals=drill.arrivals[: drill.submitted + drill.rejected],
        tick_s=scenario.drill.tick_s,
        driver=driver,
    )


def intake_alone(scenario: Scenario, arrivals: list[Arrival], tick_s: int) -> float:
    """Seconds for plain intake to take in ``arrivals``: one ``submit_many`` call and one
    transaction per tick, on a fresh SpatiaLite file set up as the drill's is."""
    from fieldops.city import load_city
    from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
    from fieldops.drills.setup import fast_sqlite
    from fieldops.incidents.models import Channel
    from fieldops.intake.context import IntakeContext
    from fieldops.intake.schemas import NewReport
    from fieldops.intake.service import Submission, submit_many

    with (
        tempfile.TemporaryDirectory(prefix="fieldops-bench-intake-") as folder,
        drill_database(None, folder=Path(folder), token="peer", keep=False) as database,
    ):
        engine = make_engine(database.url)
        fast_sqlite(engine)
        sessions = make_sessionmaker(engine)
        start = scenario.start_at
        with unit_of_work(sessions) as session:
            load_city(session, LAYERS, now=start)
            context = IntakeContext.load(session)
        batches: dict[int, list[Submission]] = {}
        for n, a in enumerate(arrivals):
            k = -(-int((a.at - start) / timedelta(seconds=1)) // tick_s)  # the tick it is due by
            batches.setdefault(k, []).append(
                Submission(
                    NewReport(
                        service_code=a.service_code,
                        lon=a.lon,
                        lat=a.lat,
                        channel=Channel.DRILL,
                        description="[EXERCISE] bench",
                        source_ref=f"drill-{n}",
                        priority=a.priority,
                    ),
                    "drill",
                    a.at,
                )
            )
        begun = time.perf_counter()
        for k in sorted(batches):
            with unit_of_work(sessions) as session:
                submit_many(session, batches[k], context=context)
        took = time.perf_counter() - begun
        engine.dispose()
    return took


def rows_for(size: float, measured: Measured, peer_s: float, goal: int) -> list[Row]:
    rows: list[Row] = []
    day = f"24 h winter storm, {measured.reports:,} reports (size x{size:.1f}, crews x{size:.1f})"
    reports_per_s = measured.taken_in / measured.run_s if measured.run_s else float("nan")
    peer_rate = measured.taken_in / peer_s if peer_s else float("nan")
    if measured.finished:
        rows.append(
            Row(
                bench="drills",
                case=f"{day}: wall time (setup {measured.setup_s:.1f} s not included)",
                value=measured.run_s,
                unit="s",
                peer="the same reports through submit_many alone",
                peer_value=peer_s,
                ratio=measured.run_s / peer_s if peer_s else None,
                target=f"< {TARGET_S:.0f} s for {goal:,} reports",
                met=measured.run_s < TARGET_S,
            )
        )
    else:
        projected = measured.run_s * measured.reports / max(measured.taken_in, 1)
        rows.append(
            Row(
                bench="drills",
                case=f"{day}: stopped at the budget after {measured.simulated_h:.1f} of 24 "
                f"simulated h and {measured.taken_in:,} reports; projected wall time",
                value=projected,
                unit="s (projected)",
                peer="those reports through submit_many alone",
                peer_value=peer_s,
                ratio=measured.run_s / peer_s if peer_s else None,
                target=f"< {TARGET_S:.0f} s for {goal:,} reports",
                met=False,
            )
        )
    rows.append(
        Row(
            bench="drills",
            case=f"{day}: reports taken in per wall second",
            value=reports_per_s,
            unit="reports/s",
            peer="submit_many alone",
            peer_value=peer_rate,
            ratio=reports_per_s / peer_rate if peer_rate else None,
        )
    )
    driver = measured.driver
    rows.append(
        Row(
            bench="drills",
            case=f"{day}: SQLite's own work ({driver.statements:,} statements run, their rows "
            f"fetched, {driver.commits:,} commits: {driver.execute_s:.1f} + {driver.fetch_s:.1f} "
            f"+ {driver.commit_s:.1f} s); the rest is Python",
            value=driver.total_s,
            unit="s",
            peer="drill wall time",
            peer_value=measured.run_s,
            ratio=driver.total_s / measured.run_s if measured.run_s else None,
        )
    )
    total = sum(measured.parts_s.values())
    for part, seconds in sorted(measured.parts_s.items(), key=lambda kv: -kv[1]):
        rows.append(
            Row(
                bench="drills",
                case=f"share of the drill's time: {part}",
                value=seconds,
                unit="s",
                peer="drill total",
                peer_value=total,
                ratio=seconds / total if total else None,
            )
        )
    return rows


def run(quick: bool = False) -> list[Row]:
    """The day at 20,000 reports (2,000 with ``quick``), against intake alone."""
    from fieldops.catalog.spec import read_city
    from fieldops.dispatch.travel import load_travel_model

    scenario = load_checked(SCENARIO, LAYERS)
    goal = 2_000 if quick else TARGET_REPORTS
    size = goal / expected_reports(scenario)
    travel = load_travel_model(LAYERS, metric_crs=read_city(LAYERS / "city.toml").city.metric_crs)
    measured = run_drill(scenario, size, 60.0 if quick else 300.0, travel)
    peer_s = intake_alone(scenario, measured.arrivals, measured.tick_s)
    return rows_for(size, measured, peer_s, goal)


if __name__ == "__main__":
    from rich.console import Console

    from bench.__main__ import print_rows

    started = time.perf_counter()
    console = Console() if Console().is_terminal else Console(width=240)
    print_rows(run(quick="--quick" in sys.argv[1:]), console=console)
    console.print(f"({time.perf_counter() - started:.0f} s)")
