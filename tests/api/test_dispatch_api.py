"""The dispatcher's side of dispatch through the real app, on SpatiaLite and PostGIS:
recommendations with ETAs and reasons, assigning and reassigning, batch dispatch and
shift plans, with the demo crews of layers/crews.toml (at 10:00 Montréal, day crews work)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyproj
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fieldops.auth.models import Role
from fieldops.clock import ManualClock
from fieldops.db.engine import READ_ONLY
from fieldops.dispatch.batch import PRIORITY_WEIGHT, TYPICAL_JOB_S
from fieldops.dispatch.models import Assignment
from fieldops.geo.routing import StreetGraph

Report = Callable[..., httpx.Response]
Problem = Callable[[httpx.Response, int], dict[str, Any]]
Headers = dict[str, str]

LAYERS = Path(__file__).resolve().parents[2] / "layers"
ACTOR = "dispatcher:test-dispatcher"
NOW_ISO = "2026-05-04T14:00:00Z"

# Points inside one district each.
PIERREFONDS = (-73.857, 45.48)
PLATEAU = (-73.58, 45.523)
PLATEAU_NORTH_EAST = (-73.572, 45.532)
PLATEAU_WEST = (-73.5905, 45.5195)
OUTREMONT = (-73.608, 45.518)
VILLE_MARIE = (-73.55, 45.50)

# The skills each service asks for (layers/city.toml).
SKILLS = {
    "flooding": {"flood_pump"},
    "fallen_tree": {"tree_care"},
    "rats": {"wildlife_control"},
    "pothole": {"roads"},
    "traffic_signal_out": {"traffic_signals"},
}

TO_METRIC = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32188", always_xy=True)


def straight_line_s(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The straight-line model independently: metres in MTM 8 x 1.35 at 30 km/h."""
    (ax, bx), (ay, by) = TO_METRIC.transform([a[0], b[0]], [a[1], b[1]])
    return float(np.hypot(ax - bx, ay - by)) * 1.35 / (30 / 3.6)


@pytest.fixture(scope="module")
def streets() -> StreetGraph:
    return StreetGraph.from_graphml(
        [LAYERS / "streets_plateau_mont_royal.graphml", LAYERS / "streets_outremont.graphml"]
    )


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def crews(app_client: TestClient, dispatcher: Headers) -> dict[str, dict[str, Any]]:
    """The roster as dispatchers see it: crew name -> crew."""
    return {c["name"]: c for c in ok(app_client.get("/api/v1/crews", headers=dispatcher))}


@pytest.fixture
def crew_id(crews: dict[str, dict[str, Any]]) -> Callable[[str], int]:
    def find(name: str) -> int:
        return int(crews[name]["id"])

    return find


@pytest.fixture
def open_incident(report: Report) -> Callable[..., int]:
    """``open_incident(service_code, (lon, lat), **fields)``: a new incident's id."""

    def make(service_code: str, where: tuple[float, float], **fields: Any) -> int:
        body = ok(report(service_code, where, **fields), 201)
        assert body["merged"] is False
        return int(body["incident"]["id"])

    return make


@pytest.fixture
def crew_key(app_client: TestClient, auth: Callable[..., Headers]) -> Callable[[int], Headers]:
    """``crew_key(crew_id)``: the header of a new crew key, made by an admin over the API."""
    admin = auth(Role.ADMIN, "admin")

    def make(crew: int) -> Headers:
        body = ok(
            app_client.post(
                "/api/v1/keys",
                json={"name": f"phone of crew {crew}", "role": "crew", "crew_id": crew},
                headers=admin,
            ),
            201,
        )
        assert (body["role"], body["crew_id"]) == ("crew", crew)
        return {"Authorization": f"Bearer {body['secret']}"}

    return make


@pytest.fixture
def assignment_rows(sessions: sessionmaker[Session]) -> Callable[[int], list[Assignment]]:
    """``assignment_rows(incident_id)``: the incident's assignments, oldest first, read in a
    fresh read-only session."""

    def read(incident_id: int) -> list[Assignment]:
        with sessions() as session:
            session.connection(execution_options=READ_ONLY)
            rows = list(
                session.scalars(
                    sa.select(Assignment)
                    .where(Assignment.incident_id == incident_id)
                    .order_by(Assignment.id)
                )
            )
            session.expunge_all()
            session.rollback()
        return rows

    return read


