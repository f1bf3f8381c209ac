"""Fixtures for the reliability suite: fuzzing, geometry properties and bad input.

The suite reuses the callers, counters and GeoReport client of tests/api and tests/open311
(loaded from their conftest files, so there is one definition of each), and adds what only
it needs: a key for every role, a snapshot of what the database has accepted, and the
Hypothesis budget.

Fuzzing budget: ``FIELDOPS_FUZZ_EXAMPLES`` (default 5) examples per API operation and per
backend, always derandomized, so CI runs a few hundred examples in seconds and a failure
replays. A longer hunt: ``FIELDOPS_FUZZ_EXAMPLES=200 .venv/bin/pytest tests/reliability -k fuzz``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from fuzz_support import Headers
from sqlalchemy.orm import Session, sessionmaker

from fieldops.auth.models import Role
from fieldops.db.engine import READ_ONLY

TESTS = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:
    """Load a sibling suite's conftest under a name of its own (every conftest is
    'conftest' to Python), so its fixtures can be reused here rather than copied."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The Open311 fixtures import their helper module by its bare name.
sys.path.insert(0, str(TESTS / "open311"))
_api = _load("reliability_api_fixtures", TESTS / "api" / "conftest.py")
_open311 = _load("reliability_open311_fixtures", TESTS / "open311" / "conftest.py")

auth = _api.auth
dispatcher = _api.dispatcher
report = _api.report
count_rows = _api.count_rows
problem = _api.problem
district_ids = _api.district_ids
georeport = _open311.georeport
lenient_client = _open311.lenient_client


@pytest.fixture
def role_headers(auth: Callable[..., Headers]) -> dict[Role, Headers]:
    """One fresh key per role (the crew key names a crew of the demo roster)."""
    return {role: auth(role, "fuzz") for role in Role}


# Every table whose rows stand for something a caller was told had been accepted.
ACCEPTED_TABLES = (
    "incidents",
    "reports",
    "incident_events",
    "assignments",
    "emergencies",
    "crews",
)


@pytest.fixture
def accepted(sessions: sessionmaker[Session]) -> Callable[[], dict[str, list[tuple[Any, ...]]]]:
    """``accepted()``: every row of the tables that hold accepted work, ordered by id.

    Compare a snapshot taken before a bad input with one taken after: a refused input
    must leave every earlier row exactly as it was, and add none.
    """

    def snapshot() -> dict[str, list[tuple[Any, ...]]]:
        with sessions() as session:
            session.connection(execution_options=READ_ONLY)
            rows = {
                table: [
                    tuple(row)
                    for row in session.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))
                ]
                for table in ACCEPTED_TABLES
            }
            session.rollback()
        return rows

    return snapshot
