"""The ``fieldops`` console script, run for real as a subprocess on SpatiaLite and PostGIS.

Commands are slow to start (a second each) and the 311 import is slower still, so the
module runs them few times: the commands that need no database side by side, and one
SpatiaLite database taken through migrate, load, import, import again and the demo.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from fieldops.auth.models import Role
from fieldops.auth.service import authenticate
from fieldops.crews.spec import read_crews
from fieldops.db.engine import make_engine, make_sessionmaker
from fieldops.db.migrate import MIGRATIONS

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ROOT / "layers"
SAMPLE = "layers/requetes311_rats_2016_2017.csv"  # relative to ROOT, the commands' cwd
FIELDOPS = Path(sys.executable).parent / "fieldops"
POSTGIS_ENV = "FIELDOPS_TEST_POSTGIS_URL"
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()
CREWS = len(read_crews(LAYERS / "crews.toml"))
# What `layers load` prints on a new database.
LOADED = (
    "Montréal: districts 34 added, 0 updated; services 12 added, 0 updated; "
    f"crews {CREWS} added, 0 updated"
)
SECRET = re.compile(r"fo_[A-Za-z0-9_-]{43}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")

# Rich wraps at 80 columns when its output is not a terminal; most runs ask for wide
# output so that each message stays on one line (the demo runs at the default width).
WIDE = 1000
Run = subprocess.CompletedProcess[str]


def start(*args: str, columns: int | None = WIDE) -> subprocess.Popen[str]:
    # The commands see only what the test gives them: no database, layers folder or
    # width from the shell that runs the suite.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FIELDOPS_")
        and k not in {"COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    }
    env["PYTHONIOENCODING"] = "utf-8"
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.Popen(
        [str(FIELDOPS), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def finish(process: subprocess.Popen[str]) -> Run:
    stdout, stderr = process.communicate(timeout=180)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def fieldops(*args: str, columns: int | None = WIDE) -> Run:
    return finish(start(*args, columns=columns))


def words(text: str) -> str:
    """``text`` with every run of whitespace (line wraps included) made one space."""
    return " ".join(text.split())


# --- commands without a database: help and layers check -------------------------------------

COMMANDS = {"demo", "serve", "db", "layers", "import-311", "keys"}
SUBCOMMANDS = [
    ("demo",),
    ("serve",),
    ("db", "upgrade"),
    ("layers", "check"),
    ("layers", "load"),
    ("import-311",),
    ("keys", "create"),
    ("keys", "list"),
    ("keys", "revoke"),
]
LAYERS_CHECK = ("layers", "check")


@pytest.fixture(scope="module")
def side_by_side() -> dict[tuple[str, ...], Run]:
    """Every ``--help`` and ``layers check``, started together; keyed by their arguments."""
    commands = [("--help",), *[(*cmd, "--help") for cmd in SUBCOMMANDS], LAYERS_CHECK]
    started = {cmd: start(*cmd) for cmd in commands}
    return {cmd: finish(process) for cmd, process in started.items()}


def test_help_lists_every_command(side_by_side: dict[tuple[str, ...], Run]) -> None:
    run = side_by_side["--help",]
    assert run.returncode == 0, run.stderr
    assert "Usage: fieldops [OPTIONS] COMMAND [ARGS]..." in run.stdout
    listed = set(re.findall(r"^│ ([a-z][a-z0-9-]*)  ", run.stdout, flags=re.MULTILINE))
    assert listed >= COMMANDS


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_each_command_has_help(
    side_by_side: dict[tuple[str, ...], Run], command: tuple[str, ...]
) -> None:
    run = side_by_side[(*command, "--help")]
    assert run.returncode == 0, run.stderr
    assert f"Usage: fieldops {' '.join(command)} [OPTIONS]" in run.stdout
    assert run.stderr == ""


def test_layers_check_passes_and_counts_what_load_will_repair(
    side_by_side: dict[tuple[str, ...], Run],
) -> None:
    run = side_by_side[LAYERS_CHECK]
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1] == "8 layers checked: 0 problem(s), 842 repairable on load."
    assert len(lines) == 842 + 1
    assert all(ln.endswith("; will be repaired on load") for ln in lines[:-1])


def test_an_unsupported_database_url_exits_2_naming_database_url() -> None:
    run = fieldops("db", "upgrade", "--db", "mysql://x")

    assert run.returncode == 2
    assert run.stdout == ""
    assert (
        "Invalid setting: 1 validation error for Settings database_url Value error, "
        "database_url must be sqlite:///PATH (SpatiaLite) or "
        "postgresql+psycopg://USER:PASSWORD@HOST/DB (PostGIS)"
    ) in words(run.stderr)


# --- one SpatiaLite database: migrate, load, import, import again, demo ---------------------


@dataclass(frozen=True)
class Prepared:
    url: str
    upgrades: list[Run]
    load: Run
    imports: list[Run]
    demo: Run


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'fieldops.db'}"
    upgrades = [fieldops("db", "upgrade", "--db", url) for _ in range(2)]
    load = fieldops("layers", "load", "--db", url)
    imports = [fieldops("import-311", SAMPLE, "--db", url) for _ in range(2)]
    # The demo on the same database: it must be safe to run again, and this way the
    # module imports the 311 sample in full only once. At the default width of a pipe.
    demo = fieldops("demo", "--no-serve", "--db", url, columns=None)
    return Prepared(url, upgrades, load, imports, demo)


def test_db_upgrade_is_safe_to_run_twice(prepared: Prepared) -> None:
    for run in prepared.upgrades:
        assert run.returncode == 0, run.stderr
        assert run.stdout == f"Schema at revision {HEAD} on spatialite.\n"


def test_layers_load_adds_the_districts_services_and_crews(prepared: Prepared) -> None:
    run = prepared.load
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == LOADED


def test_import_311_imports_the_rows_with_coordinates_and_lists_the_rest(
    prepared: Prepared,
) -> None:
    run = prepared.imports[0]
    assert run.returncode == 0, run.stderr
    summary = re.fullmatch(
        r"requetes311_rats_2016_2017\.csv: 1218 imported \((\d+) merged into an open "
        r"incident\), 0 already there, 417 skipped\n",
        run.stdout,
    )
    assert summary is not None, run.stdout
    assert int(summary[1]) > 0
    # The transient progress bar leaves an empty line behind when stderr is not a terminal.
    skipped = [ln for ln in run.stderr.splitlines() if ln]
    assert skipped[0] == f"skipped {SAMPLE}: line 2: no coordinates (Information); skipped"
    assert len(skipped) == 21
    assert skipped[-1] == "... and 397 more skipped rows"


def test_importing_the_same_file_again_adds_nothing(prepared: Prepared) -> None:
    run = prepared.imports[1]
    assert run.returncode == 0, run.stderr
    assert run.stdout == (
        "requetes311_rats_2016_2017.csv: 0 imported (0 merged into an open incident), "
        "1218 already there, 417 skipped\n"
    )


def test_demo_prints_the_urls_and_a_working_dispatcher_key(prepared: Prepared) -> None:
    run = prepared.demo
    assert run.returncode == 0, run.stderr
    printed = words(run.stdout)
    assert "Montréal: districts 0 added, 34 updated; services 0 added, 0 updated" in printed
    assert (
        "requetes311_rats_2016_2017.csv: 0 imported (0 merged into an open incident), "
        "1218 already there, 417 skipped"
    ) in printed
    lines = run.stdout.splitlines()
    for line in [
        "FieldOps demo on http://127.0.0.1:8000",
        "  API docs:        http://127.0.0.1:8000/docs",
        "  Incidents feed:  http://127.0.0.1:8000/api/v1/incidents.geojson",
        "  Districts:       http://127.0.0.1:8000/api/v1/districts.geojson",
    ]:
        assert line in lines
    [secret] = re.findall(rf"^  Dispatcher key:  ({SECRET.pattern})$", run.stdout, re.MULTILINE)

    engine = make_engine(prepared.url)
    try:
        with make_sessionmaker(engine)() as session:
            principal = authenticate(session, secret)
    finally:
        engine.dispose()
    assert principal is not None
    assert (principal.name, principal.role) == ("demo dispatcher", Role.DISPATCHER)


def test_demo_curl_example_stays_on_one_line_when_piped(prepared: Prepared) -> None:
    run = prepared.demo
    assert run.returncode == 0, run.stderr
    [secret] = re.findall(rf"Dispatcher key:  ({SECRET.pattern})", run.stdout)
    curl = (
        f"  Try: curl -H 'Authorization: Bearer {secret}' "
        "http://127.0.0.1:8000/api/v1/incidents?limit=5"
    )
    assert curl in run.stdout.splitlines()


def test_import_311_of_a_file_without_the_columns_names_file_and_line(
    prepared: Prepared, tmp_path: Path
) -> None:
    export = tmp_path / "export.csv"
    export.write_text("ID_UNIQUE,NATURE\n16-1,Requete\n", encoding="utf-8")

    run = fieldops("import-311", str(export), "--db", prepared.url)

    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        "1 problem(s):",
        f"  {export}: line 1: missing column(s): ACTI_NOM, DDS_DATE_CREATION, LOC_LONG, LOC_LAT",
    ]


# --- keys -----------------------------------------------------------------------------------


def create_key(url: str, name: str) -> tuple[int, str]:
    """``keys create`` a dispatcher key; returns its id and secret."""
    run = fieldops("keys", "create", "--role", "dispatcher", "--name", name, "--db", url)
    assert run.returncode == 0, run.stderr
    # Only the secret goes to stdout, so `SECRET=$(fieldops keys create ...)` works.
    assert SECRET.fullmatch(run.stdout.removesuffix("\n")), run.stdout
    created = re.fullmatch(
        rf"Key (\d+) \(dispatcher, {name}\) created\. Its secret, shown once:\n", run.stderr
    )
    assert created is not None, run.stderr
    return int(created[1]), run.stdout.removesuffix("\n")


def listed_row(url: str, secret: str) -> list[str]:
    """The cells of the ``keys list`` row of the key whose secret is ``secret``."""
    run = fieldops("keys", "list", "--db", url)
    assert run.returncode == 0, run.stderr
    assert secret not in run.stdout
    [row] = [ln for ln in run.stdout.splitlines() if f" {secret[:10]}… " in ln]
    return [cell.strip() for cell in row.split("│")[1:-1]]


def test_keys_create_prints_only_the_secret_and_list_never_shows_it(prepared: Prepared) -> None:
    key_id, secret = create_key(prepared.url, "x")

    cells = listed_row(prepared.url, secret)
    assert cells[:4] == [str(key_id), "x", "dispatcher", f"{secret[:10]}…"]
    assert TIMESTAMP.fullmatch(cells[4])
    assert cells[5] == ""  # not revoked


def test_keys_revoke_stops_a_key_and_list_shows_when(prepared: Prepared) -> None:
    key_id, secret = create_key(prepared.url, "to-revoke")

    run = fieldops("keys", "revoke", str(key_id), "--db", prepared.url)

    assert run.returncode == 0, run.stderr
    assert run.stdout == f"Key {key_id} revoked.\n"
    assert TIMESTAMP.fullmatch(listed_row(prepared.url, secret)[5])
    engine = make_engine(prepared.url)
    try:
        with make_sessionmaker(engine)() as session:
            assert authenticate(session, secret) is None
    finally:
        engine.dispose()


def test_revoking_a_key_that_does_not_exist_exits_1(prepared: Prepared) -> None:
    run = fieldops("keys", "revoke", "999", "--db", prepared.url)

    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr == "Error: no API key with id 999\n"


# --- layers load with a broken city file ----------------------------------------------------


def layers_with_city(folder: Path, city_text: str) -> Path:
    """A copy of layers/ (linked, not copied) whose city.toml is ``city_text``."""
    folder.mkdir()
    for source in LAYERS.iterdir():
        if source.name != "city.toml":
            (folder / source.name).symlink_to(source)
    (folder / "city.toml").write_text(city_text, encoding="utf-8")
    return folder


def test_layers_load_prints_each_city_problem_as_read(prepared: Prepared, tmp_path: Path) -> None:
    city = (LAYERS / "city.toml").read_text(encoding="utf-8")
    broken = re.sub(r"^timezone = .*\n", "", city, count=1, flags=re.MULTILINE)
    folder = layers_with_city(tmp_path / "layers", broken)
    line = broken.splitlines().index("[city]") + 1

    run = fieldops("layers", "load", "--db", prepared.url, "--layers-dir", str(folder))

    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "1 problem(s):",
        f"  {folder / 'city.toml'}: line {line} [city]: timezone: Field required",
    ]


def test_layers_load_names_a_districts_layer_missing_from_the_catalog(
    prepared: Prepared, tmp_path: Path
) -> None:
    city = (LAYERS / "city.toml").read_text(encoding="utf-8")
    broken = city.replace('districts_layer = "districts"', 'districts_layer = "wards"')
    folder = layers_with_city(tmp_path / "layers", broken)

    run = fieldops("layers", "load", "--db", prepared.url, "--layers-dir", str(folder))

    assert run.returncode == 1
    assert "0 problem(s)" not in run.stderr
    assert str(folder / "city.toml") in run.stderr
    assert "'wards'" in run.stderr


# --- PostGIS --------------------------------------------------------------------------------


@pytest.fixture
def postgis_url() -> Iterator[str]:
    """A new, empty PostGIS database of this test's own (from the template
    scripts/postgis.sh keeps), so `db upgrade` starts from nothing; dropped afterwards."""
    url = os.environ.get(POSTGIS_ENV)
    if not url:
        pytest.skip(f"{POSTGIS_ENV} is not set (the test command sets it)")
    name = f"fieldops_cli_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE fieldops_template"))
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        admin.dispose()


@pytest.mark.postgis
def test_db_upgrade_and_layers_load_on_postgis(postgis_url: str) -> None:
    upgraded = fieldops("db", "upgrade", "--db", postgis_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout == f"Schema at revision {HEAD} on postgis.\n"

    loaded = fieldops("layers", "load", "--db", postgis_url)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines()[-1] == LOADED

    engine = make_engine(postgis_url)
    try:
        with engine.connect() as conn:
            services = conn.scalar(sa.text("SELECT count(*) FROM service_types"))
            districts = conn.scalar(sa.text("SELECT count(*) FROM districts"))
    finally:
        engine.dispose()
    assert (districts, services) == (34, 12)
