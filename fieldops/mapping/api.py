"""Map routes: the live dispatcher page, its browser files, the change feed, hot spots, heat."""

from __future__ import annotations

import gzip
import threading
from datetime import timedelta
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from fieldops.api.deps import Now, ReadSession, Staff, State
from fieldops.api.errors import problem
from fieldops.db.base import ROW_ID_MAX
from fieldops.errors import InvalidInput, NotFound
from fieldops.geo.hotspots import HotspotOptions
from fieldops.incidents.models import OPEN_STATUSES, IncidentStatus
from fieldops.mapping import feed, repo, service
from fieldops.mapping.assets import MissingAssets, asset_links, own_file, vendor_dir_of, vendor_file
from fieldops.mapping.render import LiveFeed

router = APIRouter(tags=["map"])

LIVE: Final = LiveFeed()
# Answers bigger than this are gzipped for clients that accept it (the feed of a city in a
# surge is megabytes of JSON that compresses tenfold).
GZIP_OVER_BYTES: Final = 16 * 1024
MAX_FEED_PAGE: Final = 5000
# The page may load and fetch from this server only: a map that works with the internet down
# cannot depend on it, and a stray CDN link fails here instead of silently in production.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:{tiles}; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

_cache_lock = threading.Lock()


def get_map_cache(request: Request, state: State) -> service.MapCache:
    """The app's map cache, made on first use."""
    cache: service.MapCache | None = getattr(request.app.state, "fieldops_map", None)
    if cache is None:
        with _cache_lock:
            cache = getattr(request.app.state, "fieldops_map", None)
            if cache is None:
                cache = service.MapCache(layers_dir=state.settings.layers_dir)
                request.app.state.fieldops_map = cache
    return cache


Cache = Annotated[service.MapCache, Depends(get_map_cache)]


def json_answer(
    request: Request, body: Any | bytes, *, media_type: str = "application/json"
) -> Response:
    """JSON (orjson), gzipped when large and accepted; never cached by the browser."""
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    accepts = request.headers.get("accept-encoding", "")
    if len(payload) > GZIP_OVER_BYTES and "gzip" in accepts:
        payload = gzip.compress(payload, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(payload, media_type=media_type, headers=headers)


# --- the page and its files -----------------------------------------------------------------


@router.get("/map", response_class=HTMLResponse, include_in_schema=False)
def map_page(
    session: ReadSession,
    state: State,
    cache: Cache,
    lang: Annotated[Literal["fr", "en"], Query(description="language the page opens in")] = "fr",
) -> Response:
    """The live dispatcher map. Public: it holds no incident; its script asks for the
    dispatcher key (or takes it from the URL fragment ``#key=...``) and reads the feed."""
    settings = state.settings
    try:
        links = asset_links(vendor_dir_of(settings))
    except MissingAssets as exc:
        return problem(503, "Map assets missing", str(exc))
    html = service.live_page(
        session,
        cache=cache,
        assets=links,
        lang=lang,
        timezone=settings.timezone,
        tile_url=settings.tile_url,
        live=LIVE,
        stale_after=settings.stale_after,
    )
    tile_origin = ""
    if settings.tile_url:
        scheme, _, rest = settings.tile_url.partition("://")
        tile_origin = f" {scheme}://{rest.split('/', 1)[0]}"
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY.format(tiles=tile_origin),
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


_STATIC_HEADERS: Final = {
    # Links carry ?v=<version>: a new version is a new URL, so browsers may keep files a day.
    "Cache-Control": "public, max-age=86400",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/static/vendor/{package}/{path:path}", include_in_schema=False)
def vendor_asset(package: str, path: str, state: State) -> FileResponse:
    """A file of an npm package's ``dist`` folder (Leaflet and its plugins)."""
    found = vendor_file(vendor_dir_of(state.settings), package, path)
    if found is None:
        raise NotFound(f"no vendor file {package}/{path}")
    return FileResponse(found, headers=_STATIC_HEADERS)


@router.get("/static/fieldops/{path:path}", include_in_schema=False)
def own_asset(path: str) -> FileResponse:
    """FieldOps' own map script and styles."""
    found = own_file(path)
    if found is None:
        raise NotFound(f"no static file {path}")
    return FileResponse(found, headers=_STATIC_HEADERS)


# --- data -----------------------------------------------------------------------------------


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _ints(name: str, value: str | None) -> list[int]:
    try:
        numbers = [int(v) for v in _csv(value)]
    except ValueError:
        raise InvalidInput.for_field(name, "must be whole numbers, comma-separated") from None
    if any(not 0 <= n <= ROW_ID_MAX for n in numbers):
        raise InvalidInput.for_field(name, f"must be from 0 to {ROW_ID_MAX}")
    return numbers


def map_filter(
    status: Annotated[str | None, Query(description="comma-separated open statuses")] = None,
    service_code: Annotated[
        str | None, Query(alias="service", description="comma-separated service codes")
    ] = None,
    group: Annotated[str | None, Query(description="comma-separated service groups")] = None,
    district: Annotated[str | None, Query(description="comma-separated district ids")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
) -> repo.MapFilter:
    """Query parameters -> filter; raises InvalidInput naming each parameter at fault."""
    try:
        statuses: frozenset[IncidentStatus] | None = frozenset(
            IncidentStatus(s) for s in _csv(status)
        )
    except ValueError:
        statuses = None
    if statuses is None or not statuses <= OPEN_STATUSES:
        raise InvalidInput.for_field(
            "status", f"each value must be an open status: {', '.join(sorted(OPEN_STATUSES))}"
        )
    box = None
    if bbox:
        try:
            parts = [float(v) for v in bbox.split(",")]
        except ValueError:
            parts = []
        if len(parts) != 4 or not (parts[0] <= parts[2] and parts[1] <= parts[3]):
            raise InvalidInput.for_field(
                "bbox", "must be min_lon,min_lat,max_lon,max_lat with min <= max"
            )
        box = (parts[0], parts[1], parts[2], parts[3])
    return repo.MapFilter(
        statuses=statuses,
        service_codes=frozenset(_csv(service_code)),
        service_groups=frozenset(_csv(group)),
        district_ids=frozenset(_ints("district", district)),
        bbox=box,
    )


Filters = Annotated[repo.MapFilter, Depends(map_filter)]


@router.get("/api/v1/feed")
def get_feed(
    request: Request,
    session: ReadSession,
    state: State,
    now: Now,
    _principal: Staff,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=ROW_ID_MAX,
            description="the cursor of the previous answer; omit for the current state",
        ),
    ] = None,
    gaps: Annotated[
        str | None, Query(description="event ids a previous answer listed as missing")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FEED_PAGE)] = 1000,
    crews: Annotated[
        str | None, Query(max_length=64, description="crews_version of the previous answer")
    ] = None,
    emergencies: Annotated[
        str | None,
        Query(max_length=64, description="emergencies_version of the previous answer"),
    ] = None,
) -> Response:
    """The live map's change feed.

    Without ``after``: every open incident (GeoJSON points) and the ``cursor``. With it: the
    incident events after the cursor, the current state of every incident they touch (a
    closed one is sent once so the map drops it), the new ``cursor``, ``more`` when a page
    was full, and ``gaps``: ids below the cursor not committed yet, to send back in ``gaps``
    on the next polls.

    ``crews`` (every crew where last seen, its status and a ``stale`` mark) and
    ``emergencies`` (declared, not ended) come whole, with a version; pass the versions
    back as ``crews`` and ``emergencies`` and they come as ``null`` until they change.
    """
    stale_after = state.settings.stale_after
    if after is None:
        body = feed.feed_snapshot(session, now=now, stale_after=stale_after)
        return json_answer(request, body)
    missing = _ints("gaps", gaps)
    if len(missing) > feed.MAX_GAPS:
        raise InvalidInput.for_field("gaps", f"at most {feed.MAX_GAPS} ids")
    body = feed.feed_changes(
        session,
        after=after,
        now=now,
        stale_after=stale_after,
        gaps=missing,
        limit=limit,
        crews_version=crews,
        emergencies_version=emergencies,
    )
    return json_answer(request, body)