def detail(client: TestClient, headers: Headers, incident_id: int) -> dict[str, Any]:
    body: dict[str, Any] = ok(client.get(f"/api/v1/incidents/{incident_id}", headers=headers))
    return body


def event_kinds(body: dict[str, Any]) -> list[str]:
    """The incident's event kinds, oldest first."""
    return [e["kind"] for e in reversed(body["events"])]


def recommend(client: TestClient, headers: Headers, incident_id: int, **params: Any) -> Any:
    return ok(
        client.get(
            f"/api/v1/incidents/{incident_id}/recommendations", params=params, headers=headers
        )
    )


def assign(client: TestClient, headers: Headers, incident_id: int, crew: int) -> httpx.Response:
    return client.post(
        f"/api/v1/incidents/{incident_id}/assign", json={"crew_id": crew}, headers=headers
    )


# --- recommendations -----------------------------------------------------------------------


def test_a_flood_in_pierrefonds_gets_the_pump_crews_on_shift_best_first(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crews: dict[str, dict[str, Any]],
    district_ids: dict[str, int],
) -> None:
    incident_id = open_incident("flooding", PIERREFONDS)
    assert (
        detail(app_client, dispatcher, incident_id)["district"]["id"]
        == (district_ids["Pierrefonds-Roxboro"])
    )

    body = recommend(app_client, dispatcher, incident_id)

    assert body["incident_id"] == incident_id
    items = body["items"]
    # The night pump crews (Pierrefonds 2, Rivière-des-Prairies) are off shift at 10:00.
    assert [i["name"] for i in items] == [
        "Pompage Pierrefonds 1",
        "Pompage Île-Bizard",
        "Pompage Ahuntsic",
        "Égouts Ville-Marie",
    ]
    for item in items:
        crew = crews[item["name"]]
        assert item["crew_id"] == crew["id"]
        assert "flood_pump" in crew["skills"]
        # No street graph out west or downtown: straight lines from each depot.
        assert item["travel_model"] == "straight_line"
        assert item["eta_s"] == pytest.approx(
            straight_line_s((crew["lon"], crew["lat"]), PIERREFONDS), abs=0.06
        )
        assert item["position_stale"] is True
        assert item["reason"].startswith(f"ETA {item['eta_s'] / 60:.0f} min by straight line; ")
        assert item["reason"].endswith("; position stale")
    scores = [i["score_s"] for i in items]
    assert scores == sorted(scores)
    pierrefonds, bizard, ahuntsic, ville_marie = items
    assert pierrefonds["reason"] == (
        "ETA 0 min by straight line; 0/2 jobs; 9.0 h left on shift; home district; position stale"
    )
    assert pierrefonds["score_s"] == pierrefonds["eta_s"]
    # Île-Bizard's only crew would leave its borough uncovered: 600 + 1200 s.
    assert "outside its district; last free crew of its district" in bizard["reason"]
    assert bizard["score_s"] == pytest.approx(bizard["eta_s"] + 1800, abs=0.11)
    for other in (ahuntsic, ville_marie):
        assert "outside its district" in other["reason"]
        assert "last free crew" not in other["reason"]
        assert other["score_s"] == pytest.approx(other["eta_s"] + 600, abs=0.11)


def test_the_limit_cuts_the_list(
    app_client: TestClient, dispatcher: Headers, open_incident: Callable[..., int]
) -> None:
    incident_id = open_incident("flooding", PIERREFONDS)

    items = recommend(app_client, dispatcher, incident_id, limit=2)["items"]

    assert [i["name"] for i in items] == ["Pompage Pierrefonds 1", "Pompage Île-Bizard"]


