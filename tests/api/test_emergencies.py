"""Emergencies through the real app, on SpatiaLite and PostGIS: declaring by polygon or by
districts, area validation, open incidents attached with tighter deadlines, intake attaching
new reports (or giving them the service notice), ending, roles, and the emergency-batch job
on the manual clock (at 10:00 Montréal, the day pump crews work)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import shapely
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from statements import counting_statements

from fieldops.auth.models import Role
from fieldops.clock import ManualClock
from fieldops.db.engine import READ_ONLY
from fieldops.dispatch.service import TravelModel
from fieldops.dispatch.travel import load_travel_model
from fieldops.scheduler import Jobs

Report = Callable[..., httpx.Response]
Problem = Callable[[httpx.Response, int], dict[str, Any]]
Headers = dict[str, str]
Point = tuple[float, float]

LAYERS = Path(__file__).resolve().parents[2] / "layers"
STALE = timedelta(minutes=5)

# A box over the west bank of Pierrefonds-Roxboro, and points in and around it.
WEST_BANK = [(-73.875, 45.470), (-73.850, 45.470), (-73.850, 45.492), (-73.875, 45.492)]
INSIDE = (-73.857, 45.48)
INSIDE_2 = (-73.86, 45.485)
INSIDE_3 = (-73.87, 45.475)
OUTSIDE_SAME_DISTRICT = (-73.80, 45.50)  # Pierrefonds-Roxboro, east of the box
AHUNTSIC = (-73.6708, 45.5451)

# Windows of the demo policy (layers/escalation.toml): flooding is priority 2 ("urgent"),
# a pothole priority 4 ("routine").
URGENT_DISPATCH_S = 300
ROUTINE_RESOLVE_S = 172800


def polygon(ring: list[Point]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[list(p) for p in [*ring, ring[0]]]]}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def manager(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.MANAGER)


@pytest.fixture
def declare(app_client: TestClient, manager: Headers) -> Callable[..., httpx.Response]:
    """``declare(**fields)``: POST /api/v1/emergencies as a manager; a flood over the west
    bank box covering flooding unless told otherwise."""

    def post(*, headers: Headers | None = None, **fields: Any) -> httpx.Response:
        body: dict[str, Any] = {
            "name": "Crue printanière 2026",
            "hazard": "flood",
            "service_codes": ["flooding"],
        }
        if "district_ids" not in fields:
            body["area"] = polygon(WEST_BANK)
        body.update(fields)
        return app_client.post("/api/v1/emergencies", json=body, headers=headers or manager)

    return post


@pytest.fixture
def open_incident(report: Report) -> Callable[..., dict[str, Any]]:
    """``open_incident(service_code, (lon, lat))``: the intake result of a new incident."""

    def make(service_code: str, where: Point) -> dict[str, Any]:
        body: dict[str, Any] = ok(report(service_code, where), 201)
        assert body["merged"] is False
        return body

    return make


@pytest.fixture
def trace(app_client: TestClient, dispatcher: Headers) -> Callable[[int], dict[str, Any]]:
    """GET /api/v1/incidents/{id}/escalations."""

    def get(incident_id: int) -> dict[str, Any]:
        body: dict[str, Any] = ok(
            app_client.get(f"/api/v1/incidents/{incident_id}/escalations", headers=dispatcher)
        )
        return body

    return get


@pytest.fixture
def emergency_of(sessions: sessionmaker[Session]) -> Callable[[int], int | None]:
    """The incident's emergency_id, read from the database."""

    def read(incident_id: int) -> int | None:
        with sessions() as session:
            session.connection(execution_options=READ_ONLY)
            value = session.scalar(
                sa.text("SELECT emergency_id FROM incidents WHERE id = :id"), {"id": incident_id}
            )
            session.rollback()
        return None if value is None else int(value)

    return read


def events(client: TestClient, headers: Headers, incident_id: int) -> list[dict[str, Any]]:
    detail = ok(client.get(f"/api/v1/incidents/{incident_id}", headers=headers))
    found: list[dict[str, Any]] = detail["events"]
    return found


