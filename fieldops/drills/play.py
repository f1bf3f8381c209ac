"""One drill from start to report, as the command line and the API run it: a database of
its own per run, the run(s), the report files, then the database dropped or kept."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from fieldops.drills.database import drill_database
from fieldops.drills.model import DrillOptions, DrillResult, Strategy
from fieldops.drills.spec import Scenario


@dataclass(frozen=True)
class Played:
    reports: list[dict[str, Any]]
    results: list[DrillResult]
    databases: list[str]  # where each run's database is (or was, when dropped)
    kept: bool
    wall_s: float


def play(
    scenario: Scenario,
    *,
    folder: Path,
    layers_dir: Path,
    options: DrillOptions,
    strategies: list[Strategy],
    written_at: Callable[[], datetime],
    db: str | None = None,
    keep: bool | None = None,
    live_url: str | None = None,
    with_map: bool = True,
    on_progress: Callable[[str, float], None] | None = None,
    db_field: str = "db",
) -> Played:
    """Run ``scenario`` once per strategy, each on a fresh database (the scenario's
    [database] unless ``db`` is given), and write the report into ``folder``. Each
    database stays until the report is written (the map reads it), then is dropped
    unless kept."""
    from contextlib import ExitStack

    from fieldops.drills.report import write_report
    from fieldops.drills.runner import Drill

    url = db if db is not None else scenario.database.url
    keep = keep if keep is not None else scenario.database.keep
    if url is not None and url.startswith("sqlite") and len(strategies) > 1:
        from fieldops.errors import InvalidInput

        raise InvalidInput.for_field(
            db_field, "a SpatiaLite file holds one run: compare on the default files or PostGIS"
        )
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: list[DrillResult] = []
    where: list[str] = []
    kept = False
    with ExitStack() as stack:
        for strategy in strategies:
            database = stack.enter_context(
                drill_database(
                    url,
                    folder=folder,
                    token=strategy,
                    keep=keep,
                    live_url=live_url,
                    field=db_field,
                )
            )
            where.append(database.where)
            kept = database.keep
            drill = Drill(
                scenario,
                db_url=database.url,
                layers_dir=layers_dir,
                options=replace(options, strategy=strategy),
            )
            drill.setup()

            def step(done: float, strategy: str = strategy) -> None:
                if on_progress is not None:
                    on_progress(strategy, done)

            results.append(drill.run(on_step=step))
        wall_s = time.perf_counter() - started
        reports = write_report(
            folder,
            results,
            layers_dir=layers_dir,
            wall_s=wall_s,
            written_at=written_at(),
            with_map=with_map,
        )
    return Played(reports, results, where, kept, wall_s)
