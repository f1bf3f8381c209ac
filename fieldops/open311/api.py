"""Open311 GeoReport v2 routes at /open311/v2, in XML and JSON, with GeoReport error lists."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from fieldops import errors
from fieldops.api.deps import AppState, Now, ReadSession, State
from fieldops.api.errors import storage_failure
from fieldops.api.intake import take_in
from fieldops.auth.service import Principal
from fieldops.catalog.repo import get_service_type, list_service_types
from fieldops.db.base import ROW_ID_MAX
from fieldops.errors import FieldOpsError, InvalidInput, NotFound
from fieldops.geo.crs import local_metres
from fieldops.geo.duplicates import bbox_around
from fieldops.idempotency.service import fingerprint
from fieldops.intake.service import IntakeOutcome, UnknownService
from fieldops.open311 import repo
from fieldops.open311.forms import form_fields
from fieldops.open311.service import (
    COARSE_DECIMALS,
    RequestView,
    report_from_form,
    request_document,
)
from fieldops.open311.wire import Format, render

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
MAX_SPAN = timedelta(days=90)
MAX_PAGE_SIZE = 1000
# A radius search pages after its exact circle; it looks at most this many candidates.
MAX_CIRCLE_CANDIDATES = 20_000

# Open311 answers 404 for unknown things, 403 for keys and 400 for everything else.
OPEN311_STATUS: list[tuple[type[FieldOpsError], int]] = [
    (UnknownService, 404),
    (errors.NotFound, 404),
    (errors.Unauthenticated, 403),
    (errors.Forbidden, 403),
    (errors.Conflict, 409),
]


def _format_of(request: Request) -> Format:
    fmt = request.path_params.get("fmt", "")
    try:
        return Format(fmt)
    except ValueError:
        return Format.XML


def error_response(fmt: Format, status: int, descriptions: list[tuple[str, str]]) -> Response:
    body = [{"code": status, "description": f"{f}: {d}" if f else d} for f, d in descriptions]
    return Response(render(fmt, "errors", body), status_code=status, media_type=fmt.media_type)


class Open311Route(APIRoute):
    """Every failure on these routes becomes a GeoReport v2 error list in the asked format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            fmt = _format_of(request)
            try:
                return await handler(request)
            except FieldOpsError as exc:
                status = next((s for cls, s in OPEN311_STATUS if isinstance(exc, cls)), 400)
                found = getattr(exc, "problems", None) or []
                pairs = [(p.field, p.reason) for p in found if isinstance(p, errors.FieldProblem)]
                return error_response(fmt, status, pairs or [("", exc.detail)])
            except RequestValidationError as exc:
                pairs = [
                    (".".join(str(x) for x in e.get("loc", ())[1:]), e.get("msg", "invalid"))
                    for e in exc.errors()
                ]
                return error_response(fmt, 400, pairs)
            except StarletteHTTPException as exc:
                return error_response(fmt, exc.status_code, [("", str(exc.detail))])
            except OperationalError as exc:
                failed = storage_failure(exc, request.scope.get("fieldops.request_id", "-"))
                response = error_response(fmt, failed.status, [("", failed.detail)])
                response.headers["Retry-After"] = str(failed.retry_after_s)
                return response

        return handle


# Errors here are GeoReport v2 error lists, never problems: say so in the OpenAPI document.
GEOREPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "GeoReport v2 error list (XML or JSON, by the format suffix)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["code", "description"],
                        "properties": {
                            "code": {"type": "integer"},
                            "description": {"type": "string"},
                        },
                    },
                }
            },
            "text/xml": {"schema": {"type": "string"}},
        },
    }
}

router = APIRouter(
    prefix="/open311/v2", tags=["open311"], route_class=Open311Route, responses=GEOREPORT_ERRORS
)
# POST requests alone, so that the app finds its busiest route first (fieldops.api.router).
intake = APIRouter(
    prefix="/open311/v2", tags=["open311"], route_class=Open311Route, responses=GEOREPORT_ERRORS
)


