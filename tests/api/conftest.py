"""Fixtures for API tests: callers by role, a report poster, and row counts read from the database.

Everything goes through the real app (``app_client``) on both backends; the database is
read back through its own short read-only sessions so the app's writers never queue behind
a test's open transaction on SpatiaLite.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.city import load_roster
from fieldops.clock import ManualClock
from fieldops.db.engine import READ_ONLY, unit_of_work

LAYERS = Path(__file__).resolve().parents[2] / "layers"

Headers = dict[str, str]


def _a_crew_id(session: Session, now: datetime) -> int:
    """The id of some crew on the roster, loading the demo roster when there is none."""
    crew_id = session.scalar(sa.text("SELECT min(id) FROM crews"))
    if crew_id is None:
        load_roster(session, LAYERS, now=now)
        session.flush()
        crew_id = session.scalar(sa.text("SELECT min(id) FROM crews"))
    assert crew_id is not None, "layers/crews.toml holds no crew"
    return int(crew_id)


@pytest.fixture
def auth(
    make_key: Callable[..., str], sessions: sessionmaker[Session], clock: ManualClock
) -> Callable[..., Headers]:
    """``auth(role, name="test")``: the Authorization header of a new key with ``role``.

    A crew key must name its crew, so crew keys go to a crew of the demo roster.
    """

    def make(role: Role, name: str = "test") -> Headers:
        if role != Role.CREW:
            return {"Authorization": f"Bearer {make_key(role, name)}"}
        with unit_of_work(sessions) as session:
            crew_id = _a_crew_id(session, clock.now())
            _key, secret = create_key(
                session, name=f"{name}-{role}", role=role, now=clock.now(), crew_id=crew_id
            )
        return {"Authorization": f"Bearer {secret}"}

    return make


@pytest.fixture
def dispatcher(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.DISPATCHER)


@pytest.fixture
def report(app_client: TestClient, dispatcher: Headers) -> Callable[..., httpx.Response]:
    """``report(service_code, (lon, lat), **fields)``: POST /api/v1/incidents as a dispatcher."""

    def post(
        service_code: str,
        where: tuple[float, float],
        *,
        headers: Headers | None = None,
        **fields: Any,
    ) -> httpx.Response:
        lon, lat = where
        body = {"service_code": service_code, "lon": lon, "lat": lat, **fields}
        return app_client.post("/api/v1/incidents", json=body, headers=headers or dispatcher)

    return post


@pytest.fixture
def count_rows(sessions: sessionmaker[Session]) -> Callable[[str], int]:
    """``count_rows(table)``: how many rows the table holds now, read in a fresh session."""

    def count(table: str) -> int:
        with sessions() as session:
            session.connection(execution_options=READ_ONLY)
            n = session.scalar(sa.text(f"SELECT count(*) FROM {table}"))
            session.rollback()
        assert n is not None
        return int(n)

    return count


@pytest.fixture
def district_ids(app_client: TestClient) -> dict[str, int]:
    """District name -> id, as the public district list gives them."""
    response = app_client.get("/api/v1/districts")
    assert response.status_code == 200
    return {d["name"]: d["id"] for d in response.json()}


def _check_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert len(response.headers["x-request-id"]) == 32
    body: dict[str, Any] = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.fixture
def problem() -> Callable[[httpx.Response, int], dict[str, Any]]:
    """``problem(response, status)``: check an RFC 9457 problem answer; returns its body."""
    return _check_problem
