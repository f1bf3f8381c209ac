"""Open311 use cases: reading a POST form into a report, and requests into documents."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fieldops.catalog.models import ServiceType
from fieldops.errors import FieldProblem, InvalidInput
from fieldops.incidents.models import Channel, Incident, IncidentEvent, IncidentStatus, Report
from fieldops.intake.context import ServiceRules
from fieldops.intake.schemas import MAX_DESCRIPTION_CHARS, NewReport

# Public output of a coarsened service: 3 decimals of a degree, about 110 m by 80 m here.
COARSE_DECIMALS = 3

# Internal status -> the CitySDK ``detailed_status`` vocabulary (extensions=true).
DETAILED_STATUS = {
    IncidentStatus.OPEN: "RECEIVED",
    IncidentStatus.ASSIGNED: "IN_PROCESS",
    IncidentStatus.ACKNOWLEDGED: "IN_PROCESS",
    IncidentStatus.EN_ROUTE: "IN_PROCESS",
    IncidentStatus.ON_SCENE: "IN_PROCESS",
    IncidentStatus.RESOLVED: "PROCESSED",
    IncidentStatus.CANCELLED: "REJECTED",
}

TEXT_LIMITS = {
    "email": 320,
    "first_name": 200,
    "last_name": 200,
    "phone": 64,
    "device_id": 128,
    "account_id": 128,
    "address_string": 500,
    "address_id": 128,
    "media_url": 2000,
}


def _one(form: Sequence[tuple[str, str]], name: str) -> str:
    """The last non-empty value of ``name`` (an empty parameter counts as absent)."""
    value = ""
    for key, item in form:
        if key == name and item.strip():
            value = item.strip()
    return value


def form_attributes(form: Sequence[tuple[str, str]]) -> dict[str, str | list[str]]:
    """``attribute[CODE]=v`` and ``attribute[CODE][]=v1&...`` into {CODE: v | [v1, ...]}."""
    found: dict[str, str | list[str]] = {}
    for key, value in form:
        if not (key.startswith("attribute[") and key.endswith("]")):
            continue
        inner = key[len("attribute[") : -1]
        if inner.endswith("]["):
            code = inner[:-2]
            current = found.get(code)
            values = current if isinstance(current, list) else []
            values.append(value)
            found[code] = values
        elif value != "":
            found[inner] = value
    return found


def check_attributes(
    definitions: Sequence[dict[str, Any]], given: dict[str, str | list[str]]
) -> list[FieldProblem]:
    """Problems with the attributes a service defines; others are kept as sent."""
    problems: list[FieldProblem] = []
    for attr in definitions:
        if not attr.get("variable", True):
            continue
        code, datatype = attr["code"], attr["datatype"]
        name = f"attribute[{code}]"
        value = given.get(code)
        if value is None or value == []:
            if attr.get("required"):
                problems.append(FieldProblem(name, "is required for this service"))
            continue
        keys = {v["key"] for v in attr.get("values", [])}
        if datatype == "singlevaluelist":
            if not isinstance(value, str) or value not in keys:
                problems.append(FieldProblem(name, f"must be one of {', '.join(sorted(keys))}"))
        elif datatype == "multivaluelist":
            chosen = value if isinstance(value, list) else [value]
            if any(v not in keys for v in chosen):
                problems.append(
                    FieldProblem(name, f"values must be among {', '.join(sorted(keys))}")
                )
        elif datatype == "number":
            try:
                number = float(value if isinstance(value, str) else "")
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                problems.append(FieldProblem(name, "must be a number"))
        elif datatype == "datetime":
            try:
                parsed = datetime.fromisoformat(value if isinstance(value, str) else "")
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                problems.append(FieldProblem(name, "must be an ISO 8601 datetime with a zone"))
    return problems


def report_from_form(form: Sequence[tuple[str, str]], service: ServiceRules) -> NewReport:
    """Read a POST requests form for ``service``; InvalidInput names every field at fault."""
    problems: list[FieldProblem] = []
    lat_text, lon_text = _one(form, "lat"), _one(form, "long")
    lat = lon = math.nan
    if lat_text or lon_text:
        if not (lat_text and lon_text):
            problems.append(FieldProblem("lat/long", "send both lat and long, or neither"))
        try:
            lat, lon = float(lat_text), float(lon_text)
        except ValueError:
            problems.append(FieldProblem("lat/long", "must be decimal degrees (WGS84)"))
        else:
            if not (math.isfinite(lat) and -90 <= lat <= 90):
                problems.append(FieldProblem("lat", "must be a latitude between -90 and 90"))
            if not (math.isfinite(lon) and -180 <= lon <= 180):
                problems.append(FieldProblem("long", "must be a longitude between -180 and 180"))
    elif _one(form, "address_string") or _one(form, "address_id"):
        problems.append(
            FieldProblem(
                "lat/long",
                "this server locates reports by coordinates: send lat and long "
                "(address_string alone cannot be placed)",
            )
        )
    else:
        problems.append(FieldProblem("lat/long", "a location is required: send lat and long"))

    description = _one(form, "description")
    if len(description) > MAX_DESCRIPTION_CHARS:
        problems.append(
            FieldProblem(
                "description",
                f"is {len(description)} characters; at most {MAX_DESCRIPTION_CHARS}",
            )
        )
    texts = {name: _one(form, name) for name in TEXT_LIMITS}
    for name, limit in TEXT_LIMITS.items():
        if len(texts[name]) > limit:
            problems.append(FieldProblem(name, f"is longer than {limit} characters"))
    media_url = texts["media_url"]
    if media_url and not media_url.startswith(("http://", "https://")):
        problems.append(FieldProblem("media_url", "must be an http or https URL"))
    attributes = form_attributes(form)
    problems += check_attributes(service.attributes, attributes)
    if problems:
        raise InvalidInput("; ".join(f"{p.field} {p.reason}" for p in problems), problems)
    return NewReport(
        service_code=service.code,
        lon=lon,
        lat=lat,
        channel=Channel.OPEN311,
        description=description,
        address=texts["address_string"],
        address_id=texts["address_id"],
        media_url=media_url,
        attributes=dict(attributes),
        reporter_first_name=texts["first_name"],
        reporter_last_name=texts["last_name"],
        reporter_email=texts["email"],
        reporter_phone=texts["phone"],
        device_id=texts["device_id"],
        account_id=texts["account_id"],
    )


@dataclass(frozen=True)
class RequestView:
    """What the public sees of one report (never the reporter's contact details)."""

    report: Report
    incident: Incident
    service: ServiceType
    agency: str


def request_document(
    view: RequestView,
    *,
    zone: ZoneInfo,
    extensions: bool,
    events: list[IncidentEvent] | None = None,
) -> dict[str, Any]:
    report, incident, service = view.report, view.incident, view.service

    def at(instant: datetime | None) -> str | None:
        return instant.astimezone(zone).isoformat(timespec="seconds") if instant else None

    lat, lon = report.lat, report.lon
    address, address_id, zipcode = report.address, report.address_id, report.zipcode
    if service.coarsen_public_location:
        lat, lon = round(lat, COARSE_DECIMALS), round(lon, COARSE_DECIMALS)
        address, address_id, zipcode = "", "", zipcode[:3]
    # The escalation policy's resolve deadline; the catalogue's SLA where no policy applies.
    expected = incident.resolve_due_at or incident.opened_at + timedelta(
        seconds=service.resolve_sla_s
    )
    doc: dict[str, Any] = {
        "service_request_id": str(report.id),
        "status": "open" if incident.is_open else "closed",
        "status_notes": incident.status_notes or None,
        "service_name": service.name_en,
        "service_code": service.code,
        "description": report.description or None,
        "agency_responsible": view.agency,
        "service_notice": incident.service_notice or None,
        "requested_datetime": at(report.requested_at),
        "updated_datetime": at(incident.closed_at or incident.updated_at),
        "expected_datetime": at(expected),
        "address": address or None,
        "address_id": address_id or None,
        "zipcode": zipcode or None,
        "lat": lat,
        "long": lon,
        "media_url": report.media_url or None,
    }
    if extensions:
        doc["detailed_status"] = DETAILED_STATUS[IncidentStatus(incident.status)]
        doc["extended_attributes"] = {
            "incident_id": str(incident.id),
            "reports_count": incident.report_count,
            "priority": incident.priority,
            "channel": str(report.channel),
        }
        doc["attributes"] = [
            {"code": code, "value": ", ".join(v) if isinstance(v, list) else str(v)}
            for code, v in sorted(report.attributes.items())
        ]
        doc["notes"] = [
            {"datetime": at(e.at), "type": e.kind, "description": _note(e)} for e in events or []
        ]
    return doc


def _note(event: IncidentEvent) -> str:
    data = event.data
    if event.kind == "opened":
        return "Request received"
    if event.kind == "report_merged":
        return "Another report of the same problem was added"
    if event.kind == "status_changed":
        note = f": {data['note']}" if data.get("note") else ""
        return f"Status changed from {data.get('from')} to {data.get('to')}{note}"
    if event.kind == "priority_changed":
        return "Priority changed"
    return event.kind.replace("_", " ").capitalize()
