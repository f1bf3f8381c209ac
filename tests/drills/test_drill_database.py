"""A drill's database is its own: a schema of its own in a scratch PostGIS (dropped or kept as
asked) or a new SpatiaLite file, never the live database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fieldops.drills.database import drill_database, same_database
from fieldops.drills.model import DrillOptions
from fieldops.drills.play import play
from fieldops.drills.scenarios import load_checked
from fieldops.errors import InvalidInput

LAYERS = Path(__file__).resolve().parents[2] / "layers"
WRITTEN = datetime(2026, 1, 1, tzinfo=UTC)


def _schemas(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'drill\\_%'")
            ).scalars()
        )


def _public_incidents(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM public.incidents")).scalar_one())


@pytest.mark.postgis
def test_postgis_drill_runs_in_a_schema_of_its_own(
    postgis_engine: Engine, tiny_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    url = postgis_engine.url.render_as_string(hide_password=False)
    scenario = load_checked(tiny_scenario(), LAYERS)
    before = _public_incidents(postgis_engine)

    # Dropped by default: the report is written, then the schema is gone.
    played = play(
        scenario,
        folder=tmp_path / "dropped",
        layers_dir=LAYERS,
        options=DrillOptions(),
        strategies=["optimal", "greedy"],
        written_at=lambda: WRITTEN,
        db=url,
        with_map=True,
    )
    assert not played.kept
    assert [w.split()[1].rsplit("_", 1)[0] for w in played.databases] == [
        "drill_optimal",
        "drill_greedy",
    ]
    assert played.reports[0]["counts"]["reports_submitted"] > 0
    assert played.reports[0]["counts"]["resolved"] > 0
    assert (tmp_path / "dropped" / "map.html").is_file()  # drawn before the drop
    assert _schemas(postgis_engine) == set()

    # Kept when asked: the drill's rows are in its schema, none in the database's own.
    kept = play(
        scenario,
        folder=tmp_path / "kept",
        layers_dir=LAYERS,
        options=DrillOptions(),
        strategies=["optimal"],
        written_at=lambda: WRITTEN,
        db=url,
        keep=True,
        with_map=False,
    )
    (schema,) = _schemas(postgis_engine)
    try:
        assert kept.kept and schema in kept.databases[0]
        with postgis_engine.connect() as conn:
            drilled = conn.execute(sa.text(f"SELECT count(*) FROM {schema}.incidents")).scalar()
        assert drilled == kept.reports[0]["counts"]["incidents"] > 0
        # The same seed gives the same figures, on PostGIS as on SpatiaLite.
        assert kept.reports[0]["counts"] == played.reports[0]["counts"]
        on_file = play(
            scenario,
            folder=tmp_path / "file",
            layers_dir=LAYERS,
            options=DrillOptions(),
            strategies=["optimal"],
            written_at=lambda: WRITTEN,
            with_map=False,
        )
        assert on_file.reports[0]["counts"] == kept.reports[0]["counts"]
        assert on_file.reports[0]["response_times_s"] == kept.reports[0]["response_times_s"]
        assert _public_incidents(postgis_engine) == before
    finally:
        with postgis_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.postgis
def test_the_live_postgis_database_is_refused(
    postgis_engine: Engine, tiny_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    url = postgis_engine.url.render_as_string(hide_password=False)
    with (
        pytest.raises(InvalidInput, match=r"^--db: is the live database"),
        drill_database(url, folder=tmp_path, token="x", live_url=url, field="--db"),
    ):
        pass
    assert _schemas(postgis_engine) == set()
    with (
        pytest.raises(InvalidInput, match="search_path"),
        drill_database(f"{url}?options=-csearch_path%3Dpublic", folder=tmp_path, token="x"),
    ):
        pass


def test_same_database() -> None:
    assert same_database(
        "postgresql://u:p@127.0.0.1:5432/city", "postgresql+psycopg://other:x@127.0.0.1/city"
    )
    assert not same_database("postgresql://u:p@127.0.0.1/city", "postgresql://u:p@127.0.0.1/dr")
    assert same_database("sqlite:////tmp/a/../a/x.db", "sqlite:////tmp/a/x.db")
    assert not same_database("sqlite:////tmp/x.db", "postgresql://u:p@127.0.0.1/x.db")


def test_spatialite_files_are_new_and_dropped_or_kept(
    tiny_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    live = tmp_path / "live.db"
    live.write_bytes(b"")
    with (
        pytest.raises(InvalidInput, match="live database"),
        drill_database(
            f"sqlite:///{live}", folder=tmp_path, token="x", live_url=f"sqlite:///{live}"
        ),
    ):
        pass
    with (
        pytest.raises(InvalidInput, match="exists; a drill needs a database of its own"),
        drill_database(f"sqlite:///{live}", folder=tmp_path, token="x"),
    ):
        pass
    with drill_database(None, folder=tmp_path / "a", token="Run 1", keep=False) as db:
        assert db.path == tmp_path / "a" / "drill-run_1.db" and db.path.is_file()
    assert not list((tmp_path / "a").iterdir())
    with drill_database(None, folder=tmp_path / "b", token="run") as db:
        pass
    assert db.keep and db.path is not None and db.path.is_file()