def test_a_crew_positioned_in_the_plateau_is_timed_by_road(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    streets: StreetGraph,
) -> None:
    arbo = crew_id("Arboriculture Plateau")
    fix = {"lon": PLATEAU_NORTH_EAST[0], "lat": PLATEAU_NORTH_EAST[1], "fix_at": NOW_ISO}
    posted = app_client.post(
        f"/api/v1/crews/{arbo}/positions", json={"fixes": [fix]}, headers=crew_key(arbo)
    )
    assert ok(posted) == {"stored": 1, "repeated": 0, "moved": True}
    incident_id = open_incident("fallen_tree", PLATEAU)

    items = recommend(app_client, dispatcher, incident_id)["items"]

    assert [i["name"] for i in items] == ["Arboriculture Plateau", "Arboriculture NDG"]
    plateau, ndg = items
    expected = float(streets.travel_to(*PLATEAU, [fix["lon"]], [fix["lat"]]).seconds[0])
    assert plateau["travel_model"] == "road"
    assert plateau["eta_s"] == pytest.approx(expected, abs=0.06)
    assert 60 < plateau["eta_s"] < 15 * 60
    assert plateau["position_stale"] is False
    assert plateau["reason"].startswith(f"ETA {plateau['eta_s'] / 60:.0f} min by road; 0/1 jobs")
    assert "position stale" not in plateau["reason"]
    assert ndg["travel_model"] == "straight_line"
    assert ndg["position_stale"] is True


def test_recommendations_of_an_unknown_incident_are_404(
    app_client: TestClient, dispatcher: Headers, problem: Problem
) -> None:
    response = app_client.get("/api/v1/incidents/999999/recommendations", headers=dispatcher)

    assert "no incident with id 999999" in problem(response, 404)["detail"]


def test_a_busy_crew_drops_out_of_the_recommendations(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
) -> None:
    first = open_incident("fallen_tree", PLATEAU)
    second = open_incident("fallen_tree", PLATEAU_WEST)
    ok(assign(app_client, dispatcher, first, crew_id("Arboriculture Plateau")), 201)

    items = recommend(app_client, dispatcher, second)["items"]

    assert [i["name"] for i in items] == ["Arboriculture NDG"]


# --- assigning -----------------------------------------------------------------------------


def test_assign_sends_the_crew_and_logs_it(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
    assignment_rows: Callable[[int], list[Assignment]],
) -> None:
    incident_id = open_incident("flooding", PIERREFONDS)
    pump = crew_id("Pompage Pierrefonds 1")

    body = ok(assign(app_client, dispatcher, incident_id, pump), 201)

    expected_eta = round(straight_line_s((-73.857, 45.4798), PIERREFONDS), 1)
    assert {k: v for k, v in body.items() if k != "id"} == {
        "incident_id": incident_id,
        "crew_id": pump,
        "status": "pending",
        "version": 1,
        "assigned_at": NOW_ISO,
        "assigned_by": ACTOR,
        "eta_s": expected_eta,
        "travel_model": "straight_line",
        "accepted_at": None,
        "arrived_at": None,
        "finished_at": None,
        "note": "",
    }
    incident = detail(app_client, dispatcher, incident_id)
    assert incident["status"] == "assigned"
    assert event_kinds(incident) == ["opened", "assigned", "status_changed"]
    assigned = next(e for e in incident["events"] if e["kind"] == "assigned")
    assert assigned["actor"] == ACTOR
    assert assigned["data"] == {
        "assignment_id": body["id"],
        "crew_id": pump,
        "crew_name": "Pompage Pierrefonds 1",
        "eta_s": expected_eta,
        "travel_model": "straight_line",
    }
    [row] = assignment_rows(incident_id)
    assert (row.id, row.status, row.is_active) == (body["id"], "pending", True)
    roster = {c["id"]: c for c in ok(app_client.get("/api/v1/crews", headers=dispatcher))}
    assert (roster[pump]["status"], roster[pump]["active_jobs"]) == ("assigned", 1)


def test_assigning_the_same_crew_again_changes_nothing(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
    assignment_rows: Callable[[int], list[Assignment]],
) -> None:
    incident_id = open_incident("flooding", PIERREFONDS)
    pump = crew_id("Pompage Pierrefonds 1")
    first = ok(assign(app_client, dispatcher, incident_id, pump), 201)

    again = ok(assign(app_client, dispatcher, incident_id, pump), 201)

    assert again == first
    assert len(assignment_rows(incident_id)) == 1
    assert event_kinds(detail(app_client, dispatcher, incident_id)).count("assigned") == 1


