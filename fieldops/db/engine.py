"""Engines and sessions for the two backends: SpatiaLite (embedded default) and PostGIS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# pyproj's bundled PROJ must be loaded before SpatiaLite pulls in the system PROJ:
# in the other order the two libraries corrupt each other's heap at process exit.
import pyproj  # noqa: F401
import sqlalchemy as sa
import sqlean
from geoalchemy2.admin.dialects.sqlite import init_spatialite
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

# Every model registered before the first query, whichever domain a caller imported.
from fieldops.db import models as _models  # noqa: F401
from fieldops.db.updates import ChangesSession

# Execution options for a session that only reads (``session.connection(execution_options=...)``).
READ_ONLY: dict[str, Any] = {"sqlite_begin": "DEFERRED"}

# How long a SQLite writer waits for the lock before giving up, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 15_000


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    """Create an engine for ``url`` with the settings each backend needs to be safe.

    SpatiaLite: the extension is loaded on every connection, WAL journal,
    ``synchronous=FULL`` (a commit is on disk before we answer), a busy timeout,
    foreign keys on, and every transaction opened with ``BEGIN IMMEDIATE`` so two
    writers queue on the lock instead of failing half-way.
    PostGIS: a psycopg 3 pool with pre-ping, as large as the request thread pool (40
    with the overflow) so busy workers reuse connections instead of opening new ones.
    """
    if url.startswith("sqlite"):
        return _spatialite_engine(url)
    return sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _spatialite_engine(url: str) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        module=sqlean,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=5,
        max_overflow=5,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below); the driver must not.
        dbapi_conn.isolation_level = None
        dbapi_conn.enable_load_extension(True)
        dbapi_conn.load_extension("mod_spatialite")
        dbapi_conn.enable_load_extension(False)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "foreign_keys=ON",
        ):
            dbapi_conn.execute(f"PRAGMA {pragma}")
        init_spatialite(dbapi_conn, init_mode="WGS84")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Read-only work may ask for a deferred transaction (see READ_ONLY) so that
        # readers never queue behind writers; everything else takes the write lock first.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, class_=ChangesSession, expire_on_commit=False, autoflush=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def backend_name(engine: Engine) -> str:
    """``"spatialite"`` or ``"postgis"``."""
    return "spatialite" if engine.dialect.name == "sqlite" else "postgis"
