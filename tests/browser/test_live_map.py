"""The live dispatcher map at /map in a real headless Chromium, against the real app.

It must load nothing from outside 127.0.0.1, log no console error, show every open incident
and crew the API knows, and show a new or changed incident or crew within 2 seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyproj
import pytest
from playwright.sync_api import Page

from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.clock import SystemClock
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work

GEOD = pyproj.Geod(ellps="WGS84")
PLATEAU = (-73.5800, 45.5230)
VERDUN = (-73.5680, 45.4580)
ROSEMONT = (-73.5900, 45.5500)
SAINT_LAURENT = (-73.6800, 45.5100)
LIVE_WITHIN_S = 2.0

# The fixtures' classes live in conftest.py (not importable by name): typed loosely here.
LiveApp = Any
Traffic = Any
Ready = Callable[[Page], None]
Shoot = Callable[[Page, str], Path]


def along(start: tuple[float, float], metres: float, azimuth: float = 60.0) -> dict[str, float]:
    lon, lat, _ = GEOD.fwd(start[0], start[1], azimuth, metres)
    return {"lon": lon, "lat": lat}


@pytest.fixture(scope="module")
def seeded(live_app: LiveApp) -> dict[str, Any]:
    """A street of potholes (a hot spot), scattered incidents, one crew assigned and one crew
    with a fresh position."""
    street = [
        live_app.post("/api/v1/incidents", {"service_code": "pothole", **along(PLATEAU, 40.0 * i)})
        for i in range(8)
    ]
    others = [
        live_app.post("/api/v1/incidents", {"service_code": code, "lon": lon, "lat": lat})
        for code, (lon, lat) in (
            ("flooding", VERDUN),
            ("traffic_signal_out", ROSEMONT),
            ("fallen_tree", SAINT_LAURENT),
            ("rats", along(VERDUN, 900.0).values()),
        )
    ]
    incident = others[0]["incident"]["id"]
    crews = live_app.get("/api/v1/crews")
    best = live_app.get(f"/api/v1/incidents/{incident}/recommendations")["items"][0]
    pump = next(c for c in crews if c["id"] == best["crew_id"])
    live_app.post(f"/api/v1/incidents/{incident}/assign", {"crew_id": pump["id"]})
    moving = next(c for c in crews if c["id"] != pump["id"])
    crew_key = _crew_key(live_app, moving["id"])
    fix = {**along(ROSEMONT, 300.0), "fix_at": SystemClock().now().isoformat()}
    response = live_app.http.post(
        f"/api/v1/crews/{moving['id']}/positions",
        json={"fixes": [fix]},
        headers={"Authorization": f"Bearer {crew_key}"},
    )
    assert response.is_success, response.text
    return {
        "street": [s["incident"]["id"] for s in street],
        "assigned": incident,
        "pump": pump,
        "moving": moving,
        "crew_key": crew_key,
    }


def _crew_key(live_app: LiveApp, crew_id: int) -> str:
    engine = make_engine(live_app.database_url)
    with unit_of_work(make_sessionmaker(engine)) as session:
        _key, secret = create_key(
            session, name="browser-crew", role=Role.CREW, now=SystemClock().now(), crew_id=crew_id
        )
    engine.dispose()
    return secret


def open_map(page: Page, live_app: LiveApp, wait_ready: Ready) -> None:
    page.goto(f"{live_app.base_url}/map#key={live_app.key}")
    wait_ready(page)


def stats(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("FieldOps.stats()")
    return result


def wait_until(page: Page, script: str, arg: Any = None) -> float:
    """Seconds until ``script`` (a JS function of ``arg``) is true; fails past 2 s."""
    started = time.monotonic()
    page.wait_for_function(script, arg=arg, timeout=LIVE_WITHIN_S * 1000, polling=50)
    return time.monotonic() - started


def test_the_map_shows_every_open_incident_and_crew_and_loads_only_from_the_app(
    page: Page,
    traffic: Traffic,
    live_app: LiveApp,
    seeded: dict[str, Any],
    wait_ready: Ready,
    screenshot: Shoot,
) -> None:
    state = live_app.get("/api/v1/feed")
    crews = state["crews"]["features"]

    open_map(page, live_app, wait_ready)

    shown = stats(page)
    assert shown["incidents"] == shown["markers"] == len(state["incidents"]["features"])
    assert shown["crews"] == len(crews)
    assert shown["stale_crews"] == sum(f["properties"]["stale"] for f in crews)
    assert 0 < shown["stale_crews"] < shown["crews"]
    assert shown["hotspots"] >= 1
    assert page.inner_text("#fo-count-incidents") == str(shown["incidents"])
    assert page.inner_text("#fo-count-crews") == str(len(crews))
    # The key left the address bar for this tab's storage.
    assert "key=" not in page.url
    assert page.evaluate("sessionStorage.getItem('fieldops.dispatcher_key')") == live_app.key
    # Every layer is listed, with a legend.
    control = page.inner_text(".leaflet-control-layers")
    for name in ("Incidents", "Points chauds", "Équipes", "Zones d'urgence déclarées"):
        assert name in control
    assert "Priorité (couleur)" in page.inner_text(".fo-legend")
    screenshot(page, "map-live.png")

    assert traffic.outside() == [] and traffic.blocked == []
    assert any("/static/vendor/leaflet/leaflet.js" in url for url in traffic.requests)
    assert traffic.errors == []


def test_new_and_changed_incidents_and_crews_appear_within_two_seconds(
    page: Page,
    traffic: Traffic,
    live_app: LiveApp,
    seeded: dict[str, Any],
    wait_ready: Ready,
    screenshot: Shoot,
) -> None:
    open_map(page, live_app, wait_ready)
    before = stats(page)["incidents"]

    created = live_app.post("/api/v1/incidents", {"service_code": "flooding", **along(ROSEMONT, 0)})
    new_id = created["incident"]["id"]
    appeared_s = wait_until(page, "id => FieldOps.hasIncident(id)", new_id)

    closing = seeded["street"][-1]
    response = live_app.http.patch(f"/api/v1/incidents/{closing}", json={"status": "cancelled"})
    assert response.is_success
    gone_s = wait_until(page, "id => !FieldOps.hasIncident(id)", closing)
    assert stats(page)["incidents"] == before

    moving = seeded["moving"]
    target = along(ROSEMONT, 1200.0, azimuth=200.0)
    fix = {**target, "fix_at": SystemClock().now().isoformat()}
    response = live_app.http.post(
        f"/api/v1/crews/{moving['id']}/positions",
        json={"fixes": [fix]},
        headers={"Authorization": f"Bearer {seeded['crew_key']}"},
    )
    assert response.is_success, response.text
    moved_s = wait_until(
        page,
        """([id, lat]) => {
            const marker = FieldOps.app.crews.get(id);
            return marker && Math.abs(marker.getLatLng().lat - lat) < 1e-6;
        }""",
        [moving["id"], target["lat"]],
    )

    assert max(appeared_s, gone_s, moved_s) < LIVE_WITHIN_S
    assert traffic.outside() == [] and traffic.errors == []


def test_clicking_an_incident_shows_its_details_events_and_recommendations(
    page: Page,
    traffic: Traffic,
    live_app: LiveApp,
    seeded: dict[str, Any],
    wait_ready: Ready,
    screenshot: Shoot,
) -> None:
    open_map(page, live_app, wait_ready)
    incident = seeded["assigned"]

    assert page.evaluate("id => FieldOps.openIncident(id)", incident)
    popup = page.locator(f".fo-popup[data-incident='{incident}']")
    popup.locator(".fo-events").first.wait_for()

    text = popup.inner_text()
    for expected in (
        f"Incident #{incident}",
        "Inondation / eau sur la chaussée",
        "2 – urgente",
        "Assigné",
        "Signalements",
        "Verdun",
        seeded["pump"]["name"],
        "Arrivée prévue",
        "Événements récents",
        "Équipe assignée",
    ):
        assert expected in text, f"{expected!r} not in {text!r}"

    popup.locator("[data-action='recommendations']").click()
    popup.locator(".fo-recs li").first.wait_for()
    assert "min" in popup.locator(".fo-recommendations").inner_text()

    page.click(".fo-lang button[data-lang='en']")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert "Priority (colour)" in page.inner_text(".fo-legend")
    assert "Hot spots" in page.inner_text(".leaflet-control-layers")
    # Switching closes the popup; opened again, it speaks English.
    page.locator(".leaflet-popup").wait_for(state="detached")
    page.evaluate("id => FieldOps.openIncident(id)", incident)
    page.locator(".fo-popup .fo-events").first.wait_for()
    english = page.locator(".fo-popup").inner_text()
    assert "Recent events" in english and "Crew assigned" in english
    page.wait_for_timeout(400)  # let the popup fade in for the picture
    screenshot(page, "map-incident-popup.png")
    assert traffic.outside() == [] and traffic.errors == []


def test_the_page_asks_for_the_key_once_per_tab(
    page: Page,
    traffic: Traffic,
    live_app: LiveApp,
    seeded: dict[str, Any],
    wait_ready: Ready,
    screenshot: Shoot,
) -> None:
    page.goto(f"{live_app.base_url}/map")
    form = page.locator("#fo-key form")
    form.wait_for()
    assert "Clé de répartiteur" in form.inner_text()

    form.locator("input").fill(live_app.key)
    form.locator("button").click()
    wait_ready(page)
    page.reload()
    wait_ready(page)

    assert page.locator("#fo-key").count() == 0
    assert stats(page)["incidents"] > 0
    assert traffic.outside() == [] and traffic.errors == []
