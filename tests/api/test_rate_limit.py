"""Rate limits on public intake, through the real app on SpatiaLite and PostGIS: per key and
per client address, 429 with Retry-After as a problem on /api/v1 and a GeoReport error list
on /open311/v2, staff never limited, buckets refilled by the app's own (manual) clock."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from fieldops.api.ratelimit import IntakeLimiter, Limit, TokenBuckets, is_public_intake
from fieldops.app import create_app
from fieldops.auth.models import Role
from fieldops.clock import ManualClock
from fieldops.config import Settings

Problem = Callable[[httpx.Response, int], dict[str, Any]]
Headers = dict[str, str]

PLATEAU = (-73.5800, 45.5230)
REPORT = {"service_code": "pothole", "long": str(PLATEAU[0]), "lat": str(PLATEAU[1])}
INCIDENT = {"service_code": "pothole", "lon": PLATEAU[0], "lat": PLATEAU[1]}
# Small limits so a test stays short: a key takes 4 at once then one per 10 s, an address
# 2 at once then one per 20 s.
KEY_LIMIT = Limit(burst=4, per_minute=6)
ADDRESS_LIMIT = Limit(burst=2, per_minute=3)
# The routes that are public intake; every other route of the app is never limited.
INTAKE_ROUTES = {("POST", "/open311/v2/requests.{fmt}"), ("POST", "/api/v1/incidents")}


def settings_for(engine: Engine, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "environment": "test",
        "run_scheduler": False,
        "intake_key_burst": KEY_LIMIT.burst,
        "intake_key_per_minute": KEY_LIMIT.per_minute,
        "intake_address_burst": ADDRESS_LIMIT.burst,
        "intake_address_per_minute": ADDRESS_LIMIT.per_minute,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def client_at(engine: Engine, clock: ManualClock) -> Iterator[Callable[..., TestClient]]:
    """``client_at(address, **settings)``: a client calling from ``address``; clients made
    with the same settings share one app (one process's buckets)."""
    apps: dict[str, Any] = {}
    clients: list[TestClient] = []

    def make(address: str = "198.51.100.7", **overrides: Any) -> TestClient:
        key = repr(sorted(overrides.items()))
        if key not in apps:
            apps[key] = create_app(settings_for(engine, **overrides), clock=clock)
        client = TestClient(apps[key], base_url="http://127.0.0.1", client=(address, 40_000))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
    for app in apps.values():
        app.state.fieldops.engine.dispose()


def post311(client: TestClient, api_key: str | None, fmt: str = "json", **form: str) -> Any:
    data = REPORT | form | ({"api_key": api_key} if api_key is not None else {})
    return client.post(f"/open311/v2/requests.{fmt}", data=data)


def georeport_errors(response: httpx.Response, fmt: str) -> list[tuple[int, str]]:
    """The (code, description) pairs of a GeoReport v2 error list in ``fmt``."""
    if fmt == "json":
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        return [(e["code"], e["description"]) for e in json.loads(response.content)]
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(response.content)
    assert root.tag == "errors"
    return [(int(e.findtext("code", "")), e.findtext("description", "")) for e in root]


def assert_open311_429(
    response: httpx.Response, fmt: str, *, who: str, limit: Limit, retry_after: int
) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == str(retry_after)
    assert georeport_errors(response, fmt) == [
        (
            429,
            f"too many reports from {who} (at most {limit.describe()}); retry in {retry_after} s",
        )
    ]


# --- Open311: per address, per key -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_an_address_gets_its_burst_then_a_georeport_429_until_a_token_refills(
    client_at: Callable[..., TestClient],
    make_key: Callable[..., str],
    clock: ManualClock,
    count_rows: Callable[[str], int],
    fmt: str,
) -> None:
    client = client_at()
    key = make_key(Role.PUBLIC, "citizen app")

    first = [post311(client, key, fmt).status_code for _ in range(ADDRESS_LIMIT.burst)]
    refused = post311(client, key, fmt)

    assert first == [201, 201]
    assert_open311_429(refused, fmt, who="this address", limit=ADDRESS_LIMIT, retry_after=20)
    assert len(refused.headers["x-request-id"]) == 32
    assert count_rows("reports") == 2
    clock.advance(timedelta(seconds=19))
    assert_open311_429(
        post311(client, key, fmt), fmt, who="this address", limit=ADDRESS_LIMIT, retry_after=1
    )
    clock.advance(timedelta(seconds=1))
    assert post311(client, key, fmt).status_code == 201
    assert count_rows("reports") == 3