def dispatch_window_s(trace: dict[str, Any], opened_at: str) -> float:
    return (at(trace["dispatch_due_at"]) - at(opened_at)).total_seconds()


# --- declaring ---------------------------------------------------------------------------


def test_declare_by_polygon(
    app_client: TestClient, declare: Callable[..., httpx.Response], dispatcher: Headers
) -> None:
    body = ok(declare(service_codes=["sewer_backup", "flooding"], deadline_factor=0.4), 201)

    assert body["name"] == "Crue printanière 2026"
    assert body["hazard"] == "flood"
    assert body["active"] is True
    assert body["service_codes"] == ["flooding", "sewer_backup"]
    assert (body["deadline_factor"], body["batch_every_s"]) == (0.4, 60)
    assert body["declared_by"] == "manager:test-manager"
    assert at(body["declared_at"]) == at("2026-05-04T14:00:00Z")
    assert (body["ended_at"], body["ended_by"]) == (None, "")
    assert body["bbox"] == pytest.approx([-73.875, 45.470, -73.850, 45.492])
    assert body["area"]["type"] == "MultiPolygon"
    assert body["area"]["coordinates"][0][0][:4] == [list(p) for p in WEST_BANK]
    assert body["notice_en"].startswith("An emergency is under way")
    assert body["notice_fr"].startswith("Une situation d'urgence")
    assert (body["incident_count"], body["attached_incident_ids"]) == (0, [])

    # Staff read it back, list it and map it.
    one = ok(app_client.get(f"/api/v1/emergencies/{body['id']}", headers=dispatcher))
    assert one == {k: v for k, v in body.items() if k != "attached_incident_ids"}
    [listed] = ok(app_client.get("/api/v1/emergencies", headers=dispatcher))
    assert listed["id"] == body["id"] and "area" not in listed
    geojson = app_client.get("/api/v1/emergencies.geojson", headers=dispatcher)
    assert geojson.headers["content-type"] == "application/geo+json"
    [feature] = ok(geojson)["features"]
    assert feature["id"] == body["id"]
    assert feature["geometry"]["type"] == "MultiPolygon"
    assert feature["properties"]["notice_fr"] == body["notice_fr"]
    assert feature["properties"]["active"] is True


def test_declare_by_districts_covers_the_whole_district(
    app_client: TestClient,
    declare: Callable[..., httpx.Response],
    district_ids: dict[str, int],
    open_incident: Callable[..., dict[str, Any]],
    emergency_of: Callable[[int], int | None],
) -> None:
    body = ok(declare(district_ids=[district_ids["Pierrefonds-Roxboro"]]), 201)

    assert body["area"]["type"] == "MultiPolygon"
    min_lon, min_lat, max_lon, max_lat = body["bbox"]
    assert min_lon < -73.95 and max_lon > -73.76 and min_lat < 45.45 and max_lat > 45.51
    # Far from the west bank box, but in the district: attached.
    inside = open_incident("flooding", OUTSIDE_SAME_DISTRICT)["incident"]["id"]
    elsewhere = open_incident("flooding", AHUNTSIC)["incident"]["id"]
    assert (emergency_of(inside), emergency_of(elsewhere)) == (body["id"], None)


def test_a_self_intersecting_area_is_refused_with_shapelys_reason(
    declare: Callable[..., httpx.Response], problem: Problem, count_rows: Callable[[str], int]
) -> None:
    a, b, c, d = WEST_BANK
    body = problem(declare(area=polygon([a, c, b, d])), 422)  # a bow-tie

    [error] = body["errors"]
    assert error["field"] == "area"
    assert error["reason"].startswith("not a valid polygon: Self-intersection[")
    assert count_rows("emergencies") == 0


def test_an_area_outside_the_city_is_refused(
    declare: Callable[..., httpx.Response], problem: Problem
) -> None:
    laval = [(-73.75, 45.56), (-73.70, 45.56), (-73.70, 45.60), (-73.75, 45.60)]
    toronto = [(-79.40, 43.64), (-79.37, 43.64), (-79.37, 43.66), (-79.40, 43.66)]
    for ring in (toronto, laval):
        body = problem(declare(area=polygon(ring)), 422)
        assert body["errors"] == [
            {"field": "area", "reason": "lies outside the city: it overlaps none of its districts"}
        ]