def _chosen(fmt: str) -> Format:
    try:
        return Format(fmt)
    except ValueError:
        raise NotFound(f"unknown format {fmt!r}: use .xml or .json") from None


def _document(fmt: str, root: str, body: Any) -> Response:
    chosen = _chosen(fmt)
    return Response(render(chosen, root, body), media_type=chosen.media_type)


def _check_jurisdiction(state: AppState, jurisdiction_id: str | None) -> None:
    if jurisdiction_id and jurisdiction_id.strip() != state.settings.jurisdiction_id:
        raise NotFound(
            f"jurisdiction_id {jurisdiction_id!r} is not served here "
            f"(this endpoint serves {state.settings.jurisdiction_id})"
        )


def _language(request: Request) -> str:
    return "fr" if request.headers.get("accept-language", "").lower().startswith("fr") else "en"


@router.get("/discovery.{fmt}")
def discovery(fmt: str, state: State, session: ReadSession) -> Response:
    """Where the endpoints are, which formats they speak, and how to get a key."""
    stamps = [s.updated_at for s in list_service_types(session) if s.updated_at]
    changeset = max(stamps).isoformat(timespec="seconds") if stamps else "1970-01-01T00:00:00+00:00"
    settings = state.settings
    return _document(
        fmt,
        "discovery",
        {
            "changeset": changeset,
            "contact": settings.contact,
            "key_service": settings.key_service,
            "endpoints": [
                {
                    "specification": SPECIFICATION,
                    "url": f"{settings.public_url.rstrip('/')}/open311/v2",
                    "changeset": changeset,
                    "type": "production" if settings.environment == "production" else "test",
                    "formats": ["text/xml", "application/json"],
                }
            ],
        },
    )


@router.get("/services.{fmt}")
def services(
    fmt: str,
    request: Request,
    state: State,
    session: ReadSession,
    jurisdiction_id: str | None = None,
) -> Response:
    """Every service type that can be requested (names in French with Accept-Language: fr)."""
    _check_jurisdiction(state, jurisdiction_id)
    french = _language(request) == "fr"
    return _document(
        fmt,
        "services",
        [
            {
                "service_code": s.code,
                "service_name": s.name_fr if french else s.name_en,
                "description": s.description_fr if french else s.description_en,
                "metadata": bool(s.attributes),
                "type": "realtime",
                "keywords": s.keywords,
                "group": s.group,
            }
            for s in list_service_types(session)
        ],
    )


@router.get("/services/{service_code}.{fmt}")
def service_definition(
    service_code: str,
    fmt: str,
    request: Request,
    state: State,
    session: ReadSession,
    jurisdiction_id: str | None = None,
) -> Response:
    """The attributes (questions) of one service."""
    _check_jurisdiction(state, jurisdiction_id)
    service = get_service_type(session, service_code)
    if service is None:
        raise NotFound(f"no service {service_code!r}")
    lang = _language(request)
    return _document(
        fmt,
        "service_definition",
        {
            "service_code": service.code,
            "attributes": [
                _attribute(a, lang) for a in sorted(service.attributes, key=lambda a: a["order"])
            ],
        },
    )


def _attribute(attr: dict[str, Any], lang: str) -> dict[str, Any]:
    doc = {
        "variable": attr.get("variable", True),
        "code": attr["code"],
        "datatype": attr["datatype"],
        "required": attr.get("required", False),
        "datatype_description": None,
        "order": attr["order"],
        "description": attr[f"description_{lang}"],
    }
    if attr.get("values"):
        doc["values"] = [{"key": v["key"], "name": v[f"name_{lang}"]} for v in attr["values"]]
    return doc


