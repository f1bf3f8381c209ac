"""Shared fixtures: real SpatiaLite always, real PostGIS when FIELDOPS_TEST_POSTGIS_URL is set.

In CI (``CI=true``) a skipped PostGIS test fails the run: the integration suite must
have run against PostGIS for real.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fieldops.app import create_app
from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.city import load_city, load_roster
from fieldops.clock import ManualClock
from fieldops.config import Settings
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
from fieldops.db.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ROOT / "layers"
POSTGIS_ENV = "FIELDOPS_TEST_POSTGIS_URL"
START = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)

# Tables tests write to, children first; districts and services stay loaded all session.
MUTABLE_TABLES = (
    "idempotent_responses",
    "notifications",
    "escalation_steps",
    "incident_events",
    "assignments",
    "crew_positions",
    "reports",
    "incidents",
    "api_keys",
    "crews",
    "emergencies",
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


_skipped_postgis: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "postgis" in report.keywords:
        _skipped_postgis.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _in_ci() and _skipped_postgis:
        print(f"\n{len(_skipped_postgis)} PostGIS test(s) were skipped in CI: failing the run.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _prepare(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as session:
        _clear(session)
        load_city(session, LAYERS, now=START)
    return engine


def _clear(session: Session) -> None:
    for table in MUTABLE_TABLES:
        session.execute(sa.text(f"DELETE FROM {table}"))


@pytest.fixture(scope="session")
def spatialite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = tmp_path_factory.mktemp("db") / "fieldops.db"
    engine = _prepare(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgis_engine() -> Iterator[Engine]:
    """A PostGIS database of this run's own, made from the template scripts/postgis.sh keeps,
    so parallel runs never see each other's rows; dropped at the end."""
    url = os.environ.get(POSTGIS_ENV)
    if not url:
        pytest.skip(f"{POSTGIS_ENV} is not set (the test command sets it)")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"fieldops_run_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE fieldops_template"))
    engine = _prepare(sa.make_url(url).set(database=name).render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(
    params=[
        pytest.param("spatialite"),
        pytest.param("postgis", marks=pytest.mark.postgis),
    ]
)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The database, on each backend in turn, emptied of incidents and keys after each test."""
    engine: Engine = request.getfixturevalue(f"{request.param}_engine")
    yield engine
    with unit_of_work(make_sessionmaker(engine)) as session:
        _clear(session)
        load_roster(session, LAYERS, now=START)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as session:
        yield session
        session.rollback()


@pytest.fixture
def spatialite_sessions(spatialite_engine: Engine) -> sessionmaker[Session]:
    """Sessions on SpatiaLite alone, for what only SpatiaLite does."""
    return make_sessionmaker(spatialite_engine)


@pytest.fixture
def spatialite_session(spatialite_sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A SpatiaLite session whose work is rolled back at the end: nothing a test writes stays."""
    with spatialite_sessions() as session:
        yield session
        session.rollback()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def app_client(engine: Engine, clock: ManualClock) -> Iterator[TestClient]:
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        environment="test",
        max_body_bytes=64 * 1024,
        # Tests drive the scheduled jobs themselves, on the manual clock.
        run_scheduler=False,
    )
    app = create_app(settings, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client
    app.state.fieldops.engine.dispose()


@pytest.fixture
def make_key(sessions: sessionmaker[Session], clock: ManualClock) -> Callable[[Role], str]:
    """Create a key with ``role`` in the database; returns its secret."""

    def make(role: Role, name: str = "test") -> str:
        with unit_of_work(sessions) as session:
            _key, secret = create_key(session, name=f"{name}-{role}", role=role, now=clock.now())
        return secret

    return make


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
