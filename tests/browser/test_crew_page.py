"""The crew's phone page at /crew in a real headless Chromium, against the real app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.clock import SystemClock
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work

LiveApp = Any
Traffic = Any
# A school yard in Le Plateau-Mont-Royal: every wildlife crew on shift can take it.
SCHOOL_YARD = {"lon": -73.5795, "lat": 45.5262}


def crew_key(live_app: LiveApp, crew_id: int) -> str:
    engine = make_engine(live_app.database_url)
    with unit_of_work(make_sessionmaker(engine)) as session:
        _key, secret = create_key(
            session, name="phone", role=Role.CREW, now=SystemClock().now(), crew_id=crew_id
        )
    engine.dispose()
    return secret


@pytest.fixture
def assigned(live_app: LiveApp) -> dict[str, Any]:
    """A raccoon report assigned to the best wildlife crew on shift, and that crew's key."""
    made = live_app.post(
        "/api/v1/incidents",
        {"service_code": "wildlife", **SCHOOL_YARD, "description": "Raton laveur dans la cour"},
    )
    incident = made["incident"]["id"]
    best = live_app.get(f"/api/v1/incidents/{incident}/recommendations")["items"][0]
    assignment = live_app.post(f"/api/v1/incidents/{incident}/assign", {"crew_id": best["crew_id"]})
    return {
        "incident": incident,
        "assignment": assignment["id"],
        "key": crew_key(live_app, best["crew_id"]),
    }


def test_a_crew_sees_its_job_and_moves_it_on_from_the_phone(
    browser: Any,
    traffic: Traffic,
    live_app: LiveApp,
    assigned: dict[str, Any],
    screenshot: Callable[[Page, str], Path],
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="fr-CA")
    context.route(
        "**/*",
        lambda route, request: (
            route.fallback()
            if request.url.startswith(live_app.base_url)
            else (traffic.blocked.append(request.url), route.abort())
        ),
    )
    page = context.new_page()
    page.on("request", lambda request: traffic.requests.append(request.url))
    page.on("console", lambda m: m.type == "error" and traffic.errors.append(m.text))
    page.on("pageerror", lambda error: traffic.errors.append(str(error)))

    page.goto(f"{live_app.base_url}/crew#key={assigned['key']}")
    card = page.locator(f"li[data-assignment='{assigned['assignment']}']")
    card.wait_for(timeout=10_000)
    assert f"#{assigned['incident']}" in card.inner_text()
    assert card.locator("button").all_inner_texts() == ["Accepter", "Refuser"]
    assert page.url.endswith("/crew")  # the key left the address bar
    screenshot(page, "crew-page.png")

    card.locator("button[data-action='accept']").click()
    card.locator("button[data-action='en_route']").wait_for(timeout=5_000)
    incident = live_app.get(f"/api/v1/incidents/{assigned['incident']}")
    assert incident["status"] == "acknowledged"
    assert [e["kind"] for e in incident["events"]][:2] == ["status_changed", "crew_accept"]

    page.locator("#lang").click()
    card.locator("button", has_text="Decline").wait_for(timeout=5_000)
    assert card.locator("button").all_inner_texts() == ["En route", "Decline"]
    context.close()

    assert traffic.outside() == [] and traffic.blocked == []
    assert traffic.errors == []
