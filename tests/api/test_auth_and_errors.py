"""Keys and roles, error rendering, size limits, health and the public reference routes, through
the real app on SpatiaLite and PostGIS."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fieldops.auth.models import Role
from fieldops.clock import ManualClock
from fieldops.db.engine import READ_ONLY
from fieldops.db.migrate import alembic_config

Problem = Callable[[httpx.Response, int], dict[str, Any]]
Headers = dict[str, str]

LAYERS = Path(__file__).resolve().parents[2] / "layers"
PLATEAU = {"lon": -73.5800, "lat": 45.5230}
FLOODING = {"service_code": "flooding", **PLATEAU}
LIMIT_BYTES = 64 * 1024  # app_client's max_body_bytes
# What the key list shows of a key: never its secret or digest.
KEY_FIELDS = {"id", "name", "role", "prefix", "crew_id", "created_at", "revoked_at"}

# Routes only staff (dispatcher, manager, admin) may use: (method, path, json body).
STAFF_ROUTES = [
    ("GET", "/api/v1/incidents", None),
    ("GET", "/api/v1/incidents.geojson", None),
    ("GET", "/api/v1/incidents/1", None),
    ("POST", "/api/v1/incidents", FLOODING),
    ("PATCH", "/api/v1/incidents/1", {"status": "assigned"}),
]
KEY_ROUTES = [
    ("GET", "/api/v1/keys", None),
    ("POST", "/api/v1/keys", {"name": "ops", "role": "dispatcher"}),
    ("POST", "/api/v1/keys/1/revoke", None),
]


def call(client: TestClient, method: str, path: str, body: Any, headers: Headers) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers)


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic ZmllbGRvcHM6c2VjcmV0"},
    ],
    ids=["none", "empty", "bearer-without-key", "basic"],
)
@pytest.mark.parametrize(("method", "path", "body"), STAFF_ROUTES + KEY_ROUTES)
def test_no_key_is_401_with_www_authenticate(
    app_client: TestClient,
    problem: Problem,
    count_rows: Callable[[str], int],
    headers: Headers,
    method: str,
    path: str,
    body: Any,
) -> None:
    response = call(app_client, method, path, body, headers)

    answer = problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert answer["title"] == "Unauthenticated"
    assert answer["detail"] == "send an API key as 'Authorization: Bearer <key>'"
    assert (count_rows("incidents"), count_rows("api_keys")) == (0, 0)


def test_an_unknown_key_is_401(
    app_client: TestClient, auth: Callable[..., Headers], problem: Problem
) -> None:
    auth(Role.ADMIN)  # a key exists, just not this one

    response = app_client.get("/api/v1/incidents", headers={"Authorization": "Bearer fo_nope"})

    assert problem(response, 401)["detail"] == "the API key is unknown or revoked"
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_bearer_scheme_is_case_insensitive(
    app_client: TestClient, auth: Callable[..., Headers]
) -> None:
    secret = auth(Role.DISPATCHER)["Authorization"].removeprefix("Bearer ")

    response = app_client.get("/api/v1/incidents", headers={"Authorization": f"bearer {secret}"})

    assert response.status_code == 200


def test_a_revoked_key_is_401_from_then_on(
    app_client: TestClient, auth: Callable[..., Headers], problem: Problem, clock: ManualClock
) -> None:
    admin = auth(Role.ADMIN)
    made = app_client.post(
        "/api/v1/keys", json={"name": "night shift", "role": "dispatcher"}, headers=admin
    )
    assert made.status_code == 201
    key = {"Authorization": f"Bearer {made.json()['secret']}"}
    assert app_client.get("/api/v1/incidents", headers=key).status_code == 200
    clock.advance(timedelta(minutes=5))

    revoked = app_client.post(f"/api/v1/keys/{made.json()['id']}/revoke", headers=admin)

    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] == "2026-05-04T14:05:00Z"
    assert revoked.json()["created_at"] == "2026-05-04T14:00:00Z"
    assert "secret" not in revoked.json()
    response = app_client.get("/api/v1/incidents", headers=key)
    assert problem(response, 401)["detail"] == "the API key is unknown or revoked"
    assert response.headers["www-authenticate"] == "Bearer"
    posted = app_client.post("/api/v1/incidents", json=FLOODING, headers=key)
    problem(posted, 401)
    listed = app_client.get("/api/v1/keys", headers=admin).json()
    assert [(k["name"], k["revoked_at"]) for k in listed if k["id"] == made.json()["id"]] == [
        ("night shift", "2026-05-04T14:05:00Z")
    ]


def test_revoking_twice_keeps_the_first_instant(
    app_client: TestClient, auth: Callable[..., Headers], clock: ManualClock
) -> None:
    admin = auth(Role.ADMIN)
    made = app_client.post("/api/v1/keys", json={"name": "x", "role": "manager"}, headers=admin)
    url = f"/api/v1/keys/{made.json()['id']}/revoke"
    assert app_client.post(url, headers=admin).status_code == 200
    clock.advance(timedelta(hours=1))

    again = app_client.post(url, headers=admin)

    assert again.status_code == 200
    assert again.json()["revoked_at"] == "2026-05-04T14:00:00Z"


def test_revoking_an_unknown_key_is_404(
    app_client: TestClient, auth: Callable[..., Headers], problem: Problem
) -> None:
    response = app_client.post("/api/v1/keys/999999/revoke", headers=auth(Role.ADMIN))

    assert problem(response, 404)["detail"] == "no API key with id 999999"


# --- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PUBLIC, Role.CREW])
@pytest.mark.parametrize(("method", "path", "body"), STAFF_ROUTES)
def test_public_and_crew_may_not_use_dispatcher_routes(
    app_client: TestClient,
    auth: Callable[..., Headers],
    problem: Problem,
    count_rows: Callable[[str], int],
    role: Role,
    method: str,
    path: str,
    body: Any,
) -> None:
    response = call(app_client, method, path, body, auth(role))

    answer = problem(response, 403)
    assert answer["title"] == "Forbidden"
    assert answer["detail"] == (
        f"role {role} may not do this; needs one of admin, dispatcher, manager"
    )
    assert count_rows("incidents") == 0


@pytest.mark.parametrize("role", [Role.DISPATCHER, Role.MANAGER, Role.ADMIN])
def test_dispatchers_managers_and_admins_may_use_dispatcher_routes(
    app_client: TestClient, auth: Callable[..., Headers], role: Role
) -> None:
    headers = auth(role)

    posted = app_client.post("/api/v1/incidents", json=FLOODING, headers=headers)
    incident_id = posted.json()["incident"]["id"]
    patched = app_client.patch(
        f"/api/v1/incidents/{incident_id}", json={"status": "assigned"}, headers=headers
    )
    listed = app_client.get("/api/v1/incidents", headers=headers)
    one = app_client.get(f"/api/v1/incidents/{incident_id}", headers=headers)
    feed = app_client.get("/api/v1/incidents.geojson", headers=headers)

    assert [r.status_code for r in (posted, patched, listed, one, feed)] == [201] + [200] * 4
    assert [e["actor"] for e in one.json()["events"]] == [f"{role}:test-{role}"] * 2


@pytest.mark.parametrize("role", [Role.PUBLIC, Role.CREW, Role.DISPATCHER, Role.MANAGER])
@pytest.mark.parametrize(("method", "path", "body"), KEY_ROUTES)
def test_only_admins_manage_keys(
    app_client: TestClient,
    auth: Callable[..., Headers],
    problem: Problem,
    count_rows: Callable[[str], int],
    role: Role,
    method: str,
    path: str,
    body: Any,
) -> None:
    headers = auth(role)

    answer = problem(call(app_client, method, path, body, headers), 403)

    assert answer["detail"] == f"role {role} may not do this; needs one of admin"
    assert count_rows("api_keys") == 1  # only the caller's own


# --- keys ----------------------------------------------------------------------------------


def test_a_new_key_shows_its_secret_once_and_the_list_never(
    app_client: TestClient, auth: Callable[..., Headers]
) -> None:
    admin = auth(Role.ADMIN)

    made = app_client.post(
        "/api/v1/keys", json={"name": "kiosk 7", "role": "public"}, headers=admin
    )

    assert made.status_code == 201
    key = made.json()
    assert set(key) == KEY_FIELDS | {"secret"}
    assert (key["name"], key["role"], key["revoked_at"]) == ("kiosk 7", "public", None)
    assert key["created_at"] == "2026-05-04T14:00:00Z"
    assert re.fullmatch(r"fo_[A-Za-z0-9_-]{43}", key["secret"])
    assert key["prefix"] == key["secret"][:10]
    # It works, with its role: known (not 401) but not staff (403).
    kiosk = {"Authorization": f"Bearer {key['secret']}"}
    assert app_client.get("/api/v1/incidents", headers=kiosk).status_code == 403

    listed = app_client.get("/api/v1/keys", headers=admin)

    assert listed.status_code == 200
    assert [k["name"] for k in listed.json()] == ["test-admin", "kiosk 7"]
    for item in listed.json():
        assert set(item) == KEY_FIELDS
    assert key["secret"] not in listed.text
    assert hashlib.sha256(key["secret"].encode()).hexdigest() not in listed.text


def test_two_keys_never_share_a_secret(
    app_client: TestClient, auth: Callable[..., Headers]
) -> None:
    admin = auth(Role.ADMIN)
    body = {"name": "same", "role": "dispatcher"}

    secrets = {
        app_client.post("/api/v1/keys", json=body, headers=admin).json()["secret"] for _ in range(3)
    }

    assert len(secrets) == 3


def test_keys_are_stored_as_sha256_digests_not_secrets(
    app_client: TestClient, auth: Callable[..., Headers], sessions: sessionmaker[Session]
) -> None:
    made = app_client.post(
        "/api/v1/keys", json={"name": "stored", "role": "manager"}, headers=auth(Role.ADMIN)
    )
    assert made.status_code == 201
    secret = made.json()["secret"]

    with sessions() as session:
        session.connection(execution_options=READ_ONLY)
        row = (
            session.execute(
                sa.text("SELECT * FROM api_keys WHERE id = :id"), {"id": made.json()["id"]}
            )
            .mappings()
            .one()
        )
        session.rollback()

    assert row["digest"] == hashlib.sha256(secret.encode("utf-8")).hexdigest()
    assert row["prefix"] == secret[:10]
    assert (row["name"], row["role"]) == ("stored", "manager")
    assert not any(secret in str(value) for value in row.values())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "role": "dispatcher"}, "name"),
        ({"name": "x" * 201, "role": "dispatcher"}, "name"),
        ({"name": "x", "role": "overlord"}, "role"),
        ({"role": "dispatcher"}, "name"),
        ({"name": "x", "role": "crew"}, "crew_id"),  # a crew key names its crew
        ({"name": "x", "role": "dispatcher", "crew_id": 1}, "crew_id"),  # and only a crew key
    ],
)
def test_invalid_key_requests_are_refused_naming_the_field(
    app_client: TestClient,
    auth: Callable[..., Headers],
    problem: Problem,
    count_rows: Callable[[str], int],
    body: dict[str, Any],
    field: str,
) -> None:
    response = app_client.post("/api/v1/keys", json=body, headers=auth(Role.ADMIN))

    assert [e["field"] for e in problem(response, 422)["errors"]] == [field]
    assert count_rows("api_keys") == 1


def test_a_crew_key_names_its_crew(
    app_client: TestClient, auth: Callable[..., Headers], sessions: sessionmaker[Session]
) -> None:
    admin = auth(Role.ADMIN)
    crew_key = auth(Role.CREW)  # puts the demo roster in place if it is not there yet
    with sessions() as session:
        session.connection(execution_options=READ_ONLY)
        crew_id = session.scalar(sa.text("SELECT max(id) FROM crews"))
        session.rollback()

    made = app_client.post(
        "/api/v1/keys", json={"name": "truck 3", "role": "crew", "crew_id": crew_id}, headers=admin
    )

    assert made.status_code == 201
    assert (made.json()["role"], made.json()["crew_id"]) == ("crew", crew_id)
    assert app_client.get("/api/v1/incidents", headers=crew_key).status_code == 403


def test_a_crew_key_for_an_unknown_crew_is_refused_naming_crew_id(
    app_client: TestClient,
    auth: Callable[..., Headers],
    problem: Problem,
    count_rows: Callable[[str], int],
) -> None:
    response = app_client.post(
        "/api/v1/keys",
        json={"name": "ghost", "role": "crew", "crew_id": 999999},
        headers=auth(Role.ADMIN),
    )

    assert [e["field"] for e in problem(response, 422)["errors"]] == ["crew_id"]
    assert count_rows("api_keys") == 1


# --- bad bodies ----------------------------------------------------------------------------


def test_malformed_json_is_a_422_problem(
    app_client: TestClient,
    dispatcher: Headers,
    problem: Problem,
    count_rows: Callable[[str], int],
) -> None:
    response = app_client.post(
        "/api/v1/incidents",
        content=b'{"service_code": "flooding", "lat": 45.5,',
        headers={**dispatcher, "Content-Type": "application/json"},
    )

    body = problem(response, 422)
    assert body["title"] == "Invalid input"
    assert "JSON decode error" in body["detail"]
    assert count_rows("incidents") == 0


def test_a_body_over_the_limit_is_413(
    app_client: TestClient, dispatcher: Headers, problem: Problem, count_rows: Callable[[str], int]
) -> None:
    body = {**FLOODING, "description": "x" * LIMIT_BYTES}

    response = app_client.post("/api/v1/incidents", json=body, headers=dispatcher)

    answer = problem(response, 413)
    assert answer["title"] == "Request too large"
    assert answer["detail"] == f"the request body is over the {LIMIT_BYTES}-byte limit"
    assert count_rows("incidents") == 0


def test_a_body_at_the_limit_passes_the_size_check(
    app_client: TestClient, dispatcher: Headers, problem: Problem
) -> None:
    # Exactly the limit: not refused for size (but for its description, which is too long).
    skeleton = json.dumps({**FLOODING, "description": ""}).encode()
    payload = json.dumps({**FLOODING, "description": "x" * (LIMIT_BYTES - len(skeleton))})
    assert len(payload.encode()) == LIMIT_BYTES

    response = app_client.post(
        "/api/v1/incidents",
        content=payload.encode(),
        headers={**dispatcher, "Content-Type": "application/json"},
    )

    assert [e["field"] for e in problem(response, 422)["errors"]] == ["description"]


def test_a_streamed_body_over_the_limit_is_413(
    app_client: TestClient, dispatcher: Headers, problem: Problem, count_rows: Callable[[str], int]
) -> None:
    def chunks() -> Iterator[bytes]:
        yield json.dumps(FLOODING)[:-1].encode() + b', "description": "'
        for _ in range(LIMIT_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = app_client.post(
        "/api/v1/incidents",
        content=chunks(),
        headers={**dispatcher, "Content-Type": "application/json"},
    )

    assert "content-length" not in response.request.headers
    assert problem(response, 413)["title"] == "Request too large"
    assert count_rows("incidents") == 0


@pytest.mark.parametrize(("length", "status"), [(4000, 201), (4001, 422)])
def test_a_description_may_hold_4000_characters(
    app_client: TestClient,
    dispatcher: Headers,
    count_rows: Callable[[str], int],
    length: int,
    status: int,
) -> None:
    body = {**FLOODING, "description": "é" * length}

    response = app_client.post("/api/v1/incidents", json=body, headers=dispatcher)

    assert response.status_code == status, response.text
    if status == 422:
        assert response.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in response.json()["errors"]] == ["description"]
    assert count_rows("incidents") == (1 if status == 201 else 0)


def test_an_unknown_field_is_refused_naming_it(
    app_client: TestClient, dispatcher: Headers, problem: Problem, count_rows: Callable[[str], int]
) -> None:
    body = {**FLOODING, "severity": "high"}

    response = app_client.post("/api/v1/incidents", json=body, headers=dispatcher)

    assert [e["field"] for e in problem(response, 422)["errors"]] == ["severity"]
    assert count_rows("incidents") == 0


def test_every_wrong_field_is_named_at_once(
    app_client: TestClient, dispatcher: Headers, problem: Problem
) -> None:
    body = {"service_code": "", "lat": 200, "lon": -73.58, "description": "x" * 4001}

    response = app_client.post("/api/v1/incidents", json=body, headers=dispatcher)

    fields = [e["field"] for e in problem(response, 422)["errors"]]
    assert sorted(fields) == ["description", "lat", "service_code"]


# --- every error is a problem with a request id --------------------------------------------


@pytest.fixture
def error_responses(
    app_client: TestClient, auth: Callable[..., Headers]
) -> dict[str, httpx.Response]:
    staff = auth(Role.DISPATCHER)
    incident = app_client.post("/api/v1/incidents", json=FLOODING, headers=staff)
    url = f"/api/v1/incidents/{incident.json()['incident']['id']}"
    return {
        "401": app_client.get("/api/v1/incidents"),
        "403": app_client.get("/api/v1/incidents", headers=auth(Role.PUBLIC)),
        "404-route": app_client.get("/api/v1/nowhere"),
        "404-incident": app_client.get("/api/v1/incidents/999999", headers=staff),
        "405": app_client.delete(url, headers=staff),
        "409": app_client.patch(url, json={"status": "on_scene"}, headers=staff),
        "413": app_client.post(
            "/api/v1/incidents", json={**FLOODING, "description": "x" * LIMIT_BYTES}, headers=staff
        ),
        "422-body": app_client.post("/api/v1/incidents", json={"lat": 1}, headers=staff),
        "422-query": app_client.get("/api/v1/incidents?bbox=x", headers=staff),
        "422-outside": app_client.post(
            "/api/v1/incidents", json={**FLOODING, "lat": 45.0, "lon": -73.0}, headers=staff
        ),
    }


def test_every_error_is_a_problem_with_a_request_id(
    error_responses: dict[str, httpx.Response], problem: Problem
) -> None:
    for name, response in error_responses.items():
        status = int(name.split("-")[0])
        problem(response, status)
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), name

    request_ids = {r.headers["x-request-id"] for r in error_responses.values()}
    assert len(request_ids) == len(error_responses)


def test_successful_answers_carry_a_request_id_too(app_client: TestClient) -> None:
    first, second = app_client.get("/healthz"), app_client.get("/healthz")

    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


# --- health --------------------------------------------------------------------------------


def test_healthz(app_client: TestClient) -> None:
    response = app_client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_names_the_schema_revision(app_client: TestClient, engine: Engine) -> None:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()

    response = app_client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "schema": head}
    assert head is not None


# --- public reference routes ---------------------------------------------------------------


def _limadmin_names() -> set[str]:
    layer = json.loads((LAYERS / "limadmin.geojson").read_text(encoding="utf-8"))
    return {f["properties"]["NOM"] for f in layer["features"]}


def test_districts_lists_the_34_districts_without_a_key(app_client: TestClient) -> None:
    response = app_client.get("/api/v1/districts")

    assert response.status_code == 200
    districts = response.json()
    assert len(districts) == 34
    assert {d["name"] for d in districts} == _limadmin_names()
    assert len({d["id"] for d in districts}) == 34
    assert {d["kind"] for d in districts} == {"Arrondissement", "Ville liée"}
    by_name = {d["name"]: d for d in districts}
    assert by_name["Outremont"]["code"] == "11"
    assert by_name["Outremont"]["kind"] == "Arrondissement"
    assert by_name["Westmount"]["kind"] == "Ville liée"
    # The layer's own AIRE says 3.81 km² for Outremont and 8.15 km² for the Plateau.
    assert by_name["Outremont"]["area_km2"] == pytest.approx(3.81, rel=0.02)
    assert by_name["Le Plateau-Mont-Royal"]["area_km2"] == pytest.approx(8.15, rel=0.02)


def test_districts_geojson_has_34_polygon_features(app_client: TestClient) -> None:
    response = app_client.get("/api/v1/districts.geojson")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    collection = response.json()
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert len(features) == 34
    assert {f["geometry"]["type"] for f in features} <= {"Polygon", "MultiPolygon"}
    assert {f["properties"]["name"] for f in features} == _limadmin_names()
    listed = {d["id"]: d["name"] for d in app_client.get("/api/v1/districts").json()}
    assert {f["id"]: f["properties"]["name"] for f in features} == listed
    # Coordinates are lon, lat around Montréal.
    ring = next(f for f in features if f["properties"]["name"] == "Outremont")["geometry"]
    first = ring["coordinates"][0][0] if ring["type"] == "Polygon" else ring["coordinates"][0][0][0]
    assert -73.7 < first[0] < -73.5 and 45.4 < first[1] < 45.6


def test_services_lists_the_catalogue_in_french_and_english(app_client: TestClient) -> None:
    catalogue = tomllib.loads((LAYERS / "city.toml").read_text(encoding="utf-8"))["service"]

    response = app_client.get("/api/v1/services")

    assert response.status_code == 200
    services = {s["code"]: s for s in response.json()}
    assert sorted(services) == sorted(s["code"] for s in catalogue)
    for spec in catalogue:
        got = services[spec["code"]]
        assert (got["name_en"], got["name_fr"]) == (spec["name_en"], spec["name_fr"])
        assert (got["description_en"], got["description_fr"]) == (
            spec["description_en"],
            spec["description_fr"],
        )
        assert got["group"] == spec["group"]
        assert got["default_priority"] == spec["default_priority"]
        assert got["skills"] == spec["skills"]
        assert got["duplicate_radius_m"] == spec["duplicate_radius_m"]
        assert got["duplicate_window_s"] == spec["duplicate_window_h"] * 3600
        assert got["resolve_sla_s"] == spec["resolve_sla_h"] * 3600
        assert got["coarsen_public_location"] is spec.get("coarsen_public_location", False)
    assert services["pothole"]["name_fr"] == "Nid-de-poule"


def test_docs_and_openapi_are_served(app_client: TestClient) -> None:
    docs = app_client.get("/docs")
    schema = app_client.get("/openapi.json")

    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in docs.text
    assert schema.status_code == 200
    spec = schema.json()
    assert spec["info"]["title"] == "FieldOps"
    assert {"/api/v1/incidents", "/api/v1/incidents/{incident_id}", "/api/v1/keys"} <= set(
        spec["paths"]
    )
    assert {"get", "post"} <= set(spec["paths"]["/api/v1/incidents"])
