"""Who may call what, route by route, through the real app on SpatiaLite and PostGIS.

Every route of the app has an entry in MATRIX (a new route without one fails), and each is
called by eight callers: no key, a wrong key, a revoked key, and keys of every role. Exactly
the allowed callers get past authentication; the others get 401 (no usable key) or 403
(wrong role) with the body that says so, and change nothing. Then the promises around
it: crews never reach each other's work, reporter contact details never leave the staff
API, keys are stored as digests only, and a revoked key stops at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.clock import ManualClock
from fieldops.db.engine import READ_ONLY, unit_of_work

Problem = Callable[[httpx.Response, int], dict[str, Any]]
Headers = dict[str, str]

PLATEAU = (-73.5800, 45.5230)
WRONG_KEY = "fo_" + "W" * 43  # shaped like a real key, known to nobody
CALLERS = ("none", "wrong", "revoked", "public", "crew", "dispatcher", "manager", "admin")
ROLES = {r.value: r for r in Role}
NO_KEY = "send an API key as 'Authorization: Bearer <key>'"
BAD_KEY = "the API key is unknown or revoked"
# Rows that any write leaves behind: a refused call must not change one of these numbers.
FOOTPRINT = sa.text(
    "SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM reports),"
    " (SELECT count(*) FROM incident_events), (SELECT count(*) FROM assignments),"
    " (SELECT count(*) FROM crew_positions), (SELECT count(*) FROM emergencies),"
    " (SELECT count(*) FROM emergencies WHERE ended_at IS NOT NULL),"
    " (SELECT count(*) FROM api_keys),"
    " (SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL),"
    " (SELECT count(*) FROM idempotent_responses)"
)


class Access(StrEnum):
    ANYONE = "anyone"  # public reads and pages: keys are not even looked at
    OPEN311_KEY = "open311 key"  # any active key, sent as the api_key form field
    STAFF = "staff"  # dispatcher, manager (and admin)
    MANAGER = "manager"  # manager (and admin)
    ADMIN = "admin"
    CREW = "crew"  # a crew key; an admin passes the role check but has no crew
    OWN_CREW = "own crew"  # that crew's key, or an admin


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    json: Any = None
    form: dict[str, str] | None = None  # Open311: the caller's key goes in here


@dataclass
class World:
    """What the routes act on: keys of every kind, two crews, an incident assigned to crew
    A, and makers of fresh things for calls that use their target up."""

    client: TestClient
    secrets: dict[str, str]
    crew_a: int
    crew_b: int
    incident: int
    assignment: int
    district: int
    report_id: str

    def headers(self, caller: str) -> Headers:
        secret = self.secret(caller)
        return {} if secret is None else {"Authorization": f"Bearer {secret}"}

    def secret(self, caller: str) -> str | None:
        return None if caller == "none" else self.secrets[caller]

    def staff(self, role: str = "dispatcher") -> Headers:
        return {"Authorization": f"Bearer {self.secrets[role]}"}

    def fresh_emergency(self) -> int:
        body = {
            "name": "Crue printanière",
            "hazard": "flood",
            "district_ids": [self.district],
            "service_codes": ["flooding"],
        }
        response = self.client.post("/api/v1/emergencies", json=body, headers=self.staff("manager"))
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def fresh_key(self) -> int:
        body = {"name": "to revoke", "role": "public"}
        response = self.client.post("/api/v1/keys", json=body, headers=self.staff("admin"))
        assert response.status_code == 201, response.text
        return int(response.json()["id"])


@dataclass(frozen=True)
class Entry:
    access: Access
    call: Callable[[World], Call]
    ok: frozenset[int] = frozenset({200})  # what an allowed caller gets


def entry(access: Access, call: Callable[[World], Call], *ok: int) -> Entry:
    return Entry(access, call, frozenset(ok or {200}))


def get(url: str) -> Callable[[World], Call]:
    return lambda _w: Call("GET", url)


def fix_now() -> dict[str, Any]:
    return {"fixes": [{"lon": PLATEAU[0], "lat": PLATEAU[1], "fix_at": "2026-05-04T13:59:00Z"}]}


OPEN311_FORM = {"service_code": "pothole", "long": str(PLATEAU[0]), "lat": str(PLATEAU[1])}

# (method, path as the app declares it) -> who may call it and an example call.
MATRIX: dict[tuple[str, str], Entry] = {
    # Framework pages and health.
    ("GET", "/openapi.json"): entry(Access.ANYONE, get("/openapi.json")),
    ("GET", "/docs"): entry(Access.ANYONE, get("/docs")),
    ("GET", "/docs/oauth2-redirect"): entry(Access.ANYONE, get("/docs/oauth2-redirect")),
    ("GET", "/redoc"): entry(Access.ANYONE, get("/redoc")),
    ("GET", "/healthz"): entry(Access.ANYONE, get("/healthz")),
    ("GET", "/readyz"): entry(Access.ANYONE, get("/readyz")),
    # Public reference data.
    ("GET", "/api/v1/districts"): entry(Access.ANYONE, get("/api/v1/districts")),
    ("GET", "/api/v1/districts.geojson"): entry(Access.ANYONE, get("/api/v1/districts.geojson")),
    ("GET", "/api/v1/services"): entry(Access.ANYONE, get("/api/v1/services")),
    # Incidents.
    ("POST", "/api/v1/incidents"): entry(
        Access.STAFF,
        lambda w: Call(
            "POST",
            "/api/v1/incidents",
            json={"service_code": "flooding", "lon": PLATEAU[0], "lat": PLATEAU[1]},
        ),
        201,
    ),
    ("GET", "/api/v1/incidents"): entry(Access.STAFF, get("/api/v1/incidents")),
    ("GET", "/api/v1/incidents.geojson"): entry(Access.STAFF, get("/api/v1/incidents.geojson")),
    ("GET", "/api/v1/incidents/{incident_id}"): entry(
        Access.STAFF, lambda w: Call("GET", f"/api/v1/incidents/{w.incident}")
    ),
    ("PATCH", "/api/v1/incidents/{incident_id}"): entry(
        Access.STAFF,
        lambda w: Call("PATCH", f"/api/v1/incidents/{w.incident}", json={"priority": 2}),
    ),
    # Keys.
    ("GET", "/api/v1/keys"): entry(Access.ADMIN, get("/api/v1/keys")),
    ("POST", "/api/v1/keys"): entry(
        Access.ADMIN,
        lambda w: Call("POST", "/api/v1/keys", json={"name": "n", "role": "dispatcher"}),
        201,
    ),
    ("POST", "/api/v1/keys/{key_id}/revoke"): entry(
        Access.ADMIN, lambda w: Call("POST", f"/api/v1/keys/{w.fresh_key()}/revoke")
    ),
    # Open311 GeoReport v2.
    ("GET", "/open311/v2/discovery.{fmt}"): entry(Access.ANYONE, get("/open311/v2/discovery.xml")),
    ("GET", "/open311/v2/services.{fmt}"): entry(Access.ANYONE, get("/open311/v2/services.json")),
    ("GET", "/open311/v2/services/{service_code}.{fmt}"): entry(
        Access.ANYONE, get("/open311/v2/services/wildlife.json")
    ),
    ("POST", "/open311/v2/requests.{fmt}"): entry(
        Access.OPEN311_KEY,
        lambda w: Call("POST", "/open311/v2/requests.json", form=OPEN311_FORM),
        201,
    ),
    ("GET", "/open311/v2/requests.{fmt}"): entry(Access.ANYONE, get("/open311/v2/requests.xml")),
    ("GET", "/open311/v2/requests/{service_request_id}.{fmt}"): entry(
        Access.ANYONE, lambda w: Call("GET", f"/open311/v2/requests/{w.report_id}.json")
    ),
    # Every service is realtime: no token ever exists, for anyone.
    ("GET", "/open311/v2/tokens/{token}.{fmt}"): entry(
        Access.ANYONE, get("/open311/v2/tokens/abc.json"), 404
    ),
    # Crews and dispatch.
    ("GET", "/api/v1/crews"): entry(Access.STAFF, get("/api/v1/crews")),
    ("POST", "/api/v1/crews/{crew_id}/positions"): entry(
        Access.OWN_CREW,
        lambda w: Call("POST", f"/api/v1/crews/{w.crew_a}/positions", json=fix_now()),
    ),
    ("GET", "/crew"): entry(Access.ANYONE, get("/crew")),
    ("GET", "/static/crew/{name}"): entry(Access.ANYONE, get("/static/crew/crew.js")),
    ("GET", "/api/v1/incidents/{incident_id}/recommendations"): entry(
        Access.STAFF,
        lambda w: Call("GET", f"/api/v1/incidents/{w.incident}/recommendations"),
    ),
    ("POST", "/api/v1/incidents/{incident_id}/assign"): entry(
        # Crew B relieves crew A, then is already on it (the same answer again).
        Access.STAFF,
        lambda w: Call(
            "POST", f"/api/v1/incidents/{w.incident}/assign", json={"crew_id": w.crew_b}
        ),
        201,
    ),
    ("POST", "/api/v1/dispatch/batch"): entry(
        Access.STAFF, lambda w: Call("POST", "/api/v1/dispatch/batch", json={})
    ),
    ("POST", "/api/v1/crews/{crew_id}/plan"): entry(
        Access.STAFF, lambda w: Call("POST", f"/api/v1/crews/{w.crew_a}/plan")
    ),
    ("GET", "/api/v1/crew/assignments"): entry(Access.CREW, get("/api/v1/crew/assignments")),
    ("POST", "/api/v1/crew/assignments/{assignment_id}/{action}"): entry(
        Access.CREW,
        lambda w: Call("POST", f"/api/v1/crew/assignments/{w.assignment}/accept", json={}),
    ),
    # Escalation.
    ("GET", "/api/v1/incidents/{incident_id}/escalations"): entry(
        Access.STAFF, lambda w: Call("GET", f"/api/v1/incidents/{w.incident}/escalations")
    ),
    ("POST", "/api/v1/incidents/{incident_id}/snooze"): entry(
        Access.STAFF,
        lambda w: Call("POST", f"/api/v1/incidents/{w.incident}/snooze", json={"minutes": 5}),
    ),
    # Emergencies: managers declare and end, staff read.
    ("POST", "/api/v1/emergencies"): entry(
        Access.MANAGER,
        lambda w: Call(
            "POST",
            "/api/v1/emergencies",
            json={
                "name": "Verglas",
                "hazard": "ice storm",
                "district_ids": [w.district],
                "service_codes": ["snow_ice"],
            },
        ),
        201,
    ),
    ("POST", "/api/v1/emergencies/{emergency_id}/end"): entry(
        Access.MANAGER,
        lambda w: Call("POST", f"/api/v1/emergencies/{w.fresh_emergency()}/end"),
    ),
    ("GET", "/api/v1/emergencies"): entry(Access.STAFF, get("/api/v1/emergencies")),
    ("GET", "/api/v1/emergencies.geojson"): entry(Access.STAFF, get("/api/v1/emergencies.geojson")),
    ("GET", "/api/v1/emergencies/{emergency_id}"): entry(
        Access.STAFF, lambda w: Call("GET", f"/api/v1/emergencies/{w.fresh_emergency()}")
    ),
    # Drills: managers only. A caller let through is stopped at the scenario name or the
    # drill id, so no drill runs here (tests/drills runs them).
    ("POST", "/api/v1/drills"): entry(
        Access.MANAGER,
        lambda w: Call("POST", "/api/v1/drills", json={"scenario": "no_such_scenario"}),
        422,
    ),
    ("GET", "/api/v1/drills/{drill_id}"): entry(
        Access.MANAGER, get("/api/v1/drills/no-such-drill"), 404
    ),
    ("GET", "/api/v1/drills/{drill_id}/report"): entry(
        Access.MANAGER, get("/api/v1/drills/no-such-drill/report"), 404
    ),
    ("GET", "/api/v1/drills/{drill_id}/report.json"): entry(
        Access.MANAGER, get("/api/v1/drills/no-such-drill/report.json"), 404
    ),
    # The live map: the page and its files are public (they hold no incident), data is staff.
    ("GET", "/map"): entry(Access.ANYONE, get("/map")),
    ("GET", "/static/vendor/{package}/{path:path}"): entry(
        Access.ANYONE, get("/static/vendor/leaflet/leaflet.js")
    ),
    ("GET", "/static/fieldops/{path:path}"): entry(Access.ANYONE, get("/static/fieldops/map.js")),
    ("GET", "/api/v1/feed"): entry(Access.STAFF, get("/api/v1/feed")),
    ("GET", "/api/v1/hotspots.geojson"): entry(Access.STAFF, get("/api/v1/hotspots.geojson")),
    ("GET", "/api/v1/heat.geojson"): entry(Access.STAFF, get("/api/v1/heat.geojson")),
}


@dataclass(frozen=True)
class Denied:
    status: int
    detail: str


def verdict(access: Access, caller: str, world: World) -> Denied | None:
    """What ``caller`` must get on a route with ``access``: None when it is let through."""
    if access is Access.ANYONE:
        return None
    if access is Access.OPEN311_KEY:
        # GeoReport v2 answers 403 for a missing or invalid key; every active key may post.
        if caller == "none":
            return Denied(403, "api_key is required to post")
        if caller in {"wrong", "revoked"}:
            return Denied(403, "api_key is missing or not valid")
        return None
    if caller == "none":
        return Denied(401, NO_KEY)
    if caller in {"wrong", "revoked"}:
        return Denied(401, BAD_KEY)
    if access is Access.OWN_CREW:
        # Another crew's id (or a key of no crew) looks like no crew at all.
        return (
            None if caller in {"crew", "admin"} else Denied(404, f"no crew with id {world.crew_a}")
        )
    if access is Access.CREW and caller == "admin":
        return Denied(403, "this key belongs to no crew")
    allowed = {
        Access.STAFF: {"dispatcher", "manager"},
        Access.MANAGER: {"manager"},
        Access.ADMIN: set(),
        Access.CREW: {"crew"},
    }[access] | {"admin"}
    if caller in allowed:
        return None
    needs = ", ".join(sorted(allowed))
    return Denied(403, f"role {caller} may not do this; needs one of {needs}")


# --- the world -------------------------------------------------------------------------------


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def world(app_client: TestClient, sessions: sessionmaker[Session], clock: ManualClock) -> World:
    with unit_of_work(sessions) as session:
        rows = session.execute(sa.text("SELECT name, id FROM crews"))
        names = {name: id_ for name, id_ in rows}
        crew_a, crew_b = names["Faune Plateau"], names["Faune Mercier"]
        secrets = {
            role.value: create_key(
                session,
                name=f"matrix {role}",
                role=role,
                now=clock.now(),
                crew_id=crew_a if role is Role.CREW else None,
            )[1]
            for role in Role
        }
    admin = {"Authorization": f"Bearer {secrets['admin']}"}
    dispatcher = {"Authorization": f"Bearer {secrets['dispatcher']}"}
    # The revoked key was an admin's, in use (so this process had it cached) until revoked.
    made = ok(
        app_client.post("/api/v1/keys", json={"name": "old", "role": "admin"}, headers=admin), 201
    )
    ok(app_client.get("/api/v1/keys", headers={"Authorization": f"Bearer {made['secret']}"}))
    ok(app_client.post(f"/api/v1/keys/{made['id']}/revoke", headers=admin))
    secrets |= {"wrong": WRONG_KEY, "revoked": made["secret"]}

    report = {"service_code": "rats", "lon": PLATEAU[0], "lat": PLATEAU[1]}
    opened = ok(app_client.post("/api/v1/incidents", json=report, headers=dispatcher), 201)
    incident = opened["incident"]["id"]
    assignment = ok(
        app_client.post(
            f"/api/v1/incidents/{incident}/assign", json={"crew_id": crew_a}, headers=dispatcher
        ),
        201,
    )
    return World(
        client=app_client,
        secrets=secrets,
        crew_a=crew_a,
        crew_b=crew_b,
        incident=incident,
        assignment=assignment["id"],
        district=opened["incident"]["district"]["id"],
        report_id=opened["report_id"],
    )


def footprint(sessions: sessionmaker[Session]) -> tuple[int, ...]:
    with sessions() as session:
        session.connection(execution_options=READ_ONLY)
        row = session.execute(FOOTPRINT).one()
        session.rollback()
    return tuple(int(n) for n in row)


def send(world: World, call: Call, caller: str) -> httpx.Response:
    if call.form is not None:
        secret = world.secret(caller)
        form = call.form | ({} if secret is None else {"api_key": secret})
        return world.client.request(call.method, call.url, data=form)
    return world.client.request(
        call.method, call.url, json=call.json, headers=world.headers(caller)
    )


def check_denied(response: httpx.Response, denied: Denied, call: Call, problem: Problem) -> None:
    if call.url.startswith("/open311/"):
        assert response.status_code == denied.status, response.text
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert json.loads(response.content) == [
            {"code": denied.status, "description": denied.detail}
        ]
        return
    body = problem(response, denied.status)
    assert body["detail"] == denied.detail
    assert (
        body["title"] == {401: "Unauthenticated", 403: "Forbidden", 404: "Not found"}[denied.status]
    )
    if denied.status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


# --- the matrix ------------------------------------------------------------------------------


def test_every_route_of_the_app_is_in_the_matrix(app_client: TestClient) -> None:
    routes = {
        (method, str(route.path))
        for route in iter_route_contexts(app_client.app.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }

    assert sorted(routes - MATRIX.keys()) == [], "routes with no entry in MATRIX"
    assert sorted(MATRIX.keys() - routes) == [], "MATRIX entries for routes that are gone"


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_exactly_the_allowed_callers_get_through(
    world: World,
    sessions: sessionmaker[Session],
    problem: Problem,
    route: tuple[str, str],
) -> None:
    rule = MATRIX[route]
    passed = []
    for caller in CALLERS:
        call = rule.call(world)
        before = footprint(sessions)
        response = send(world, call, caller)
        denied = verdict(rule.access, caller, world)
        if denied is None:
            assert response.status_code in rule.ok, (caller, response.status_code, response.text)
            passed.append(caller)
        else:
            check_denied(response, denied, call, problem)
            assert footprint(sessions) == before, f"{caller} was refused yet changed something"

    expected = {
        Access.ANYONE: CALLERS,
        Access.OPEN311_KEY: CALLERS[3:],
        Access.STAFF: ("dispatcher", "manager", "admin"),
        Access.MANAGER: ("manager", "admin"),
        Access.ADMIN: ("admin",),
        Access.CREW: ("crew",),
        Access.OWN_CREW: ("crew", "admin"),
    }[rule.access]
    assert tuple(passed) == expected


# --- crews, reporters, keys ------------------------------------------------------------------


def crew_key(sessions: sessionmaker[Session], clock: ManualClock, crew: int) -> Headers:
    with unit_of_work(sessions) as session:
        _key, secret = create_key(
            session, name=f"phone {crew}", role=Role.CREW, now=clock.now(), crew_id=crew
        )
    return {"Authorization": f"Bearer {secret}"}


def test_a_crew_never_reaches_another_crews_assignments_or_position(
    world: World,
    sessions: sessionmaker[Session],
    clock: ManualClock,
    problem: Problem,
) -> None:
    client, theirs = world.client, world.assignment
    crew_b = crew_key(sessions, clock, world.crew_b)
    crew_a = world.headers("crew")
    before = footprint(sessions)

    listed = ok(client.get("/api/v1/crew/assignments", headers=crew_b))
    for action in ("accept", "decline", "en_route", "on_scene", "done"):
        url = f"/api/v1/crew/assignments/{theirs}/{action}"
        refused = client.post(url, json={"version": 1, "note": "not mine"}, headers=crew_b)
        assert problem(refused, 404)["detail"] == f"no assignment {theirs} for this crew"
    moved = client.post(f"/api/v1/crews/{world.crew_a}/positions", json=fix_now(), headers=crew_b)

    assert listed == []
    assert problem(moved, 404)["detail"] == f"no crew with id {world.crew_a}"
    assert footprint(sessions) == before
    # Crew A's work and place are as they were; crew B's own calls work.
    (mine,) = ok(client.get("/api/v1/crew/assignments", headers=crew_a))
    assert (mine["id"], mine["status"], mine["version"]) == (theirs, "pending", 1)
    roster = {c["id"]: c for c in ok(client.get("/api/v1/crews", headers=world.staff()))}
    assert roster[world.crew_a]["last_fix_at"] is None
    ok(client.post(f"/api/v1/crews/{world.crew_b}/positions", json=fix_now(), headers=crew_b))


CONTACT = {
    "first_name": "Zéphyrine",
    "last_name": "Quaglieri-Beauchesne",
    "email": "zq.4417@courriel.example",
    "phone": "+1 514-555-0143",
    "device_id": "device-7f3a9c21-e4b8",
}
# Pieces of them that must not show either, however a page formats them.
CONTACT_PIECES = (*CONTACT.values(), "Quaglieri", "zq.4417", "555-0143", "7f3a9c21")


def test_reporter_contact_details_never_appear_in_public_or_map_output(
    world: World, sessions: sessionmaker[Session]
) -> None:
    client, staff = world.client, world.staff()
    posted = [
        ok(
            client.post(
                "/open311/v2/requests.json",
                data={
                    "api_key": world.secrets["public"],
                    "service_code": "rats",
                    "long": str(PLATEAU[0] + 0.0002 * n),
                    "lat": str(PLATEAU[1]),
                    "description": f"Rats near the lane, sighting {n}",
                    **CONTACT,
                },
            ),
            201,
        )[0]["service_request_id"]
        for n in range(3)
    ]
    # They merged into the world's rats incident, which crew A holds.
    pages: dict[str, httpx.Response] = {}
    for fmt in ("json", "xml"):
        for extensions in ("false", "true"):
            pages[f"requests.{fmt} {extensions}"] = client.get(
                f"/open311/v2/requests.{fmt}", params={"extensions": extensions}
            )
            pages[f"requests/id.{fmt} {extensions}"] = client.get(
                f"/open311/v2/requests/{posted[0]}.{fmt}", params={"extensions": extensions}
            )
    for lang in ("fr", "en"):
        pages[f"map {lang}"] = client.get("/map", params={"lang": lang})
    pages["districts"] = client.get("/api/v1/districts.geojson")
    for url in (
        "/api/v1/feed",
        "/api/v1/feed?after=0",
        "/api/v1/incidents.geojson",
        "/api/v1/hotspots.geojson?min_reports=1&density_ratio=0.001",
        "/api/v1/heat.geojson",
        "/api/v1/emergencies.geojson",
    ):
        pages[url] = client.get(url, headers=staff)
    pages["crew"] = client.get("/api/v1/crew/assignments", headers=world.headers("crew"))

    leaks = {
        (name, piece)
        for name, page in pages.items()
        for piece in CONTACT_PIECES
        if piece.lower() in page.text.lower()
    }

    assert {name: r.status_code for name, r in pages.items()} == dict.fromkeys(pages, 200)
    assert leaks == set()
    # Not vacuous: the reports are in those answers, and their contacts were stored.
    assert all(p in pages["requests.json true"].text for p in posted)
    feed = pages["/api/v1/feed"].json()
    assert [f["id"] for f in feed["incidents"]["features"]] == [world.incident]
    assert feed["incidents"]["features"][0]["properties"]["report_count"] == 4
    assert (
        len(pages["/api/v1/hotspots.geojson?min_reports=1&density_ratio=0.001"].json()["features"])
        == 1
    )
    staff_detail = client.get(f"/api/v1/incidents/{world.incident}", headers=staff)
    # The same scan finds them where staff may see them.
    assert [p for p in CONTACT_PIECES if p.lower() in staff_detail.text.lower()] == [
        CONTACT["first_name"],
        CONTACT["last_name"],
        CONTACT["email"],
        CONTACT["phone"],
        "Quaglieri",
        "zq.4417",
        "555-0143",
    ]
    detail = ok(staff_detail)
    assert {r["reporter_email"] for r in detail["reports"]} == {"", CONTACT["email"]}
    with sessions() as session:
        devices = session.scalars(sa.text("SELECT device_id FROM reports")).all()
    assert sorted(devices, key=str) == sorted([*[CONTACT["device_id"]] * 3, ""], key=str)


def test_keys_are_stored_as_digests_only(world: World, sessions: sessionmaker[Session]) -> None:
    made = ok(
        world.client.post(
            "/api/v1/keys",
            json={"name": "night desk", "role": "dispatcher"},
            headers=world.staff("admin"),
        ),
        201,
    )
    secrets = [made["secret"], *(world.secrets[r.value] for r in Role)]

    with sessions() as session:
        rows = [dict(r._mapping) for r in session.execute(sa.text("SELECT * FROM api_keys"))]

    stored = [str(value) for row in rows for value in row.values()]
    for secret in secrets:
        # The prefix (fo_ and 7 characters) is shown to tell keys apart; the rest never.
        assert not [v for v in stored if secret[10:] in v], "a secret is stored"
    (row,) = [r for r in rows if r["id"] == made["id"]]
    assert row["digest"] == hashlib.sha256(made["secret"].encode()).hexdigest()
    assert row["prefix"] == made["secret"][:10]
    assert {r["digest"] for r in rows} >= {hashlib.sha256(s.encode()).hexdigest() for s in secrets}


def test_a_revoked_key_stops_at_once_in_this_process(world: World, problem: Problem) -> None:
    client, admin = world.client, world.staff("admin")
    desk = ok(
        client.post("/api/v1/keys", json={"name": "desk", "role": "dispatcher"}, headers=admin), 201
    )
    app = ok(
        client.post("/api/v1/keys", json={"name": "app", "role": "public"}, headers=admin), 201
    )
    desk_headers = {"Authorization": f"Bearer {desk['secret']}"}
    form = OPEN311_FORM | {"api_key": app["secret"]}
    # In use, so this process holds both keys in its cache.
    ok(client.get("/api/v1/incidents", headers=desk_headers))
    ok(client.post("/open311/v2/requests.json", data=form), 201)

    for key in (desk, app):
        ok(client.post(f"/api/v1/keys/{key['id']}/revoke", headers=admin))
    refused_desk = client.get("/api/v1/incidents", headers=desk_headers)
    refused_app = client.post("/open311/v2/requests.json", data=form)

    assert problem(refused_desk, 401)["detail"] == BAD_KEY
    assert refused_app.status_code == 403
    assert json.loads(refused_app.content) == [
        {"code": 403, "description": "api_key is missing or not valid"}
    ]