@pytest.mark.parametrize(
    ("service_code", "where", "crew", "why"),
    [
        ("flooding", PIERREFONDS, "Arboriculture NDG", "lacks flood_pump"),
        ("flooding", PIERREFONDS, "Pompage Pierrefonds 2", "not on shift"),  # night crew
        ("traffic_signal_out", VILLE_MARIE, "Égouts Ville-Marie", "lacks traffic_signals"),
    ],
)
def test_assigning_a_crew_that_cannot_take_the_job_is_a_conflict(
    app_client: TestClient,
    dispatcher: Headers,
    problem: Problem,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
    assignment_rows: Callable[[int], list[Assignment]],
    service_code: str,
    where: tuple[float, float],
    crew: str,
    why: str,
) -> None:
    incident_id = open_incident(service_code, where)

    body = problem(assign(app_client, dispatcher, incident_id, crew_id(crew)), 409)

    assert body["detail"] == f"crew {crew} cannot take incident {incident_id}: {why}"
    assert detail(app_client, dispatcher, incident_id)["status"] == "open"
    assert assignment_rows(incident_id) == []


def test_assigning_a_crew_at_capacity_is_a_conflict(
    app_client: TestClient,
    dispatcher: Headers,
    problem: Problem,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
) -> None:
    arbo = crew_id("Arboriculture Plateau")  # capacity 1
    ok(assign(app_client, dispatcher, open_incident("fallen_tree", PLATEAU), arbo), 201)
    second = open_incident("fallen_tree", PLATEAU_WEST)

    body = problem(assign(app_client, dispatcher, second, arbo), 409)

    assert body["detail"].endswith(": at capacity")


def test_assign_to_an_unknown_crew_or_incident(
    app_client: TestClient,
    dispatcher: Headers,
    problem: Problem,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
) -> None:
    incident_id = open_incident("flooding", PIERREFONDS)

    unknown_crew = problem(assign(app_client, dispatcher, incident_id, 999999), 422)
    unknown_incident = problem(
        assign(app_client, dispatcher, 999999, crew_id("Pompage Pierrefonds 1")), 404
    )

    assert unknown_crew["errors"] == [{"field": "crew_id", "reason": "no crew with id 999999"}]
    assert "no incident with id 999999" in unknown_incident["detail"]


def test_reassigning_relieves_the_first_crew(
    app_client: TestClient,
    dispatcher: Headers,
    clock: ManualClock,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
    assignment_rows: Callable[[int], list[Assignment]],
) -> None:
    incident_id = open_incident("flooding", PIERREFONDS)
    first_crew, second_crew = crew_id("Pompage Pierrefonds 1"), crew_id("Pompage Île-Bizard")
    first = ok(assign(app_client, dispatcher, incident_id, first_crew), 201)
    clock.advance(timedelta(minutes=5))

    second = ok(assign(app_client, dispatcher, incident_id, second_crew), 201)

    assert (second["crew_id"], second["status"], second["version"]) == (second_crew, "pending", 1)
    assert second["assigned_at"] == "2026-05-04T14:05:00Z"
    old, new = assignment_rows(incident_id)
    assert (old.id, old.crew_id, old.status, old.is_active, old.version) == (
        first["id"],
        first_crew,
        "reassigned",
        False,
        2,
    )
    assert old.finished_at == datetime.fromisoformat("2026-05-04T14:05:00+00:00")
    assert (new.id, new.status, new.is_active) == (second["id"], "pending", True)
    incident = detail(app_client, dispatcher, incident_id)
    assert incident["status"] == "assigned"
    assert event_kinds(incident) == [
        "opened",
        "assigned",
        "status_changed",
        "reassigned",
        "assigned",
    ]
    reassigned = next(e for e in incident["events"] if e["kind"] == "reassigned")
    assert reassigned["data"] == {"from_crew_id": first_crew, "to_crew_id": second_crew}
    roster = {c["id"]: c for c in ok(app_client.get("/api/v1/crews", headers=dispatcher))}
    assert (roster[first_crew]["status"], roster[first_crew]["active_jobs"]) == ("available", 0)
    assert (roster[second_crew]["status"], roster[second_crew]["active_jobs"]) == ("assigned", 1)


