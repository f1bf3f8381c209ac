"""Dispatcher intake over real HTTP: POST /api/v1/incidents on the real server, per backend,
against a bare FastAPI app that only parses the body and INSERTs one row, served the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import orjson
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.engine import make_url

from bench.common import Row, Skip, postgis_base_url
from bench.loadgen import LoadResult, Request, process_cpu_probe, run_load
from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.city import load_city
from fieldops.clock import SystemClock
from fieldops.config import Settings
from fieldops.db.base import UTCDateTime
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
from fieldops.db.migrate import upgrade
from fieldops.incidents.models import Incident, IncidentEvent, Report
from fieldops.intake.context import IntakeContext

BENCH = "intake_api"
ROOT = Path(__file__).resolve().parents[1]
LAYERS = ROOT / "layers"
PATH = "/api/v1/incidents"
OURS_APP = "fieldops.app:app_from_environment"
BARE_APP = "bench.intake_api:bare_app_from_environment"
PEER = "bare FastAPI: pydantic parse + 1 INSERT, same server setup"

# Closed loop: each connection sends its next request when the answer to the last one is
# in. 32 in flight is a busy dispatch centre plus a few Open311 clients; by Little's law
# the p99 target (< 50 ms) at 1,500 requests/s leaves room for about 30-50 in flight.
CONNECTIONS = 32
RPS_TARGET = 1500.0
P99_TARGET_MS = 50.0
# Above this the load generator takes a visible share of a 2-core machine from the server.
LOADGEN_CPU_TARGET = 0.25
BODIES = 40_000
MONTREAL_BBOX = (-73.9966, 45.3854, -73.4739, 45.7076)
# Share of reports that repeat an earlier report's place and service (several people
# reporting the same pothole), a few metres apart, so intake merges them.
REPEAT_SHARE = 0.3
REPEAT_JITTER_M = 8.0
SERVICE_MIX = {
    "pothole": 0.30,
    "rats": 0.12,
    "fallen_tree": 0.15,
    "snow_ice": 0.15,
    "flooding": 0.10,
    "traffic_signal_out": 0.10,
    "dead_animal": 0.04,
    "wildlife": 0.04,
}
DESCRIPTIONS = {
    "pothole": ["Nid-de-poule profond dans la voie de droite", "Pothole near the crosswalk"],
    "rats": ["Rats près des bacs dans la ruelle", "Rats seen around the park bins"],
    "fallen_tree": ["Branche tombée sur le trottoir", "Tree down across the lane"],
    "snow_ice": ["Trottoir glacé, non déneigé", "Snow bank blocking the bus stop"],
    "flooding": ["Eau accumulée sous le viaduc", "Water over the road after the storm"],
    "traffic_signal_out": ["Feu clignotant à l'intersection", "Signal dark at the corner"],
    "dead_animal": ["Animal mort sur la chaussée", "Dead raccoon on the sidewalk"],
    "wildlife": ["Mouffette dans la cour d'école", "Raccoon in the garage"],
}
STREETS = [
    "rue Saint-Denis", "boulevard Saint-Laurent", "rue Sherbrooke Est", "avenue du Parc",
    "rue Ontario Est", "rue Wellington", "boulevard Décarie", "rue Jean-Talon Ouest",
    "avenue Papineau", "rue Notre-Dame Ouest", "boulevard Gouin Est", "rue Beaubien Est",
]  # fmt: skip


@dataclass(frozen=True)
class Durations:
    warmup_s: float
    duration_s: float

    @classmethod
    def of(cls, quick: bool) -> Durations:
        return cls(warmup_s=1.0, duration_s=3.0) if quick else cls(warmup_s=2.0, duration_s=10.0)


# --- the peer: a bare ceiling app ----------------------------------------------------------

BARE_TABLE = sa.Table(
    "bench_bare_reports",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("lon", sa.Float, nullable=False),
    sa.Column("lat", sa.Float, nullable=False),
    sa.Column("service_code", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


class BareReport(BaseModel):
    """The same body as the dispatcher API's IncidentCreate, with the same limits."""

    model_config = ConfigDict(extra="forbid")

    service_code: str = Field(min_length=1, max_length=64)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    description: str = Field(default="", max_length=4000)
    address: str = Field(default="", max_length=500)
    priority: int | None = Field(default=None, ge=1, le=5)
    requested_at: AwareDatetime | None = None


