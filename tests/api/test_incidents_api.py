"""The dispatcher incident API through the real app: intake, merging, idempotency, lists and
filters, detail, lifecycle changes and the GeoJSON feed, on SpatiaLite and PostGIS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pyproj
import pytest
from fastapi.testclient import TestClient

from fieldops.auth.models import Role
from fieldops.clock import ManualClock

Report = Callable[..., httpx.Response]
Problem = Callable[[httpx.Response, int], dict[str, Any]]
Headers = dict[str, str]

# (lon, lat) points well inside one district each (checked against layers/limadmin.geojson).
PLATEAU = (-73.5800, 45.5230)
OUTREMONT = (-73.6080, 45.5180)
VILLE_MARIE = (-73.5500, 45.5000)
# Outside every district: south of the island, and in the St. Lawrence off the Old Port.
SOUTH_OF_ISLAND = (-73.0, 45.0)
IN_THE_RIVER = (-73.5200, 45.5000)

GEOD = pyproj.Geod(ellps="WGS84")
ACTOR = "dispatcher:test-dispatcher"


def moved(where: tuple[float, float], *, north_m: float) -> tuple[float, float]:
    """The point ``north_m`` metres due north of ``where`` (geodesic)."""
    lon, lat, _back = GEOD.fwd(where[0], where[1], 0.0, north_m)
    return (lon, lat)


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- creating ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service_code", "where", "district", "group", "priority"),
    [
        ("flooding", PLATEAU, "Le Plateau-Mont-Royal", "water", 2),
        ("pothole", OUTREMONT, "Outremont", "roads", 4),
        ("traffic_signal_out", VILLE_MARIE, "Ville-Marie", "traffic", 1),
    ],
)
def test_post_creates_an_incident_in_the_right_district_with_the_catalogue_priority(
    app_client: TestClient,
    report: Report,
    dispatcher: Headers,
    district_ids: dict[str, int],
    count_rows: Callable[[str], int],
    service_code: str,
    where: tuple[float, float],
    district: str,
    group: str,
    priority: int,
) -> None:
    response = report(service_code, where, description="water up to the kerb", address="here")

    body = created(response)
    assert response.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in response.headers
    assert body["merged"] is False
    assert isinstance(body["report_id"], str) and body["report_id"].isdigit()
    incident = body["incident"]
    assert incident["service_code"] == service_code
    assert incident["service_group"] == group
    assert incident["status"] == "open"
    assert incident["priority"] == priority
    assert incident["district"] == {"id": district_ids[district], "name": district}
    assert (incident["lon"], incident["lat"]) == where
    assert incident["description"] == "water up to the kerb"
    assert incident["address"] == "here"
    assert incident["report_count"] == 1
    assert incident["opened_at"] == "2026-05-04T14:00:00Z"
    assert incident["updated_at"] == "2026-05-04T14:00:00Z"
    assert incident["closed_at"] is None
    # What the POST answered is what is stored.
    stored = app_client.get(f"/api/v1/incidents/{incident['id']}", headers=dispatcher)
    assert stored.status_code == 200
    assert {k: v for k, v in stored.json().items() if k not in {"reports", "events"}} == incident
    assert [r["id"] for r in stored.json()["reports"]] == [body["report_id"]]
    assert (count_rows("incidents"), count_rows("reports"), count_rows("incident_events")) == (
        1,
        1,
        1,
    )


def test_a_given_priority_overrides_the_catalogue_default(report: Report) -> None:
    body = created(report("pothole", PLATEAU, priority=1))

    assert body["incident"]["priority"] == 1


def test_requested_at_sets_when_the_incident_was_opened(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    body = created(report("pothole", PLATEAU, requested_at="2026-05-04T09:30:00-04:00"))

    stored = app_client.get(f"/api/v1/incidents/{body['incident']['id']}", headers=dispatcher)
    incident = stored.json()
    assert incident["opened_at"] == "2026-05-04T13:30:00Z"
    assert incident["first_report_at"] == "2026-05-04T13:30:00Z"
    assert incident["last_report_at"] == "2026-05-04T13:30:00Z"
    assert incident["reports"][0]["requested_at"] == "2026-05-04T13:30:00Z"
    # The record of the change is still "now", by the app's clock.
    assert incident["updated_at"] == "2026-05-04T14:00:00Z"
    assert incident["reports"][0]["received_at"] == "2026-05-04T14:00:00Z"


def test_the_post_answer_gives_instants_in_utc_like_every_read(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    body = created(report("pothole", PLATEAU, requested_at="2026-05-04T09:30:00-04:00"))

    stored = app_client.get(f"/api/v1/incidents/{body['incident']['id']}", headers=dispatcher)
    assert body["incident"]["opened_at"] == "2026-05-04T13:30:00Z"
    assert {k: v for k, v in stored.json().items() if k not in {"reports", "events"}} == body[
        "incident"
    ]


# --- merging -------------------------------------------------------------------------------


def test_a_second_report_of_the_same_group_within_the_radius_merges(
    app_client: TestClient, report: Report, dispatcher: Headers, count_rows: Callable[[str], int]
) -> None:
    first = created(report("flooding", PLATEAU))
    # sewer_backup is another service of the "water" group; its radius is 100 m.
    second = created(report("sewer_backup", moved(PLATEAU, north_m=90)))

    assert second["merged"] is True
    assert second["incident"]["id"] == first["incident"]["id"]
    assert second["incident"]["report_count"] == 2
    assert second["report_id"] != first["report_id"]
    # The incident keeps its first report's service and place.
    assert second["incident"]["service_code"] == "flooding"
    assert (second["incident"]["lon"], second["incident"]["lat"]) == PLATEAU
    listed = app_client.get("/api/v1/incidents", headers=dispatcher).json()["items"]
    assert [(i["id"], i["report_count"]) for i in listed] == [(first["incident"]["id"], 2)]
    assert (count_rows("incidents"), count_rows("reports")) == (1, 2)


@pytest.mark.parametrize(
    ("service_code", "north_m", "merged"),
    [
        ("flooding", 140.0, True),  # flooding radius 150 m
        ("flooding", 160.0, False),
        ("sewer_backup", 90.0, True),  # the new report's radius counts: sewer_backup 100 m
        ("sewer_backup", 120.0, False),
        ("fallen_tree", 0.0, False),  # same spot, another group
        ("pothole", 10.0, False),
    ],
)
def test_merging_needs_the_same_group_within_the_new_reports_radius(
    report: Report,
    count_rows: Callable[[str], int],
    service_code: str,
    north_m: float,
    merged: bool,
) -> None:
    first = created(report("flooding", PLATEAU))

    second = created(report(service_code, moved(PLATEAU, north_m=north_m)))

    assert second["merged"] is merged
    assert (second["incident"]["id"] == first["incident"]["id"]) is merged
    assert second["incident"]["report_count"] == (2 if merged else 1)
    assert count_rows("incidents") == (1 if merged else 2)


@pytest.mark.parametrize(
    ("later", "merged"),
    [(timedelta(hours=12), True), (timedelta(hours=12, seconds=1), False)],
)
def test_merging_needs_the_last_report_within_the_groups_window(
    report: Report, clock: ManualClock, later: timedelta, merged: bool
) -> None:
    first = created(report("flooding", PLATEAU))  # flooding window: 12 h
    clock.advance(later)

    second = created(report("flooding", PLATEAU))

    assert second["merged"] is merged
    assert (second["incident"]["id"] == first["incident"]["id"]) is merged


def test_a_resolved_incident_takes_no_more_reports(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    first = created(report("flooding", PLATEAU))
    incident_id = first["incident"]["id"]
    resolved = app_client.patch(
        f"/api/v1/incidents/{incident_id}", json={"status": "resolved"}, headers=dispatcher
    )
    assert resolved.status_code == 200

    second = created(report("flooding", PLATEAU))

    assert second["merged"] is False
    assert second["incident"]["id"] != incident_id


# --- outside the service area --------------------------------------------------------------


@pytest.mark.parametrize("where", [SOUTH_OF_ISLAND, IN_THE_RIVER], ids=["south", "river"])
def test_a_point_outside_every_district_is_refused_and_creates_nothing(
    app_client: TestClient,
    report: Report,
    dispatcher: Headers,
    problem: Problem,
    count_rows: Callable[[str], int],
    where: tuple[float, float],
) -> None:
    created(report("flooding", PLATEAU))
    before = app_client.get("/api/v1/incidents", headers=dispatcher).json()

    body = problem(report("flooding", where), 422)

    assert body["title"] == "Outside the service area"
    assert body["errors"] == [
        {"field": "lat/long", "reason": "outside the city's service area: no district contains it"}
    ]
    assert str(where[1]) in body["detail"] and str(where[0]) in body["detail"]
    assert app_client.get("/api/v1/incidents", headers=dispatcher).json() == before
    counts = [count_rows(t) for t in ("incidents", "reports", "incident_events")]
    assert counts == [1, 1, 1]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"service_code": "unicorn"}, "service_code"),
        ({"lat": 91}, "lat"),
        ({"lon": -181}, "lon"),
        ({"priority": 0}, "priority"),
        ({"priority": 6}, "priority"),
        ({"requested_at": "2026-05-04T14:00:00"}, "requested_at"),
        ({"address": "x" * 501}, "address"),
    ],
)
def test_invalid_fields_are_refused_naming_the_field(
    app_client: TestClient,
    dispatcher: Headers,
    problem: Problem,
    count_rows: Callable[[str], int],
    fields: dict[str, Any],
    field: str,
) -> None:
    body = {"service_code": "flooding", "lon": PLATEAU[0], "lat": PLATEAU[1], **fields}

    answer = problem(app_client.post("/api/v1/incidents", json=body, headers=dispatcher), 422)

    assert [e["field"] for e in answer["errors"]] == [field]
    assert count_rows("incidents") == 0


# --- idempotency ---------------------------------------------------------------------------


def test_the_same_idempotency_key_and_body_replays_the_first_answer(
    report: Report, dispatcher: Headers, count_rows: Callable[[str], int]
) -> None:
    headers = {**dispatcher, "Idempotency-Key": "pump-42"}

    first = report("flooding", PLATEAU, headers=headers, description="basement")
    again = report("flooding", PLATEAU, headers=headers, description="basement")

    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.json()["merged"] is False  # not a second report merged into the first
    assert (count_rows("incidents"), count_rows("reports"), count_rows("incident_events")) == (
        1,
        1,
        1,
    )
    assert count_rows("idempotent_responses") == 1


def test_the_same_idempotency_key_with_another_body_is_a_conflict(
    app_client: TestClient,
    report: Report,
    dispatcher: Headers,
    problem: Problem,
    count_rows: Callable[[str], int],
) -> None:
    headers = {**dispatcher, "Idempotency-Key": "pump-42"}
    first = created(report("flooding", PLATEAU, headers=headers))

    body = problem(report("flooding", OUTREMONT, headers=headers), 409)

    assert body["title"] == "Conflict"
    assert "'pump-42' was already used for a different request" in body["detail"]
    assert ids(app_client.get("/api/v1/incidents", headers=dispatcher)) == [first["incident"]["id"]]
    assert (count_rows("incidents"), count_rows("reports")) == (1, 1)


def test_idempotency_keys_belong_to_one_api_key(
    report: Report, auth: Callable[..., Headers], count_rows: Callable[[str], int]
) -> None:
    one = {**auth(Role.DISPATCHER, "one"), "Idempotency-Key": "same"}
    two = {**auth(Role.DISPATCHER, "two"), "Idempotency-Key": "same"}
    created(report("flooding", PLATEAU, headers=one))

    second = report("flooding", PLATEAU, headers=two)

    assert "idempotent-replayed" not in second.headers
    assert created(second)["merged"] is True
    assert (count_rows("incidents"), count_rows("reports")) == (1, 2)


def test_an_overlong_idempotency_key_is_refused(
    report: Report, dispatcher: Headers, problem: Problem, count_rows: Callable[[str], int]
) -> None:
    headers = {**dispatcher, "Idempotency-Key": "k" * 201}

    body = problem(report("flooding", PLATEAU, headers=headers), 422)

    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert count_rows("incidents") == 0


# --- listing and filtering -----------------------------------------------------------------


@pytest.fixture
def three(
    app_client: TestClient, report: Report, dispatcher: Headers, clock: ManualClock
) -> dict[str, int]:
    """A flooding (Plateau), a pothole (Outremont, assigned an hour later), a fallen tree
    (Plateau, 500 m north of the flooding): name -> incident id."""
    made = {
        "flooding": created(report("flooding", PLATEAU))["incident"]["id"],
        "pothole": created(report("pothole", OUTREMONT))["incident"]["id"],
        "tree": created(report("fallen_tree", moved(PLATEAU, north_m=500)))["incident"]["id"],
    }
    clock.advance(timedelta(hours=1))
    assigned = app_client.patch(
        f"/api/v1/incidents/{made['pothole']}", json={"status": "assigned"}, headers=dispatcher
    )
    assert assigned.status_code == 200
    return made


def test_the_list_without_filters_gives_every_incident_oldest_first(
    app_client: TestClient, dispatcher: Headers, three: dict[str, int]
) -> None:
    response = app_client.get("/api/v1/incidents", headers=dispatcher)

    assert ids(response) == [three["flooding"], three["pothole"], three["tree"]]
    assert response.json()["next_after_id"] is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "open"}, ["flooding", "tree"]),
        ({"status": "assigned"}, ["pothole"]),
        ({"status": "open, assigned"}, ["flooding", "pothole", "tree"]),
        ({"status": "resolved"}, []),
        ({"service": "pothole"}, ["pothole"]),
        ({"service": "pothole,fallen_tree"}, ["pothole", "tree"]),
        ({"service": "snow_ice"}, []),
        ({"bbox": "-73.62,45.51,-73.60,45.525"}, ["pothole"]),
        ({"bbox": "-73.59,45.52,-73.57,45.53"}, ["flooding", "tree"]),
        ({"bbox": "-73.608,45.518,-73.608,45.518"}, ["pothole"]),  # edges count
        ({"bbox": "-73.50,45.40,-73.40,45.45"}, []),
        ({"since": "2026-05-04T14:30:00Z"}, ["pothole"]),
        ({"since": "2026-05-04T16:30:00+02:00"}, ["pothole"]),  # the same instant
        ({"since": "2026-05-04T15:00:00Z"}, ["pothole"]),  # at the instant counts
        ({"since": "2026-05-04T15:00:01Z"}, []),
        ({"since": "2026-05-04T14:00:00Z"}, ["flooding", "pothole", "tree"]),
        ({"status": "open", "service": "fallen_tree,pothole"}, ["tree"]),
    ],
)
def test_list_filters(
    app_client: TestClient,
    dispatcher: Headers,
    three: dict[str, int],
    params: dict[str, str],
    expected: list[str],
) -> None:
    response = app_client.get("/api/v1/incidents", params=params, headers=dispatcher)

    assert ids(response) == [three[name] for name in expected]


def test_list_filter_by_district(
    app_client: TestClient,
    dispatcher: Headers,
    three: dict[str, int],
    district_ids: dict[str, int],
) -> None:
    plateau, outremont = district_ids["Le Plateau-Mont-Royal"], district_ids["Outremont"]

    def listed(district: str) -> list[int]:
        return ids(app_client.get(f"/api/v1/incidents?district={district}", headers=dispatcher))

    assert listed(str(plateau)) == [three["flooding"], three["tree"]]
    assert listed(str(outremont)) == [three["pothole"]]
    assert listed(f"{plateau},{outremont}") == [three["flooding"], three["pothole"], three["tree"]]
    assert listed(str(district_ids["Verdun"])) == []


def test_list_pages_with_after_id(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    # Potholes 100 m apart: their radius is 25 m, so five incidents.
    made = [
        created(report("pothole", moved(PLATEAU, north_m=100 * n)))["incident"]["id"]
        for n in range(5)
    ]

    pages: list[tuple[list[int], int | None]] = []
    after_id = 0
    while True:
        response = app_client.get(
            "/api/v1/incidents", params={"limit": 2, "after_id": after_id}, headers=dispatcher
        )
        pages.append((ids(response), response.json()["next_after_id"]))
        if response.json()["next_after_id"] is None:
            break
        after_id = response.json()["next_after_id"]

    assert pages == [(made[0:2], made[1]), (made[2:4], made[3]), (made[4:], None)]


def test_a_full_last_page_points_to_an_empty_one(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    made = [
        created(report("pothole", moved(PLATEAU, north_m=100 * n)))["incident"]["id"]
        for n in range(2)
    ]

    first = app_client.get("/api/v1/incidents", params={"limit": 2}, headers=dispatcher)
    second = app_client.get(
        "/api/v1/incidents", params={"limit": 2, "after_id": made[1]}, headers=dispatcher
    )

    assert (ids(first), first.json()["next_after_id"]) == (made, made[1])
    assert (ids(second), second.json()["next_after_id"]) == ([], None)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"bbox": "-73.5,45.6,-73.6,45.5"}, "bbox"),  # min > max
        ({"bbox": "-73.6,45.5,-73.5,45.6,0"}, "bbox"),
        ({"status": "lost"}, "status"),
        ({"status": "open,lost"}, "status"),
        ({"district": "plateau"}, "district"),
        ({"since": "2026-05-04T14:00:00"}, "since"),  # naive: which zone?
        ({"since": "yesterday"}, "since"),
        ({"after_id": "-1"}, "after_id"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5001"}, "limit"),
    ],
)
def test_invalid_list_parameters_are_refused_naming_the_parameter(
    app_client: TestClient,
    dispatcher: Headers,
    problem: Problem,
    params: dict[str, str],
    field: str,
) -> None:
    response = app_client.get("/api/v1/incidents", params=params, headers=dispatcher)

    body = problem(response, 422)
    assert body["errors"][0]["field"] == field
    assert body["detail"].startswith(f"{field}: ")


# --- one incident --------------------------------------------------------------------------


def test_get_one_gives_its_reports_and_events_newest_first(
    app_client: TestClient, report: Report, dispatcher: Headers, clock: ManualClock
) -> None:
    first = created(report("flooding", PLATEAU, description="first", address="1 rue A"))
    clock.advance(timedelta(minutes=10))
    second = created(report("flooding", moved(PLATEAU, north_m=100), description="second"))
    incident_id = first["incident"]["id"]

    response = app_client.get(f"/api/v1/incidents/{incident_id}", headers=dispatcher)

    assert response.status_code == 200
    detail = response.json()
    assert detail["report_count"] == 2
    assert detail["first_report_at"] == "2026-05-04T14:00:00Z"
    assert detail["last_report_at"] == "2026-05-04T14:10:00Z"
    assert detail["updated_at"] == "2026-05-04T14:10:00Z"
    assert detail["description"] == "first"
    assert [(r["id"], r["description"], r["channel"]) for r in detail["reports"]] == [
        (first["report_id"], "first", "dispatcher"),
        (second["report_id"], "second", "dispatcher"),
    ]
    assert detail["reports"][0]["address"] == "1 rue A"
    assert [r["received_at"] for r in detail["reports"]] == [
        "2026-05-04T14:00:00Z",
        "2026-05-04T14:10:00Z",
    ]
    events = detail["events"]
    assert [(e["kind"], e["actor"], e["at"]) for e in events] == [
        ("report_merged", ACTOR, "2026-05-04T14:10:00Z"),
        ("opened", ACTOR, "2026-05-04T14:00:00Z"),
    ]
    assert events[1]["data"] == {"report_id": first["report_id"], "channel": "dispatcher"}
    assert events[0]["data"]["report_id"] == second["report_id"]
    assert events[0]["data"]["distance_m"] == pytest.approx(100.0, abs=0.2)


def test_an_unknown_incident_is_404(
    app_client: TestClient, dispatcher: Headers, problem: Problem
) -> None:
    body = problem(app_client.get("/api/v1/incidents/999999", headers=dispatcher), 404)

    assert body["title"] == "Not found"
    assert body["detail"] == "no incident with id 999999"


def test_a_non_numeric_incident_id_is_refused_naming_it(
    app_client: TestClient, dispatcher: Headers, problem: Problem
) -> None:
    body = problem(app_client.get("/api/v1/incidents/abc", headers=dispatcher), 422)

    assert [e["field"] for e in body["errors"]] == ["incident_id"]


def test_patching_an_unknown_incident_is_404(
    app_client: TestClient, dispatcher: Headers, problem: Problem
) -> None:
    response = app_client.patch(
        "/api/v1/incidents/999999", json={"status": "assigned"}, headers=dispatcher
    )

    assert problem(response, 404)["detail"] == "no incident with id 999999"


# --- changing ------------------------------------------------------------------------------


def test_status_follows_the_lifecycle_and_each_step_is_an_event(
    app_client: TestClient, report: Report, dispatcher: Headers, clock: ManualClock
) -> None:
    incident_id = created(report("flooding", PLATEAU))["incident"]["id"]
    steps = ["assigned", "en_route", "on_scene", "resolved"]

    answers = []
    for step in steps:
        clock.advance(timedelta(minutes=5))
        response = app_client.patch(
            f"/api/v1/incidents/{incident_id}",
            json={"status": step, "note": f"now {step}"},
            headers=dispatcher,
        )
        assert response.status_code == 200, response.text
        answers.append(response.json())

    assert [a["status"] for a in answers] == steps
    assert [a["closed_at"] for a in answers] == [None, None, None, "2026-05-04T14:20:00Z"]
    assert answers[-1]["updated_at"] == "2026-05-04T14:20:00Z"
    detail = app_client.get(f"/api/v1/incidents/{incident_id}", headers=dispatcher).json()
    assert detail["status"] == "resolved"
    assert detail["closed_at"] == "2026-05-04T14:20:00Z"
    changes = [e for e in reversed(detail["events"]) if e["kind"] == "status_changed"]
    assert [(e["data"]["from"], e["data"]["to"], e["data"]["note"]) for e in changes] == [
        ("open", "assigned", "now assigned"),
        ("assigned", "en_route", "now en_route"),
        ("en_route", "on_scene", "now on_scene"),
        ("on_scene", "resolved", "now resolved"),
    ]
    assert [e["at"] for e in changes] == [
        "2026-05-04T14:05:00Z",
        "2026-05-04T14:10:00Z",
        "2026-05-04T14:15:00Z",
        "2026-05-04T14:20:00Z",
    ]
    assert {e["actor"] for e in changes} == {ACTOR}
    assert [e["kind"] for e in detail["events"]][-1] == "opened"


def test_a_resolved_incident_can_be_reopened(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    incident_id = created(report("flooding", PLATEAU))["incident"]["id"]
    url = f"/api/v1/incidents/{incident_id}"
    assert app_client.patch(url, json={"status": "resolved"}, headers=dispatcher).status_code == 200

    reopened = app_client.patch(url, json={"status": "open"}, headers=dispatcher)

    assert reopened.status_code == 200
    assert (reopened.json()["status"], reopened.json()["closed_at"]) == ("open", None)
    assert ids(app_client.get("/api/v1/incidents?status=open", headers=dispatcher)) == [incident_id]


@pytest.mark.parametrize(
    ("path", "target", "allowed"),
    [
        ([], "on_scene", "assigned, cancelled, resolved"),
        ([], "en_route", "assigned, cancelled, resolved"),
        (["resolved"], "assigned", "open"),
        (["cancelled"], "on_scene", "open"),
        (["assigned", "en_route", "on_scene"], "open", "cancelled, resolved"),
    ],
)
def test_an_illegal_move_is_a_conflict_and_changes_nothing(
    app_client: TestClient,
    report: Report,
    dispatcher: Headers,
    problem: Problem,
    clock: ManualClock,
    path: list[str],
    target: str,
    allowed: str,
) -> None:
    incident_id = created(report("flooding", PLATEAU))["incident"]["id"]
    url = f"/api/v1/incidents/{incident_id}"
    for step in path:
        assert app_client.patch(url, json={"status": step}, headers=dispatcher).status_code == 200
    before = app_client.get(url, headers=dispatcher).json()
    current = path[-1] if path else "open"
    clock.advance(timedelta(minutes=1))

    body = problem(app_client.patch(url, json={"status": target}, headers=dispatcher), 409)

    assert body["detail"] == (
        f"incident {incident_id} is {current}: it cannot become {target} (allowed next: {allowed})"
    )
    assert app_client.get(url, headers=dispatcher).json() == before


def test_an_illegal_move_with_a_priority_changes_neither(
    app_client: TestClient, report: Report, dispatcher: Headers, problem: Problem
) -> None:
    incident_id = created(report("flooding", PLATEAU))["incident"]["id"]
    url = f"/api/v1/incidents/{incident_id}"
    before = app_client.get(url, headers=dispatcher).json()

    response = app_client.patch(url, json={"status": "on_scene", "priority": 1}, headers=dispatcher)

    problem(response, 409)
    assert app_client.get(url, headers=dispatcher).json() == before


def test_a_priority_change_is_an_event(
    app_client: TestClient, report: Report, dispatcher: Headers, clock: ManualClock
) -> None:
    incident_id = created(report("flooding", PLATEAU))["incident"]["id"]
    url = f"/api/v1/incidents/{incident_id}"
    clock.advance(timedelta(minutes=3))

    response = app_client.patch(url, json={"priority": 1}, headers=dispatcher)

    assert response.status_code == 200
    assert (response.json()["priority"], response.json()["status"]) == (1, "open")
    assert response.json()["updated_at"] == "2026-05-04T14:03:00Z"
    events = app_client.get(url, headers=dispatcher).json()["events"]
    assert [(e["kind"], e["at"], e["data"]) for e in events] == [
        ("priority_changed", "2026-05-04T14:03:00Z", {"from": 2, "to": 1}),
        ("opened", "2026-05-04T14:00:00Z", events[1]["data"]),
    ]


def test_setting_the_same_priority_logs_nothing(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    incident_id = created(report("flooding", PLATEAU))["incident"]["id"]
    url = f"/api/v1/incidents/{incident_id}"

    response = app_client.patch(url, json={"priority": 2}, headers=dispatcher)

    assert response.status_code == 200
    assert [e["kind"] for e in app_client.get(url, headers=dispatcher).json()["events"]] == [
        "opened"
    ]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({}, "body"),
        ({"note": "only a note"}, "body"),
        ({"priority": 0}, "priority"),
        ({"priority": 6}, "priority"),
        ({"status": "lost"}, "status"),
        ({"status": "open", "colour": "red"}, "colour"),
    ],
)
def test_invalid_patches_are_refused_naming_the_field(
    app_client: TestClient,
    report: Report,
    dispatcher: Headers,
    problem: Problem,
    patch: dict[str, Any],
    field: str,
) -> None:
    incident_id = created(report("flooding", PLATEAU))["incident"]["id"]
    url = f"/api/v1/incidents/{incident_id}"
    before = app_client.get(url, headers=dispatcher).json()

    body = problem(app_client.patch(url, json=patch, headers=dispatcher), 422)

    assert [e["field"] for e in body["errors"]] == [field]
    assert app_client.get(url, headers=dispatcher).json() == before


# --- GeoJSON -------------------------------------------------------------------------------


def test_the_geojson_feed_is_a_feature_collection_of_points(
    app_client: TestClient, dispatcher: Headers, three: dict[str, int]
) -> None:
    response = app_client.get("/api/v1/incidents.geojson", headers=dispatcher)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    collection = response.json()
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert [f["id"] for f in features] == [three["flooding"], three["pothole"], three["tree"]]
    assert {f["type"] for f in features} == {"Feature"}
    assert features[0]["geometry"] == {"type": "Point", "coordinates": list(PLATEAU)}
    assert features[1]["geometry"] == {"type": "Point", "coordinates": list(OUTREMONT)}
    assert features[2]["geometry"] == {
        "type": "Point",
        "coordinates": list(moved(PLATEAU, north_m=500)),
    }
    props = features[1]["properties"]
    assert props["district_name"] == "Outremont"
    assert "district" not in props
    assert (props["id"], props["service_code"], props["status"], props["priority"]) == (
        three["pothole"],
        "pothole",
        "assigned",
        4,
    )
    # Properties match what the list says, the district name aside.
    listed = app_client.get("/api/v1/incidents", headers=dispatcher).json()["items"][1]
    listed["district_name"] = listed.pop("district")["name"]
    assert props == listed


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"service": "pothole"}, ["pothole"]),
        ({"status": "open"}, ["flooding", "tree"]),
        ({"bbox": "-73.59,45.52,-73.57,45.53"}, ["flooding", "tree"]),
        ({"since": "2026-05-04T14:30:00Z"}, ["pothole"]),
        ({"limit": "1", "after_id": "0"}, ["flooding"]),
    ],
)
def test_the_geojson_feed_honours_filters(
    app_client: TestClient,
    dispatcher: Headers,
    three: dict[str, int],
    params: dict[str, str],
    expected: list[str],
) -> None:
    response = app_client.get("/api/v1/incidents.geojson", params=params, headers=dispatcher)

    assert response.status_code == 200
    assert [f["id"] for f in response.json()["features"]] == [three[n] for n in expected]


def test_the_geojson_feed_refuses_a_bad_bbox(
    app_client: TestClient, dispatcher: Headers, problem: Problem
) -> None:
    response = app_client.get("/api/v1/incidents.geojson?bbox=1,2", headers=dispatcher)

    assert problem(response, 422)["errors"][0]["field"] == "bbox"


def test_an_empty_geojson_feed_is_still_a_feature_collection(
    app_client: TestClient, dispatcher: Headers
) -> None:
    response = app_client.get("/api/v1/incidents.geojson", headers=dispatcher)

    assert response.status_code == 200
    assert response.json() == {"type": "FeatureCollection", "features": []}
