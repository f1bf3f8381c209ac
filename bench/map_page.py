"""The live map: page ready time in headless Chromium with 1,000 / 10,000 / 50,000 open
incidents, page and feed sizes, and hot spots of 100,000 incidents; each against the plain
folium approach measured in the same run.

Ours: /map served by the real app (uvicorn on 127.0.0.1, SpatiaLite), incidents fetched from
the feed as GeoJSON and drawn with client-side clustering. Peer: the same incidents as one
``folium.Marker`` each, in a folium page loaded from a file (no server work at all).
"Ready" is the first frame after the page has drawn its incidents, from navigation start.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import folium
import geopandas
import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
import uvicorn
from playwright.sync_api import Browser, sync_playwright
from sklearn.cluster import DBSCAN

from bench.common import Row, median_seconds
from fieldops.app import create_app
from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.catalog.repo import list_service_types
from fieldops.city import load_city
from fieldops.clock import SystemClock
from fieldops.config import Settings
from fieldops.db.base import ewkt_point
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
from fieldops.db.migrate import upgrade
from fieldops.geo.crs import MONTREAL_MTM8, WGS84, to_metric
from fieldops.geo.hotspots import HotspotOptions, core_threshold, find_hotspots
from fieldops.incidents.models import Incident, IncidentEvent, IncidentStatus
from fieldops.intake.context import IntakeContext
from fieldops.mapping.assets import DEFAULT_VENDOR_DIR

BENCH = "map_page"
ROOT = Path(__file__).resolve().parents[1]
LAYERS = ROOT / "layers"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIZES = (1_000, 10_000, 50_000)
QUICK_SIZES = (1_000, 10_000)
TARGET_S = {10_000: 1.0, 50_000: 3.0}
HOTSPOT_INCIDENTS = 100_000
HOTSPOT_TARGET_S = 1.0
LOADS = 3
PEER = "plain folium: one folium.Marker per incident"
# Share of incidents gathered around hot places (the rest spread over the districts).
CLUSTERED_SHARE = 0.3
CLUSTERS = 300
STATUSES = [s.value for s in IncidentStatus if not s.is_closed]
FIRST_FRAME_JS = "() => new Promise(done => requestAnimationFrame(() => done(performance.now())))"


@dataclass
class Served:
    base_url: str
    key: str
    database_url: str


def city_points(n: int, rng: np.random.Generator, context: IntakeContext) -> pd.DataFrame:
    """``n`` points inside the districts: some around hot places, the rest spread out; with
    the district id of each."""
    lon0, lat0, lon1, lat1 = -73.99, 45.40, -73.47, 45.71
    found_lon: list[np.ndarray] = []
    found_lat: list[np.ndarray] = []
    found_district: list[np.ndarray] = []
    centres_lon = rng.uniform(-73.90, -73.52, CLUSTERS)
    centres_lat = rng.uniform(45.44, 45.65, CLUSTERS)
    total = 0
    while total < n:
        batch = 2 * n
        spread = rng.random(batch) > CLUSTERED_SHARE
        pick = rng.integers(0, CLUSTERS, batch)
        lon = np.where(
            spread, rng.uniform(lon0, lon1, batch), centres_lon[pick] + rng.normal(0, 0.002, batch)
        )
        lat = np.where(
            spread, rng.uniform(lat0, lat1, batch), centres_lat[pick] + rng.normal(0, 0.0014, batch)
        )
        district = context.districts.locate_many(lon, lat)
        inside = district >= 0
        found_lon.append(lon[inside])
        found_lat.append(lat[inside])
        found_district.append(np.asarray(context.districts.keys, dtype=np.int64)[district[inside]])
        total += int(inside.sum())
    return pd.DataFrame(
        {
            "lon": np.concatenate(found_lon)[:n],
            "lat": np.concatenate(found_lat)[:n],
            "district_id": np.concatenate(found_district)[:n],
        }
    )


def build_database(folder: Path, n: int, rng: np.random.Generator) -> tuple[str, str, pd.DataFrame]:
    """A SpatiaLite database with the city and ``n`` open incidents inserted in bulk."""
    url = f"sqlite:///{folder / 'map.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    now = SystemClock().now()
    with unit_of_work(sessions) as session:
        load_city(session, LAYERS, now=now)
    with unit_of_work(sessions) as session:
        context = IntakeContext.load(session)
        services = list(list_service_types(session))
        _key, secret = create_key(session, name="bench", role=Role.DISPATCHER, now=now)
    points = city_points(n, rng, context)
    chosen = rng.integers(0, len(services), n)
    points["service_code"] = [services[i].code for i in chosen]
    points["service_group"] = [services[i].group for i in chosen]
    points["priority"] = rng.integers(1, 6, n)
    points["status"] = rng.choice(STATUSES, n, p=[0.6, 0.1, 0.1, 0.1, 0.1])
    points["report_count"] = rng.integers(1, 4, n)
    ages = pd.to_timedelta(rng.integers(0, 72 * 3600, n), unit="s")
    points["first_report_at"] = pd.Timestamp(now) - ages
    rows = [
        {
            "service_code": r.service_code,
            "service_group": r.service_group,
            "status": r.status,
            "is_open": True,
            "priority": int(r.priority),
            "district_id": int(r.district_id),
            "lon": float(r.lon),
            "lat": float(r.lat),
            "geom": ewkt_point(float(r.lon), float(r.lat)),
            "address": "",
            "description": "",
            "opened_at": r.first_report_at.to_pydatetime(),
            "updated_at": now,
            "closed_at": None,
            "first_report_at": r.first_report_at.to_pydatetime(),
            "last_report_at": r.first_report_at.to_pydatetime(),
            "report_count": int(r.report_count),
            "status_notes": "",
        }
        for r in points.itertuples()
    ]
    with unit_of_work(sessions) as session:
        for start in range(0, len(rows), 5000):
            session.execute(sa.insert(Incident), rows[start : start + 5000])
    engine.dispose()
    return url, secret, points


def keep_open(database_url: str, n: int) -> None:
    """Leave the first ``n`` incidents open and close the rest, with an event as every real
    change has (so cached hot spots are recomputed)."""
    engine = make_engine(database_url)
    with unit_of_work(make_sessionmaker(engine)) as session:
        session.execute(sa.update(Incident).values(is_open=Incident.id <= n))
        session.add(
            IncidentEvent(incident_id=1, at=SystemClock().now(), actor="bench", kind="bench")
        )
    engine.dispose()


@contextmanager
def serve(database_url: str, key: str) -> Iterator[Served]:
    """The real app on a free 127.0.0.1 port, in a thread of this process."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(database_url=database_url, environment="test", run_scheduler=False)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", ws="none"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", key, database_url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def ours_ready_s(browser: Browser, served: Served, expected: int) -> float:
    """Seconds from navigation to the first frame after /map drew ``expected`` incidents
    (a fresh browser context: nothing cached in the browser)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{served.base_url}/map#key={served.key}")
    page.wait_for_function("() => document.documentElement.dataset.foReady === '1'")
    at_ms: float = page.evaluate(FIRST_FRAME_JS)
    shown = page.evaluate("() => FieldOps.stats().incidents")
    context.close()
    if shown != expected:
        raise AssertionError(f"/map showed {shown} incidents, expected {expected}")
    return at_ms / 1000


def peer_page(points: pd.DataFrame, n: int, folder: Path) -> tuple[Path, float]:
    """The plain folium page: one Marker per incident, Leaflet from node_modules by file://.
    Returns the file and the seconds Python took to build it."""
    started = time.perf_counter()
    m = folium.Map(location=(45.55, -73.66), zoom_start=11, tiles=None)
    leaflet = DEFAULT_VENDOR_DIR / "leaflet" / "dist"
    m.default_js = [("leaflet", (leaflet / "leaflet.js").as_uri())]
    m.default_css = [("leaflet_css", (leaflet / "leaflet.css").as_uri())]
    for lon, lat in zip(points["lon"][:n], points["lat"][:n], strict=True):
        folium.Marker((lat, lon)).add_to(m)
    path = folder / f"folium_{n}.html"
    m.save(str(path))
    return path, time.perf_counter() - started


def peer_ready_s(browser: Browser, path: Path, expected: int) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(600_000)
    page.goto(path.as_uri(), wait_until="load")
    at_ms: float = page.evaluate(FIRST_FRAME_JS)
    shown = page.evaluate("() => document.querySelectorAll('.leaflet-marker-icon').length")
    context.close()
    if shown != expected:
        raise AssertionError(f"the folium page showed {shown} markers, expected {expected}")
    return at_ms / 1000


def page_rows(browser: Browser, sizes: tuple[int, ...], folder: Path) -> list[Row]:
    rng = np.random.default_rng(2017)
    database_url, key, points = build_database(folder, max(sizes), rng)
    rows: list[Row] = []
    import httpx

    with serve(database_url, key) as served:
        for n in sizes:
            keep_open(database_url, n)
            ours_ready_s(browser, served, n)  # warm the server's page cache and the OS
            ours = statistics.median(ours_ready_s(browser, served, n) for _ in range(LOADS))
            peer_file, build_s = peer_page(points, n, folder)
            peer_loads = 1 if n >= 50_000 else LOADS
            peer = statistics.median(peer_ready_s(browser, peer_file, n) for _ in range(peer_loads))
            target = TARGET_S.get(n)
            rows.append(
                Row(
                    bench=BENCH,
                    case=f"page ready in Chromium, {n:,} open incidents (median of {LOADS})",
                    value=ours,
                    unit="s",
                    peer=f"{PEER} (file; +{build_s:.1f} s to build in Python)",
                    peer_value=peer,
                    ratio=ours / peer,
                    target=f"<{target:g} s" if target else "",
                    met=(ours < target) if target else None,
                )
            )
            with httpx.Client(base_url=served.base_url, timeout=120) as client:
                auth = {"Authorization": f"Bearer {served.key}"}
                raw = client.get("/api/v1/feed", headers={**auth, "Accept-Encoding": "identity"})
                zipped = client.get("/api/v1/feed", headers={**auth, "Accept-Encoding": "gzip"})
                page = client.get("/map")
            rows.append(
                Row(
                    bench=BENCH,
                    case=f"feed snapshot, {n:,} open incidents: bytes on the wire (gzip)",
                    value=zipped.num_bytes_downloaded / 1e6,
                    unit="MB",
                    peer=f"{PEER}: page size",
                    peer_value=peer_file.stat().st_size / 1e6,
                    ratio=zipped.num_bytes_downloaded / peer_file.stat().st_size,
                )
            )
            rows.append(
                Row(
                    bench=BENCH,
                    case=f"feed snapshot, {n:,} open incidents: JSON uncompressed",
                    value=len(raw.content) / 1e6,
                    unit="MB",
                )
            )
        rows.append(
            Row(
                bench=BENCH,
                case="/map page (HTML with base layers; same at any count)",
                value=len(page.content) / 1e6,
                unit="MB",
                peer=f"{PEER}: page size at {sizes[0]:,}",
                peer_value=(folder / f"folium_{sizes[0]}.html").stat().st_size / 1e6,
                ratio=len(page.content) / (folder / f"folium_{sizes[0]}.html").stat().st_size,
            )
        )
        rows += feed_delta_rows(served)
        rows += hotspot_api_rows(served, max(sizes))
    return rows


def feed_delta_rows(served: Served) -> list[Row]:
    import httpx

    auth = {"Authorization": f"Bearer {served.key}"}
    with httpx.Client(base_url=served.base_url, timeout=60, headers=auth) as client:
        snapshot = client.get("/api/v1/feed").json()
        cursor, crews = snapshot["cursor"], snapshot["crews_version"]
        emergencies = snapshot["emergencies_version"]
        created = client.post(
            "/api/v1/incidents", json={"service_code": "pothole", "lon": -73.58, "lat": 45.523}
        )
        created.raise_for_status()
        started = time.perf_counter()
        delta = client.get(f"/api/v1/feed?after={cursor}&crews={crews}&emergencies={emergencies}")
        took_s = time.perf_counter() - started
        idle = client.get(
            f"/api/v1/feed?after={delta.json()['cursor']}&crews={crews}&emergencies={emergencies}"
        )
    return [
        Row(
            bench=BENCH,
            case="feed poll after one new incident: size",
            value=len(delta.content) / 1e3,
            unit="kB",
            peer="poll with nothing new (bytes)",
            peer_value=len(idle.content) / 1e3,
        ),
        Row(
            bench=BENCH,
            case="feed poll after one new incident: latency",
            value=took_s * 1e3,
            unit="ms",
        ),
    ]


def hotspot_api_rows(served: Served, n: int) -> list[Row]:
    import httpx

    auth = {"Authorization": f"Bearer {served.key}"}
    with httpx.Client(base_url=served.base_url, timeout=120, headers=auth) as client:
        # A new radius each time: the answer is not in the cache.
        times = []
        for radius in (199, 201, 202):
            started = time.perf_counter()
            client.get(f"/api/v1/hotspots.geojson?radius_m={radius}").raise_for_status()
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.get("/api/v1/hotspots.geojson?radius_m=202").raise_for_status()
        cached_s = time.perf_counter() - started
    return [
        Row(
            bench=BENCH,
            case=f"GET /api/v1/hotspots.geojson, {n:,} open incidents, computed (median of 3)",
            value=statistics.median(times),
            unit="s",
            peer="the same answer from the cache",
            peer_value=cached_s,
        )
    ]


def hotspot_rows(quick: bool) -> list[Row]:
    """find_hotspots on 100,000 incidents against a plain DBSCAN on projected metres."""
    rng = np.random.default_rng(7)
    districts = geopandas.read_file(LAYERS / "limadmin.geojson")
    area_m2 = float(to_metric(districts, MONTREAL_MTM8).area.sum())
    union = shapely.union_all(districts.geometry.to_numpy())
    shapely.prepare(union)
    n = HOTSPOT_INCIDENTS
    lon = rng.uniform(-73.99, -73.47, 3 * n)
    lat = rng.uniform(45.40, 45.71, 3 * n)
    inside = shapely.contains_xy(union, lon, lat)
    lon, lat = lon[inside][:n], lat[inside][:n]
    hot = rng.random(n) < CLUSTERED_SHARE
    pick = rng.integers(0, CLUSTERS, n)
    lon = np.where(hot, lon[pick] + rng.normal(0, 0.0015, n), lon)
    lat = np.where(hot, lat[pick] + rng.normal(0, 0.001, n), lat)
    first = pd.Timestamp("2026-05-01", tz="UTC") + pd.to_timedelta(
        rng.uniform(0, 72 * 3600, n), unit="s"
    )
    incidents = geopandas.GeoDataFrame(
        {
            "id": np.arange(1, n + 1),
            "service_group": rng.choice(["water", "roads", "trees", "winter"], n),
            "report_count": rng.integers(1, 4, n),
            "first_report_at": first,
            "last_report_at": first + pd.Timedelta(hours=2),
        },
        geometry=geopandas.points_from_xy(lon, lat),
        crs=WGS84,
    )
    options = HotspotOptions(area_m2=area_m2)
    timed = HotspotOptions(area_m2=area_m2, window=timedelta(hours=24))
    repeat = 3 if quick else 5
    found = find_hotspots(incidents, options)
    ours_s = median_seconds(lambda: find_hotspots(incidents, options), repeat=repeat)
    timed_s = median_seconds(lambda: find_hotspots(incidents, timed), repeat=repeat)
    xy = to_metric(incidents.geometry, MONTREAL_MTM8).get_coordinates().to_numpy()
    weights = incidents["report_count"].to_numpy()
    threshold = core_threshold(int(weights.sum()), options)
    model = DBSCAN(eps=options.radius_m, min_samples=threshold)
    peer_s = median_seconds(lambda: model.fit(xy, sample_weight=weights), repeat=repeat)
    peer = "sklearn DBSCAN on projected metres (labels only, points pre-projected)"
    return [
        Row(
            bench=BENCH,
            case=f"hot spots of {n:,} incidents, space ({len(found)} found; projection, "
            "clustering, summaries, outlines)",
            value=ours_s,
            unit="s",
            peer=peer,
            peer_value=peer_s,
            ratio=ours_s / peer_s,
            target=f"<{HOTSPOT_TARGET_S:g} s",
            met=ours_s < HOTSPOT_TARGET_S,
        ),
        Row(
            bench=BENCH,
            case=f"hot spots of {n:,} incidents, space and time (24 h window)",
            value=timed_s,
            unit="s",
            peer=peer,
            peer_value=peer_s,
            ratio=timed_s / peer_s,
            target=f"<{HOTSPOT_TARGET_S:g} s",
            met=timed_s < HOTSPOT_TARGET_S,
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    """Page ready times and sizes at each size (``quick``: 1,000 and 10,000 only), then
    hot spots of 100,000 incidents."""
    sizes = QUICK_SIZES if quick else SIZES
    rows = hotspot_rows(quick)
    with (
        tempfile.TemporaryDirectory(prefix="fieldops-map-bench-") as folder,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            rows = page_rows(browser, sizes, Path(folder)) + rows
        finally:
            browser.close()
    return rows


def _print(rows: list[Row]) -> None:
    for row in rows:
        peer = f"{row.peer_value:,.3g}" if row.peer_value is not None else "-"
        print(f"{row.case} | {row.value:,.3g} {row.unit} | {row.peer}: {peer} | met {row.met}")


if __name__ == "__main__":
    started = time.perf_counter()
    _print(run(quick="--quick" in sys.argv[1:]))
    print(f"({time.perf_counter() - started:.1f} s)")