@pytest.mark.parametrize("status", ["cancelled", "resolved"])
def test_closing_an_incident_withdraws_its_crew(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
    assignment_rows: Callable[[int], list[Assignment]],
    status: str,
) -> None:
    incident_id = open_incident("fallen_tree", PLATEAU)
    arbo = crew_id("Arboriculture Plateau")
    sent = ok(assign(app_client, dispatcher, incident_id, arbo), 201)

    ok(
        app_client.patch(
            f"/api/v1/incidents/{incident_id}",
            json={"status": status, "note": "duplicate of a 911 call"},
            headers=dispatcher,
        )
    )

    [row] = assignment_rows(incident_id)
    assert (row.status, row.is_active, row.version) == ("cancelled", False, 2)
    incident = detail(app_client, dispatcher, incident_id)
    withdrawn = next(e for e in incident["events"] if e["kind"] == "crew_withdrawn")
    assert withdrawn["data"] == {"assignment_id": sent["id"], "crew_id": arbo, "why": status}
    roster = {c["id"]: c for c in ok(app_client.get("/api/v1/crews", headers=dispatcher))}
    assert (roster[arbo]["status"], roster[arbo]["active_jobs"]) == ("available", 0)


def test_reopening_an_assigned_incident_and_assigning_again_makes_it_assigned(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
) -> None:
    incident_id = open_incident("fallen_tree", PLATEAU)
    arbo = crew_id("Arboriculture Plateau")
    ok(assign(app_client, dispatcher, incident_id, arbo), 201)
    ok(
        app_client.patch(
            f"/api/v1/incidents/{incident_id}", json={"status": "open"}, headers=dispatcher
        )
    )

    ok(assign(app_client, dispatcher, incident_id, arbo), 201)

    assert detail(app_client, dispatcher, incident_id)["status"] == "assigned"


# --- batch dispatch ------------------------------------------------------------------------


def test_batch_assigns_every_incident_to_a_crew_with_the_skills(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crews: dict[str, dict[str, Any]],
    assignment_rows: Callable[[int], list[Assignment]],
) -> None:
    made = {
        open_incident("flooding", PIERREFONDS): "flooding",
        open_incident("fallen_tree", PLATEAU): "fallen_tree",
        open_incident("rats", PLATEAU_NORTH_EAST): "rats",
        open_incident("rats", PLATEAU_WEST): "rats",
        open_incident("pothole", OUTREMONT): "pothole",
        open_incident("traffic_signal_out", VILLE_MARIE): "traffic_signal_out",
    }
    priority = {i: detail(app_client, dispatcher, i)["priority"] for i in made}
    skills_of = {c["id"]: set(c["skills"]) for c in crews.values()}

    body = ok(app_client.post("/api/v1/dispatch/batch", json={}, headers=dispatcher))

    assert body["unassigned"] == []
    assert sorted(a["incident_id"] for a in body["assignments"]) == sorted(made)
    for item in body["assignments"]:
        assert SKILLS[made[item["incident_id"]]] <= skills_of[item["crew_id"]]
        [row] = assignment_rows(item["incident_id"])
        assert (row.id, row.crew_id, row.status, row.is_active, row.assigned_by) == (
            item["assignment_id"],
            item["crew_id"],
            "pending",
            True,
            ACTOR,
        )
        assert row.eta_s == item["eta_s"]
        assert detail(app_client, dispatcher, item["incident_id"])["status"] == "assigned"
    # No crew holds more than its capacity; slots of one crew are distinct.
    slots = [(a["crew_id"], a["slot"]) for a in body["assignments"]]
    assert len(set(slots)) == len(slots)
    capacity = {c["id"]: c["capacity"] for c in crews.values()}
    assert all(0 <= slot < capacity[c] for c, slot in slots)
    # The answer's figures are the weighted sum of its assignments.
    weighted = sum(
        PRIORITY_WEIGHT[priority[a["incident_id"]]] * (a["eta_s"] + TYPICAL_JOB_S * a["slot"])
        for a in body["assignments"]
    )
    assert body["weighted_response_s"] == pytest.approx(weighted, abs=1.0)
    assert body["objective"] == body["weighted_response_s"]
    assert body["weighted_response_s"] <= body["greedy_weighted_response_s"]
    assert body["objective"] <= body["greedy_objective"]


def test_batch_leaves_alone_what_is_already_assigned_and_what_no_crew_can_do(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
    assignment_rows: Callable[[int], list[Assignment]],
) -> None:
    taken = open_incident("flooding", PIERREFONDS)
    ok(assign(app_client, dispatcher, taken, crew_id("Pompage Pierrefonds 1")), 201)
    tree = open_incident("fallen_tree", PLATEAU)

    body = ok(app_client.post("/api/v1/dispatch/batch", json={}, headers=dispatcher))

    assert [a["incident_id"] for a in body["assignments"]] == [tree]
    assert body["unassigned"] == []
    [row] = assignment_rows(taken)
    assert row.crew_id == crew_id("Pompage Pierrefonds 1")


