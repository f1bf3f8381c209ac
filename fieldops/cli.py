"""The ``fieldops`` command: set up, load, import and serve."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.orm import Session

from fieldops.auth.models import Role
from fieldops.city import load_city
from fieldops.clock import SystemClock
from fieldops.config import Settings
from fieldops.db.engine import make_sessionmaker
from fieldops.drills.cli import drill_app
from fieldops.errors import FieldOpsError, SourceErrors
from fieldops.mapping.cli import map_app

if TYPE_CHECKING:
    from fieldops.scheduler import Jobs

app = typer.Typer(
    help="FieldOps: intake, dispatch and escalation for a city's field operations.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
layers_app = typer.Typer(help="The city's base layers (layers/).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
scheduler_app = typer.Typer(
    help="Scheduled jobs (escalation, notifications).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(layers_app, name="layers")
app.add_typer(keys_app, name="keys")
app.add_typer(scheduler_app, name="scheduler")
app.add_typer(map_app, name="map")
app.add_typer(drill_app, name="drill")

# soft_wrap: long lines (file: line N messages, a curl command) stay whole when piped.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (default: $FIELDOPS_DATABASE_URL or a SpatiaLite "
        "file in your data directory)",
        show_default=False,
    ),
]
LayersOption = Annotated[
    Path | None, typer.Option("--layers-dir", help="Folder with catalog.toml and city.toml")
]


def _settings(db: str | None = None, layers_dir: Path | None = None, **extra: object) -> Settings:
    values: dict[str, object] = {k: v for k, v in extra.items() if v is not None}
    if db:
        values["database_url"] = db
    if layers_dir:
        values["layers_dir"] = layers_dir
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        err.print(f"[red]Invalid setting:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _unit_of_work(settings: Settings) -> Iterator[Session]:
    """A session on the configured database, committed at the end of the block (rolled
    back on an error); the engine is disposed of afterwards, its connections closed."""
    from fieldops.db.engine import make_engine, unit_of_work

    engine = make_engine(settings.database_url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _fail(exc: FieldOpsError) -> typer.Exit:
    if isinstance(exc, SourceErrors):
        err.print(f"[red]{len(exc.problems)} problem(s):[/red]")
        for problem in exc.problems:
            err.print(f"  {escape(str(problem))}", highlight=False)
    else:
        err.print(f"[red]Error:[/red] {escape(exc.detail)}", highlight=False)
    return typer.Exit(1)


# --- db -------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate the schema to the latest version (safe to run again)."""
    from fieldops.db.engine import backend_name, make_engine
    from fieldops.db.migrate import current_revision, upgrade

    settings = _settings(db)
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        out.print(f"Schema at revision {current_revision(engine)} on {backend_name(engine)}.")
    finally:
        engine.dispose()


# --- layers ---------------------------------------------------------------------------------


@layers_app.command("check")
def layers_check(layers_dir: LayersOption = None) -> None:
    """Validate every layer in the catalog; list each problem with its file and feature."""
    from fieldops.layers import check_catalog, is_repairable, read_catalog

    settings = _settings(layers_dir=layers_dir)
    try:
        entries = read_catalog(settings.layers_dir / "catalog.toml")
    except SourceErrors as exc:
        raise _fail(exc) from None
    problems = check_catalog(entries)
    fatal = [p for p in problems if not is_repairable(p)]
    for p in problems:
        colour = "yellow" if is_repairable(p) else "red"
        out.print(f"[{colour}]{escape(str(p))}[/{colour}]", highlight=False)
    out.print(
        f"{len(entries)} layers checked: {len(fatal)} problem(s), "
        f"{len(problems) - len(fatal)} repairable on load."
    )
    if fatal:
        raise typer.Exit(1)


@layers_app.command("load")
def layers_load(db: DbOption = None, layers_dir: LayersOption = None) -> None:
    """Load the districts and the service catalogue of the city into the database."""

    settings = _settings(db, layers_dir)
    try:
        with _unit_of_work(settings) as session:
            out.print(load_city(session, settings.layers_dir, now=SystemClock().now()))
    except FieldOpsError as exc:
        raise _fail(exc) from None


