"""The city file: the shipped Montréal catalogue reads, and broken files report every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldops.catalog.spec import CitySpec, read_city
from fieldops.errors import SourceErrors, SourceProblem

CITY_TOML = Path(__file__).resolve().parents[2] / "layers" / "city.toml"

# The kinds of trouble the demo city must be able to take reports about.
REQUIRED_SERVICES = {
    "flooding",
    "sewer_backup",
    "fallen_tree",
    "rats",
    "wildlife",
    "dead_animal",
    "transit_stop_fault",
    "metro_access_fault",
    "traffic_signal_out",
    "pothole",
    "snow_ice",
}

# Lines 1-9.
CITY = """\
[city]
name = "Testville"
jurisdiction_id = "test.example"
timezone = "America/Toronto"
metric_crs = "EPSG:32188"
districts_layer = "districts"
district_code_column = "CODEID"
district_name_column = "NOM"
district_kind_column = "TYPE"
"""


def service(code: str, *, priority: int = 3, radius_m: float = 50) -> str:
    """One blank line then a 10-line [[service]] block: the n-th (from 0) starts at 11 + 11n."""
    return f"""
[[service]]
code = "{code}"
group = "test"
name_en = "Test {code}"
name_fr = "Essai {code}"
default_priority = {priority}
skills = ["roads"]
duplicate_radius_m = {radius_m}
duplicate_window_h = 24
resolve_sla_h = 48
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "city.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[SourceProblem]:
    with pytest.raises(SourceErrors) as raised:
        read_city(path)
    assert str(raised.value) == "\n".join(str(p) for p in raised.value.problems)
    return raised.value.problems


def line_of(path: Path, number: int) -> str:
    return path.read_text(encoding="utf-8").splitlines()[number - 1]


# --- the shipped city -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> CitySpec:
    return read_city(CITY_TOML)


def test_shipped_city_is_montreal_measured_in_mtm8(shipped: CitySpec) -> None:
    assert shipped.city.name == "Montréal"
    assert shipped.city.timezone == "America/Toronto"
    assert shipped.city.metric_crs == "EPSG:32188"
    assert shipped.city.districts_layer == "districts"


def test_shipped_city_has_the_twelve_services_the_demo_needs(shipped: CitySpec) -> None:
    codes = [s.code for s in shipped.services]
    assert len(codes) == 12
    assert set(codes) == REQUIRED_SERVICES | {"vermin_housing"}


def test_every_shipped_service_is_named_in_french_and_english(shipped: CitySpec) -> None:
    for spec in shipped.services:
        assert spec.name_en.strip() and spec.name_fr.strip(), spec.code
        # A French name copied from the English one is a translation still to do.
        assert spec.name_fr != spec.name_en, spec.code


def test_only_vermin_in_housing_is_shown_coarsened(shipped: CitySpec) -> None:
    coarsened = {s.code for s in shipped.services if s.coarsen_public_location}
    assert coarsened == {"vermin_housing"}


# --- broken city files ----------------------------------------------------------------------


def test_a_minimal_city_file_reads(tmp_path: Path) -> None:
    spec = read_city(write(tmp_path, CITY + service("pothole") + service("rats")))
    assert [s.code for s in spec.services] == ["pothole", "rats"]
    assert spec.services[1].duplicate_radius_m == 50


def test_invalid_toml_names_the_line_in_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, CITY + service("pothole").replace('"pothole"', "pothole"))
    assert line_of(path, 12) == "code = pothole"

    [problem] = problems_of(path)
    assert problem.path == str(path)
    assert problem.message == "not valid TOML: Invalid value (at line 12, column 8)"


def test_invalid_toml_is_located_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, CITY + service("pothole").replace('"pothole"', "pothole"))

    [problem] = problems_of(path)
    assert problem.location == "line 12"


def test_every_problem_of_every_service_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        CITY + service("pothole") + service("Flood!", priority=9) + service("rats", radius_m=-5),
    )
    assert line_of(path, 22) == line_of(path, 33) == "[[service]]"

    assert [str(p) for p in problems_of(path)] == [
        f"{path}: line 22 (service Flood!): code: Value error, must be lower-case letters, "
        "digits and _ (2-64 characters)",
        f"{path}: line 22 (service Flood!): default_priority: Input should be less than or "
        "equal to 5",
        f"{path}: line 33 (service rats): duplicate_radius_m: Input should be greater than 0",
    ]


def test_a_duplicate_code_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, CITY + service("rats") + service("pothole") + service("rats"))

    assert problems_of(path) == [
        SourceProblem(str(path), "line 33 (service rats)", "code: 'rats' already used at line 11")
    ]


def test_missing_city_keys_are_each_named(tmp_path: Path) -> None:
    city = "\n".join(
        ln
        for ln in CITY.splitlines()
        if not ln.startswith(("timezone", "metric_crs", "district_kind_column"))
    )
    path = write(tmp_path, "# Testville\n\n" + city + "\n" + service("rats"))
    assert line_of(path, 3) == "[city]"

    assert [str(p) for p in problems_of(path)] == [
        f"{path}: line 3 [city]: timezone: Field required",
        f"{path}: line 3 [city]: metric_crs: Field required",
        f"{path}: line 3 [city]: district_kind_column: Field required",
    ]


def test_a_file_without_services_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, CITY)

    assert problems_of(path) == [SourceProblem(str(path), "file", "no [[service]] declared")]


@pytest.mark.parametrize("header", ["[[service]]  # rats", "[[ service ]]"])
def test_a_service_header_written_another_valid_way_still_gives_its_line(
    tmp_path: Path, header: str
) -> None:
    bad = service("rats", radius_m=-5).replace("[[service]]", header)
    path = write(tmp_path, CITY + bad + service("Pothole"))
    assert line_of(path, 11) == header

    assert [p.location for p in problems_of(path)] == [
        "line 11 (service rats)",
        "line 22 (service Pothole)",
    ]
