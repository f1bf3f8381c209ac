"""Reading GeoReport v2 answers in tests: XML and JSON documents, error lists, the
XML-to-JSON mechanical mapping, the service list and definitions the catalogue file
calls for, and the places used to post requests in Montréal."""

from __future__ import annotations

import json
import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyproj
from fastapi.testclient import TestClient

BASE = "/open311/v2"
DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
XML_TYPE = "text/xml; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
# A W3C datetime with a zone: an offset or Z, nothing naive.
ZONED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$")

# The test clock's start (tests/conftest.py): 10:00 in Montréal.
START = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)

# (lon, lat) points well inside one district each (as in tests/api).
PLATEAU = (-73.5800, 45.5230)
OUTREMONT = (-73.6080, 45.5180)
VILLE_MARIE = (-73.5500, 45.5000)
# South of the island: outside every district.
SOUTH_OF_ISLAND = (-73.0, 45.0)

GEOD = pyproj.Geod(ellps="WGS84")

# The city's catalogue as written (the app loads the same file into the database).
CITY = tomllib.loads(
    (Path(__file__).resolve().parents[2] / "layers" / "city.toml").read_text(encoding="utf-8")
)
SERVICES: dict[str, dict[str, Any]] = {s["code"]: s for s in CITY["service"]}
WITH_ATTRIBUTES = sorted(code for code, s in SERVICES.items() if s.get("attribute"))


def expected_service(code: str, lang: str = "en") -> dict[str, Any]:
    """One entry of GET services as the catalogue file says it must read (JSON types)."""
    spec = SERVICES[code]
    return {
        "service_code": code,
        "service_name": spec[f"name_{lang}"],
        "description": spec[f"description_{lang}"],
        "metadata": bool(spec.get("attribute")),
        "type": "realtime",
        "keywords": spec["keywords"],
        "group": spec["group"],
    }


def expected_definition(code: str, lang: str = "en") -> dict[str, Any]:
    """GET services/{code} as the catalogue file says it must read (JSON types)."""
    attributes = []
    for attr in sorted(SERVICES[code].get("attribute", []), key=lambda a: a["order"]):
        doc: dict[str, Any] = {
            "variable": True,
            "code": attr["code"],
            "datatype": attr["datatype"],
            "required": attr["required"],
            "datatype_description": None,
            "order": attr["order"],
            "description": attr[f"description_{lang}"],
        }
        if "values" in attr:
            doc["values"] = [{"key": v["key"], "name": v[f"name_{lang}"]} for v in attr["values"]]
        attributes.append(doc)
    return {"service_code": code, "attributes": attributes}


# The member tag of each XML list (GeoReport's <plural><singular> nesting).
PLURALS = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "notes": "note",
    "errors": "error",
}


def moved(
    where: tuple[float, float], *, north_m: float = 0.0, east_m: float = 0.0
) -> tuple[float, float]:
    """The point ``north_m`` then ``east_m`` metres from ``where`` (geodesic)."""
    lon, lat, _ = GEOD.fwd(where[0], where[1], 0.0, north_m)
    lon, lat, _ = GEOD.fwd(lon, lat, 90.0, east_m)
    return (lon, lat)


def xml_doc(response: httpx.Response, status: int = 200) -> ET.Element:
    """The parsed XML answer, after checking status, content type, declaration, no namespace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == XML_TYPE
    first_line = response.content.split(b"\n", 1)[0]
    assert first_line == DECLARATION
    root = ET.fromstring(response.content)
    assert b"xmlns" not in response.content
    assert [el.tag for el in root.iter() if "}" in el.tag or ":" in el.tag] == []
    return root


def json_doc(response: httpx.Response, status: int = 200) -> Any:
    """The parsed JSON answer, after checking status and content type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON_TYPE
    return json.loads(response.content)


def error_descriptions(response: httpx.Response, status: int, fmt: str) -> list[str]:
    """Check a GeoReport error list with ``status`` in ``fmt``; returns the descriptions."""
    if fmt == "json":
        body = json_doc(response, status)
        assert isinstance(body, list) and body, body
        for error in body:
            assert list(error) == ["code", "description"]
            assert type(error["code"]) is int and error["code"] == status
            assert isinstance(error["description"], str) and error["description"]
        return [error["description"] for error in body]
    root = xml_doc(response, status)
    assert root.tag == "errors"
    assert len(root) >= 1
    descriptions = []
    for error in root:
        assert error.tag == "error"
        assert [child.tag for child in error] == ["code", "description"]
        assert error.findtext("code") == str(status)
        description = error.findtext("description")
        assert description
        descriptions.append(description)
    return descriptions