def test_every_input_problem_is_named_at_once(
    declare: Callable[..., httpx.Response], problem: Problem, count_rows: Callable[[str], int]
) -> None:
    both: dict[str, Any] = {"area": polygon(WEST_BANK), "district_ids": [999999]}
    body = problem(declare(service_codes=["flooding", "lava"], **both), 422)

    assert {e["field"]: e["reason"] for e in body["errors"]} == {
        "area": "give the area or district_ids, not both",
        "service_codes": "no service 'lava'",
    }
    body = problem(declare(area=None, district_ids=[999999]), 422)
    assert body["errors"] == [{"field": "district_ids", "reason": "no district with id 999999"}]
    body = problem(declare(area=None), 422)
    assert body["errors"] == [
        {"field": "area", "reason": "give the area (GeoJSON) or district_ids"}
    ]
    refused: list[tuple[dict[str, Any], str]] = [
        ({"deadline_factor": 0}, "deadline_factor"),
        ({"deadline_factor": 1.5}, "deadline_factor"),
        ({"batch_every_s": -1}, "batch_every_s"),
        ({"service_codes": []}, "service_codes"),
        ({"area": "POLYGON((0 0, 1 0, 1 1, 0 0))"}, "area"),
        ({"area": {"type": "Point", "coordinates": [-73.857, 45.48]}}, "area"),
    ]
    for fields, name in refused:
        body = problem(declare(**fields), 422)
        assert [e["field"] for e in body["errors"]] == [name], fields
    assert count_rows("emergencies") == 0


