"""Fixtures of the fault tests: a fresh database per test (copied from a prepared
SpatiaLite file, or a PostGIS database made from the template), keys, and points inside
the city, for servers that run as real processes."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fault_procs import FaultDb, fold_wal, prepare

from fieldops.db.engine import make_engine, make_sessionmaker
from fieldops.intake.context import IntakeContext

POSTGIS_ENV = "FIELDOPS_TEST_POSTGIS_URL"
MONTREAL_BBOX = (-73.9966, 45.3854, -73.4739, 45.7076)


@pytest.fixture(scope="session")
def spatialite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared SpatiaLite file (its WAL folded in), copied for each test."""
    path = tmp_path_factory.mktemp("fault-template") / "fieldops.db"
    prepare(f"sqlite:///{path}")
    fold_wal(path)
    return path


@pytest.fixture(scope="session")
def city_points(spatialite_template: Path) -> list[tuple[float, float]]:
    """2,000 random points inside the city's districts (the server's own district index)."""
    engine = make_engine(f"sqlite:///{spatialite_template}")
    with make_sessionmaker(engine)() as session:
        context = IntakeContext.load(session)
    engine.dispose()
    rng = np.random.default_rng(8)
    lon = np.round(rng.uniform(MONTREAL_BBOX[0], MONTREAL_BBOX[2], 6000), 6)
    lat = np.round(rng.uniform(MONTREAL_BBOX[1], MONTREAL_BBOX[3], 6000), 6)
    inside = context.districts.locate_many(lon, lat) >= 0
    return list(zip(lon[inside].tolist(), lat[inside].tolist(), strict=True))[:2000]


@pytest.fixture
def fault_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultDb]:
    """A fresh, loaded database on the backend named by the test's parameter."""
    if request.param == "spatialite":
        path = tmp_path / "fieldops.db"
        shutil.copyfile(request.getfixturevalue("spatialite_template"), path)
        yield FaultDb("spatialite", f"sqlite:///{path}")
        return
    base = os.environ.get(POSTGIS_ENV)
    if not base:
        pytest.skip(f"{POSTGIS_ENV} is not set (the test command sets it)")
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"fieldops_fault_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE fieldops_template")
    url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        prepare(url)
        yield FaultDb("postgis", url)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
