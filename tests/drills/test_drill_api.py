"""POST /api/v1/drills starts a drill in the background and its report comes back over HTTP;
only managers may; bad input names its field; the app's own database is never touched."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fieldops.app import create_app
from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.clock import ManualClock
from fieldops.config import Settings
from fieldops.crews.models import Crew
from fieldops.db.engine import unit_of_work


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def drill_client(
    engine: Engine, clock: ManualClock, tmp_path: Path, tiny_scenario: Callable[..., Path]
) -> Iterator[tuple[TestClient, Path]]:
    scenarios = tmp_path / "scenarios"
    tiny_scenario("trial", folder=scenarios)
    live = engine.url.render_as_string(hide_password=False)
    # A scenario whose own [database] is the live one: refused before anything runs.
    tiny_scenario("on_live", f'[database]\nurl = "{live}"\n', folder=scenarios)
    settings = Settings(
        database_url=live,
        environment="test",
        run_scheduler=False,
        scenarios_dir=scenarios,
        data_dir=tmp_path / "data",
    )
    app = create_app(settings, clock=clock)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, tmp_path / "data"
    jobs = getattr(app.state, "drills", None)
    if jobs is not None:
        jobs.shutdown()
    app.state.fieldops.engine.dispose()


def _incidents(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM incidents")).scalar_one())


def _wait(client: TestClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status: dict[str, Any] = client.get(url, headers=headers).json()
        if status["status"] in {"done", "failed"}:
            return status
        time.sleep(0.5)
    raise AssertionError(f"drill not done in time: {status}")


def test_a_manager_runs_a_drill_and_reads_its_report(
    drill_client: tuple[TestClient, Path],
    make_key: Callable[[Role], str],
    engine: Engine,
) -> None:
    client, data_dir = drill_client
    manager = bearer(make_key(Role.MANAGER))
    before = _incidents(engine)
    answer = client.post(
        "/api/v1/drills", json={"scenario": "trial", "seed": 11, "scale": 1.5}, headers=manager
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert answer.headers["location"] == f"/api/v1/drills/{body['id']}"
    assert body["status"] in {"queued", "running"}
    assert body["seed"] == 11 and body["scale"] == 1.5
    assert "report" not in body["links"]

    status = _wait(client, answer.headers["location"], manager)
    assert status["status"] == "done", status
    assert status["links"]["report"] == f"/api/v1/drills/{body['id']}/report"
    folder = data_dir / "drills" / body["id"]
    assert (folder / "report.json").is_file()
    assert status["database"].startswith(str(folder))

    page = client.get(status["links"]["report"], headers=manager)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "NFPA 1225" in page.text
    assert "Délais (s) par arrondissement / Response times (s) by district" in page.text
    figures = client.get(status["links"]["report_json"], headers=manager)
    assert figures.status_code == 200
    report = figures.json()
    assert report["scenario"]["seed"] == 11
    assert report["counts"]["reports_submitted"] > 0
    assert report["nfpa_1225"]["n"] > 0  # every report of the trial is priority 1
    # The drill ran on a database of its own: the app's has not one incident more.
    assert _incidents(engine) == before


@pytest.mark.parametrize("role", [Role.DISPATCHER, Role.CREW, Role.PUBLIC])
def test_only_managers_start_or_read_drills(
    drill_client: tuple[TestClient, Path],
    make_key: Callable[[Role], str],
    sessions: sessionmaker[Session],
    clock: ManualClock,
    role: Role,
) -> None:
    client, data_dir = drill_client
    if role == Role.CREW:  # a crew key belongs to a crew of the city
        with unit_of_work(sessions) as session:
            crew_id = session.scalars(sa.select(Crew.id).order_by(Crew.id)).first()
            _, secret = create_key(
                session, name="crew", role=role, now=clock.now(), crew_id=crew_id
            )
    else:
        secret = make_key(role)
    other = bearer(secret)
    answer = client.post("/api/v1/drills", json={"scenario": "trial"}, headers=other)
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert client.get(f"/api/v1/drills/{'0' * 32}", headers=other).status_code == 403
    assert client.post("/api/v1/drills", json={"scenario": "trial"}).status_code == 401
    assert not (data_dir / "drills").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scenario": "nowhere"}, "scenario"),
        ({"scenario": "../trial"}, "scenario"),
        ({"scenario": "trial", "seed": -1}, "seed"),
        ({"scenario": "trial", "seed": "seven"}, "seed"),
        ({"scenario": "trial", "scale": 0}, "scale"),
        ({"scenario": "trial", "flavour": 1}, "flavour"),
        ({"scenario": "on_live"}, "scenario"),
    ],
)
def test_bad_input_names_the_field(
    drill_client: tuple[TestClient, Path],
    make_key: Callable[[Role], str],
    body: dict[str, Any],
    field: str,
) -> None:
    client, data_dir = drill_client
    answer = client.post("/api/v1/drills", json=body, headers=bearer(make_key(Role.MANAGER)))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert not (data_dir / "drills").exists()


def test_unknown_drills_are_404(
    drill_client: tuple[TestClient, Path], make_key: Callable[[Role], str]
) -> None:
    client, _ = drill_client
    manager = bearer(make_key(Role.MANAGER))
    for url in (
        f"/api/v1/drills/{'a' * 32}",
        "/api/v1/drills/not-an-id",
        f"/api/v1/drills/{'b' * 32}/report",
        f"/api/v1/drills/{'c' * 32}/report.json",
    ):
        answer = client.get(url, headers=manager)
        assert answer.status_code == 404, url
        assert answer.headers["content-type"] == "application/problem+json"
