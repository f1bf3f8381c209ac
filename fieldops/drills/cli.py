"""``fieldops drill ...``: run a scenario on a fresh drill database and write its report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

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


def load_checked(path: Path, layers_dir: Path) -> object:
    """Read a scenario and check it against the city's services, districts and layers."""
    import geopandas

    from fieldops.catalog.spec import read_city
    from fieldops.drills.spec import check_against_city, read_scenario
    from fieldops.layers import read_catalog

    scenario = read_scenario(path)
    city = read_city(layers_dir / "city.toml")
    entries = {e.name: e for e in read_catalog(layers_dir / "catalog.toml")}
    frame = geopandas.read_file(entries[city.city.districts_layer].path, ignore_geometry=True)
    districts = {str(c): 0 for c in frame[city.city.district_code_column]}
    districts |= {str(n): 0 for n in frame[city.city.district_name_column]}
    check_against_city(
        scenario,
        path,
        services={s.code for s in city.services},
        districts=districts,
        layers=set(entries),
    )
    return scenario


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
            help="Drill database URL (default: a SpatiaLite file in --out). "
            "Must be an empty database of its own, never the live one.",
        ),
    ] = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="Run twice: optimal vs greedy batch dispatch")
    ] = False,
    scale: Annotated[float, typer.Option(help="Multiply every arrival rate")] = 1.0,
    duration_h: Annotated[
        float | None, typer.Option("--duration-h", help="Stop after this many hours")
    ] = None,
    no_map: Annotated[bool, typer.Option("--no-map", help="Skip the folium map")] = False,
    layers_dir: Annotated[Path, typer.Option("--layers-dir")] = Path("layers"),
) -> None:
    """Run a drill: fresh database, the real intake, dispatch and escalation on a simulated
    clock, then report.json, timeline.csv and report.html in the output folder."""
    from fieldops.clock import SystemClock
    from fieldops.drills.report import write_report
    from fieldops.drills.runner import Drill, DrillOptions, DrillResult, Strategy
    from fieldops.drills.spec import Scenario

    if scale <= 0:
        raise typer.BadParameter("must be above 0", param_hint="--scale")
    try:
        scenario = load_checked(scenario_file, layers_dir)
    except FieldOpsError as exc:
        raise _fail(exc) from None
    assert isinstance(scenario, Scenario)
    folder = out_dir or Path("drills") / scenario_file.stem
    folder.mkdir(parents=True, exist_ok=True)
    strategies: list[Strategy] = ["optimal", "greedy"] if compare else ["optimal"]
    results: list[DrillResult] = []
    started = time.perf_counter()
    for strategy in strategies:
        if db is not None and compare:
            err.print("[red]--db with --compare: each run needs its own database[/red]")
            raise typer.Exit(2)
        path = folder / f"drill-{strategy}.db"
        if db is None:
            for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                stale.unlink(missing_ok=True)
        url = db or f"sqlite:///{path.resolve()}"
        drill = Drill(
            scenario,
            db_url=url,
            layers_dir=layers_dir,
            options=DrillOptions(seed=seed, scale=scale, duration_h=duration_h, strategy=strategy),
        )
        try:
            drill.setup()
            with Progress(
                TextColumn(f"[bold]{escape(scenario.drill.name)}[/bold] ({strategy})"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}% simulated"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            ) as progress:
                task = progress.add_task("drill", total=1.0)

                def advance(done: float, task: TaskID = task) -> None:
                    progress.update(task, completed=done)

                result = drill.run(on_step=advance)
        except FieldOpsError as exc:
            raise _fail(exc) from None
        results.append(result)
    wall_s = time.perf_counter() - started
    reports = write_report(
        folder,
        results,
        layers_dir=layers_dir,
        wall_s=wall_s,
        written_at=SystemClock().now(),
        with_map=not no_map,
    )
    for report in reports:
        c = report["counts"]
        d = report["response_times_s"]["report_to_dispatch"]["all"]
        out.print(
            f"[bold]{report['scenario']['strategy']}[/bold]: {c['reports_submitted']} reports, "
            f"{c['duplicates_merged']} merged, {c['incidents']} incidents, {c['resolved']} "
            f"resolved; dispatch P90 {d['p90']} s; escalations {report['escalations']['total']}"
        )
        for name, t in report["targets"].items():
            colour = "green" if t["met"] else "red"
            out.print(f"  [{colour}]{name}: {t['actual']} (target {t['target']})[/{colour}]")
    out.print(
        f"Report in {folder}/ (report.html, report.json, timeline.csv); wall time {wall_s:.1f} s."
    )
