"""A catalogue of bad input, each case refused clearly while nothing accepted before moves.

HTTP cases run through the real app on both backends and compare every accepted row
before and after (``accepted``); file cases run the real loaders and the real CLI. What
tests/api, tests/open311 and tests/unit already cover (malformed JSON, 413 on the JSON API,
4001-character descriptions, self-intersecting areas) is not repeated here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from fuzz_support import GeoReport, Headers
from sqlalchemy.orm import Session

from fieldops.auth.models import Role
from fieldops.clock import ManualClock
from fieldops.drills.spec import read_scenario
from fieldops.errors import SourceErrors
from fieldops.intake.context import IntakeContext
from fieldops.intake.montreal311 import import_reports, read_export

BASE = "/open311/v2"
PLATEAU = (-73.5800, 45.5230)
LIMIT_BYTES = 64 * 1024  # the test app's max_body_bytes (tests/conftest.py)
ROOT = Path(__file__).resolve().parents[2]
FIELDOPS = str(Path(sys.executable).parent / "fieldops")
Snapshot = Callable[[], dict[str, list[tuple[Any, ...]]]]
Problem = Callable[[httpx.Response, int], dict[str, Any]]


@pytest.fixture
def earlier(report: Callable[..., httpx.Response], accepted: Snapshot) -> dict[str, Any]:
    """Something accepted before the bad input arrives: an incident with one report."""
    response = report("flooding", PLATEAU, description="already here")
    assert response.status_code == 201, response.text
    return accepted()


def _errors(response: httpx.Response, status: int, fmt: str = "json") -> list[str]:
    assert response.status_code == status, response.text
    if fmt == "json":
        return [e["description"] for e in response.json()]
    return [e.findtext("description") or "" for e in ET.fromstring(response.content)]


# --- bodies that are not what they claim to be ---------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/xml", b"<service_request><service_code>pothole</service_code>"),
        ("application/xml", b"<?xml version='1.0'?><a><b></a>"),
        ("application/json", b'{"service_code": "pothole", "lat": 45.5'),
        ("application/x-www-form-urlencoded", b"api_key=%ZZ&service_code=\xff\xfe&lat"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data\r\n"),
    ],
)
def test_an_open311_post_that_is_not_a_form_is_a_400_or_403_and_writes_nothing(
    georeport: GeoReport,
    earlier: dict[str, Any],
    accepted: Snapshot,
    content_type: str,
    body: bytes,
) -> None:
    response = georeport.client.post(
        f"{BASE}/requests.json", content=body, headers={"Content-Type": content_type}
    )

    # No readable api_key means no key: 403, as the spec says; a broken body may be 400.
    assert response.status_code in {400, 403}, response.text
    assert _errors(response, response.status_code)
    assert accepted() == earlier


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"service_code=flooding&lat=45.523&lon=-73.58"),
        ("text/plain", b'{"service_code": "flooding", "lat": 45.523, "lon": -73.58}'),
        ("application/xml", b"<incident><service_code>flooding</service_code></incident>"),
        ("application/json", b"\xff\xfe{}"),
        ("application/json", b'["service_code", "flooding"]'),
    ],
)
def test_a_dispatcher_post_that_is_not_a_json_object_is_a_422_naming_the_body(
    app_client: TestClient,
    dispatcher: Headers,
    problem: Problem,
    earlier: dict[str, Any],
    accepted: Snapshot,
    content_type: str,
    body: bytes,
) -> None:
    response = app_client.post(
        "/api/v1/incidents", content=body, headers={**dispatcher, "Content-Type": content_type}
    )

    answer = problem(response, 422)
    assert [e["field"] for e in answer["errors"]] == ["body"]
    assert accepted() == earlier


def test_an_open311_form_over_the_limit_is_413_declared_or_streamed(
    georeport: GeoReport, earlier: dict[str, Any], accepted: Snapshot
) -> None:
    form = f"api_key={georeport.api_key}&service_code=pothole&lat=45.523&long=-73.58&description="
    declared = georeport.client.post(
        f"{BASE}/requests.json",
        content=(form + "x" * LIMIT_BYTES).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    def chunks() -> Iterator[bytes]:
        yield form.encode()
        for _ in range(LIMIT_BYTES // 4096 + 1):
            yield b"x" * 4096

    streamed = georeport.client.post(
        f"{BASE}/requests.json",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert "content-length" not in streamed.request.headers
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert "limit" in response.text
    assert accepted() == earlier


def test_a_10000_character_description_is_refused_naming_it_on_both_channels(
    georeport: GeoReport,
    report: Callable[..., httpx.Response],
    problem: Problem,
    earlier: dict[str, Any],
    accepted: Snapshot,
) -> None:
    text = "Inondation " * 909 + "x"
    assert len(text) == 10_000

    api = report("flooding", PLATEAU, description=text)
    open311 = georeport.post("flooding", PLATEAU, {"description": text})

    assert [e["field"] for e in problem(api, 422)["errors"]] == ["description"]
    (why,) = _errors(open311, 400)
    assert why.startswith("description: is 10000 characters")
    assert accepted() == earlier


# --- injection: stored verbatim, never interpreted, escaped wherever it is shown -----------

PAYLOADS = [
    "'; DROP TABLE reports; --",
    "1' OR '1'='1",
    '<script>alert("x")</script>',
    "<img src=x onerror=alert(1)>",
    "]]></description><x>&amp;",
    "Robert'); DELETE FROM incidents WHERE ('1'='1",
]
OPEN311_TEXTS = [
    "description",
    "address_string",
    "first_name",
    "last_name",
    "email",
    "phone",
    "device_id",
    "account_id",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_in_every_text_field_is_stored_verbatim_and_shown_escaped(
    georeport: GeoReport,
    report: Callable[..., httpx.Response],
    app_client: TestClient,
    dispatcher: Headers,
    earlier: dict[str, Any],
    accepted: Snapshot,
    count_rows: Callable[[str], int],
    payload: str,
) -> None:
    form = {name: payload for name in OPEN311_TEXTS}
    form["attribute[animal]"] = "raccoon"
    form["attribute[note]"] = payload
    request_id = georeport.create("wildlife", (-73.6080, 45.5180), form)
    staff = report("pothole", (-73.5500, 45.5000), description=payload, address=payload)
    assert staff.status_code == 201, staff.text
    incident_id = staff.json()["incident"]["id"]

    # Nothing was interpreted: every earlier row is still there, unchanged.
    after = accepted()
    for table, rows in earlier.items():
        assert after[table][: len(rows)] == rows, table
    assert count_rows("reports") == len(earlier["reports"]) + 2

    # Stored verbatim: staff see exactly what was sent, the public sees the description.
    detail = app_client.get(f"/api/v1/incidents/{incident_id}", headers=dispatcher).json()
    assert detail["description"] == detail["address"] == payload
    public = georeport.one(request_id, extensions="true")
    assert public["description"] == payload
    assert {"code": "note", "value": payload} in public["attributes"]

    # Open311 XML: well formed, the text escaped, read back exactly.
    raw = georeport.get(f"requests/{request_id}", "xml").content
    root = ET.fromstring(raw)
    assert root.findtext("request/description") == payload
    assert ("<" not in payload) or payload.encode() not in raw

    # GeoJSON and the live map's feed carry the same string, as JSON data.
    geojson = app_client.get("/api/v1/incidents.geojson", headers=dispatcher).json()
    assert payload in [f["properties"]["description"] for f in geojson["features"]]
    feed = app_client.get("/api/v1/feed", headers=dispatcher)
    assert feed.status_code == 200 and feed.json()["incidents"]["features"]
    # The map page itself embeds no incident text at all (it follows the feed).
    page = app_client.get("/map")
    assert page.status_code == 200
    assert payload not in page.text


# --- emergency areas -----------------------------------------------------------------------


def _area(ring: Any) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring]}


SQUARE = [[-73.60, 45.50], [-73.56, 45.50], [-73.56, 45.53], [-73.60, 45.53], [-73.60, 45.50]]


@pytest.mark.parametrize(
    ("area", "reason"),
    [
        (_area([[-73.6, 45.5], [-73.5, 45.6], [-73.5, 45.5], [-73.6, 45.6], [-73.6, 45.5]]),
         "not a valid polygon: Self-intersection"),
        (_area(SQUARE[:-1]), "not closed"),
        (_area(SQUARE[:2] + SQUARE[:1]), "at least 4 positions"),
        (_area([[-73.6, "45.5"], *SQUARE[1:]]), "position 0 is not [longitude, latitude]"),
        (_area([[y, x] for x, y in SQUARE]), "lies outside the city"),  # lat, lon swapped
        (_area([[300000.0, 5040000.0], [300100.0, 5040000.0], [300100.0, 5040100.0],
                [300000.0, 5040000.0]]), "not a longitude/latitude"),
        ({"type": "Point", "coordinates": [-73.6, 45.5]}, "not 'Point'"),
        ({"type": "Polygon", "coordinates": []}, "non-empty list"),
        ({**_area(SQUARE), "crs": {"type": "name", "properties": {"name": "EPSG:32188"}}},
         "must be in EPSG:4326"),
    ],
)  # fmt: skip
def test_a_bad_emergency_area_is_a_422_naming_area_and_declares_nothing(
    app_client: TestClient,
    auth: Callable[..., Headers],
    problem: Problem,
    earlier: dict[str, Any],
    accepted: Snapshot,
    area: dict[str, Any],
    reason: str,
) -> None:
    body = {"name": "Crue", "hazard": "flood", "service_codes": ["flooding"], "area": area}

    response = app_client.post("/api/v1/emergencies", json=body, headers=auth(Role.MANAGER))

    answer = problem(response, 422)
    assert {e["field"] for e in answer["errors"]} == {"area"}
    assert reason in answer["detail"]
    assert accepted() == earlier


def test_nan_coordinates_in_an_emergency_area_are_refused_naming_area(
    app_client: TestClient,
    auth: Callable[..., Headers],
    problem: Problem,
    earlier: dict[str, Any],
    accepted: Snapshot,
) -> None:
    # Python's JSON reader takes the non-standard NaN literal; the area must still refuse it.
    body = (
        '{"name": "Crue", "hazard": "flood", "service_codes": ["flooding"], "area": '
        '{"type": "Polygon", "coordinates": [[[NaN, 45.5], [-73.5, 45.5], [-73.5, 45.6], '
        "[NaN, 45.5]]]}}"
    )
    response = app_client.post(
        "/api/v1/emergencies",
        content=body.encode(),
        headers={**auth(Role.MANAGER), "Content-Type": "application/json"},
    )

    answer = problem(response, 422)
    assert answer["errors"] == [{"field": "area", "reason": "coordinates must be finite numbers"}]
    assert accepted() == earlier


# --- files: layers, scenarios, 311 exports -------------------------------------------------

LAYER_TABLE = """
[[layer]]
name = "districts"
file = "districts.geojson"
kind = "districts"
title_fr = "Arrondissements"
title_en = "Boroughs"
licence = "CC-BY 4.0"
attribution = "Test"
crs = "EPSG:4326"
geometry = ["Polygon", "MultiPolygon"]
required_columns = ["NOM"]

