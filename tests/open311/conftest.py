"""Fixtures for the Open311 GeoReport v2 tests: a client that speaks GeoReport through the
real app (``app_client``), a dispatcher for the staff side, and row counts."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from georeport_doc import GeoReport
from sqlalchemy.orm import Session, sessionmaker

from fieldops.auth.models import Role
from fieldops.db.engine import READ_ONLY


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
