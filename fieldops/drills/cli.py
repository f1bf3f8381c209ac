"""``fieldops drill ...``: run a scenario on a fresh drill database and write its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from fieldops.config import default_database_url
from fieldops.drills.scenarios import load_checked
from fieldops.errors import FieldOpsError, SourceErrors

drill_app = typer.Typer(
    help="Drills: replay a scenario on a simulated clock.", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@drill_app.callback()
def drills() -> None:
    """Drills: a scenario drives the real services on a simulated clock."""


def _fail(exc: FieldOpsError) -> typer.Exit:
    if isinstance(exc, SourceErrors):
        err.print(f"[red]{len(exc.problems)} problem(s):[/red]")
        for problem in exc.problems:
            err.print(f"  {escape(str(problem))}", highlight=False)
    else:
        err.print(f"[red]Error:[/red] {escape(exc.detail)}", highlight=False)
    return typer.Exit(1)


@drill_app.command("check")
def check(
    scenarios: Annotated[list[Path], typer.Argument(help="Scenario files")],
    layers_dir: Annotated[Path, typer.Option("--layers-dir")] = Path("layers"),
) -> None:
    """Validate scenario files; every problem is listed with its file and line."""
    failed = False
    for path in scenarios:
        try:
            load_checked(path, layers_dir)
            out.print(f"{path}: ok")
        except FieldOpsError as exc:
            _fail(exc)
            failed = True
    if failed:
        raise typer.Exit(1)


@drill_app.command("run")
def run(
    scenario_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Scenario")],
    seed: Annotated[int | None, typer.Option(help="Seed (default: the scenario's)")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder")] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Drill database: sqlite:///NEW_FILE, or a scratch PostGIS database "
            "(postgresql+psycopg://...) where the drill makes a schema of its own. Default: "
            "the scenario's [database], else a SpatiaLite file in --out. Never the live one.",
        ),
    ] = None,
    keep_db: Annotated[
        bool | None,
        typer.Option(
            "--keep-db/--drop-db",
            help="Keep or drop the drill database after the report (default: the "
            "scenario's [database] keep, else a SpatiaLite file is kept, a PostGIS schema dropped)",
        ),
    ] = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="Run twice: optimal vs greedy batch dispatch")
    ] = False,
    scale: Annotated[float, typer.Option(help="Multiply every arrival rate")] = 1.0,
    crew_scale: Annotated[
        float, typer.Option("--crew-scale", help="Multiply every crew group's count")
    ] = 1.0,
    duration_h: Annotated[
        float | None, typer.Option("--duration-h", help="Stop after this many hours")
    ] = None,
    no_map: Annotated[bool, typer.Option("--no-map", help="Skip the folium map")] = False,
    layers_dir: Annotated[Path, typer.Option("--layers-dir")] = Path("layers"),
) -> None:
    """Run a drill: fresh database, the real intake, dispatch and escalation on a simulated
    clock, then report.json, timeline.csv, tracks.csv and report.html in the output folder."""
    import os

    from fieldops.clock import SystemClock
    from fieldops.drills.model import DrillOptions, Strategy
    from fieldops.drills.play import play

    for name, value in (("--scale", scale), ("--crew-scale", crew_scale)):
        if value <= 0:
            raise typer.BadParameter("must be above 0", param_hint=name)
    try:
        scenario = load_checked(scenario_file, layers_dir)
    except FieldOpsError as exc:
        raise _fail(exc) from None
    folder = out_dir or Path("drills") / scenario_file.stem
    strategies: list[Strategy] = ["optimal", "greedy"] if compare else ["optimal"]
    with Progress(
        TextColumn(f"[bold]{escape(scenario.drill.name)}[/bold] {{task.description}}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% simulated"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=1.0)

        def advance(strategy: str, done: float, task: TaskID = task) -> None:
            progress.update(task, completed=done, description=f"({strategy})")

        try:
            played = play(
                scenario,
                folder=folder,
                layers_dir=layers_dir,
                options=DrillOptions(
                    seed=seed, scale=scale, crew_scale=crew_scale, duration_h=duration_h
                ),
                strategies=strategies,
                written_at=SystemClock().now,
                db=db,
                keep=keep_db,
                live_url=os.environ.get("FIELDOPS_DATABASE_URL") or default_database_url(),
                with_map=not no_map,
                on_progress=advance,
                db_field="--db",
            )
        except FieldOpsError as exc:
            raise _fail(exc) from None
    for report in played.reports:
        c = report["counts"]
        d = report["response_times_s"]["report_to_dispatch"]["all"]
        nfpa = report["nfpa_1225"]
        out.print(
            f"[bold]{report['scenario']['strategy']}[/bold]: {c['reports_submitted']} reports, "
            f"{c['duplicates_merged']} merged, {c['incidents']} incidents, {c['resolved']} "
            f"resolved; dispatch P90 {d['p90']} s (priority 1: {nfpa['p90']} s, NFPA 1225 "
            f"60 s); escalations {report['escalations']['total']}"
        )
        if report["replay"]["rows_read"]:
            r = report["replay"]
            out.print(
                f"  replay: {r['rows_read']} rows read, {r['replayed']} replayed, "
                f"{r['skipped_no_coordinates']} without coordinates skipped, "
                f"{r['skipped_other']} other skipped, {r['outside_window']} outside the window"
            )
        for name, t in report["targets"].items():
            colour = "green" if t["met"] else "red"
            out.print(f"  [{colour}]{name}: {t['actual']} (target {t['target']})[/{colour}]")
    state = "kept" if played.kept else "dropped"
    out.print(f"Database {state}: {'; '.join(played.databases)}")
    out.print(
        f"Report in {folder}/ (report.html, report.json, timeline.csv, tracks.csv); "
        f"wall time {played.wall_s:.1f} s."
    )