def bare_app_from_environment() -> FastAPI:
    """The ceiling: parse, one INSERT, commit. No auth, districting, duplicates or events.

    It uses the project's engine settings (WAL and synchronous=FULL on SpatiaLite, the same
    pool on PostGIS), so both apps pay the same price for a durable commit.
    """
    engine = make_engine(Settings().database_url)
    clock = SystemClock()
    app = FastAPI(title="bare ceiling")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(PATH, status_code=201)
    def create(body: BareReport) -> dict[str, int]:
        with engine.begin() as conn:
            result = conn.execute(
                BARE_TABLE.insert().values(
                    lon=body.lon,
                    lat=body.lat,
                    service_code=body.service_code,
                    description=body.description,
                    created_at=clock.now(),
                )
            )
        key = result.inserted_primary_key
        assert key is not None
        return {"id": int(key[0])}

    return app


# --- backends ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    workers: int


@contextlib.contextmanager
def spatialite_backend() -> Iterator[Backend]:
    folder = Path(tempfile.mkdtemp(prefix="fieldops-bench-"))
    try:
        yield Backend("SpatiaLite", f"sqlite:///{folder / 'fieldops.db'}", workers=1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgis_backend() -> Iterator[Backend]:
    """A schema of its own in the bench database, dropped afterwards: every run starts empty
    and nothing else in that database is touched."""
    base = postgis_base_url()
    if base.startswith("postgresql://"):
        base = "postgresql+psycopg://" + base.removeprefix("postgresql://")
    schema = f"bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.SQLAlchemyError as exc:
        raise Skip(f"PostGIS at {make_url(base)!r} unusable: {exc.__class__.__name__}") from None
    url = (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema},public"})
        .render_as_string(hide_password=False)
    )
    try:
        yield Backend("PostGIS", url, workers=2)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def prepare(url: str) -> tuple[str, IntakeContext]:
    """Migrate, load the city, create the bare table and a dispatcher key; returns the key's
    secret and the intake context (the same district index the server will use)."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        BARE_TABLE.metadata.create_all(engine)
        sessions = make_sessionmaker(engine)
        now = SystemClock().now()
        with unit_of_work(sessions) as session:
            load_city(session, LAYERS, now=now)
            _key, secret = create_key(session, name="bench", role=Role.DISPATCHER, now=now)
        with sessions() as session:
            context = IntakeContext.load(session)
    finally:
        engine.dispose()
    return secret, context


def stored_counts(url: str) -> dict[str, int]:
    """What intake kept: incidents opened, reports merged into one, reports in all."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "incidents": conn.scalar(sa.select(sa.func.count()).select_from(Incident)) or 0,
                "merged": conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(IncidentEvent)
                    .where(IncidentEvent.kind == "report_merged")
                )
                or 0,
                "reports": conn.scalar(sa.select(sa.func.count()).select_from(Report)) or 0,
            }
    finally:
        engine.dispose()


# --- request bodies ------------------------------------------------------------------------


