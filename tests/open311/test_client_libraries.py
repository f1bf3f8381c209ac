"""Existing Open311 client libraries against FieldOps served for real (uvicorn on
127.0.0.1), on SpatiaLite and PostGIS, in XML and JSON: what they read is what the catalogue
and the database hold, what they post is stored, and the errors they raise are GeoReport
error lists. See client_libraries.py for the clients and how the server is started."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
import xmltodict
from civicbot.http import HttpError
from civicbot.open311 import ValidationError
from client_libraries import (
    JURISDICTION,
    REPORTER_FIELDS,
    Served,
    civicbot_post,
    error_list,
    from_xml,
    in_format,
    listed,
    local,
    post_xml,
    poster,
    reader,
    report_count,
    resolve,
    served_city,
    staff_report,
    stored,
    stored_report,
)
from georeport_doc import (
    JSON_TYPE,
    OUTREMONT,
    PLATEAU,
    SERVICES,
    SOUTH_OF_ISLAND,
    VILLE_MARIE,
    WITH_ATTRIBUTES,
    XML_TYPE,
    ZONED,
    expected_definition,
    expected_service,
    moved,
    w3c,
)
from requests import HTTPError

from fieldops.clock import SystemClock
from fieldops.incidents.models import Channel

FORMATS = ["xml", "json"]
CONTENT_TYPE = {"xml": XML_TYPE, "json": JSON_TYPE}


@pytest.fixture(
    scope="module",
    params=[pytest.param("spatialite"), pytest.param("postgis", marks=pytest.mark.postgis)],
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server per backend for the whole module: its tests read only what they made."""
    with served_city(request.param, tmp_path_factory.mktemp(f"clients-{request.param}")) as s:
        yield s


def ids_of(found: Any) -> list[str]:
    return [r["service_request_id"] for r in listed(found)]


# --- services -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_service_list_reads_as_the_catalogue(served: Served, fmt: str) -> None:
    services = reader(served, fmt).get_service_list()

    assert services == [in_format(expected_service(code), fmt) for code in sorted(SERVICES)]
    # metadata is what tells a client to fetch a definition before it posts.
    with_definition = [s["service_code"] for s in services if s["metadata"] in (True, "true")]
    assert with_definition == WITH_ATTRIBUTES