def test_a_key_is_limited_across_addresses(
    client_at: Callable[..., TestClient], make_key: Callable[..., str], clock: ManualClock
) -> None:
    key = make_key(Role.PUBLIC, "citizen app")
    phones = [client_at(f"203.0.113.{n}") for n in range(1, 4)]

    passed = [post311(phone, key).status_code for phone in phones[:2] for _ in range(2)]
    refused = post311(phones[2], key)
    other_key = post311(phones[2], make_key(Role.PUBLIC, "another app"))

    assert passed == [201] * KEY_LIMIT.burst
    assert_open311_429(refused, "json", who="this API key", limit=KEY_LIMIT, retry_after=10)
    # The third phone's address still had tokens: another key passes from it.
    assert other_key.status_code == 201
    clock.advance(timedelta(seconds=10))
    assert post311(phones[2], key).status_code == 201


def test_a_refusal_for_the_address_spends_none_of_the_keys_tokens(
    client_at: Callable[..., TestClient], make_key: Callable[..., str]
) -> None:
    key = make_key(Role.PUBLIC, "citizen app")
    noisy, quiet, third = (client_at(f"203.0.113.{n}") for n in range(1, 4))

    assert [post311(noisy, key).status_code for _ in range(8)] == [201, 201] + [429] * 6
    # The six refusals took nothing from the key: its other two tokens are still there.
    assert [post311(quiet, key).status_code for _ in range(2)] == [201, 201]
    assert_open311_429(
        post311(third, key), "json", who="this API key", limit=KEY_LIMIT, retry_after=10
    )


def test_unknown_keys_and_no_key_are_limited_by_address(
    client_at: Callable[..., TestClient],
) -> None:
    client = client_at()

    answers = [post311(client, "fo_" + "x" * 43), post311(client, None), post311(client, "")]

    assert [r.status_code for r in answers] == [403, 403, 429]
    assert georeport_errors(answers[0], "json") == [(403, "api_key is missing or not valid")]
    assert_open311_429(answers[2], "json", who="this address", limit=ADDRESS_LIMIT, retry_after=20)


def test_a_crew_key_posting_to_open311_is_limited_like_a_public_one(
    client_at: Callable[..., TestClient], auth: Callable[..., Headers]
) -> None:
    client = client_at()
    crew_key = auth(Role.CREW)["Authorization"].removeprefix("Bearer ")

    assert [post311(client, crew_key).status_code for _ in range(3)] == [201, 201, 429]


@pytest.mark.parametrize("role", [Role.DISPATCHER, Role.MANAGER, Role.ADMIN])
def test_staff_keys_are_never_limited_and_spend_nothing_of_the_address(
    client_at: Callable[..., TestClient],
    make_key: Callable[..., str],
    role: Role,
) -> None:
    client = client_at()
    staff = make_key(role, "radio room")

    staff_posts = [post311(client, staff, fmt).status_code for fmt in ("json", "xml") * 4]
    staff_posts += [
        client.post(
            "/api/v1/incidents", json=INCIDENT, headers={"Authorization": f"Bearer {staff}"}
        ).status_code
        for _ in range(4)
    ]
    public = make_key(Role.PUBLIC, "citizen app")

    assert staff_posts == [201] * 12
    assert [post311(client, public).status_code for _ in range(3)] == [201, 201, 429]


