"""Reading GeoReport v2 answers in tests: XML and JSON documents, error lists, the
XML-to-JSON mechanical mapping, and the places used to post requests in Montréal."""

from __future__ import annotations

import json
import re
import tomllib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyproj

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
