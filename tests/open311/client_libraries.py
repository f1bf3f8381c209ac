"""Third-party Open311 client libraries against FieldOps served for real: the server process
(uvicorn on 127.0.0.1, started by the fault tests' helper), the clients set up for it, what
they return normalised, and the documents the database says they must return.

The clients: ``georeport`` (PyPI; reads in XML and JSON, never posts) and ``civicbot``'s
``Open311Client`` (PyPI; reads and posts, JSON only). XML posts go out form-encoded with
httpx and are read with ``xmltodict``, the parser ``georeport`` itself uses.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
import xmltodict
from civicbot.http import HttpTransport, RateLimiter
from civicbot.open311 import CONFIRM_TOKEN, Open311Client, PreparedRequest
from civicbot.registry import Endpoint
from georeport import GeoReport
from georeport_doc import PLURALS, as_xml_text
from sqlalchemy.orm import Session, sessionmaker

from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.catalog.models import ServiceType
from fieldops.clock import SystemClock
from fieldops.config import Settings
from fieldops.db.engine import READ_ONLY, make_engine, make_sessionmaker, unit_of_work
from fieldops.districts.models import District
from fieldops.incidents.models import Incident, Report

# The fault tests' process helpers, imported by their bare name as that suite does.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability" / "faults"))

from fault_procs import Service, prepare, start_api

POSTGIS_ENV = "FIELDOPS_TEST_POSTGIS_URL"
# The server runs on its defaults (the helper starts it with no FIELDOPS_ setting of ours).
JURISDICTION: str = Settings.model_fields["jurisdiction_id"].default
CITY_ZONE = ZoneInfo(Settings.model_fields["timezone"].default)
# What a GET may never show of the person who reported (they are stored for staff only).
REPORTER_FIELDS = ("first_name", "last_name", "email", "phone", "device_id", "account_id")


@dataclass(frozen=True)
class Served:
    """FieldOps running as a real process on one backend, with a key of each kind."""

    backend: str
    api: Service
    sessions: sessionmaker[Session]
    public_key: str
    dispatcher_key: str

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.api.port}"

    @property
    def open311(self) -> str:
        return f"{self.origin}/open311/v2"


@contextlib.contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """A migrated database holding the demo city (districts, services, crews), this
    module's own: other suites empty theirs between tests, never this one."""
    if backend == "spatialite":
        url = f"sqlite:///{folder / 'fieldops.db'}"
        prepare(url)
        yield url
        return
    base = os.environ.get(POSTGIS_ENV)
    if not base:
        pytest.skip(f"{POSTGIS_ENV} is not set (the test command sets it)")
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"fieldops_clients_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE fieldops_template")
    try:
        url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
        prepare(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@contextlib.contextmanager
def served_city(backend: str, folder: Path) -> Iterator[Served]:
    """The demo city served by ``fieldops.app`` under uvicorn, with a public (citizen app)
    key and a dispatcher key; stopped (its own process group only) afterwards."""
    with database(backend, folder) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        now = SystemClock().now()
        with unit_of_work(sessions) as session:
            _, public = create_key(session, name="citizen app", role=Role.PUBLIC, now=now)
            _, staff = create_key(session, name="radio room", role=Role.DISPATCHER, now=now)
        api = start_api(url, workers=1, log_dir=folder, name=f"api-{backend}")
        try:
            yield Served(backend, api, sessions, public, staff)
        finally:
            api.stop()
            engine.dispose()


def reader(served: Served, fmt: str, jurisdiction: str = JURISDICTION) -> GeoReport:
    """``georeport``'s client, reading ``fmt`` (it sends ``jurisdiction_id`` on every GET)."""
    return GeoReport(served.open311, jurisdiction, served.public_key, fmt)


def poster(served: Served, jurisdiction: str = JURISDICTION) -> Open311Client:
    """``civicbot``'s client for this server (its politeness delay off: one test, one host)."""
    endpoint = Endpoint(id="fieldops", name="FieldOps", base_url=served.open311, write=True)
    transport = HttpTransport(rate_limiter=RateLimiter(min_interval=0.0), timeout=30.0)
    return Open311Client(endpoint, transport, jurisdiction_id=jurisdiction)


# The optional POST fields ``civicbot`` takes as keywords of the same name.
CIVICBOT_FIELDS = (
    "address_string",
    "description",
    "media_url",
    "email",
    "first_name",
    "last_name",
    "phone",
    "device_id",
    "account_id",
)


def civicbot_post(
    served: Served, form: Mapping[str, str], *, check_first: bool = False
) -> PreparedRequest:
    """Send a POST requests form through ``civicbot`` (JSON). With ``check_first`` it reads
    the service list and definition first and refuses, before sending, what they forbid."""
    attributes = {
        key[len("attribute[") : -1]: value
        for key, value in form.items()
        if key.startswith("attribute[") and key.endswith("]")
    }
    return poster(served, form.get("jurisdiction_id", JURISDICTION)).create_request(
        form["service_code"],
        dry_run=False,
        confirm=CONFIRM_TOKEN,
        api_key=form["api_key"],
        validate_remote=check_first,
        lat=float(form["lat"]),
        lng=float(form["long"]),
        attributes=attributes or None,
        **{name: form[name] for name in CIVICBOT_FIELDS if name in form},
    )


def post_xml(served: Served, form: Mapping[str, str]) -> httpx.Response:
    """POST requests.xml form-encoded, as the spec says a client sends it."""
    return httpx.post(f"{served.open311}/requests.xml", data=dict(form), timeout=30.0)


def listed(value: Any) -> list[Any]:
    """A list as ``xmltodict`` gives it: one member comes back bare, not in a list."""
    return value if isinstance(value, list) else [value]


def from_xml(value: Any) -> Any:
    """``xmltodict`` data with each ``<plural><singular>`` list made a plain list, as the
    XML-to-JSON mapping reads it (texts stay texts)."""
    if isinstance(value, Mapping):
        return {
            key: [from_xml(v) for v in listed(item[PLURALS[key]])]
            if key in PLURALS and isinstance(item, Mapping)
            else from_xml(item)
            for key, item in value.items()
        }
    return value


def in_format(document: Any, fmt: str) -> Any:
    """A JSON document as a client of ``fmt`` reads it: XML carries only text."""
    return as_xml_text(document) if fmt == "xml" else document


def error_list(body: bytes, fmt: str) -> list[dict[str, Any]]:
    """A GeoReport error list body as (code, description) dicts, codes as ints."""
    if fmt == "json":
        errors: list[dict[str, Any]] = httpx.Response(200, content=body).json()
        return errors
    parsed = xmltodict.parse(body)
    return [
        {"code": int(e["code"]), "description": e["description"]}
        for e in listed(parsed["errors"]["error"])
    ]


def local(instant: datetime) -> str:
    """An instant as the server publishes it: the city's offset, to the second."""
    return instant.astimezone(CITY_ZONE).isoformat(timespec="seconds")


def stored(served: Served, request_id: str) -> dict[str, Any]:
    """The GET document of one request as the database holds it (JSON types), so a
    client's answer can be compared with what was stored."""
    with served.sessions() as session:
        session.connection(execution_options=READ_ONLY)
        report, incident, district, service = session.execute(
            sa.select(Report, Incident, District.name, ServiceType)
            .join(Incident, Incident.id == Report.incident_id)
            .join(District, District.id == Report.district_id)
            .join(ServiceType, ServiceType.code == Report.service_code)
            .where(Report.id == int(request_id))
        ).one()
        expected = incident.resolve_due_at or incident.opened_at + timedelta(
            seconds=service.resolve_sla_s
        )
        document = {
            "service_request_id": request_id,
            "status": "open" if incident.is_open else "closed",
            "status_notes": incident.status_notes or None,
            "service_name": service.name_en,
            "service_code": report.service_code,
            "description": report.description or None,
            "agency_responsible": district,
            "service_notice": incident.service_notice or None,
            "requested_datetime": local(report.requested_at),
            "updated_datetime": local(incident.closed_at or incident.updated_at),
            "expected_datetime": local(expected),
            "address": report.address or None,
            "address_id": report.address_id or None,
            "zipcode": report.zipcode or None,
            "lat": report.lat,
            "long": report.lon,
            "media_url": report.media_url or None,
        }
        session.rollback()
    return document


def stored_report(served: Served, request_id: str) -> Report:
    """The report row itself, reporter details included (staff eyes only)."""
    with served.sessions() as session:
        report = session.get_one(Report, int(request_id))
        session.expunge(report)
        session.rollback()
    return report


def report_count(served: Served) -> int:
    with served.sessions() as session:
        n = session.scalar(sa.select(sa.func.count()).select_from(Report))
        session.rollback()
    return int(n or 0)


def staff_report(
    served: Served, service_code: str, where: tuple[float, float], requested_at: datetime
) -> tuple[str, int]:
    """A back-dated report through the dispatcher API; returns (request id, incident id)."""
    response = httpx.post(
        f"{served.origin}/api/v1/incidents",
        json={
            "service_code": service_code,
            "lon": where[0],
            "lat": where[1],
            "requested_at": requested_at.isoformat(),
        },
        headers={"Authorization": f"Bearer {served.dispatcher_key}"},
        timeout=30.0,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["merged"] is False, body
    return str(body["report_id"]), int(body["incident"]["id"])


def resolve(served: Served, incident_id: int, note: str) -> None:
    """Close an incident as a dispatcher does."""
    response = httpx.patch(
        f"{served.origin}/api/v1/incidents/{incident_id}",
        json={"status": "resolved", "note": note},
        headers={"Authorization": f"Bearer {served.dispatcher_key}"},
        timeout=30.0,
    )
    assert response.status_code == 200, response.text