def test_batch_with_a_district_filter_assigns_only_there(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    district_ids: dict[str, int],
) -> None:
    plateau_tree = open_incident("fallen_tree", PLATEAU)
    plateau_rats = open_incident("rats", PLATEAU_NORTH_EAST)
    outremont = open_incident("pothole", OUTREMONT)
    pierrefonds = open_incident("flooding", PIERREFONDS)

    body = ok(
        app_client.post(
            "/api/v1/dispatch/batch",
            json={"district_ids": [district_ids["Le Plateau-Mont-Royal"]]},
            headers=dispatcher,
        )
    )

    assert sorted(a["incident_id"] for a in body["assignments"]) == sorted(
        [plateau_tree, plateau_rats]
    )
    status = {i: detail(app_client, dispatcher, i)["status"] for i in (outremont, pierrefonds)}
    assert status == {outremont: "open", pierrefonds: "open"}

    # A second round over two districts takes the rest there, and only them.
    body = ok(
        app_client.post(
            "/api/v1/dispatch/batch",
            json={"district_ids": [district_ids["Outremont"], district_ids["Verdun"]]},
            headers=dispatcher,
        )
    )

    assert [a["incident_id"] for a in body["assignments"]] == [outremont]
    assert detail(app_client, dispatcher, pierrefonds)["status"] == "open"


def test_batch_with_a_bbox_assigns_only_inside(
    app_client: TestClient, dispatcher: Headers, open_incident: Callable[..., int]
) -> None:
    inside = open_incident("fallen_tree", PLATEAU)
    outside = open_incident("pothole", OUTREMONT)

    body = ok(
        app_client.post(
            "/api/v1/dispatch/batch",
            json={"bbox": [-73.59, 45.52, -73.57, 45.53]},
            headers=dispatcher,
        )
    )

    assert [a["incident_id"] for a in body["assignments"]] == [inside]
    assert detail(app_client, dispatcher, outside)["status"] == "open"


def test_batch_with_nothing_to_do(app_client: TestClient, dispatcher: Headers) -> None:
    body = ok(app_client.post("/api/v1/dispatch/batch", json={}, headers=dispatcher))

    assert body == {
        "assignments": [],
        "unassigned": [],
        "weighted_response_s": 0.0,
        "greedy_weighted_response_s": 0.0,
        "objective": 0.0,
        "greedy_objective": 0.0,
    }


def test_batch_rejects_unknown_fields(
    app_client: TestClient, dispatcher: Headers, problem: Problem
) -> None:
    response = app_client.post("/api/v1/dispatch/batch", json={"area": "x"}, headers=dispatcher)

    problem(response, 422)


# --- shift plans ---------------------------------------------------------------------------


def test_a_shift_plan_orders_the_crews_queued_jobs(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
    crews: dict[str, dict[str, Any]],
    streets: StreetGraph,
) -> None:
    faune = crew_id("Faune Plateau")  # capacity 2, at its Plateau depot
    jobs = {
        open_incident("rats", PLATEAU_NORTH_EAST): PLATEAU_NORTH_EAST,
        open_incident("rats", PLATEAU_WEST): PLATEAU_WEST,
    }
    assigned = {
        ok(assign(app_client, dispatcher, incident_id, faune), 201)["id"]: incident_id
        for incident_id in jobs
    }

    plan = ok(app_client.post(f"/api/v1/crews/{faune}/plan", headers=dispatcher))

    assert plan["crew_id"] == faune
    assert plan["unplanned"] == []
    stops = plan["stops"]
    assert sorted(s["assignment_id"] for s in stops) == sorted(assigned)
    assert all(assigned[s["assignment_id"]] == s["incident_id"] for s in stops)
    arrive = [datetime.fromisoformat(s["arrive_at"]) for s in stops]
    assert arrive == sorted(arrive) and arrive[0] < arrive[1]
    start = datetime.fromisoformat(NOW_ISO)
    # The first leg starts now; then 30 min on site for rats, and the next leg.
    assert arrive[0] == start + timedelta(seconds=stops[0]["travel_s"])
    assert arrive[1] == arrive[0] + timedelta(seconds=30 * 60 + stops[1]["travel_s"])
    assert all(60 < s["travel_s"] < 15 * 60 for s in stops)
    # The route ends back at the depot: its travel is the legs plus the way home.
    assert plan["travel_s"] > stops[0]["travel_s"] + stops[1]["travel_s"]