def test_the_posting_client_reads_the_same_service_list(served: Served) -> None:
    assert poster(served).list_services() == [expected_service(c) for c in sorted(SERVICES)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("code", WITH_ATTRIBUTES)
def test_a_service_definition_reads_with_its_attributes(
    served: Served, fmt: str, code: str
) -> None:
    definition = reader(served, fmt).get_service_definition(code)

    got = from_xml(definition) if fmt == "xml" else definition
    assert got == in_format(expected_definition(code), fmt)


# --- posting and reading back ---------------------------------------------------------------

REPORTER = {
    "email": "ann.tremblay@example.org",
    "first_name": "Ann",
    "last_name": "Tremblay",
    "phone": "514-555-0199",
    "device_id": "phone-7f3a",
}
# Each format posts in a district of its own, so neither joins the other's incident.
PLACE = {"json": (PLATEAU, "Le Plateau-Mont-Royal"), "xml": (OUTREMONT, "Outremont")}


def raccoon_form(served: Served, where: tuple[float, float]) -> dict[str, str]:
    return {
        "api_key": served.public_key,
        "jurisdiction_id": JURISDICTION,
        "service_code": "wildlife",
        "lat": str(where[1]),
        "long": str(where[0]),
        "attribute[animal]": "raccoon",
        "attribute[behaviour]": "trapped in a recycling bin, not hurt",
        "description": "Raccoon & kits <in> the school yard\nby the gate of École Saint-Louis",
        "media_url": "https://photos.example.org/raccoon.jpg",
        "account_id": "acct-1187",
        **REPORTER,
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_posted_request_reads_back_as_stored(served: Served, fmt: str) -> None:
    where, district = PLACE[fmt]
    form = raccoon_form(served, where)

    if fmt == "json":
        # civicbot reads the service list and the definition, checks the form, then posts.
        answer = civicbot_post(served, form, check_first=True).response
    else:
        response = post_xml(served, form)
        assert response.status_code == 201, response.text
        assert response.headers["content-type"] == XML_TYPE
        answer = listed(xmltodict.parse(response.content)["service_requests"]["request"])

    request_id = answer[0]["service_request_id"]
    assert isinstance(request_id, str) and request_id.isdigit()
    assert answer == [
        in_format(
            {"service_request_id": request_id, "service_notice": None, "account_id": "acct-1187"},
            fmt,
        )
    ]
    report = stored_report(served, request_id)
    assert (report.service_code, report.channel, report.lon, report.lat) == (
        "wildlife",
        Channel.OPEN311,
        where[0],
        where[1],
    )
    assert report.attributes == {
        "animal": "raccoon",
        "behaviour": "trapped in a recycling bin, not hurt",
    }
    assert report.description == form["description"]
    assert (report.reporter_email, report.reporter_phone, report.device_id) == (
        REPORTER["email"],
        REPORTER["phone"],
        REPORTER["device_id"],
    )

    document = stored(served, request_id)
    assert document["agency_responsible"] == district
    for read_fmt in FORMATS:
        client = reader(served, read_fmt)
        expected = in_format(document, read_fmt)
        assert client.get_service_request(request_id) == expected
        assert listed(client.get_service_requests(service_request_id=request_id)) == [expected]
    assert poster(served).get_request(request_id) == document


def test_what_clients_read_hides_the_reporter_and_zones_every_instant(served: Served) -> None:
    form = raccoon_form(served, moved(VILLE_MARIE, north_m=300))
    request_id = civicbot_post(served, form).response[0]["service_request_id"]

    for fmt in FORMATS:
        document = reader(served, fmt).get_service_request(request_id)
        assert set(REPORTER_FIELDS).isdisjoint(document)
        assert not {form[name] for name in REPORTER_FIELDS} & {str(v) for v in document.values()}
        for name in ("requested_datetime", "updated_datetime", "expected_datetime"):
            assert ZONED.match(document[name]), document[name]
            assert document[name].endswith(("-04:00", "-05:00")), document[name]
    assert stored_report(served, request_id).reporter_first_name == "Ann"


# --- filters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackDated:
    """Four staff reports an hour apart, 200 days back (outside every other test's reach);
    the fallen tree is resolved."""

    anchor: datetime
    pothole_early: str
    tree_closed: str
    pothole_late: str
    snow: str


@pytest.fixture(scope="module")
def back_dated(served: Served) -> BackDated:
    anchor = (SystemClock().now() - timedelta(days=200)).replace(minute=0, second=0, microsecond=0)
    made = [
        staff_report(served, code, where, anchor + timedelta(hours=hour))
        for hour, (code, where) in enumerate(
            [
                ("pothole", PLATEAU),
                ("fallen_tree", OUTREMONT),
                ("pothole", VILLE_MARIE),
                ("snow_ice", moved(PLATEAU, north_m=600)),
            ]
        )
    ]
    resolve(served, made[1][1], "Cleared by the tree crew")
    return BackDated(anchor, *(request_id for request_id, _ in made))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_filter_of_get_requests_through_the_client(
    served: Served, back_dated: BackDated, fmt: str
) -> None:
    client = reader(served, fmt)
    a, b, c, d = (
        back_dated.pothole_early,
        back_dated.tree_closed,
        back_dated.pothole_late,
        back_dated.snow,
    )
    t0 = back_dated.anchor
    window = {
        "start_date": w3c(t0 - timedelta(minutes=30)),
        "end_date": w3c(t0 + timedelta(hours=3, minutes=30)),
    }

    def found(**filters: str) -> list[str]:
        return ids_of(client.get_service_requests(**filters))

    assert found(**window) == [d, c, b, a]
    # The same instants written with the city's offset instead of Z.
    assert found(
        start_date=local(t0 + timedelta(minutes=30)),
        end_date=local(t0 + timedelta(hours=2, minutes=30)),
    ) == [c, b]
    assert found(service_code="pothole", **window) == [c, a]
    assert found(service_code="pothole,snow_ice", **window) == [d, c, a]
    assert found(status="closed", **window) == [b]
    assert found(status="open", **window) == [d, c, a]
    assert found(status="open,closed", **window) == [d, c, b, a]
    # service_request_id overrides every other filter, the default 90 days included.
    assert found(service_request_id=f"{a},{d}", service_code="fallen_tree", status="closed") == [
        d,
        a,
    ]
    assert found(service_request_id=f"{a},{d}") == [d, a]

    for request_id in (a, b, c, d):
        expected = in_format(stored(served, request_id), fmt)
        assert client.get_service_request(request_id) == expected
    closed = client.get_service_request(b)
    assert (closed["status"], closed["status_notes"]) == ("closed", "Cleared by the tree crew")
    assert closed["requested_datetime"] == local(t0 + timedelta(hours=1))


def test_the_default_listing_leaves_out_requests_older_than_90_days(
    served: Served, back_dated: BackDated
) -> None:
    form = raccoon_form(served, moved(OUTREMONT, north_m=-250))
    recent = civicbot_post(served, form).response[0]["service_request_id"]

    listed_now = ids_of(poster(served).list_requests())

    assert recent in listed_now
    old = {
        back_dated.pothole_early,
        back_dated.tree_closed,
        back_dated.pothole_late,
        back_dated.snow,
    }
    assert not old & set(listed_now)


# --- errors, as each client surfaces them ------------------------------------------------------

READ_ERRORS = [
    pytest.param(
        JURISDICTION, "get_service_definition", {"service_code": "unicorn_sighting"}, 404,
        "no service 'unicorn_sighting'", id="unknown-service",
    ),
    pytest.param(
        JURISDICTION, "get_service_request", {"service_request_id": "999999999"}, 404,
        "no request '999999999'", id="unknown-request",
    ),
    pytest.param(
        "laval.ca", "get_service_list", {}, 404,
        "jurisdiction_id 'laval.ca' is not served here (this endpoint serves montreal.ca)",
        id="foreign-jurisdiction",
    ),
    pytest.param(
        JURISDICTION, "get_service_requests",
        {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-04-02T00:00:00Z"}, 400,
        "end_date: the span from start_date may be at most 90 days", id="span-over-90-days",
    ),
    pytest.param(
        JURISDICTION, "get_service_requests", {"status": "fixed"}, 400,
        "status: must be open, closed or both (comma-separated)", id="unknown-status",
    ),
]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("jurisdiction", "method", "args", "status", "description"), READ_ERRORS)
def test_read_errors_reach_the_client_as_error_lists(
    served: Served,
    fmt: str,
    jurisdiction: str,
    method: str,
    args: dict[str, str],
    status: int,
    description: str,
) -> None:
    client = reader(served, fmt, jurisdiction)

    with pytest.raises(HTTPError) as raised:
        getattr(client, method)(**args)

    response = raised.value.response
    assert response.status_code == status
    assert response.headers["content-type"] == CONTENT_TYPE[fmt]
    assert error_list(response.content, fmt) == [{"code": status, "description": description}]


POST_ERRORS = [
    pytest.param(
        {"service_code": "unicorn_sighting"}, 404, "service_code: no service 'unicorn_sighting'",
        id="unknown-service",
    ),
    pytest.param({"api_key": "fo_not_a_key"}, 403, "api_key is missing or not valid", id="bad-key"),
    pytest.param(
        {"jurisdiction_id": "laval.ca"}, 404,
        "jurisdiction_id 'laval.ca' is not served here (this endpoint serves montreal.ca)",
        id="foreign-jurisdiction",
    ),
    pytest.param(
        {"attribute[animal]": ""}, 400, "attribute[animal]: is required for this service",
        id="required-attribute-empty",
    ),
    pytest.param(
        {"lat": str(SOUTH_OF_ISLAND[1]), "long": str(SOUTH_OF_ISLAND[0])}, 400,
        "lat/long: outside the city's service area: no district contains it",
        id="outside-the-city",
    ),
]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("change", "status", "description"), POST_ERRORS)
def test_post_errors_reach_the_client_and_store_nothing(
    served: Served, fmt: str, change: dict[str, str], status: int, description: str
) -> None:
    form = {**raccoon_form(served, PLATEAU), **change}
    before = report_count(served)

    if fmt == "json":
        with pytest.raises(HttpError) as raised:
            civicbot_post(served, form)
        got = (raised.value.status, error_list(raised.value.body.encode(), fmt))
    else:
        response = post_xml(served, form)
        assert response.headers["content-type"] == XML_TYPE
        got = (response.status_code, error_list(response.content, fmt))

    assert got == (status, [{"code": status, "description": description}])
    assert report_count(served) == before


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"attribute[animal]": ""}, r"required attribute 'animal' missing \(Which animal\?\)"),
        (
            {"attribute[animal]": "dragon"},
            r"attribute 'animal': \['dragon'\] not in "
            r"\['coyote', 'fox', 'other', 'raccoon', 'skunk'\]",
        ),
        ({"service_code": "unicorn_sighting"}, r"service_code 'unicorn_sighting' not offered"),
    ],
)
def test_the_posting_client_checks_a_form_against_what_we_publish(
    served: Served, change: dict[str, str], refusal: str
) -> None:
    # An empty value here means the field is left out of the form.
    changed = {**raccoon_form(served, PLATEAU), **change}
    form = {key: value for key, value in changed.items() if value}
    before = report_count(served)

    with pytest.raises(ValidationError, match=refusal):
        civicbot_post(served, form, check_first=True)

    assert report_count(served) == before
