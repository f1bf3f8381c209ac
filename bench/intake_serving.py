"""What the intake benchmark serves and where: the backends (a fresh SpatiaLite file, a schema
of its own in the bench PostGIS), the bare peer app, and the server command, the same for
ours and for the peer."""

from __future__ import annotations

import contextlib
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

import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.engine import make_url

from bench.common import Skip, postgis_base_url
from fieldops.api.worker import freeze_startup_objects
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

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ROOT / "layers"
PATH = "/api/v1/incidents"
OURS_APP = "fieldops.app:app_from_environment"
BARE_APP = "bench.intake_serving:bare_app_from_environment"
# uvicorn logs this once per worker process when its app is ready to serve.
STARTED = "Application startup complete."


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
    pool on PostGIS), so both apps pay the same price for a durable commit, and its worker
    settles its heap as ours does (``freeze_startup_objects``), so neither pays for
    collecting its start-up objects over and over.
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

    freeze_startup_objects()
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


# What intake writes, children first: emptied between runs (see ``Ledger.reset``).
INTAKE_TABLES = (
    "assignments",
    "escalation_steps",
    "incident_events",
    "reports",
    "notifications",
    "incidents",
)


class Ledger:
    """The bench's own look at the database: what intake kept, and a clean slate between runs.

    Every run starts with no incidents, as a fresh database would: incidents are never
    closed here, so without it the open incidents would pile up from run to run and each
    run would search for duplicates among more of them than the one before (a later run, a
    different workload)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def counts(self) -> dict[str, int]:
        """Incidents opened, reports merged into one, reports in all."""
        with self.engine.connect() as conn:
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

    def reset(self) -> None:
        """Empty what intake (and the peer) wrote; districts, services and keys stay."""
        tables = [*INTAKE_TABLES, BARE_TABLE.name]
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)}")
            else:
                for table in tables:
                    conn.exec_driver_sql(f"DELETE FROM {table}")

    def close(self) -> None:
        self.engine.dispose()


# --- serving -------------------------------------------------------------------------------


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
    """Serve ``app_ref`` on 127.0.0.1 as ``fieldops serve`` serves FieldOps
    (``fieldops.serving``: a socket per worker, uvicorn with uvloop and httptools, no access
    log) and wait until every worker has started and /healthz answers. Waiting for every
    worker matters: connections opened while one is still starting all go to the others,
    and stay there. Stops it (and its workers) afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDOPS_")}
    env["FIELDOPS_DATABASE_URL"] = database_url
    command = [
        sys.executable, "-m", "fieldops.serving", app_ref,
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_ready(process, port, log, workers)
        yield Server(port, process)
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path, workers: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"server exited with {process.returncode}: {' | '.join(tail)}")
        if log.read_text(errors="replace").count(STARTED) >= workers:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not start its {workers} worker(s) within 90 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # The group is the one this process started for the server (start_new_session).
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