def test_on_open311_the_form_key_decides_not_an_authorization_header(
    client_at: Callable[..., TestClient], make_key: Callable[..., str]
) -> None:
    client = client_at()
    staff = {"Authorization": f"Bearer {make_key(Role.DISPATCHER)}"}
    public = make_key(Role.PUBLIC)

    answers = [
        client.post("/open311/v2/requests.json", data=REPORT | {"api_key": public}, headers=staff)
        for _ in range(3)
    ]

    # The route posts as the public key, so the public limits apply.
    assert [r.status_code for r in answers] == [201, 201, 429]


def test_a_multipart_open311_post_is_read_for_its_key_and_reaches_the_route_whole(
    client_at: Callable[..., TestClient], make_key: Callable[..., str]
) -> None:
    client = client_at()
    staff, public = make_key(Role.DISPATCHER), make_key(Role.PUBLIC)

    def multipart(key: str, description: str) -> httpx.Response:
        form = REPORT | {"api_key": key, "description": description}
        files = {name: (None, value) for name, value in form.items()}
        return client.post("/open311/v2/requests.json", files=files)

    staff_posts = [multipart(staff, f"staff {n}").status_code for n in range(4)]
    public_posts = [multipart(public, f"citizen {n}") for n in range(3)]

    assert staff_posts == [201] * 4
    assert [r.status_code for r in public_posts] == [201, 201, 429]
    request_id = public_posts[1].json()[0]["service_request_id"]
    shown = client.get(f"/open311/v2/requests/{request_id}.json").json()
    assert shown[0]["description"] == "citizen 1"


def test_reads_are_never_limited(client_at: Callable[..., TestClient]) -> None:
    client = client_at()

    statuses = {client.get("/open311/v2/requests.json").status_code for _ in range(10)}
    statuses |= {client.get("/open311/v2/services.xml").status_code for _ in range(10)}

    assert statuses == {200}


# --- the dispatcher API -----------------------------------------------------------------------


def test_a_public_key_on_the_dispatcher_api_gets_a_429_problem_with_retry_after(
    client_at: Callable[..., TestClient],
    auth: Callable[..., Headers],
    problem: Problem,
    clock: ManualClock,
) -> None:
    client = client_at()
    public = auth(Role.PUBLIC)

    refused_by_role = [
        client.post("/api/v1/incidents", json=INCIDENT, headers=public) for _ in range(2)
    ]
    limited = client.post("/api/v1/incidents", json=INCIDENT, headers=public)

    for response in refused_by_role:
        assert "role public may not do this" in problem(response, 403)["detail"]
    body = problem(limited, 429)
    assert body == {
        "type": "about:blank",
        "title": "Too many requests",
        "status": 429,
        "detail": f"too many reports from this address (at most {ADDRESS_LIMIT.describe()}); "
        "retry in 20 s",
    }
    assert limited.headers["retry-after"] == "20"
    clock.advance(timedelta(seconds=20))
    problem(client.post("/api/v1/incidents", json=INCIDENT, headers=public), 403)


def test_no_key_on_the_dispatcher_api_is_limited_by_address(
    client_at: Callable[..., TestClient], problem: Problem
) -> None:
    client = client_at()

    answers = [client.post("/api/v1/incidents", json=INCIDENT) for _ in range(3)]

    problem(answers[0], 401)
    problem(answers[1], 401)
    assert problem(answers[2], 429)["detail"].endswith("retry in 20 s")


# --- settings ---------------------------------------------------------------------------------


def test_the_default_limits_are_on_20_then_10_a_minute_per_address(
    app_client: TestClient, make_key: Callable[..., str], clock: ManualClock
) -> None:
    key = make_key(Role.PUBLIC, "citizen app")

    answers = [post311(app_client, key).status_code for _ in range(21)]

    assert answers == [201] * 20 + [429]
    assert_open311_429(
        post311(app_client, key),
        "json",
        who="this address",
        limit=Limit(burst=20, per_minute=10),
        retry_after=6,
    )
    clock.advance(timedelta(seconds=6))
    assert post311(app_client, key).status_code == 201


