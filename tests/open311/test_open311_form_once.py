"""An Open311 POST's body is parsed once, through the real app on SpatiaLite and PostGIS:
the intake rate limiter parses the form for its api_key and hands the fields on, and the
route posts exactly those fields (URL-encoded and multipart alike, limiter on or off)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from georeport_doc import BASE, PLATEAU, GeoReport, json_doc
from sqlalchemy.engine import Engine
from starlette.formparsers import MultiPartParser

from fieldops.app import create_app
from fieldops.auth.models import Role
from fieldops.clock import ManualClock
from fieldops.config import Settings
from fieldops.open311 import forms

PARSER = {"urlencoded": "parse_urlencoded", "multipart": "MultiPartParser"}


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each form parser that runs, in order: ours for a URL-encoded body,
    Starlette's for a multipart one. The real parsers run: they are only counted."""
    seen: list[str] = []
    original = MultiPartParser.parse

    async def counted(self: Any) -> Any:
        seen.append("MultiPartParser")
        return await original(self)

    def urlencoded(body: bytes, _original: Any = forms.parse_urlencoded) -> Any:
        seen.append("parse_urlencoded")
        return _original(body)

    monkeypatch.setattr(MultiPartParser, "parse", counted)
    monkeypatch.setattr(forms, "parse_urlencoded", urlencoded)
    return seen


@pytest.fixture
def client_with_limits(
    engine: Engine, clock: ManualClock
) -> Iterator[Callable[[bool], TestClient]]:
    """``client_with_limits(on)``: the real app with the intake rate limit on or off."""
    clients: list[TestClient] = []

    def make(on: bool) -> TestClient:
        settings = Settings(
            database_url=engine.url.render_as_string(hide_password=False),
            environment="test",
            run_scheduler=False,
            intake_rate_limit=on,
        )
        client = TestClient(create_app(settings, clock=clock), base_url="http://127.0.0.1")
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
        client.app.state.fieldops.engine.dispose()  # type: ignore[attr-defined]


def post(client: TestClient, encoding: str, form: list[tuple[str, str]]) -> httpx.Response:
    if encoding == "urlencoded":
        return client.post(
            f"{BASE}/requests.json",
            content=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
    files = [(name, (None, value)) for name, value in form]
    return client.post(f"{BASE}/requests.json", files=files)


@pytest.mark.parametrize("limits", ["on", "off"])
@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_an_open311_post_body_is_parsed_once(
    client_with_limits: Callable[[bool], TestClient],
    make_key: Callable[..., str],
    parses: list[str],
    encoding: str,
    limits: str,
) -> None:
    client = client_with_limits(limits == "on")
    form = [
        ("api_key", make_key(Role.PUBLIC, "citizen app")),
        ("service_code", "wildlife"),
        ("lat", str(PLATEAU[1])),
        ("long", str(PLATEAU[0])),
        ("attribute[animal]", "raccoon"),
        # A repeated field: the route takes the last non-empty one, as before.
        ("description", "first draft"),
        ("description", "Raton laveur près de l'école"),
    ]

    response = post(client, encoding, form)

    body = json_doc(response, 201)
    assert parses == [PARSER[encoding]]
    request_id = body[0]["service_request_id"]
    shown = json_doc(client.get(f"{BASE}/requests/{request_id}.json"))
    assert shown[0]["description"] == "Raton laveur près de l'école"


def test_a_refused_post_is_parsed_once_too(georeport: GeoReport, parses: list[str]) -> None:
    response = georeport.post("unicorn_sighting", PLATEAU)

    assert response.status_code == 404, response.text
    assert parses == ["parse_urlencoded"]