@router.get("/api/v1/hotspots.geojson")
def get_hotspots(
    request: Request,
    session: ReadSession,
    cache: Cache,
    _principal: Staff,
    filters: Filters,
    radius_m: Annotated[float, Query(gt=0, le=5000, description="neighbourhood radius")] = 200,
    min_reports: Annotated[int, Query(ge=1, le=100_000, description="reports for a core")] = 5,
    window_h: Annotated[
        float | None, Query(ge=0.001, le=24 * 366, description="also close in time (hours)")
    ] = None,
    density_ratio: Annotated[
        float, Query(gt=0, le=1000, description="times the city-wide average density")
    ] = 3.0,
) -> Response:
    """Hot spots of the open incidents (DBSCAN in metres, EPSG:32188; with ``window_h``,
    spatio-temporal): one polygon per hot spot with its member count, report count,
    dominant service group, extent and first and last report times. Recomputed whenever
    an incident changes."""
    options = HotspotOptions(
        radius_m=radius_m,
        min_reports=min_reports,
        window=timedelta(hours=window_h) if window_h else None,
        density_ratio=density_ratio,
    )
    key = ("hotspots", filters, options, repo.latest_event_id(session))
    payload = cache.answer(
        key, lambda: orjson.dumps(service.hotspots_geojson(session, filters, options))
    )
    return json_answer(request, payload, media_type="application/geo+json")


@router.get("/api/v1/heat.geojson")
def get_heat(
    request: Request,
    session: ReadSession,
    cache: Cache,
    _principal: Staff,
    filters: Filters,
    cell_m: Annotated[float, Query(ge=25, le=5000, description="grid cell side")] = 250,
) -> Response:
    """Open incidents and reports per square grid cell (metres, EPSG:32188), as cell-centre
    points with ``incident_count`` and ``report_count``: the heat layer's data."""
    key = ("heat", filters, cell_m, repo.latest_event_id(session))
    payload = cache.answer(
        key, lambda: orjson.dumps(service.heat_geojson(session, filters, cell_m=cell_m))
    )
    return json_answer(request, payload, media_type="application/geo+json")