# --- import ---------------------------------------------------------------------------------


def import_311_file(session: Session, path: Path, layers_dir: Path) -> str:
    """Import a Montréal 311 CSV export through intake, with a progress bar; returns a summary."""
    from fieldops.catalog.spec import read_city
    from fieldops.intake.context import IntakeContext
    from fieldops.intake.montreal311 import import_reports, read_export

    city = read_city(layers_dir / "city.toml")
    keywords = {word: s.code for s in city.services for word in s.import_keywords}
    parsed = read_export(path, keywords=keywords, timezone=city.city.timezone)
    context = IntakeContext.load(session)
    with Progress(
        TextColumn("importing {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(path.name, total=len(parsed.rows))
        summary = import_reports(
            session,
            parsed,
            context=context,
            now=SystemClock().now(),
            on_row=lambda: progress.advance(task),
        )
    for problem in summary.skipped[:20]:
        err.print(f"[yellow]skipped[/yellow] {escape(str(problem))}", highlight=False)
    if len(summary.skipped) > 20:
        err.print(f"... and {len(summary.skipped) - 20} more skipped rows")
    return (
        f"{path.name}: {summary.imported} imported ({summary.merged} merged into an open "
        f"incident), {summary.already_there} already there, {len(summary.skipped)} skipped"
    )


@app.command("import-311")
def import_311(
    csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV export")],
    db: DbOption = None,
    layers_dir: LayersOption = None,
) -> None:
    """Import a Montréal 311 CSV export. Rows without coordinates are reported and skipped;
    importing the same file again adds nothing."""

    settings = _settings(db, layers_dir)
    try:
        with _unit_of_work(settings) as session:
            out.print(import_311_file(session, csv_file, settings.layers_dir))
    except FieldOpsError as exc:
        raise _fail(exc) from None


# --- keys -----------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="What the key may do")],
    name: Annotated[str, typer.Option(help="Who or what holds it")],
    crew: Annotated[str | None, typer.Option(help="For a crew key: the crew's name or id")] = None,
    db: DbOption = None,
) -> None:
    """Create an API key and print its secret (shown once, never stored)."""
    from fieldops.auth.service import create_key
    from fieldops.crews.repo import list_crews

    settings = _settings(db)
    try:
        with _unit_of_work(settings) as session:
            crew_id = None
            if crew is not None:
                found = [c for c in list_crews(session) if crew in (c.name, str(c.id))]
                if not found:
                    raise typer.BadParameter(
                        f"no crew named or numbered {crew!r}", param_hint="--crew"
                    )
                crew_id = found[0].id
            key, secret = create_key(
                session, name=name, role=role, now=SystemClock().now(), crew_id=crew_id
            )
    except FieldOpsError as exc:
        raise _fail(exc) from None
    err.print(f"Key {key.id} ({key.role}, {key.name}) created. Its secret, shown once:")
    print(secret)


@keys_app.command("list")
def keys_list(db: DbOption = None) -> None:
    """List API keys (never their secrets)."""
    from fieldops.auth.service import list_keys

    settings = _settings(db)
    table = Table("id", "name", "role", "prefix", "created", "revoked")
    with _unit_of_work(settings) as session:
        for k in list_keys(session):
            table.add_row(
                str(k.id),
                k.name,
                k.role,
                k.prefix + "…",
                f"{k.created_at:%Y-%m-%d %H:%M}",
                f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
            )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument()], db: DbOption = None) -> None:
    """Revoke a key: it stops working at once."""
    from fieldops.auth.service import revoke_key

    settings = _settings(db)
    try:
        with _unit_of_work(settings) as session:
            revoke_key(session, key_id=key_id, now=SystemClock().now())
    except FieldOpsError as exc:
        raise _fail(exc) from None
    out.print(f"Key {key_id} revoked.")


# --- serve ----------------------------------------------------------------------------------