def xml_data(element: ET.Element) -> Any:
    """An XML element as JSON-like data: lists for known plurals, dicts, leaf text."""
    if element.tag in PLURALS:
        assert [c.tag for c in element] == [PLURALS[element.tag]] * len(element)
        return [xml_data(child) for child in element]
    if len(element):
        tags = [child.tag for child in element]
        assert len(tags) == len(set(tags)), tags
        return {child.tag: xml_data(child) for child in element}
    return element.text


def as_xml_text(value: Any) -> Any:
    """JSON data as its XML text would read: booleans true/false, numbers as text, null empty."""
    if isinstance(value, list):
        return [as_xml_text(v) for v in value]
    if isinstance(value, dict):
        return {k: as_xml_text(v) for k, v in value.items()}
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def w3c(instant: datetime) -> str:
    """An instant as a W3C datetime in UTC, with Z."""
    return instant.isoformat().replace("+00:00", "Z")


Where = tuple[float, float]


class GeoReport:
    """GeoReport v2 calls on the real app, with a valid ``api_key`` for posting."""

    def __init__(self, client: TestClient, api_key: str, dispatcher: dict[str, str]) -> None:
        self.client = client
        self.api_key = api_key
        self.dispatcher = dispatcher

    def get(self, path: str, fmt: str = "json", **params: str) -> httpx.Response:
        return self.client.get(f"{BASE}/{path}.{fmt}", params=params)

    def post(
        self,
        service_code: str | None,
        where: Where | None,
        form: Mapping[str, str] | None = None,
        *,
        fmt: str = "json",
        api_key: str | None = "default",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST requests.{fmt}, form-encoded; ``where`` is (lon, lat) or None for no location."""
        data: dict[str, str] = {}
        if api_key is not None:
            data["api_key"] = self.api_key if api_key == "default" else api_key
        if service_code is not None:
            data["service_code"] = service_code
        if where is not None:
            data["long"], data["lat"] = str(where[0]), str(where[1])
        data.update(form or {})
        return self.client.post(f"{BASE}/requests.{fmt}", data=data, headers=dict(headers or {}))

    def create(self, service_code: str, where: Where, form: Mapping[str, str] | None = None) -> str:
        """Post a valid request; returns its service_request_id."""
        body = json_doc(self.post(service_code, where, form), 201)
        assert len(body) == 1
        request_id = body[0]["service_request_id"]
        assert isinstance(request_id, str) and request_id.isdigit()
        return str(request_id)

    def requests(self, **params: str) -> list[dict[str, Any]]:
        body = json_doc(self.get("requests", **params))
        assert isinstance(body, list)
        return body

    def ids(self, **params: str) -> list[str]:
        return [r["service_request_id"] for r in self.requests(**params)]

    def one(self, request_id: str, **params: str) -> dict[str, Any]:
        body = json_doc(self.get(f"requests/{request_id}", **params))
        assert isinstance(body, list) and len(body) == 1, body
        assert body[0]["service_request_id"] == request_id
        result: dict[str, Any] = body[0]
        return result

    def incident_of(self, request_id: str) -> int:
        return int(self.one(request_id, extensions="true")["extended_attributes"]["incident_id"])

    def staff_report(
        self, service_code: str, where: Where, *, requested_at: datetime | None = None
    ) -> str:
        """A report through the dispatcher API (which can back-date it); returns its id."""
        body: dict[str, Any] = {"service_code": service_code, "lon": where[0], "lat": where[1]}
        if requested_at is not None:
            body["requested_at"] = requested_at.isoformat()
        response = self.client.post("/api/v1/incidents", json=body, headers=self.dispatcher)
        assert response.status_code == 201, response.text
        return str(response.json()["report_id"])

    def set_status(self, request_id: str, status: str, note: str | None = None) -> None:
        """Change the status of the incident behind ``request_id`` as a dispatcher."""
        body = {"status": status} if note is None else {"status": status, "note": note}
        response = self.client.patch(
            f"/api/v1/incidents/{self.incident_of(request_id)}",
            json=body,
            headers=self.dispatcher,
        )
        assert response.status_code == 200, response.text