def test_the_limits_can_be_turned_off(
    client_at: Callable[..., TestClient], make_key: Callable[..., str]
) -> None:
    client = client_at(intake_rate_limit=False)
    key = make_key(Role.PUBLIC)

    assert [post311(client, key).status_code for _ in range(5)] == [201] * 5


def test_limits_come_from_fieldops_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FIELDOPS_INTAKE_KEY_BURST", "300")
    monkeypatch.setenv("FIELDOPS_INTAKE_ADDRESS_PER_MINUTE", "2.5")
    monkeypatch.setenv("FIELDOPS_INTAKE_RATE_LIMIT", "false")

    settings = Settings()

    assert (settings.intake_key_burst, settings.intake_address_per_minute) == (300, 2.5)
    assert settings.intake_rate_limit is False
    assert (settings.intake_key_per_minute, settings.intake_address_burst) == (60.0, 20)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("intake_key_burst", 0),
        ("intake_address_burst", -1),
        ("intake_key_per_minute", 0),
        ("intake_address_per_minute", -3.0),
    ],
)
def test_a_limit_that_lets_nothing_through_is_refused_naming_the_setting(
    field: str, value: float
) -> None:
    with pytest.raises(ValidationError, match=rf"(?s){field}\n.*greater than"):
        Settings(database_url="sqlite:///x.db", **{field: value})


# --- which routes are limited ---------------------------------------------------------------


def test_exactly_the_public_intake_routes_are_limited(app_client: TestClient) -> None:
    routes = {
        (method, str(route.path))
        for route in iter_route_contexts(app_client.app.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }

    limited = {
        (method, path)
        for method, path in routes
        if is_public_intake(method, re.sub(r"\{[^}]+\}", "x1.json", path))
    }

    assert routes >= INTAKE_ROUTES
    assert limited == INTAKE_ROUTES


# --- the buckets themselves -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taken_at", "now", "level"),
    [
        ([], 0.0, 4.0),  # a new bucket is full
        ([0.0], 0.0, 3.0),
        ([0.0, 0.0, 0.0, 0.0], 0.0, 0.0),
        ([0.0, 0.0, 0.0, 0.0], 5.0, 0.5),  # 6 a minute: half a token in 5 s
        ([0.0, 0.0], 600.0, 4.0),  # never above the burst
        ([10.0], 5.0, 3.0),  # a clock stepped back refills nothing, drains nothing
    ],
)
def test_a_bucket_refills_at_its_rate_up_to_its_burst(
    taken_at: list[float], now: float, level: float
) -> None:
    buckets = TokenBuckets(KEY_LIMIT)
    for at in taken_at:
        buckets.store("k", buckets.level("k", at) - 1, at)

    assert buckets.level("k", now) == pytest.approx(level)
    assert buckets.wait_s(buckets.level("k", now)) == pytest.approx(max(0.0, (1 - level) * 10))


def test_the_least_recently_used_buckets_go_first_past_the_cap() -> None:
    buckets = TokenBuckets(KEY_LIMIT, max_buckets=3)
    for n, who in enumerate(["a", "b", "c"]):
        buckets.store(who, 0.0, float(n))
    buckets.store("a", 0.0, 3.0)  # "a" is used again: "b" is now the oldest

    buckets.store("d", 0.0, 4.0)

    assert len(buckets) == 3
    assert buckets.level("b", 4.0) == KEY_LIMIT.burst  # forgotten: full again
    assert buckets.level("a", 4.0) == pytest.approx(0.1)


def test_the_limiter_takes_from_both_buckets_or_from_neither() -> None:
    limiter = IntakeLimiter(key=KEY_LIMIT, address=ADDRESS_LIMIT)

    taken = [limiter.take(key_id=1, address="a", now=0.0) for _ in range(3)]

    assert taken[:2] == [None, None]
    assert taken[2] is not None
    assert (taken[2].scope, taken[2].retry_after_s) == ("address", 20)
    assert limiter.keys.level(1, 0.0) == 2.0
    assert limiter.take(key_id=None, address="b", now=0.0) is None
    assert limiter.keys.level(1, 0.0) == 2.0