def test_a_retried_declaration_with_its_idempotency_key_declares_once(
    declare: Callable[..., httpx.Response], manager: Headers, count_rows: Callable[[str], int]
) -> None:
    headers = {**manager, "Idempotency-Key": "flood-2026"}
    first = declare(headers=headers)
    again = declare(headers=headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count_rows("emergencies") == 1


# --- incidents under an emergency ---------------------------------------------------------


def test_declaring_attaches_open_covered_incidents_inside_and_tightens_their_deadlines(
    app_client: TestClient,
    dispatcher: Headers,
    declare: Callable[..., httpx.Response],
    open_incident: Callable[..., dict[str, Any]],
    trace: Callable[[int], dict[str, Any]],
    emergency_of: Callable[[int], int | None],
    clock: ManualClock,
) -> None:
    flood = open_incident("flooding", INSIDE)["incident"]
    flood_outside = open_incident("flooding", OUTSIDE_SAME_DISTRICT)["incident"]
    pothole = open_incident("pothole", INSIDE_2)["incident"]
    before = {i["id"]: trace(i["id"]) for i in (flood, flood_outside, pothole)}
    assert dispatch_window_s(before[flood["id"]], flood["opened_at"]) == URGENT_DISPATCH_S
    clock.advance(timedelta(seconds=60))

    body = ok(declare(deadline_factor=0.5), 201)

    assert body["attached_incident_ids"] == [flood["id"]]
    assert body["incident_count"] == 1
    assert emergency_of(flood["id"]) == body["id"]
    after = trace(flood["id"])
    # Factor 0.5 halves every window, counted from the first report as before.
    assert dispatch_window_s(after, flood["opened_at"]) == URGENT_DISPATCH_S / 2
    assert (
        at(after["resolve_due_at"]) - at(flood["opened_at"])
        == (at(before[flood["id"]]["resolve_due_at"]) - at(flood["opened_at"])) / 2
    )
    [dispatch_step] = [s for s in after["steps"] if s["deadline"] == "dispatch"]
    assert at(dispatch_step["deadline_at"]) == at(after["dispatch_due_at"])
    [attached] = [
        e for e in events(app_client, dispatcher, flood["id"]) if e["kind"] == "emergency_attached"
    ]
    assert attached["actor"] == "manager:test-manager"
    assert attached["data"] == {
        "emergency_id": body["id"],
        "name": "Crue printanière 2026",
        "deadline_factor": 0.5,
    }
    # Outside the area, or not a covered service: untouched.
    for other in (flood_outside, pothole):
        assert emergency_of(other["id"]) is None
        assert trace(other["id"]) == before[other["id"]]


def test_intake_attaches_new_covered_reports_inside_only(
    declare: Callable[..., httpx.Response],
    open_incident: Callable[..., dict[str, Any]],
    trace: Callable[[int], dict[str, Any]],
    emergency_of: Callable[[int], int | None],
    app_client: TestClient,
    dispatcher: Headers,
) -> None:
    emergency = ok(declare(deadline_factor=0.5), 201)

    inside = open_incident("flooding", INSIDE)["incident"]
    outside = open_incident("flooding", OUTSIDE_SAME_DISTRICT)["incident"]

    assert emergency_of(inside["id"]) == emergency["id"]
    assert dispatch_window_s(trace(inside["id"]), inside["opened_at"]) == URGENT_DISPATCH_S / 2
    # Newest first.
    assert [e["kind"] for e in events(app_client, dispatcher, inside["id"])] == [
        "emergency_attached",
        "opened",
    ]
    assert emergency_of(outside["id"]) is None
    assert dispatch_window_s(trace(outside["id"]), outside["opened_at"]) == URGENT_DISPATCH_S


def test_an_uncovered_report_inside_gets_the_service_notice(
    app_client: TestClient,
    dispatcher: Headers,
    declare: Callable[..., httpx.Response],
    open_incident: Callable[..., dict[str, Any]],
    emergency_of: Callable[[int], int | None],
) -> None:
    emergency = ok(
        declare(notice_en="Flooding in the area: expect delays.", notice_fr="Inondation : délais."),
        201,
    )

    pothole = open_incident("pothole", INSIDE)
    far_pothole = open_incident("pothole", AHUNTSIC)

    public = ok(app_client.get(f"/open311/v2/requests/{pothole['report_id']}.json"))
    assert public[0]["service_notice"] == "Flooding in the area: expect delays."
    far = ok(app_client.get(f"/open311/v2/requests/{far_pothole['report_id']}.json"))
    assert far[0]["service_notice"] is None
    # Not part of the emergency (its deadlines do not tighten), but the notice is on record.
    assert emergency_of(pothole["incident"]["id"]) is None
    [notice] = [
        e
        for e in events(app_client, dispatcher, pothole["incident"]["id"])
        if e["kind"] == "emergency_notice"
    ]
    assert notice["data"] == {"emergency_id": emergency["id"], "name": "Crue printanière 2026"}


def test_an_uncovered_report_inside_is_expected_later_by_one_over_the_factor(
    app_client: TestClient,
    declare: Callable[..., httpx.Response],
    open_incident: Callable[..., dict[str, Any]],
    trace: Callable[[int], dict[str, Any]],
) -> None:
    ok(declare(deadline_factor=0.5), 201)

    pothole = open_incident("pothole", INSIDE)

    resolve_due = at(trace(pothole["incident"]["id"])["resolve_due_at"])
    assert (resolve_due - at(pothole["incident"]["opened_at"])).total_seconds() == (
        ROUTINE_RESOLVE_S * 2
    )
    public = ok(app_client.get(f"/open311/v2/requests/{pothole['report_id']}.json"))
    assert at(public[0]["expected_datetime"]) == resolve_due


def test_ending_restores_normal_deadlines_for_new_incidents_and_keeps_the_record(
    app_client: TestClient,
    dispatcher: Headers,
    manager: Headers,
    declare: Callable[..., httpx.Response],
    open_incident: Callable[..., dict[str, Any]],
    trace: Callable[[int], dict[str, Any]],
    emergency_of: Callable[[int], int | None],
    problem: Problem,
    clock: ManualClock,
) -> None:
    emergency = ok(declare(), 201)
    during = open_incident("flooding", INSIDE)["incident"]
    clock.advance(timedelta(hours=2))

    ended = ok(app_client.post(f"/api/v1/emergencies/{emergency['id']}/end", headers=manager))

    assert ended["active"] is False
    assert at(ended["ended_at"]) == clock.now()
    assert ended["ended_by"] == "manager:test-manager"
    assert ended["incident_count"] == 1
    body = problem(
        app_client.post(f"/api/v1/emergencies/{emergency['id']}/end", headers=manager), 409
    )
    assert "already ended" in body["detail"]

    after = open_incident("flooding", INSIDE_2)["incident"]
    assert emergency_of(after["id"]) is None
    assert dispatch_window_s(trace(after["id"]), after["opened_at"]) == URGENT_DISPATCH_S
    notice_free = open_incident("pothole", INSIDE_3)
    public = ok(app_client.get(f"/open311/v2/requests/{notice_free['report_id']}.json"))
    assert public[0]["service_notice"] is None
    # The record stays: the incident opened during the emergency still belongs to it.
    assert emergency_of(during["id"]) == emergency["id"]
    assert ok(app_client.get("/api/v1/emergencies?active=true", headers=dispatcher)) == []
    [listed] = ok(app_client.get("/api/v1/emergencies?active=false", headers=dispatcher))
    assert (listed["id"], listed["incident_count"]) == (emergency["id"], 1)


def test_ending_an_unknown_emergency_is_404(
    app_client: TestClient, manager: Headers, problem: Problem
) -> None:
    problem(app_client.post("/api/v1/emergencies/999999/end", headers=manager), 404)
    problem(app_client.get("/api/v1/emergencies/999999", headers=manager), 404)


# --- who may do what ----------------------------------------------------------------------


def test_only_managers_and_admins_declare_and_end(
    app_client: TestClient,
    auth: Callable[..., Headers],
    declare: Callable[..., httpx.Response],
    problem: Problem,
) -> None:
    for role in (Role.DISPATCHER, Role.CREW, Role.PUBLIC):
        problem(declare(headers=auth(role)), 403)
    problem(app_client.post("/api/v1/emergencies", json={}), 401)
    problem(declare(headers={"Authorization": "Bearer not-a-key"}), 401)

    declared = ok(declare(headers=auth(Role.ADMIN)), 201)
    end = f"/api/v1/emergencies/{declared['id']}/end"
    problem(app_client.post(end, headers=auth(Role.DISPATCHER)), 403)
    ok(app_client.post(end, headers=auth(Role.MANAGER)))


def test_staff_read_emergencies_and_the_public_does_not(
    app_client: TestClient, auth: Callable[..., Headers], problem: Problem
) -> None:
    for role in (Role.DISPATCHER, Role.MANAGER, Role.ADMIN):
        ok(app_client.get("/api/v1/emergencies", headers=auth(role)))
        ok(app_client.get("/api/v1/emergencies.geojson", headers=auth(role)))
    for path in ("/api/v1/emergencies", "/api/v1/emergencies.geojson"):
        problem(app_client.get(path, headers=auth(Role.PUBLIC)), 403)
        problem(app_client.get(path, headers=auth(Role.CREW)), 403)
        problem(app_client.get(path), 401)


# --- the emergency-batch job ----------------------------------------------------------------


@pytest.fixture(scope="module")
def travel() -> TravelModel:
    return load_travel_model(LAYERS, metric_crs="EPSG:32188")


@pytest.fixture
def jobs(
    sessions: sessionmaker[Session], clock: ManualClock, travel: TravelModel
) -> Iterator[Jobs]:
    yield Jobs(sessions=sessions, clock=clock, travel=lambda: travel, stale_after=STALE)


def run_batch(jobs: Jobs) -> Any:
    job, every_s = jobs.schedule()["emergency-batch"]
    assert every_s == 1.0
    return job()


def test_the_batch_job_assigns_unassigned_incidents_in_the_area_only(
    app_client: TestClient,
    dispatcher: Headers,
    declare: Callable[..., httpx.Response],
    open_incident: Callable[..., dict[str, Any]],
    jobs: Jobs,
    clock: ManualClock,
) -> None:
    emergency = ok(declare(batch_every_s=60), 201)
    inside = [open_incident("flooding", p)["incident"]["id"] for p in (INSIDE, INSIDE_3)]
    outside = open_incident("flooding", OUTSIDE_SAME_DISTRICT)["incident"]["id"]

    [done] = run_batch(jobs)

    assert done.emergency_id == emergency["id"]
    assert sorted(done.assigned) == sorted(inside)
    for incident_id in inside:
        detail = ok(app_client.get(f"/api/v1/incidents/{incident_id}", headers=dispatcher))
        assert detail["status"] == "assigned"
        [assigned] = [e for e in detail["events"] if e["kind"] == "assigned"]
        assert assigned["actor"] == f"scheduler:emergency-{emergency['id']}"
    outside_detail = ok(app_client.get(f"/api/v1/incidents/{outside}", headers=dispatcher))
    assert outside_detail["status"] == "open"

    # Not due again before batch_every_s; then it runs (nothing left to assign).
    later = open_incident("flooding", INSIDE_2)["incident"]["id"]
    clock.advance(timedelta(seconds=59))
    assert run_batch(jobs) == []
    clock.advance(timedelta(seconds=1))
    [done] = run_batch(jobs)
    assert done.assigned == [later]


def test_the_batch_job_never_sweeps_in_an_incident_in_the_box_but_outside_the_area(
    app_client: TestClient,
    dispatcher: Headers,
    declare: Callable[..., httpx.Response],
    open_incident: Callable[..., dict[str, Any]],
    jobs: Jobs,
) -> None:
    # An L: the north-east notch is inside the bounding box but not in the area.
    ell = [
        (-73.875, 45.470),
        (-73.850, 45.470),
        (-73.850, 45.480),
        (-73.862, 45.480),
        (-73.862, 45.492),
        (-73.875, 45.492),
    ]
    ok(declare(area=polygon(ell)), 201)
    # One in each arm: the box around the two holds the notch.
    arms = [(-73.853, 45.475), (-73.868, 45.488)]
    inside = [open_incident("flooding", p)["incident"]["id"] for p in arms]
    notch = open_incident("flooding", (-73.855, 45.486))["incident"]["id"]

    [done] = run_batch(jobs)

    assert sorted(done.assigned) == sorted(inside)
    detail = ok(app_client.get(f"/api/v1/incidents/{notch}", headers=dispatcher))
    assert detail["status"] == "open"


def test_the_batch_job_skips_emergencies_with_batching_off_or_ended(
    app_client: TestClient,
    manager: Headers,
    dispatcher: Headers,
    declare: Callable[..., httpx.Response],
    open_incident: Callable[..., dict[str, Any]],
    jobs: Jobs,
) -> None:
    ok(declare(batch_every_s=0), 201)
    ended = ok(declare(name="Earlier flood"), 201)
    ok(app_client.post(f"/api/v1/emergencies/{ended['id']}/end", headers=manager))
    flood = open_incident("flooding", INSIDE)["incident"]["id"]

    assert run_batch(jobs) == []
    detail = ok(app_client.get(f"/api/v1/incidents/{flood}", headers=dispatcher))
    assert detail["status"] == "open"


def test_an_area_is_read_from_the_database_once_per_process(
    engine: sa.Engine,
    sessions: sessionmaker[Session],
    declare: Callable[..., httpx.Response],
) -> None:
    """Intake tests every report against the active areas: the polygon is read and parsed
    the first time only, and what is kept is the declared area."""
    from fieldops.emergencies.models import Emergency
    from fieldops.emergencies.repo import area_shape

    emergency_id = ok(declare(), 201)["id"]
    with sessions() as session:
        first = session.get(Emergency, emergency_id)
        assert first is not None and len(first.area_digest) == 64
        shape = area_shape(first)  # read now, or parsed already when the reply showed it
    assert shape.equals(shapely.MultiPolygon([shapely.Polygon(WEST_BANK)]))
    with sessions() as session:
        again = session.get(Emergency, emergency_id)
        assert again is not None
        with counting_statements(engine) as read:
            assert area_shape(again) is shape
        assert read[0] == 0