[layer.source]
repository = "example/city"
path = "districts.geojson"
commit = "0123456789abcdef0123456789abcdef01234567"
publisher = "Test"
"""


def _feature(name: str, coordinates: Any, kind: str = "Polygon") -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"NOM": name},
        "geometry": None if coordinates is None else {"type": kind, "coordinates": coordinates},
    }


def test_layers_check_names_the_file_and_each_broken_feature(tmp_path: Path) -> None:
    features = [
        _feature("fine", [SQUARE]),
        _feature("line", [[-73.6, 45.5], [-73.5, 45.6]], "LineString"),
        _feature("flat", [[[-73.6, 45.5], [-73.5, 45.5], [-73.4, 45.5], [-73.6, 45.5]]]),
        _feature("none", None),
        _feature("", [SQUARE]),
    ]
    (tmp_path / "catalog.toml").write_text(LAYER_TABLE, encoding="utf-8")
    layer = tmp_path / "districts.geojson"
    layer.write_text(json.dumps({"type": "FeatureCollection", "features": features}))

    run = subprocess.run(
        [FIELDOPS, "layers", "check", "--layers-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 1, run.stdout + run.stderr
    said = run.stdout + run.stderr
    for location, why in [
        ("feature 1", "geometry is a LineString"),
        ("feature 2", "invalid geometry"),
        ("feature 3", "no geometry"),
        ("feature 4", "no value for required column 'NOM'"),
    ]:
        assert f"{layer}: {location}: {why}" in said, said
    assert "feature 0" not in said


SCENARIO = (ROOT / "scenarios" / "rat_surge_2016.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "where", "why"),
    [
        (
            "duration_h = ",
            "duration_h = -",
            "[drill]",
            "duration_h: Input should be greater than 0",
        ),
        ("duration_h = ", "duration_h = nan #", "[drill]", "duration_h: Input should be a finite"),
        ("seed = ", "seed = -", "[drill]", "seed: Input should be greater than or equal to 0"),
    ],
)
def test_a_scenario_with_broken_values_names_the_file_and_line(
    tmp_path: Path, old: str, new: str, where: str, why: str
) -> None:
    assert old in SCENARIO
    path = tmp_path / "broken.toml"
    text = SCENARIO.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    line = next(n for n, t in enumerate(text.splitlines(), start=1) if t.startswith(new))

    with pytest.raises(SourceErrors) as raised:
        read_scenario(path)

    assert f"{path}: line {line} ({where}): drill.{why}" in str(raised.value)


def test_a_scenario_polygon_that_is_not_a_polygon_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "area.toml"
    text = SCENARIO.split("[[arrivals]]")[0] + (
        "[[arrivals]]\n"
        'service = "rats"\n'
        "rate_per_h = [[0, 2]]\n"
        "area = { polygon = [[-73.6, 45.5], [-73.5, 45.5]] }\n"
    )
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index("area = { polygon = [[-73.6, 45.5], [-73.5, 45.5]] }") + 1

    with pytest.raises(SourceErrors, match=rf"line {line} \(\[\[arrivals\]\] #1\): .*at least 3"):
        read_scenario(path)


HEADER = (
    "ID_UNIQUE,NATURE,ACTI_NOM,DDS_DATE_CREATION,ARRONDISSEMENT,RUE,LOC_LONG,LOC_LAT,"
    "PROVENANCE_ORIGINALE\n"
)


def test_a_311_export_with_bad_rows_imports_the_good_ones_and_names_each_bad_line(
    session: Session, clock: ManualClock, tmp_path: Path, accepted: Snapshot
) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        HEADER + "A-1,Requete,Rats,2016-05-04T10:00:00,Plateau,Rue X,-73.58,45.523,Telephone\n",
        encoding="utf-8",
    )
    context = IntakeContext.load(session)
    keywords = {"rat": "rats"}
    import_reports(
        session, read_export(good, keywords=keywords, timezone="America/Toronto"),
        context=context, now=clock.now(),
    )  # fmt: skip
    session.commit()
    before = accepted()

    export = tmp_path / "export.csv"
    export.write_text(
        HEADER
        + "A-1,Requete,Rats,2016-05-04T10:00:00,Plateau,Rue X,-73.70,45.600,Web\n"  # line 2
        + "B-1,Requete,Rats,2016-05-05T10:00:00,Plateau,Rue Y,abc,45.52,Web\n"  # line 3
        + "B-2,Requete,Rats,2016-05-05T10:00:00,Plateau,Rue Y,nan,45.52,Web\n"  # line 4
        + "B-3,Requete,Rats,hier,Plateau,Rue Y,-73.58,45.52,Web\n"  # line 5
        + "B-4,Requete,Nids-de-poule,2016-05-05T10:00:00,,,-73.58,45.52,Web\n"  # line 6
        + "B-5,Requete,Rats,2016-05-05T10:00:00,,,-73.0,45.0,Web\n"  # line 7: outside
        + "B-6,Requete,Rats,2016-05-05T10:00:00,,,,,Web\n"  # line 8: no coordinates
        + "B-7,Requete,Rats,2016-05-06T10:00:00,Outremont,Rue Z,-73.608,45.518,Web\n",  # ok
        encoding="utf-8",
    )

    summary = import_reports(
        session, read_export(export, keywords=keywords, timezone="America/Toronto"),
        context=context, now=clock.now(),
    )  # fmt: skip
    session.commit()

    assert (summary.imported, summary.already_there) == (1, 1)
    assert sorted(p.location for p in summary.skipped) == [f"line {n}" for n in range(3, 9)]
    assert all(p.path == str(export) for p in summary.skipped)
    after = accepted()
    # A-1 was already there and keeps what it had (not the new coordinates); B-7 is new.
    for table, rows in before.items():
        assert after[table][: len(rows)] == rows, table
    assert len(after["reports"]) == len(before["reports"]) + 1
    refs = [r for r in after["reports"] if "montreal311:B-" in str(r)]
    assert len(refs) == 1 and "montreal311:B-7" in str(refs[0])
