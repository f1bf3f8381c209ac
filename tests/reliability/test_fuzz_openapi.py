"""Every operation of the app's own /openapi.json fuzzed with Schemathesis, under every role.

Each example goes through the real ASGI app on the real database (both backends). An
example fails when the app answers 5xx, answers a status its document does not list, or
sends a body its document's schema refuses (errors are documented as RFC 9457 problems
on /api/v1 and GeoReport error lists on /open311/v2). Half the examples aim their path ids
at rows that exist, so handlers get past "not found". The budget is
``FIELDOPS_FUZZ_EXAMPLES`` per operation (see conftest.py); every failure is gathered and
reported at the end with the request that caused it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from fuzz_support import FUZZ_EXAMPLES, FUZZ_PHASES, RELIABILITY, Headers
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.schemas import APIOperation

from fieldops.auth.models import Role

CHECKS = [
    checks.not_a_server_error,
    checks.response_schema_conformance,
    checks.status_code_conformance,
]
ROLES = list(Role)
PLATEAU = (-73.5800, 45.5230)
OUTREMONT = (-73.6080, 45.5180)


def _seed(
    client: TestClient, report: Callable[..., httpx.Response], staff: Headers, admin: Headers
) -> dict[str, int]:
    """Rows for path ids to hit: incidents, an assignment, an emergency, a spare key."""
    first = report("flooding", PLATEAU, description="seed")
    second = report("pothole", OUTREMONT, description="seed")
    assert first.status_code == second.status_code == 201, first.text
    incident_id = first.json()["incident"]["id"]
    crews = client.get("/api/v1/crews", headers=staff).json()
    crew_id = min(c["id"] for c in crews)
    assigned = client.post(
        f"/api/v1/incidents/{incident_id}/assign", json={"crew_id": crew_id}, headers=staff
    )
    assert assigned.status_code == 201, assigned.text
    declared = client.post(
        "/api/v1/emergencies",
        json={
            "name": "Fuzz flood",
            "hazard": "flood",
            "service_codes": ["flooding"],
            "district_ids": [first.json()["incident"]["district"]["id"]],
        },
        headers=admin,
    )
    assert declared.status_code == 201, declared.text
    spare = client.post("/api/v1/keys", json={"name": "spare", "role": "public"}, headers=admin)
    assert spare.status_code == 201, spare.text
    return {
        "incident_id": incident_id,
        "crew_id": crew_id,
        "assignment_id": assigned.json()["id"],
        "emergency_id": declared.json()["id"],
        "key_id": spare.json()["id"],
    }


def _tuples_as_arrays(node: Any) -> Any:
    """The document with each fixed-length tuple of one item schema (``prefixItems``, such
    as a bbox of four numbers) spelled as ``items`` with min/maxItems: the same constraint,
    in the form Schemathesis's response validator reads (it mistakes ``prefixItems``)."""
    if isinstance(node, list):
        return [_tuples_as_arrays(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _tuples_as_arrays(value) for key, value in node.items()}
    prefix = node.get("prefixItems")
    if (
        isinstance(prefix, list)
        and prefix
        and all(item == prefix[0] for item in prefix)
        and "items" not in node
        and node.get("minItems") == node.get("maxItems") == len(prefix)
    ):
        node["items"] = node.pop("prefixItems")[0]
    return node


def load_schema(client: TestClient) -> Any:
    """The app's own /openapi.json, as Schemathesis's ASGI loader would load it, with the
    tuples respelled (see `_tuples_as_arrays`)."""
    document = client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(_tuples_as_arrays(document))
    schema.app = client.app
    schema.location = "/openapi.json"
    return schema


def _fuzz(
    operation: APIOperation,
    headers: dict[Role, Headers],
    seeded: dict[str, int],
    roles_seen: Counter[tuple[str, Role]],
) -> None:
    @settings(RELIABILITY, max_examples=FUZZ_EXAMPLES, phases=FUZZ_PHASES)
    @given(case=operation.as_strategy(), role=st.sampled_from(ROLES), real_ids=st.booleans())
    def run(case: Any, role: Role, real_ids: bool) -> None:
        if real_ids and case.path_parameters:
            case.path_parameters = {
                name: seeded.get(name, value) for name, value in case.path_parameters.items()
            }
        roles_seen[(operation.label, role)] += 1
        response = case.call(headers=headers[role])
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 400 and operation.path.startswith("/api/v1/"):
            # Schemathesis keeps every value of a header, in a list.
            assert response.headers["content-type"] == ["application/problem+json"]
            assert len(response.headers["x-request-id"][0]) == 32

    run()


def test_every_documented_operation_survives_fuzzing_under_every_role(
    app_client: TestClient,
    role_headers: dict[Role, Headers],
    report: Callable[..., httpx.Response],
) -> None:
    seeded = _seed(app_client, report, role_headers[Role.DISPATCHER], role_headers[Role.ADMIN])
    schema = load_schema(app_client)
    operations = [result.ok() for result in schema.get_all_operations()]
    roles_seen: Counter[tuple[str, Role]] = Counter()
    failures: dict[str, str] = {}

    for operation in operations:
        try:
            _fuzz(operation, role_headers, seeded, roles_seen)
        except Exception as exc:
            failures[operation.label] = f"{type(exc).__name__}: {exc}"

    assert not failures, "\n\n".join(f"== {label}\n{why}" for label, why in failures.items())
    # The document still lists the whole API, and the fuzzing reached every role.
    assert len(operations) >= 38
    assert {role for _label, role in roles_seen} == set(Role)
    print(f"\nfuzzed {len(operations)} operations with {sum(roles_seen.values())} examples")


def test_the_document_describes_errors_as_the_app_sends_them(app_client: TestClient) -> None:
    document = app_client.get("/openapi.json").json()

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = operation["responses"]["4XX"]["content"]
            expected = (
                {"application/json", "text/xml"}
                if path.startswith("/open311/")
                else {"application/problem+json"}
            )
            assert set(errors) == expected, f"{method.upper()} {path}"
            assert "422" not in operation["responses"], f"{method.upper()} {path}"
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_checks_catch_a_body_that_breaks_the_documented_schema(
    app_client: TestClient, role_headers: dict[Role, Headers]
) -> None:
    # The checks above must be able to fail: a problem body without its detail does.
    schema = load_schema(app_client)
    operation = schema["/api/v1/incidents/{incident_id}"]["GET"]
    case = operation.Case(path_parameters={"incident_id": 999999})
    response = case.call(headers=role_headers[Role.DISPATCHER])
    assert response.status_code == 404
    case.validate_response(response, checks=CHECKS)

    broken = httpx.Response(
        404,
        json={"type": "about:blank", "title": "Not found", "status": 404},
        headers={"content-type": "application/problem+json"},
        request=httpx.Request("GET", "http://127.0.0.1/api/v1/incidents/999999"),
    )
    broken.read()
    broken.elapsed = timedelta(0)
    with pytest.raises(FailureGroup, match="Response violates schema") as failed:
        case.validate_response(broken, checks=CHECKS)
    (failure,) = failed.value.exceptions
    assert isinstance(failure, JsonSchemaError)
    assert '"detail" is a required property' in str(failure)