def report_bodies(context: IntakeContext, n: int, *, seed: int = 311) -> list[bytes]:
    """``n`` JSON bodies: points inside Montréal's districts, several services, and a share
    repeating an earlier report's place and service a few metres away (those merge)."""
    rng = np.random.default_rng(seed)
    min_lon, min_lat, max_lon, max_lat = MONTREAL_BBOX
    lon = np.empty(0)
    lat = np.empty(0)
    while lon.size < n:
        cand_lon = np.round(rng.uniform(min_lon, max_lon, 2 * n), 6)
        cand_lat = np.round(rng.uniform(min_lat, max_lat, 2 * n), 6)
        inside = context.districts.locate_many(cand_lon, cand_lat) >= 0
        lon = np.concatenate([lon, cand_lon[inside]])
        lat = np.concatenate([lat, cand_lat[inside]])
    xs, ys = lon[:n].tolist(), lat[:n].tolist()
    codes = list(SERVICE_MIX)
    code_of = rng.choice(len(codes), size=n, p=np.array(list(SERVICE_MIX.values()))).tolist()
    repeat = (rng.random(n) < REPEAT_SHARE).tolist()
    earlier = rng.integers(0, np.maximum(np.arange(n), 1)).tolist()
    jitter = (rng.uniform(-1, 1, (n, 2)) * REPEAT_JITTER_M / math.sqrt(2)).tolist()
    metres_per_deg_lat = 111_320.0
    metres_per_deg_lon = metres_per_deg_lat * math.cos(math.radians(45.5))
    bodies: list[bytes] = []
    for i in range(n):
        if repeat[i] and i > 0:
            # Repeat an earlier report's place and service, a few metres away.
            j = earlier[i]
            x = round(xs[j] + jitter[i][0] / metres_per_deg_lon, 6)
            y = round(ys[j] + jitter[i][1] / metres_per_deg_lat, 6)
            if context.districts.locate(x, y) is not None:
                xs[i], ys[i], code_of[i] = x, y, code_of[j]
        code = codes[code_of[i]]
        texts = DESCRIPTIONS[code]
        body = {
            "service_code": code,
            "lat": ys[i],
            "lon": xs[i],
            "description": texts[int(rng.integers(len(texts)))],
            "address": f"{int(rng.integers(1, 9999))} {STREETS[int(rng.integers(len(STREETS)))]}",
        }
        bodies.append(orjson.dumps(body))
    return bodies


