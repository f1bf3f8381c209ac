"""Fixtures for the Open311 GeoReport v2 tests: a client that speaks GeoReport through the
real app (``app_client``), a dispatcher for the staff side, and row counts."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from georeport import BASE, json_doc
from sqlalchemy.orm import Session, sessionmaker

from fieldops.auth.models import Role
from fieldops.db.engine import READ_ONLY

Where = tuple[float, float]


class GeoReport:
    """GeoReport v2 calls on the real app, with a valid ``api_key`` for posting."""

    def __init__(self, client: TestClient, api_key: str, dispatcher: dict[str, str]) -> None:
        self.client = client
        self.api_key = api_key
        self.dispatcher = dispatcher

    def get(self, path: str, fmt: str = "json", **params: str) -> httpx.Response:
        return self.client.get(f"{BASE}/{path}.{fmt}", params=params)

    def post(
        self,
        service_code: str | None,
        where: Where | None,
        form: Mapping[str, str] | None = None,
        *,
        fmt: str = "json",
        api_key: str | None = "default",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST requests.{fmt}, form-encoded; ``where`` is (lon, lat) or None for no location."""
        data: dict[str, str] = {}
        if api_key is not None:
            data["api_key"] = self.api_key if api_key == "default" else api_key
        if service_code is not None:
            data["service_code"] = service_code
        if where is not None:
            data["long"], data["lat"] = str(where[0]), str(where[1])
        data.update(form or {})
        return self.client.post(f"{BASE}/requests.{fmt}", data=data, headers=dict(headers or {}))

    def create(self, service_code: str, where: Where, form: Mapping[str, str] | None = None) -> str:
        """Post a valid request; returns its service_request_id."""
        body = json_doc(self.post(service_code, where, form), 201)
        assert len(body) == 1
        request_id = body[0]["service_request_id"]
        assert isinstance(request_id, str) and request_id.isdigit()
        return str(request_id)

    def requests(self, **params: str) -> list[dict[str, Any]]:
        body = json_doc(self.get("requests", **params))
        assert isinstance(body, list)
        return body

    def ids(self, **params: str) -> list[str]:
        return [r["service_request_id"] for r in self.requests(**params)]

    def one(self, request_id: str, **params: str) -> dict[str, Any]:
        body = json_doc(self.get(f"requests/{request_id}", **params))
        assert isinstance(body, list) and len(body) == 1, body
        assert body[0]["service_request_id"] == request_id
        result: dict[str, Any] = body[0]
        return result

    def incident_of(self, request_id: str) -> int:
        return int(self.one(request_id, extensions="true")["extended_attributes"]["incident_id"])

    def staff_report(
        self, service_code: str, where: Where, *, requested_at: datetime | None = None
    ) -> str:
        """A report through the dispatcher API (which can back-date it); returns its id."""
        body: dict[str, Any] = {"service_code": service_code, "lon": where[0], "lat": where[1]}
        if requested_at is not None:
            body["requested_at"] = requested_at.isoformat()
        response = self.client.post("/api/v1/incidents", json=body, headers=self.dispatcher)
        assert response.status_code == 201, response.text
        return str(response.json()["report_id"])

    def set_status(self, request_id: str, status: str, note: str | None = None) -> None:
        """Change the status of the incident behind ``request_id`` as a dispatcher."""
        body = {"status": status} if note is None else {"status": status, "note": note}
        response = self.client.patch(
            f"/api/v1/incidents/{self.incident_of(request_id)}",
            json=body,
            headers=self.dispatcher,
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def dispatcher(make_key: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(Role.DISPATCHER)}"}


@pytest.fixture
def georeport(
    app_client: TestClient, make_key: Callable[..., str], dispatcher: dict[str, str]
) -> GeoReport:
    return GeoReport(app_client, make_key(Role.PUBLIC, "open311-client"), dispatcher)


@pytest.fixture
def lenient_client(app_client: TestClient) -> Iterator[TestClient]:
    """The same app, answering a server error with a 500 instead of raising it in the test."""
    client = TestClient(app_client.app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    yield client
    client.close()


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
