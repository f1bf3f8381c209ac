"""A drill's own database: a SpatiaLite file in its output folder, or a schema of its own in
a scratch PostGIS database; dropped or kept as asked, and never the live database.

On PostGIS the drill creates ``drill_<token>`` in the database it is given and reaches it
through ``search_path`` (PostGIS itself stays in ``public``), so two drills in one database
never see each other's rows and nothing else in that database is touched.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from fieldops.errors import InvalidInput

_TOKEN = re.compile(r"[^a-z0-9_]")
# A migrated, empty SpatiaLite file made once per process: a new file costs seconds to set
# up (SpatiaLite's metadata, then every migration), a copy of this one a few milliseconds.
_template: list[Path] = []
_template_lock = threading.Lock()


def _spatialite_template() -> Path:
    with _template_lock:
        if not _template:
            from fieldops.db.engine import make_engine
            from fieldops.db.migrate import upgrade

            folder = tempfile.mkdtemp(prefix="fieldops-drill-template-")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            path = Path(folder) / "empty.db"
            engine = make_engine(f"sqlite:///{path}")
            try:
                upgrade(engine)
            finally:
                # The last connection to close checkpoints the WAL into the main file.
                engine.dispose()
            _template.append(path)
        return _template[0]


@dataclass(frozen=True)
class DrillDatabase:
    url: str  # what the drill connects to
    backend: str  # "spatialite" | "postgis"
    keep: bool
    path: Path | None = None  # SpatiaLite
    schema: str | None = None  # PostGIS
    server_url: str | None = None  # PostGIS: the database the schema lives in

    @property
    def where(self) -> str:
        """Where it is, for people (no password)."""
        if self.path is not None:
            return str(self.path)
        shown = make_url(self.server_url or self.url).render_as_string(hide_password=True)
        return f"schema {self.schema} of {shown}"


def _normalise(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def same_database(a: str, b: str) -> bool:
    """Whether two URLs reach the same database (the same file, or host, port and name)."""
    first, second = make_url(_normalise(a)), make_url(_normalise(b))
    if first.get_backend_name() != second.get_backend_name():
        return False
    if first.get_backend_name() == "sqlite":
        return Path(first.database or "").resolve() == Path(second.database or "").resolve()
    return (first.host or "localhost", first.port or 5432, first.database) == (
        second.host or "localhost",
        second.port or 5432,
        second.database,
    )


def _refuse(reason: str, field: str) -> InvalidInput:
    return InvalidInput.for_field(field, reason)


@contextmanager
def drill_database(
    requested: str | None,
    *,
    folder: Path,
    token: str,
    keep: bool | None = None,
    live_url: str | None = None,
    field: str = "db",
) -> Iterator[DrillDatabase]:
    """Make the drill's database, hand it over, then drop it unless it is to be kept.

    ``requested`` None: a SpatiaLite file ``drill-<token>.db`` in ``folder``, kept unless
    ``keep`` is False. A ``sqlite:///PATH`` must not exist yet. A PostGIS URL names a
    scratch database: the drill gets a schema of its own there, dropped unless ``keep``.
    ``live_url`` is refused (``field`` names the input at fault).
    """
    url = _normalise(requested) if requested else None
    if url is not None and live_url is not None and same_database(url, live_url):
        raise _refuse(
            "is the live database; give a scratch database (a drill makes its own schema or "
            "file there and never touches anything else)",
            field,
        )
    name = _TOKEN.sub("_", token.lower())[:40]
    if url is None or url.startswith("sqlite"):
        path = (
            folder / f"drill-{name}.db"
            if url is None
            else Path(make_url(url).database or "").resolve()
        )
        if url is not None and path.exists():
            raise _refuse(f"{path} exists; a drill needs a database of its own", field)
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        template = _spatialite_template()
        shutil.copyfile(template, path)
        if Path(f"{template}-wal").exists():
            shutil.copyfile(f"{template}-wal", f"{path}-wal")
        db = DrillDatabase(f"sqlite:///{path}", "spatialite", keep is not False, path=path)
        try:
            yield db
        finally:
            if not db.keep:
                for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    stale.unlink(missing_ok=True)
        return
    if not url.startswith("postgresql+psycopg://"):
        raise _refuse("must be sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB", field)
    base = make_url(url)
    if "options" in base.query:
        raise _refuse("must not set options: the drill sets its own search_path", field)
    # The token says whose it is; the random tail keeps two runs of one scenario apart.
    schema = f"drill_{name[:30]}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            # Alembic looks its version table up through search_path: an empty one in the
            # drill's schema, found first, makes every migration run there even when the
            # scratch database holds a FieldOps schema of its own in public.
            conn.exec_driver_sql(
                f"CREATE TABLE {schema}.alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
    except sa.exc.SQLAlchemyError as exc:
        admin.dispose()
        raise _refuse(
            f"cannot make schema {schema} there ({exc.__class__.__name__}: "
            f"{str(exc.orig if hasattr(exc, 'orig') else exc).strip().splitlines()[0]})",
            field,
        ) from None
    drill_url = base.update_query_dict({"options": f"-csearch_path={schema},public"})
    db = DrillDatabase(
        drill_url.render_as_string(hide_password=False),
        "postgis",
        keep is True,
        schema=schema,
        server_url=url,
    )
    try:
        yield db
    finally:
        if not db.keep:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()
