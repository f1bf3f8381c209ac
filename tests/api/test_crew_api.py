"""The crew's side through the real app, on SpatiaLite and PostGIS: crew keys, the crew's own
assignments and its steps on them (with honest 409s), and position fixes from its device."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fieldops.auth.models import Role
from fieldops.clock import ManualClock

Report = Callable[..., httpx.Response]
Problem = Callable[[httpx.Response, int], dict[str, Any]]
Headers = dict[str, str]

NOW_ISO = "2026-05-04T14:00:00Z"
PLATEAU = (-73.58, 45.523)
PLATEAU_WEST = (-73.5905, 45.5195)
MERCIER = (-73.54, 45.575)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def at(minutes: float) -> str:
    """The ISO instant ``minutes`` after the test clock's start (negative: before)."""
    return (datetime.fromisoformat(NOW_ISO) + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def admin(auth: Callable[..., Headers]) -> Headers:
    return auth(Role.ADMIN, "admin")


@pytest.fixture
def crew_id(app_client: TestClient, dispatcher: Headers) -> Callable[[str], int]:
    roster = {c["name"]: c["id"] for c in ok(app_client.get("/api/v1/crews", headers=dispatcher))}

    def find(name: str) -> int:
        return int(roster[name])

    return find


@pytest.fixture
def crew_key(app_client: TestClient, admin: Headers) -> Callable[[int], Headers]:
    """``crew_key(crew_id)``: the header of a new crew key, made by an admin over the API."""

    def make(crew: int) -> Headers:
        body = ok(
            app_client.post(
                "/api/v1/keys",
                json={"name": f"phone of crew {crew}", "role": "crew", "crew_id": crew},
                headers=admin,
            ),
            201,
        )
        return {"Authorization": f"Bearer {body['secret']}"}

    return make


@pytest.fixture
def send(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> Callable[[str, tuple[float, float], int], dict[str, Any]]:
    """``send(service_code, where, crew_id)``: open an incident and assign the crew to it;
    returns the assignment."""

    def make(service_code: str, where: tuple[float, float], crew: int) -> dict[str, Any]:
        incident_id = ok(report(service_code, where), 201)["incident"]["id"]
        return dict(
            ok(
                app_client.post(
                    f"/api/v1/incidents/{incident_id}/assign",
                    json={"crew_id": crew},
                    headers=dispatcher,
                ),
                201,
            )
        )

    return make


def act(
    client: TestClient,
    headers: Headers,
    assignment_id: int,
    action: str,
    **body: Any,
) -> httpx.Response:
    return client.post(
        f"/api/v1/crew/assignments/{assignment_id}/{action}", json=body, headers=headers
    )


def incident_of(client: TestClient, headers: Headers, assignment: dict[str, Any]) -> Any:
    return ok(client.get(f"/api/v1/incidents/{assignment['incident_id']}", headers=headers))


def crew_row(client: TestClient, headers: Headers, crew: int) -> dict[str, Any]:
    roster = ok(client.get("/api/v1/crews", headers=headers))
    row: dict[str, Any] = next(c for c in roster if c["id"] == crew)
    return row


# --- crew keys -----------------------------------------------------------------------------


def test_an_admin_makes_a_crew_key(
    app_client: TestClient, admin: Headers, crew_id: Callable[[str], int]
) -> None:
    faune = crew_id("Faune Plateau")

    body = ok(
        app_client.post(
            "/api/v1/keys",
            json={"name": "tablet 7", "role": "crew", "crew_id": faune},
            headers=admin,
        ),
        201,
    )

    assert (body["name"], body["role"], body["crew_id"]) == ("tablet 7", "crew", faune)
    assert body["secret"].startswith("fo_")
    assert body["created_at"] == NOW_ISO
    mine = ok(
        app_client.get(
            "/api/v1/crew/assignments", headers={"Authorization": f"Bearer {body['secret']}"}
        )
    )
    assert mine == []


NEEDS_ITS_CREW = "a crew key needs its crew, and only a crew key"


@pytest.mark.parametrize(
    ("role", "crew", "reason"),
    [
        ("crew", None, NEEDS_ITS_CREW),
        ("dispatcher", "Faune Plateau", NEEDS_ITS_CREW),
        ("crew", 999999, "no crew with id 999999"),
    ],
)
def test_a_crew_key_needs_a_real_crew_and_only_a_crew_key_has_one(
    app_client: TestClient,
    admin: Headers,
    crew_id: Callable[[str], int],
    problem: Problem,
    count_rows: Callable[[str], int],
    role: str,
    crew: str | int | None,
    reason: str,
) -> None:
    keys_before = count_rows("api_keys")
    body: dict[str, Any] = {"name": "k", "role": role}
    if crew is not None:
        body["crew_id"] = crew_id(crew) if isinstance(crew, str) else crew

    response = app_client.post("/api/v1/keys", json=body, headers=admin)

    assert problem(response, 422)["errors"] == [{"field": "crew_id", "reason": reason}]
    assert count_rows("api_keys") == keys_before


def test_only_an_admin_makes_keys(
    app_client: TestClient, dispatcher: Headers, crew_id: Callable[[str], int], problem: Problem
) -> None:
    response = app_client.post(
        "/api/v1/keys",
        json={"name": "k", "role": "crew", "crew_id": crew_id("Faune Plateau")},
        headers=dispatcher,
    )

    problem(response, 403)


# --- the crew's own assignments --------------------------------------------------------------


def test_a_crew_sees_only_its_own_assignments(
    app_client: TestClient,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
) -> None:
    plateau, mercier = crew_id("Faune Plateau"), crew_id("Faune Mercier")
    mine = send("rats", PLATEAU, plateau)
    send("rats", MERCIER, mercier)
    also_mine = send("dead_animal", PLATEAU_WEST, plateau)

    listed = ok(app_client.get("/api/v1/crew/assignments", headers=crew_key(plateau)))

    assert [a["id"] for a in listed] == [mine["id"], also_mine["id"]]
    first = listed[0]
    assert {k: first[k] for k in mine} == mine
    assert (first["service_code"], first["priority"], first["lon"], first["lat"]) == (
        "rats",
        4,
        PLATEAU[0],
        PLATEAU[1],
    )
    assert {"address", "description"} <= set(first)


def test_accept_en_route_on_scene_done(
    app_client: TestClient,
    dispatcher: Headers,
    clock: ManualClock,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
) -> None:
    faune = crew_id("Faune Plateau")
    phone = crew_key(faune)
    sent = send("rats", PLATEAU, faune)
    steps = [
        # (minutes later, action, body, assignment status, incident status, crew status)
        (2, "accept", {"version": 1}, "accepted", "acknowledged", "assigned"),
        (3, "en_route", {"version": 2}, "en_route", "en_route", "en_route"),
        (15, "on_scene", {}, "on_scene", "on_scene", "on_scene"),
        (45, "done", {"note": "bait stations set"}, "done", "resolved", "available"),
    ]

    for version, (minutes, action, body, status, incident_status, crew_status) in enumerate(
        steps, start=2
    ):
        clock.set(datetime.fromisoformat(at(minutes)))
        result = ok(act(app_client, phone, sent["id"], action, **body))
        assert (result["status"], result["version"]) == (status, version)
        assert incident_of(app_client, dispatcher, sent)["status"] == incident_status
        assert crew_row(app_client, dispatcher, faune)["status"] == crew_status

    assert result["accepted_at"] == at(2).replace("+00:00", "Z")
    assert result["arrived_at"] == at(15).replace("+00:00", "Z")
    assert result["finished_at"] == at(45).replace("+00:00", "Z")
    assert result["note"] == "bait stations set"
    incident = incident_of(app_client, dispatcher, sent)
    kinds = [e["kind"] for e in reversed(incident["events"]) if e["kind"].startswith("crew_")]
    assert kinds == ["crew_accept", "crew_en_route", "crew_on_scene", "crew_done"]
    done = next(e for e in incident["events"] if e["kind"] == "crew_done")
    assert done["actor"] == f"crew:phone of crew {faune}"
    assert done["data"] == {
        "assignment_id": sent["id"],
        "crew_id": faune,
        "note": "bait stations set",
    }
    assert incident["closed_at"] == at(45).replace("+00:00", "Z")
    assert crew_row(app_client, dispatcher, faune)["active_jobs"] == 0
    # Finished work leaves the list, unless asked for.
    assert ok(app_client.get("/api/v1/crew/assignments", headers=phone)) == []
    history = ok(app_client.get("/api/v1/crew/assignments?include_finished=true", headers=phone))
    assert [(a["id"], a["status"]) for a in history] == [(sent["id"], "done")]


@pytest.mark.parametrize("note", [None, "", "   "])
def test_a_decline_needs_a_reason(
    app_client: TestClient,
    dispatcher: Headers,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
    problem: Problem,
    note: str | None,
) -> None:
    faune = crew_id("Faune Plateau")
    sent = send("rats", PLATEAU, faune)
    body = {} if note is None else {"note": note}

    refused = problem(act(app_client, crew_key(faune), sent["id"], "decline", **body), 422)

    assert refused["errors"] == [{"field": "note", "reason": "a decline needs a reason"}]
    assert incident_of(app_client, dispatcher, sent)["status"] == "assigned"


@pytest.mark.parametrize("accepted_first", [False, True])
def test_a_decline_with_a_reason_reopens_the_incident(
    app_client: TestClient,
    dispatcher: Headers,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
    accepted_first: bool,
) -> None:
    faune = crew_id("Faune Plateau")
    phone = crew_key(faune)
    sent = send("rats", PLATEAU, faune)
    if accepted_first:
        ok(act(app_client, phone, sent["id"], "accept"))

    result = ok(act(app_client, phone, sent["id"], "decline", note="truck broke down"))

    assert (result["status"], result["note"], result["finished_at"]) == (
        "declined",
        "truck broke down",
        NOW_ISO,
    )
    incident = incident_of(app_client, dispatcher, sent)
    assert incident["status"] == "open"
    declined = next(e for e in incident["events"] if e["kind"] == "declined")
    assert declined["data"] == {
        "assignment_id": sent["id"],
        "crew_id": faune,
        "note": "truck broke down",
    }
    assert crew_row(app_client, dispatcher, faune)["status"] == "available"
    assert ok(app_client.get("/api/v1/crew/assignments", headers=phone)) == []


def test_another_crews_assignment_is_not_found(
    app_client: TestClient,
    dispatcher: Headers,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
    problem: Problem,
) -> None:
    theirs = send("rats", MERCIER, crew_id("Faune Mercier"))
    mine = crew_key(crew_id("Faune Plateau"))

    for action in ("accept", "decline", "en_route"):
        body = problem(act(app_client, mine, theirs["id"], action, note="x"), 404)
        assert body["detail"] == f"no assignment {theirs['id']} for this crew"
    assert incident_of(app_client, dispatcher, theirs)["status"] == "assigned"
    problem(act(app_client, mine, 999999, "accept"), 404)


def test_a_stale_version_is_a_conflict_that_says_what_changed(
    app_client: TestClient,
    dispatcher: Headers,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
    problem: Problem,
) -> None:
    faune = crew_id("Faune Plateau")
    phone = crew_key(faune)
    sent = send("rats", PLATEAU, faune)
    ok(act(app_client, phone, sent["id"], "accept", version=1))

    # A second phone of the crew still shows version 1.
    body = problem(act(app_client, crew_key(faune), sent["id"], "en_route", version=1), 409)

    assert body["detail"] == (
        f"assignment {sent['id']} changed since your version 1: it is now accepted (version 2); "
        "your 'en_route' was not applied"
    )
    assert incident_of(app_client, dispatcher, sent)["status"] == "acknowledged"


@pytest.mark.parametrize(
    ("action", "needs"),
    [("done", "on_scene"), ("on_scene", "accepted or en_route")],
)
def test_a_step_out_of_order_is_a_conflict(
    app_client: TestClient,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
    problem: Problem,
    action: str,
    needs: str,
) -> None:
    faune = crew_id("Faune Plateau")
    sent = send("rats", PLATEAU, faune)

    body = problem(act(app_client, crew_key(faune), sent["id"], action, version=1), 409)

    assert body["detail"] == f"assignment {sent['id']} is pending: '{action}' needs {needs}"


def test_an_action_after_a_reassignment_is_a_conflict_saying_so(
    app_client: TestClient,
    dispatcher: Headers,
    clock: ManualClock,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
    problem: Problem,
) -> None:
    plateau, mercier = crew_id("Faune Plateau"), crew_id("Faune Mercier")
    phone = crew_key(plateau)
    sent = send("rats", PLATEAU, plateau)
    clock.advance(timedelta(minutes=5))
    ok(
        app_client.post(
            f"/api/v1/incidents/{sent['incident_id']}/assign",
            json={"crew_id": mercier},
            headers=dispatcher,
        ),
        201,
    )

    body = problem(act(app_client, phone, sent["id"], "accept", version=1), 409)

    assert body["detail"] == (
        f"assignment {sent['id']} is reassigned since 2026-05-04 14:05:00Z; "
        "your 'accept' was not applied"
    )
    assert incident_of(app_client, dispatcher, sent)["status"] == "assigned"
    assert ok(app_client.get("/api/v1/crew/assignments", headers=phone)) == []
    listed = ok(app_client.get("/api/v1/crew/assignments", headers=crew_key(mercier)))
    assert [a["incident_id"] for a in listed] == [sent["incident_id"]]


def test_an_action_after_the_incident_was_cancelled_is_a_conflict_saying_so(
    app_client: TestClient,
    dispatcher: Headers,
    clock: ManualClock,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
    problem: Problem,
) -> None:
    faune = crew_id("Faune Plateau")
    phone = crew_key(faune)
    sent = send("rats", PLATEAU, faune)
    ok(act(app_client, phone, sent["id"], "accept"))
    clock.advance(timedelta(minutes=7))
    ok(
        app_client.patch(
            f"/api/v1/incidents/{sent['incident_id']}",
            json={"status": "cancelled"},
            headers=dispatcher,
        )
    )

    body = problem(act(app_client, phone, sent["id"], "en_route", version=2), 409)

    assert body["detail"] == (
        f"assignment {sent['id']} is cancelled since 2026-05-04 14:07:00Z; "
        "your 'en_route' was not applied"
    )
    assert ok(app_client.get("/api/v1/crew/assignments", headers=phone)) == []


def test_an_unknown_action_is_refused(
    app_client: TestClient,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
    problem: Problem,
) -> None:
    faune = crew_id("Faune Plateau")
    sent = send("rats", PLATEAU, faune)

    problem(act(app_client, crew_key(faune), sent["id"], "teleport"), 422)


# --- who may ---------------------------------------------------------------------------------


def test_staff_keys_cannot_use_crew_routes(
    app_client: TestClient,
    dispatcher: Headers,
    admin: Headers,
    crew_id: Callable[[str], int],
    send: Callable[..., dict[str, Any]],
    problem: Problem,
) -> None:
    sent = send("rats", PLATEAU, crew_id("Faune Plateau"))

    for response in (
        app_client.get("/api/v1/crew/assignments", headers=dispatcher),
        act(app_client, dispatcher, sent["id"], "accept"),
    ):
        assert "role dispatcher may not do this" in problem(response, 403)["detail"]
    # An admin passes every role check but has no crew to act as.
    for response in (
        app_client.get("/api/v1/crew/assignments", headers=admin),
        act(app_client, admin, sent["id"], "accept"),
    ):
        assert problem(response, 403)["detail"] == "this key belongs to no crew"


def test_crew_keys_cannot_use_dispatcher_routes(
    app_client: TestClient,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    send: Callable[..., dict[str, Any]],
    problem: Problem,
) -> None:
    faune = crew_id("Faune Plateau")
    phone = crew_key(faune)
    sent = send("rats", PLATEAU, faune)

    for response in (
        app_client.get("/api/v1/crews", headers=phone),
        app_client.get("/api/v1/incidents", headers=phone),
        app_client.get(f"/api/v1/incidents/{sent['incident_id']}", headers=phone),
        app_client.get(f"/api/v1/incidents/{sent['incident_id']}/recommendations", headers=phone),
        app_client.post(
            f"/api/v1/incidents/{sent['incident_id']}/assign",
            json={"crew_id": faune},
            headers=phone,
        ),
        app_client.post("/api/v1/dispatch/batch", json={}, headers=phone),
        app_client.post(f"/api/v1/crews/{faune}/plan", headers=phone),
        app_client.post(
            "/api/v1/keys", json={"name": "k", "role": "crew", "crew_id": faune}, headers=phone
        ),
    ):
        assert "role crew may not do this" in problem(response, 403)["detail"]


def test_crew_routes_need_a_key(app_client: TestClient, problem: Problem) -> None:
    problem(app_client.get("/api/v1/crew/assignments"), 401)


# --- positions -------------------------------------------------------------------------------

HERE = (-73.5800, 45.5230)
THERE = (-73.5750, 45.5260)
EARLIER = (-73.5850, 45.5210)
EARLIEST = (-73.5900, 45.5190)


def fix(where: tuple[float, float], fix_at: str) -> dict[str, Any]:
    return {"lon": where[0], "lat": where[1], "fix_at": fix_at}


def test_a_batch_of_fixes_out_of_order_with_a_repeat(
    app_client: TestClient,
    dispatcher: Headers,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    count_rows: Callable[[str], int],
) -> None:
    faune = crew_id("Faune Plateau")
    phone = crew_key(faune)
    url = f"/api/v1/crews/{faune}/positions"
    batch = [
        fix(THERE, at(-1)),
        fix(EARLIEST, at(-3)),
        fix(EARLIER, at(-2)),
        fix(THERE, "2026-05-04T09:59:00-04:00"),  # the first fix again, in local time
    ]

    assert ok(app_client.post(url, json={"fixes": batch}, headers=phone)) == {
        "stored": 3,
        "repeated": 1,
        "moved": True,
    }

    assert count_rows("crew_positions") == 3
    row = crew_row(app_client, dispatcher, faune)
    assert (row["lon"], row["lat"], row["last_fix_at"]) == (
        THERE[0],
        THERE[1],
        "2026-05-04T13:59:00Z",
    )

    # A fix older than the newest, arriving late, is kept but does not move the crew back.
    late = ok(app_client.post(url, json={"fixes": [fix(HERE, at(-10))]}, headers=phone))
    assert late == {"stored": 1, "repeated": 0, "moved": False}
    assert count_rows("crew_positions") == 4
    row = crew_row(app_client, dispatcher, faune)
    assert (row["lon"], row["lat"], row["last_fix_at"]) == (
        THERE[0],
        THERE[1],
        "2026-05-04T13:59:00Z",
    )

    # The whole first batch resent after a network gap: nothing new.
    again = ok(app_client.post(url, json={"fixes": batch}, headers=phone))
    assert again == {"stored": 0, "repeated": 4, "moved": False}
    assert count_rows("crew_positions") == 4

    # A newer fix moves it.
    newer = ok(app_client.post(url, json={"fixes": [fix(HERE, NOW_ISO)]}, headers=phone))
    assert newer == {"stored": 1, "repeated": 0, "moved": True}
    row = crew_row(app_client, dispatcher, faune)
    assert (row["lon"], row["lat"], row["last_fix_at"]) == (HERE[0], HERE[1], NOW_ISO)


def test_a_crew_cannot_post_another_crews_position(
    app_client: TestClient,
    dispatcher: Headers,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    count_rows: Callable[[str], int],
    problem: Problem,
) -> None:
    plateau, mercier = crew_id("Faune Plateau"), crew_id("Faune Mercier")

    response = app_client.post(
        f"/api/v1/crews/{mercier}/positions",
        json={"fixes": [fix(HERE, NOW_ISO)]},
        headers=crew_key(plateau),
    )

    assert problem(response, 404)["detail"] == f"no crew with id {mercier}"
    assert count_rows("crew_positions") == 0
    assert crew_row(app_client, dispatcher, mercier)["last_fix_at"] is None


def test_an_admin_may_post_any_crews_position(
    app_client: TestClient, admin: Headers, crew_id: Callable[[str], int]
) -> None:
    mercier = crew_id("Faune Mercier")

    response = app_client.post(
        f"/api/v1/crews/{mercier}/positions", json={"fixes": [fix(HERE, NOW_ISO)]}, headers=admin
    )

    assert ok(response) == {"stored": 1, "repeated": 0, "moved": True}


@pytest.mark.parametrize(
    ("fixes", "field"),
    [
        ([fix(HERE, "2026-05-04T14:00:00")], "fixes.0.fix_at"),  # no time zone
        ([fix((-200.0, 45.5), NOW_ISO)], "fixes.0.lon"),
        ([fix(HERE, NOW_ISO), fix((-73.5, 91.0), NOW_ISO)], "fixes.1.lat"),
        ([], "fixes"),
    ],
)
def test_bad_fixes_are_refused_whole(
    app_client: TestClient,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
    count_rows: Callable[[str], int],
    problem: Problem,
    fixes: list[dict[str, Any]],
    field: str,
) -> None:
    faune = crew_id("Faune Plateau")

    response = app_client.post(
        f"/api/v1/crews/{faune}/positions", json={"fixes": fixes}, headers=crew_key(faune)
    )

    assert [e["field"] for e in problem(response, 422)["errors"]] == [field]
    assert count_rows("crew_positions") == 0


def test_position_stale_follows_the_last_fix(
    app_client: TestClient,
    dispatcher: Headers,
    clock: ManualClock,
    crew_id: Callable[[str], int],
    crew_key: Callable[[int], Headers],
) -> None:
    faune, mercier = crew_id("Faune Plateau"), crew_id("Faune Mercier")

    def stale() -> dict[int, bool]:
        roster = ok(app_client.get("/api/v1/crews", headers=dispatcher))
        return {c["id"]: c["position_stale"] for c in roster if c["id"] in {faune, mercier}}

    assert stale() == {faune: True, mercier: True}
    ok(
        app_client.post(
            f"/api/v1/crews/{faune}/positions",
            json={"fixes": [fix(HERE, NOW_ISO)]},
            headers=crew_key(faune),
        )
    )
    assert stale() == {faune: False, mercier: True}

    clock.advance(timedelta(seconds=300))
    assert stale() == {faune: False, mercier: True}  # 300 s old: not yet stale

    clock.advance(timedelta(seconds=1))
    assert stale() == {faune: True, mercier: True}