@intake.post("/requests.{fmt}", status_code=201)
async def post_request(fmt: str, request: Request) -> Response:
    """Create a service request (form-encoded, with ``api_key``)."""
    # The busiest route: the app's state and the time are taken here rather than through
    # State and Now, whose resolution by FastAPI cost more CPU than the route's own work.
    state: AppState = request.app.state.fieldops
    now = state.clock.now()
    chosen = _chosen(fmt)
    form = await form_fields(request)
    values = dict(form)
    api_key = values.get("api_key", "").strip()
    # A cache miss reads the database: in the thread pool, never on the event loop (see
    # fieldops.api.deps.get_principal).
    principal: Principal | None = (
        (state.cached_principal(api_key) or await run_in_threadpool(state.principal, api_key))
        if api_key
        else None
    )
    if principal is None:
        raise errors.Forbidden(
            "api_key is missing or not valid" if api_key else "api_key is required to post"
        )
    _check_jurisdiction(state, values.get("jurisdiction_id"))
    code = values.get("service_code", "").strip()
    if not code:
        raise InvalidInput.for_field("service_code", "is required")
    context = await state.intake_context_async()
    service = context.services.get(code)
    if service is None:
        raise UnknownService.for_field("service_code", f"no service {code!r}")
    new = report_from_form(form, service)

    def result(outcome: IntakeOutcome) -> tuple[int, Any]:
        body = [
            {
                "service_request_id": str(outcome.report.id),
                "service_notice": outcome.incident.service_notice or None,
                "account_id": new.account_id or None,
            }
        ]
        return 201, body

    done = await take_in(
        state,
        new,
        principal=principal,
        now=now,
        idempotency_key=request.headers.get("idempotency-key"),
        # Only a request with an Idempotency-Key needs it: built then, not every time.
        fingerprint=lambda: fingerprint(
            "POST", request.url.path, sorted((k, v) for k, v in form if k != "api_key")
        ),
        answer_of=result,
    )
    return Response(
        render(chosen, "service_requests", done.body),
        status_code=done.status_code,
        media_type=chosen.media_type,
    )


def _instant(name: str, text: str | None) -> datetime | None:
    if not text or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput.for_field(
            name, "must be a W3C datetime, e.g. 2026-05-04T10:00:00-04:00"
        ) from None
    if value.tzinfo is None:
        raise InvalidInput.for_field(name, "must carry a time zone (Z or ±HH:MM)")
    return value


def _positive_int(name: str, text: str | None, default: int, maximum: int) -> int:
    if not text or not text.strip():
        return default
    if not _plain_digits(text) or not 1 <= int(text) <= maximum:
        raise InvalidInput.for_field(name, f"must be a whole number from 1 to {maximum}")
    return int(text)


def _plain_digits(text: str) -> bool:
    # str.isdigit() also accepts digits int() refuses, such as "²"; and int() refuses
    # more than 4300 digits, so anything longer than any id or page is not one either.
    text = text.strip()
    return text.isascii() and text.isdigit() and len(text) <= 18