def test_a_shift_plan_times_each_leg_by_road_in_the_direction_driven(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    crew_id: Callable[[str], int],
    crews: dict[str, dict[str, Any]],
    streets: StreetGraph,
) -> None:
    faune = crew_id("Faune Plateau")
    jobs = {
        open_incident("rats", PLATEAU_NORTH_EAST): PLATEAU_NORTH_EAST,
        open_incident("rats", PLATEAU_WEST): PLATEAU_WEST,
    }
    for incident_id in jobs:
        ok(assign(app_client, dispatcher, incident_id, faune), 201)

    plan = ok(app_client.post(f"/api/v1/crews/{faune}/plan", headers=dispatcher))

    depot = (crews["Faune Plateau"]["lon"], crews["Faune Plateau"]["lat"])
    first, second = (jobs[s["incident_id"]] for s in plan["stops"])

    def road_s(a: tuple[float, float], b: tuple[float, float]) -> int:
        return round(float(streets.travel_to(*b, [a[0]], [a[1]]).seconds[0]))

    legs = [road_s(depot, first), road_s(first, second)]
    assert [s["travel_s"] for s in plan["stops"]] == legs
    assert plan["travel_s"] == sum(legs) + road_s(second, depot)


def test_a_crew_with_nothing_queued_has_an_empty_plan(
    app_client: TestClient, dispatcher: Headers, crew_id: Callable[[str], int]
) -> None:
    faune = crew_id("Faune Plateau")

    plan = ok(app_client.post(f"/api/v1/crews/{faune}/plan", headers=dispatcher))

    assert plan == {"crew_id": faune, "stops": [], "unplanned": [], "travel_s": 0}


def test_the_plan_of_an_unknown_crew_is_404(
    app_client: TestClient, dispatcher: Headers, problem: Problem
) -> None:
    response = app_client.post("/api/v1/crews/999999/plan", headers=dispatcher)

    assert "no crew with id 999999" in problem(response, 404)["detail"]


# --- who may ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.CREW, Role.PUBLIC])
def test_dispatch_routes_are_for_staff(
    app_client: TestClient,
    auth: Callable[..., Headers],
    crew_key: Callable[[int], Headers],
    crew_id: Callable[[str], int],
    open_incident: Callable[..., int],
    problem: Problem,
    role: Role,
) -> None:
    incident_id = open_incident("flooding", PIERREFONDS)
    pump = crew_id("Pompage Pierrefonds 1")
    headers = crew_key(pump) if role == Role.CREW else auth(role)

    calls = [
        app_client.get(f"/api/v1/incidents/{incident_id}/recommendations", headers=headers),
        assign(app_client, headers, incident_id, pump),
        app_client.post("/api/v1/dispatch/batch", json={}, headers=headers),
        app_client.post(f"/api/v1/crews/{pump}/plan", headers=headers),
        app_client.get("/api/v1/crews", headers=headers),
    ]

    for response in calls:
        assert f"role {role} may not do this" in problem(response, 403)["detail"]


# --- the fast paths of batch dispatch --------------------------------------------------------


def _steps(session: Session, incident_id: int) -> list[tuple[Any, ...]]:
    from fieldops.escalation.models import EscalationStep

    return [
        (s.key, s.status, s.due_at, s.deadline_at, s.reason)
        for s in session.scalars(
            sa.select(EscalationStep)
            .where(EscalationStep.incident_id == incident_id)
            .order_by(EscalationStep.id)
        )
    ]


