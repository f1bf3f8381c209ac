"""Static maps in a real headless Chromium: ``fieldops map render`` writes one self-contained
file (it opens with no server and asks the network for nothing), and the pure renderer draws
crews with a stale mark and declared emergency areas from GeoDataFrames."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from geopandas import GeoDataFrame, points_from_xy
from playwright.sync_api import Page
from shapely.geometry import box
from typer.testing import CliRunner

from fieldops.mapping.assets import DEFAULT_VENDOR_DIR, asset_links
from fieldops.mapping.cli import map_app
from fieldops.mapping.render import MapData, MapOptions, render_map, standalone_html

LiveApp = Any
Traffic = Any
Ready = Callable[[Page], None]
Shoot = Callable[[Page, str], Path]
AT = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)


def stats(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("() => FieldOps.stats()")
    return result


def test_map_render_writes_a_self_contained_map_of_the_current_state(
    page: Page,
    traffic: Traffic,
    live_app: LiveApp,
    tmp_path: Path,
    wait_ready: Ready,
    screenshot: Shoot,
) -> None:
    live_app.post("/api/v1/incidents", {"service_code": "pothole", "lon": -73.58, "lat": 45.523})
    state = live_app.get("/api/v1/feed")
    out = tmp_path / "maps" / "now.html"

    result = CliRunner().invoke(
        map_app,
        ["render", "--db", live_app.database_url, "--out", str(out), "--lang", "en"],
    )

    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert re.findall(r'<script src=|<link rel="stylesheet"', html) == []
    page.goto(out.as_uri())
    wait_ready(page)
    shown = stats(page)
    assert shown["incidents"] == len(state["incidents"]["features"])
    assert shown["crews"] == len(state["crews"]["features"])
    assert shown["lang"] == "en"
    assert "State as of" in page.inner_text(".fo-status")
    screenshot(page, "map-static.png")
    assert [url for url in traffic.requests if not url.startswith("data:")] == [out.as_uri()]
    assert traffic.errors == []


def test_layers_can_be_chosen() -> None:
    result = CliRunner().invoke(map_app, ["render", "--layers", "districts,volcanoes"])
    assert result.exit_code == 2
    assert "unknown layer(s) volcanoes" in result.output


def test_the_renderer_draws_crews_with_stale_marks_and_emergency_areas(
    page: Page, traffic: Traffic, tmp_path: Path, wait_ready: Ready
) -> None:
    crews = GeoDataFrame(
        {
            "id": [1, 2, 3],
            "name": ["Voirie 1", "Pompage 2", "Arbres 3"],
            "status": ["available", "en_route", "on_scene"],
            "position_at": pd.to_datetime([AT, AT, AT - timedelta(hours=2)], utc=True),
            "stale": [False, False, True],
        },
        geometry=points_from_xy([-73.58, -73.60, -73.62], [45.50, 45.51, 45.52]),
        crs="EPSG:4326",
    )
    areas = GeoDataFrame(
        {"id": [7], "name": ["Crue Pierrefonds"], "hazard": ["flood"], "declared_at": [AT]},
        geometry=[box(-73.88, 45.47, -73.83, 45.50)],
        crs="EPSG:4326",
    )
    options = MapOptions(assets=asset_links(DEFAULT_VENDOR_DIR), as_of=AT)
    file = tmp_path / "crews.html"
    m = render_map(MapData(crews=crews, emergencies=areas), options)
    file.write_text(standalone_html(m, options, DEFAULT_VENDOR_DIR), encoding="utf-8")

    page.goto(file.as_uri())
    wait_ready(page)

    shown = stats(page)
    assert (shown["crews"], shown["stale_crews"], shown["emergencies"]) == (3, 1, 1)
    assert page.locator(".fo-crew").count() == 3
    assert page.locator(".fo-crew.fo-crew-stale .fo-stale-mark").count() == 1
    # No incident layer was given: the page has none, and says so in its layer control.
    assert shown["markers"] == 0
    assert "Incidents" not in page.inner_text(".leaflet-control-layers")
    assert traffic.errors == []