@app.command("serve")
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler/--no-scheduler",
            help="Run the scheduled jobs in the server (off: run `fieldops scheduler run`)",
        ),
    ] = True,
) -> None:
    """Serve the API and pages (the schema must be migrated: `fieldops db upgrade`).

    With several workers each listens on a socket of its own and the kernel spreads the
    connections among them; only the first runs the scheduled jobs (fieldops/serving.py)."""
    import os

    from fieldops.serving import Spec
    from fieldops.serving import serve as serve_workers

    settings = _settings(db, host=host, port=port)
    os.environ["FIELDOPS_DATABASE_URL"] = settings.database_url
    serve_workers(
        Spec(
            app="fieldops.app:app_from_environment",
            host=settings.host,
            port=settings.port,
            workers=workers,
            scheduler=scheduler,
        )
    )


def _jobs(settings: Settings) -> Jobs:
    from fieldops.api.deps import AppState
    from fieldops.app import jobs_for
    from fieldops.db.engine import make_engine

    engine = make_engine(settings.database_url)
    return jobs_for(
        AppState(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            clock=SystemClock(),
        )
    )


@scheduler_app.command("list")
def scheduler_list(db: DbOption = None) -> None:
    """List the scheduled jobs and how often each runs."""
    table = Table("job", "every", "what it does")
    for name, (func, every_s) in _jobs(_settings(db)).schedule().items():
        table.add_row(name, f"{every_s:g} s", (func.__doc__ or "").strip().splitlines()[0])
    out.print(table)


@scheduler_app.command("run")
def scheduler_run(
    db: DbOption = None,
    once: Annotated[bool, typer.Option(help="Run every job once, then stop")] = False,
) -> None:
    """Run the scheduled jobs alone (for an API served with --no-scheduler). Any number
    of schedulers may share one PostGIS: each due step fires exactly once."""
    import time

    from fieldops.scheduler import build_scheduler

    jobs = _jobs(_settings(db))
    if once:
        for name, (func, _every) in jobs.schedule().items():
            out.print(f"{name}: {func()}")
        return
    scheduler = build_scheduler(jobs)
    scheduler.start()
    out.print(f"Scheduler running: {', '.join(jobs.schedule())}. Ctrl-C stops it.")
    try:
        while True:
            time.sleep(3600)
    finally:
        scheduler.shutdown(wait=True)


@app.command("demo")
def demo(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve when loaded")
    ] = True,
) -> None:
    """Set up the demo city (schema, layers, real 311 sample, a dispatcher key) and serve it."""
    from fieldops.auth.service import create_key
    from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
    from fieldops.db.migrate import upgrade

    settings = _settings(db, host=host, port=port)
    out.print(f"Database: {settings.database_url}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    sample = settings.layers_dir / "requetes311_rats_2016_2017.csv"
    try:
        with unit_of_work(sessions) as session:
            out.print(load_city(session, settings.layers_dir, now=SystemClock().now()))
        with unit_of_work(sessions) as session:
            out.print(import_311_file(session, sample, settings.layers_dir))
        with unit_of_work(sessions) as session:
            _key, secret = create_key(
                session, name="demo dispatcher", role=Role.DISPATCHER, now=SystemClock().now()
            )
    except FieldOpsError as exc:
        raise _fail(exc) from None
    engine.dispose()
    base = f"http://{settings.host}:{settings.port}"
    out.print(f"\n[bold]FieldOps demo[/bold] on {base}")
    out.print(f"  API docs:        {base}/docs")
    out.print(f"  Incidents feed:  {base}/api/v1/incidents.geojson")
    out.print(f"  Districts:       {base}/api/v1/districts.geojson")
    out.print(f"  Live map:        {base}/map#key={secret}")
    out.print(f"  Dispatcher key:  [bold]{secret}[/bold]")
    out.print(f"  Try: curl -H 'Authorization: Bearer {secret}' {base}/api/v1/incidents?limit=5\n")
    if serve_after:
        serve(db=settings.database_url, host=host, port=port, workers=1)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Alembic narrates every migration step; keep the screen for what matters.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # APScheduler logs every run of every job, each second: only its problems matter here.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