# --- serving ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    port: int
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def serve(app_ref: str, *, database_url: str, workers: int, log: Path) -> Iterator[Server]:
    """Run ``app_ref`` under uvicorn on 127.0.0.1 as production does (no access log) and
    wait until it answers /healthz; stop it (and its workers) afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDOPS_")}
    env["FIELDOPS_DATABASE_URL"] = database_url
    command = [
        sys.executable, "-m", "uvicorn", app_ref, "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_healthy(process, port, log)
        yield Server(port, process)
    finally:
        _stop(process)


def _wait_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"server exited with {process.returncode}: {' | '.join(tail)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not answer /healthz within 60 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # The group is the one this process started for the server (start_new_session).
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


# --- one backend ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    ours: LoadResult
    bare: LoadResult
    stored: dict[str, int]
    open311: LoadResult | None = None
    open311_kept: int = 0  # incidents + merged reports the Open311 run added


# Answers to a service's required questions (Open311 attributes), as a citizen app sends them.
OPEN311_ATTRIBUTES = {
    "wildlife": {"attribute[animal]": "raccoon"},
    "traffic_signal_out": {"attribute[signal_state]": "dark"},
}
OPEN311_RPS_TARGET = 1_000.0


def open311_requests(bodies: list[bytes], secret: str) -> list[Request]:
    """The same reports as Open311 POSTs, form-encoded as the spec says, half to
    requests.xml and half to requests.json."""
    requests = []
    for n, body in enumerate(bodies):
        report = orjson.loads(body)
        form = {
            "api_key": secret,
            "service_code": report["service_code"],
            "lat": repr(report["lat"]),
            "long": repr(report["lon"]),
            "description": report["description"],
            "address_string": report["address"],
            **OPEN311_ATTRIBUTES.get(report["service_code"], {}),
        }
        path = "/open311/v2/requests." + ("xml" if n % 2 else "json")
        requests.append(
            Request(
                "POST",
                path,
                urlencode(form).encode(),
                {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            )
        )
    return requests


def measure(backend: Backend, durations: Durations, workdir: Path) -> Measured:
    secret, context = prepare(backend.url)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    requests = [Request("POST", PATH, body, headers) for body in report_bodies(context, BODIES)]
    results: dict[str, LoadResult] = {}
    stored: dict[str, int] = {}
    for label, app_ref in (("ours", OURS_APP), ("bare", BARE_APP)):
        log = workdir / f"{backend.name}-{label}.log"
        with serve(app_ref, database_url=backend.url, workers=backend.workers, log=log) as srv:
            results[label] = run_load(
                port=srv.port,
                requests=requests,
                connections=CONNECTIONS,
                warmup_s=durations.warmup_s,
                duration_s=durations.duration_s,
                ok_status=frozenset({201}),
                cpu_probe=process_cpu_probe(srv.process.pid),
            )
        if label == "ours":
            # The server is stopped: everything it acknowledged must be in the database.
            stored = stored_counts(backend.url)
    bodies = report_bodies(context, BODIES, seed=1311)
    log = workdir / f"{backend.name}-open311.log"
    with serve(OURS_APP, database_url=backend.url, workers=backend.workers, log=log) as srv:
        open311 = run_load(
            port=srv.port,
            requests=open311_requests(bodies, secret),
            connections=CONNECTIONS,
            warmup_s=durations.warmup_s,
            duration_s=durations.duration_s,
            ok_status=frozenset({201}),
            cpu_probe=process_cpu_probe(srv.process.pid),
        )
    after = stored_counts(backend.url)
    kept = (after["incidents"] + after["merged"]) - (stored["incidents"] + stored["merged"])
    return Measured(results["ours"], results["bare"], stored, open311, kept)


def _not_ok(result: LoadResult) -> int:
    return sum(n for status, n in result.status_counts.items() if status != 201) + (
        result.failed_exchanges
    )


def _cpu_ms_per_request(result: LoadResult) -> float:
    """Server CPU per answer: steadier than requests/s when something else shares the
    machine, and 2 cores divided by it bounds what the server could do here."""
    if not result.requests_per_s or "server" not in result.cpu_cores:
        return float("nan")
    return 1e3 * result.cpu_cores["server"] / result.requests_per_s


def rows_for(backend: Backend, m: Measured) -> list[Row]:
    ours, bare = m.ours, m.bare
    on_postgis = backend.name == "PostGIS"
    setup = f"{backend.name}, {backend.workers} worker(s), {CONNECTIONS} conns"
    acknowledged = ours.count(201)
    kept = m.stored["incidents"] + m.stored["merged"]
    merged_pct = 100.0 * m.stored["merged"] / max(kept, 1)
    cpu = ours.cpu_cores
    other = max(
        cpu.get("machine_busy", 0.0)
        - cpu.get("server", 0.0)
        - cpu.get("postgres", 0.0)
        - cpu.get("loadgen", 0.0),
        0.0,
    )
    cpu_note = (
        f"server {cpu.get('server', 0):.2f}, PostgreSQL {cpu.get('postgres', 0):.2f}, "
        f"other {other:.2f}, idle {cpu.get('idle', 0):.2f} cores"
    )
    return [
        Row(
            bench=BENCH,
            case=f"{setup}: POST {PATH} throughput",
            value=ours.requests_per_s,
            unit="req/s",
            peer=PEER,
            peer_value=bare.requests_per_s,
            ratio=ours.requests_per_s / bare.requests_per_s if bare.requests_per_s else None,
            target=f"≥{RPS_TARGET:,.0f} req/s" if on_postgis else "",
            met=ours.requests_per_s >= RPS_TARGET if on_postgis else None,
        ),
        Row(
            bench=BENCH,
            case=f"{setup}: latency p50",
            value=ours.p50_ms,
            unit="ms",
            peer=PEER,
            peer_value=bare.p50_ms,
            ratio=ours.p50_ms / bare.p50_ms if bare.p50_ms else None,
        ),
        Row(
            bench=BENCH,
            case=f"{setup}: latency p99",
            value=ours.p99_ms,
            unit="ms",
            peer=PEER,
            peer_value=bare.p99_ms,
            ratio=ours.p99_ms / bare.p99_ms if bare.p99_ms else None,
            target=f"<{P99_TARGET_MS:.0f} ms" if on_postgis else "",
            met=ours.p99_ms < P99_TARGET_MS if on_postgis else None,
        ),
        Row(
            bench=BENCH,
            case=f"{backend.name}: answers other than 201 or failed exchanges (whole run)",
            value=float(_not_ok(ours)),
            unit="requests",
            peer=PEER,
            peer_value=float(_not_ok(bare)),
            target="0",
            met=_not_ok(ours) == 0,
        ),
        Row(
            bench=BENCH,
            case=(
                f"{backend.name}: lost = 201s ({acknowledged:,}) - incidents "
                f"({m.stored['incidents']:,}) - merged reports ({m.stored['merged']:,}; "
                f"{merged_pct:.0f}% merged)"
            ),
            value=float(acknowledged - kept),
            unit="reports",
            target="0",
            met=acknowledged == kept and m.stored["reports"] == acknowledged,
        ),
        Row(
            bench=BENCH,
            case=f"{backend.name}: server CPU per answered request (uvicorn workers only)",
            value=_cpu_ms_per_request(ours),
            unit="ms CPU",
            peer=PEER,
            peer_value=_cpu_ms_per_request(bare),
            ratio=_cpu_ms_per_request(ours) / _cpu_ms_per_request(bare),
        ),
        *_open311_rows(backend, setup, m),
        Row(
            bench=BENCH,
            case=f"{backend.name}: load generator CPU during ours ({cpu_note})",
            value=cpu.get("loadgen", float("nan")),
            unit="cores",
            peer=PEER,
            peer_value=m.bare.cpu_cores.get("loadgen"),
            target=f"<{LOADGEN_CPU_TARGET} cores",
            met=cpu.get("loadgen", 1.0) < LOADGEN_CPU_TARGET,
        ),
    ]


def _open311_rows(backend: Backend, setup: str, m: Measured) -> list[Row]:
    """Open311 ingest (form-encoded POST requests.xml / requests.json) on the same server."""
    o = m.open311
    if o is None:
        return []
    on_postgis = backend.name == "PostGIS"
    acknowledged = o.count(201)
    return [
        Row(
            bench=BENCH,
            case=f"{setup}: Open311 POST requests.xml/.json (form) throughput",
            value=o.requests_per_s,
            unit="req/s",
            peer=PEER,
            peer_value=m.bare.requests_per_s,
            ratio=o.requests_per_s / m.bare.requests_per_s if m.bare.requests_per_s else None,
            target=f"≥{OPEN311_RPS_TARGET:,.0f} req/s" if on_postgis else "",
            met=o.requests_per_s >= OPEN311_RPS_TARGET if on_postgis else None,
        ),
        Row(
            bench=BENCH,
            case=f"{setup}: Open311 latency p50 / p99 (value p99)",
            value=o.p99_ms,
            unit="ms",
            peer=f"p50 {o.p50_ms:.0f} ms; bare p99",
            peer_value=m.bare.p99_ms,
            ratio=o.p99_ms / m.bare.p99_ms if m.bare.p99_ms else None,
            target=f"<{P99_TARGET_MS:.0f} ms" if on_postgis else "",
            met=o.p99_ms < P99_TARGET_MS if on_postgis else None,
        ),
        Row(
            bench=BENCH,
            case=(
                f"{backend.name}: Open311 lost = 201s ({acknowledged:,}) - stored "
                f"({m.open311_kept:,}); answers other than 201: {_not_ok(o)}"
            ),
            value=float(acknowledged - m.open311_kept),
            unit="reports",
            target="0",
            met=acknowledged == m.open311_kept and _not_ok(o) == 0,
        ),
    ]


def _skipped(name: str, reason: str) -> Row:
    return Row(bench=BENCH, case=f"{name}: skipped: {reason}", value=float("nan"), unit="")


def run(quick: bool = False) -> list[Row]:
    """Measure intake over HTTP on SpatiaLite and PostGIS; ``quick`` runs 3 s per case."""
    durations = Durations.of(quick)
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="fieldops-bench-logs-"))
    try:
        for name, backend_of in (("SpatiaLite", spatialite_backend), ("PostGIS", postgis_backend)):
            try:
                with backend_of() as backend:
                    rows += rows_for(backend, measure(backend, durations, workdir))
            except Skip as exc:
                rows.append(_skipped(name, str(exc)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


if __name__ == "__main__":
    from bench.__main__ import print_rows

    print_rows(run(quick="--quick" in sys.argv[1:]))