def test_batch_plans_every_incident_it_assigns_as_assigning_one_by_one_would(
    app_client: TestClient,
    dispatcher: Headers,
    open_incident: Callable[..., int],
    sessions: sessionmaker[Session],
    clock: ManualClock,
) -> None:
    """The round plans its incidents at once: planning each again afterwards (what
    ``assign_crew`` does per incident) finds nothing left to change."""
    from fieldops.escalation.service import plan_incident
    from fieldops.incidents.models import Incident

    made = [
        open_incident("flooding", PIERREFONDS),
        open_incident("fallen_tree", PLATEAU),
        open_incident("rats", PLATEAU_NORTH_EAST),
        open_incident("pothole", OUTREMONT),
    ]
    clock.advance(timedelta(minutes=3))
    body = ok(app_client.post("/api/v1/dispatch/batch", json={}, headers=dispatcher))
    assert sorted(a["incident_id"] for a in body["assignments"]) == sorted(made)
    acknowledge = met = 0
    with sessions() as session:
        for incident_id in made:
            before = _steps(session, incident_id)
            # Dispatch steps met (cancelled); the new crews' acknowledge steps planned,
            # where the rules have them.
            met += sum(k.startswith("dispatch") and s == "cancelled" for k, s, *_ in before)
            acknowledge += sum(k.startswith("acknowledge:a") for k, *_ in before)
            incident = session.get(Incident, incident_id)
            assert incident is not None
            deadlines = (incident.dispatch_due_at, incident.acknowledge_due_at)
            plan_incident(session, incident, now=clock.now())
            assert _steps(session, incident_id) == before
            assert (incident.dispatch_due_at, incident.acknowledge_due_at) == deadlines
        session.rollback()
    assert acknowledge >= 2 and met >= 2


def test_batch_reads_the_crews_once_and_a_fixed_number_of_statements_per_round(
    app_client: TestClient,
    open_incident: Callable[..., int],
    sessions: sessionmaker[Session],
    clock: ManualClock,
) -> None:
    """A round reads every crew once (not once per assignment) and costs a fixed number
    of statements, whatever the number of assignments or the size of the roster."""
    from fieldops.dispatch.service import batch_dispatch
    from fieldops.geo.routing import StraightLineOnly

    for where in (PLATEAU, PLATEAU_NORTH_EAST, PLATEAU_WEST, OUTREMONT, VILLE_MARIE):
        open_incident("rats", where)
    open_incident("pothole", OUTREMONT)
    statements: list[str] = []

    def seen(_c: Any, _cu: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()).lower())

    with sessions() as session:
        engine = session.get_bind()
        sa.event.listen(engine, "before_cursor_execute", seen)
        try:
            result = batch_dispatch(
                session,
                actor="test",
                now=clock.now(),
                travel=StraightLineOnly(),
                stale_after=timedelta(minutes=5),
            )
        finally:
            sa.event.remove(engine, "before_cursor_execute", seen)
        session.rollback()
    assigned = len(result.assignments)
    assert assigned == 6
    # The roster (the crews at work), not the crews the round locks. SpatiaLite lists the
    # crews' stamps, then reads the crews it does not keep (tests/integration/test_kept_roster.py).
    roster = (
        "select crews.id, crews.name"
        if engine.dialect.name == "postgresql"
        else "select id, roster_stamp from crews"
    )
    every_crew = [s for s in statements if s.startswith(roster) and " in (" not in s]
    assert len(every_crew) == 1, every_crew
    # One statement each for: the incidents, the roster, the crews' loads, the catalogue;
    # the locks on incidents and crews, their loads and current crews; the new rows' ids
    # (SQLite), the rows written (one executemany per table and kind), the crews'
    # statuses; planning (policy, assignments, steps, the rows it writes).
    # (23 on SpatiaLite.) Any statement per assignment would break this bound.
    assert len(statements) <= 25, statements


def test_the_policy_in_force_is_looked_up_once_per_transaction_and_never_stale(
    engine: sa.Engine, session: Session, clock: ManualClock
) -> None:
    """Every crew step and assignment plans with the policy in force: it is looked up once
    per transaction, a policy loaded in the transaction applies at once, and one rolled
    back with it is gone in the next."""
    from fieldops.escalation.policy import Policy, Rule
    from fieldops.escalation.service import load_policy, policy_in_force

    statements: list[str] = []

    def seen(_c: Any, _cu: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    city = policy_in_force(session)
    assert city is not None
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        assert policy_in_force(session) is city
        assert statements == []
        drill_rule = Rule(
            name="drill",
            services=["rats"],
            dispatch_s=60,
            acknowledge_s=60,
            arrive_s=60,
            resolve_s=600,
        )
        load_policy(session, Policy((drill_rule,)), source="test", now=clock.now())
        assert policy_in_force(session) == Policy((drill_rule,))
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    session.rollback()
    assert policy_in_force(session) == city