def _ids(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(_plain_digits(p) and int(p) <= ROW_ID_MAX for p in parts):
        raise InvalidInput.for_field("service_request_id", "must be request ids, comma-separated")
    return tuple(int(p) for p in parts)


@router.get("/requests.{fmt}")
def get_requests(
    fmt: str,
    request: Request,
    state: State,
    session: ReadSession,
    now: Now,
) -> Response:
    """Requests matching the filters; with no dates, the last 90 days (at most 1000)."""
    q = {k: v for k, v in request.query_params.items() if v.strip()}
    _check_jurisdiction(state, q.get("jurisdiction_id"))
    start, end = (
        _instant("start_date", q.get("start_date")),
        _instant("end_date", q.get("end_date")),
    )
    if start and end and end - start > MAX_SPAN:
        raise InvalidInput.for_field("end_date", "the span from start_date may be at most 90 days")
    if start and end and end < start:
        raise InvalidInput.for_field("end_date", "is before start_date")
    if not start and not end:
        start = now - MAX_SPAN
    statuses = {s.strip().lower() for s in q.get("status", "").split(",") if s.strip()}
    if statuses - {"open", "closed"}:
        raise InvalidInput.for_field("status", "must be open, closed or both (comma-separated)")
    open_only = None if len(statuses) != 1 else statuses == {"open"}
    page_size = _positive_int("page_size", q.get("page_size"), MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    page = _positive_int("page", q.get("page"), 1, 1_000_000)

    ids = _ids(q["service_request_id"]) if "service_request_id" in q else ()
    # service_request_id overrides every other filter, the circle and the page included.
    near = None if ids else _near(q)
    query = repo.RequestQuery(
        ids=ids,
        service_codes=tuple(c.strip() for c in q.get("service_code", "").split(",") if c.strip()),
        requested_from=start,
        requested_to=end,
        open_only=open_only,
        updated_after=_instant("updated_after", q.get("updated_after")),
        updated_before=_instant("updated_before", q.get("updated_before")),
        bbox=_widened(bbox_around(*near)) if near else None,
        offset=0 if ids or near else (page - 1) * page_size,
        limit=MAX_CIRCLE_CANDIDATES if near else page_size,
    )
    rows = list(repo.find_requests(session, query))
    if near:
        # The circle is exact only in Python, so the page is cut after it. Coarsened
        # services are measured from their published position, never the door.
        lon0, lat0, radius_m = near
        coarse = {s.code for s in list_service_types(session) if s.coarsen_public_location}
        inside = [
            r
            for r in rows
            if math.hypot(*local_metres(lon0, lat0, *_published(r[0], r[0].service_code in coarse)))
            <= radius_m
        ]
        rows = inside[(page - 1) * page_size : page * page_size]
    extensions = q.get("extensions", "").lower() == "true"
    return _requests_document(fmt, state, session, rows, extensions)


def _published(report: Any, coarse: bool) -> tuple[float, float]:
    if coarse:
        return round(report.lon, COARSE_DECIMALS), round(report.lat, COARSE_DECIMALS)
    return report.lon, report.lat


def _widened(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    # A coarsened point may be published up to half a rounding step from where it is.
    pad = 0.5 * 10.0**-COARSE_DECIMALS
    return box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad


def _near(q: dict[str, str]) -> tuple[float, float, float] | None:
    if "lat" not in q and "long" not in q:
        return None
    try:
        lat, lon = float(q["lat"]), float(q["long"])
    except (KeyError, ValueError):
        raise InvalidInput.for_field(
            "lat/long", "send both lat and long as decimal degrees"
        ) from None
    try:
        radius = float(q.get("radius", "500"))
    except ValueError:
        raise InvalidInput.for_field(
            "radius", "must be metres, more than 0 and at most 50000"
        ) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput.for_field("lat/long", "is out of range")
    if not (0 < radius <= 50_000):
        raise InvalidInput.for_field("radius", "must be metres, more than 0 and at most 50000")
    return lon, lat, radius


def _requests_document(
    fmt: str, state: AppState, session: ReadSession, rows: Any, extensions: bool
) -> Response:
    services_by_code = {s.code: s for s in list_service_types(session)}
    names = state.intake_context().district_names
    events = repo.events_of(session, [incident.id for _, incident in rows]) if extensions else {}
    zone = ZoneInfo(state.settings.timezone)
    body = [
        request_document(
            RequestView(
                report,
                incident,
                services_by_code[report.service_code],
                names.get(report.district_id, ""),
            ),
            zone=zone,
            extensions=extensions,
            events=events.get(incident.id),
        )
        for report, incident in rows
    ]
    return _document(fmt, "service_requests", body)


@router.get("/requests/{service_request_id}.{fmt}")
def get_request(
    service_request_id: str,
    fmt: str,
    request: Request,
    state: State,
    session: ReadSession,
) -> Response:
    """One request, still wrapped in the list envelope."""
    if not _plain_digits(service_request_id) or int(service_request_id) > ROW_ID_MAX:
        raise NotFound(f"no request {service_request_id!r}")
    rows = repo.find_requests(session, repo.RequestQuery(ids=(int(service_request_id),)))
    if not rows:
        raise NotFound(f"no request {service_request_id!r}")
    extensions = request.query_params.get("extensions", "").lower() == "true"
    return _requests_document(fmt, state, session, rows, extensions)


@router.get("/tokens/{token}.{fmt}")
def get_token(token: str, fmt: str) -> Response:
    """Every service here is realtime: POST answers with the id itself, so no token exists."""
    raise NotFound(
        f"no token {token!r}: every service here is realtime and POST returns the "
        "service_request_id directly"
    )
