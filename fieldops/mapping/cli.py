"""``fieldops map ...``: maps of the current state, as self-contained HTML files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fieldops.clock import SystemClock
from fieldops.config import Settings
from fieldops.errors import FieldOpsError

map_app = typer.Typer(help="Maps of the current state.", no_args_is_help=True)
err = Console(stderr=True)


@map_app.callback()
def maps() -> None:
    """Maps of the current state, as self-contained HTML files."""


def _layer_names(value: str) -> list[str]:
    from fieldops.mapping.render import ALL_LAYERS

    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names or names == ["all"]:
        return list(ALL_LAYERS)
    unknown = [n for n in names if n not in ALL_LAYERS]
    if unknown:
        raise typer.BadParameter(
            f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(ALL_LAYERS)}"
        )
    return names


@map_app.command("render")
def render(
    layers: Annotated[
        str,
        typer.Option(
            "--layers",
            help="Comma-separated layers to draw (districts, incidents, hotspots, heat, "
            "crews, emergencies, flood_zones, metro_lines, metro_stations), or 'all'",
        ),
    ] = "all",
    out: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path(
        "maps/current.html"
    ),
    lang: Annotated[str, typer.Option(help="Language the map opens in (fr or en)")] = "fr",
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (default: $FIELDOPS_DATABASE_URL)"),
    ] = None,
    layers_dir: Annotated[
        Path | None, typer.Option("--layers-dir", help="Folder with catalog.toml and city.toml")
    ] = None,
) -> None:
    """Write a self-contained map of the current state (open incidents, hot spots, heat and
    the base layers): one HTML file that opens with no server and no network."""
    from fieldops.db.engine import READ_ONLY, make_engine, make_sessionmaker
    from fieldops.mapping.assets import MissingAssets, asset_links, vendor_dir_of
    from fieldops.mapping.base_layers import load_base_layers
    from fieldops.mapping.render import render_map, standalone_html
    from fieldops.mapping.service import current_map_data, static_map_options

    if lang not in ("fr", "en"):
        raise typer.BadParameter("lang must be fr or en")
    wanted = _layer_names(layers)
    values: dict[str, object] = {}
    if db:
        values["database_url"] = db
    if layers_dir:
        values["layers_dir"] = layers_dir
    try:
        settings = Settings(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        err.print(f"[red]Invalid setting:[/red] {exc}")
        raise typer.Exit(2) from None
    vendor_dir = vendor_dir_of(settings)
    try:
        links = asset_links(vendor_dir)
        base = load_base_layers(settings.layers_dir)
        engine = make_engine(settings.database_url)
        with make_sessionmaker(engine)() as session:
            session.connection(execution_options=READ_ONLY)
            now = SystemClock().now()
            data = current_map_data(
                session, base=base, now=now, stale_after=settings.stale_after, layers=wanted
            )
            options = static_map_options(
                session,
                assets=links,
                lang="en" if lang == "en" else "fr",
                timezone=settings.timezone,
                layers=wanted,
                now=now,
                stale_after=settings.stale_after,
            )
            session.rollback()
        engine.dispose()
    except MissingAssets as exc:
        err.print(f"[red]Error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except FieldOpsError as exc:
        err.print(f"[red]Error:[/red] {exc.detail}", highlight=False)
        raise typer.Exit(1) from None
    html = standalone_html(render_map(data, options), options, vendor_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    incidents = 0 if data.incidents is None else len(data.incidents)
    hotspots = 0 if data.hotspots is None else len(data.hotspots)
    err.print(
        f"Wrote {out} ({len(html.encode()) / 1e6:.1f} MB): {incidents} open incidents, "
        f"{hotspots} hot spots; layers {', '.join(wanted)}."
    )
