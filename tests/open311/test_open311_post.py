"""POST requests (GeoReport v2 method 3) through the real app, on SpatiaLite and PostGIS:
what is created, what is refused (403, 404, 400 naming the field), empty parameters,
FixMyStreet's extra attributes, idempotency and merging into an open incident."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from georeport_doc import (
    BASE,
    PLATEAU,
    SOUTH_OF_ISLAND,
    GeoReport,
    error_descriptions,
    json_doc,
    moved,
    xml_doc,
)

FORMATS = ["xml", "json"]
Count = Callable[[str], int]


def counts(count_rows: Count) -> tuple[int, int]:
    return count_rows("incidents"), count_rows("reports")


# --- created --------------------------------------------------------------------------------


def test_a_valid_post_in_json_returns_the_new_id_and_no_token(
    georeport: GeoReport, count_rows: Count
) -> None:
    response = georeport.post("wildlife", PLATEAU, {"attribute[animal]": "raccoon"})

    body = json_doc(response, 201)
    assert isinstance(body, list) and len(body) == 1
    (request,) = body
    assert request == {
        "service_request_id": request["service_request_id"],
        "service_notice": None,
        "account_id": None,
    }
    assert isinstance(request["service_request_id"], str)
    assert request["service_request_id"].isdigit()
    assert "token" not in request
    assert counts(count_rows) == (1, 1)
    stored = georeport.one(request["service_request_id"], extensions="true")
    assert (stored["service_code"], stored["status"]) == ("wildlife", "open")
    assert stored["attributes"] == [{"code": "animal", "value": "raccoon"}]


def test_a_valid_post_in_xml_answers_service_requests_request(georeport: GeoReport) -> None:
    response = georeport.post("pothole", PLATEAU, {"account_id": "fms-77"}, fmt="xml")

    root = xml_doc(response, 201)
    assert root.tag == "service_requests"
    assert [c.tag for c in root] == ["request"]
    request = root[0]
    assert [c.tag for c in request] == ["service_request_id", "service_notice", "account_id"]
    request_id = request.findtext("service_request_id")
    assert request_id is not None and request_id.isdigit()
    assert request.find("token") is None
    assert request.findtext("account_id") == "fms-77"
    assert georeport.one(request_id)["service_code"] == "pothole"


def test_each_post_gets_its_own_id(georeport: GeoReport) -> None:
    first = georeport.create("pothole", PLATEAU)
    second = georeport.create("fallen_tree", PLATEAU)

    assert first != second
    assert sorted(georeport.ids()) == sorted([first, second])


def test_a_form_with_a_charset_keeps_accents_line_breaks_and_markup_characters(
    georeport: GeoReport,
) -> None:
    text = "Raton laveur coincé sous l'escalier & <pas> agressif\nDeuxième ligne : « ici »"
    body = urlencode(
        {
            "api_key": georeport.api_key,
            "service_code": "wildlife",
            "lat": "45.523",
            "long": "-73.58",
            "attribute[animal]": "raccoon",
            "description": text,
        }
    )

    response = georeport.client.post(
        f"{BASE}/requests.json",
        content=body.encode("utf-8"),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )

    request_id = json_doc(response, 201)[0]["service_request_id"]
    assert georeport.one(request_id)["description"] == text
    root = xml_doc(georeport.get(f"requests/{request_id}", "xml"))
    assert root.findtext("request/description") == text


# --- 403: the api_key -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("api_key", "description"),
    [
        (None, "api_key is required to post"),
        ("", "api_key is required to post"),
        ("fo_not-a-real-key", "api_key is missing or not valid"),
    ],
)
def test_a_missing_or_wrong_api_key_is_a_403_error_list(
    georeport: GeoReport, count_rows: Count, fmt: str, api_key: str | None, description: str
) -> None:
    response = georeport.post("pothole", PLATEAU, fmt=fmt, api_key=api_key)

    assert error_descriptions(response, 403, fmt) == [description]
    assert counts(count_rows) == (0, 0)


def test_a_403_in_xml_is_exactly_errors_error_code_description(georeport: GeoReport) -> None:
    response = georeport.post("pothole", PLATEAU, fmt="xml", api_key=None)

    root = xml_doc(response, 403)
    assert ET.tostring(root, encoding="unicode") == (
        "<errors><error><code>403</code>"
        "<description>api_key is required to post</description></error></errors>"
    )


def test_a_403_in_json_is_exactly_a_list_of_code_and_description(georeport: GeoReport) -> None:
    response = georeport.post("pothole", PLATEAU, fmt="json", api_key="fo_wrong")

    assert json_doc(response, 403) == [
        {"code": 403, "description": "api_key is missing or not valid"}
    ]


# --- 404 and 400: the service and the location ----------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unknown_service_code_is_a_404(
    georeport: GeoReport, count_rows: Count, fmt: str
) -> None:
    response = georeport.post("unicorn_sighting", PLATEAU, fmt=fmt)

    assert error_descriptions(response, 404, fmt) == ["service_code: no service 'unicorn_sighting'"]
    assert counts(count_rows) == (0, 0)


@pytest.mark.parametrize("service_code", [None, ""])
def test_a_missing_service_code_is_a_400(georeport: GeoReport, service_code: str | None) -> None:
    response = georeport.post(service_code, PLATEAU)

    assert error_descriptions(response, 400, "json") == ["service_code: is required"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("form", "descriptions"),
    [
        ({}, ["lat/long: a location is required: send lat and long"]),
        ({"lat": "", "long": ""}, ["lat/long: a location is required: send lat and long"]),
        (
            {"address_string": "4500 rue Saint-Denis, Montréal"},
            [
                "lat/long: this server locates reports by coordinates: send lat and long "
                "(address_string alone cannot be placed)"
            ],
        ),
        (
            {"lat": "45.523"},
            [
                "lat/long: send both lat and long, or neither",
                "lat/long: must be decimal degrees (WGS84)",
            ],
        ),
        (
            {"long": "-73.58", "lat": ""},
            [
                "lat/long: send both lat and long, or neither",
                "lat/long: must be decimal degrees (WGS84)",
            ],
        ),
        ({"lat": "north", "long": "-73.58"}, ["lat/long: must be decimal degrees (WGS84)"]),
        ({"lat": "91", "long": "-73.58"}, ["lat: must be a latitude between -90 and 90"]),
        ({"lat": "nan", "long": "-73.58"}, ["lat: must be a latitude between -90 and 90"]),
        ({"lat": "45.523", "long": "181"}, ["long: must be a longitude between -180 and 180"]),
    ],
)
def test_a_missing_or_bad_location_is_a_400_naming_it(
    georeport: GeoReport,
    count_rows: Count,
    fmt: str,
    form: dict[str, str],
    descriptions: list[str],
) -> None:
    response = georeport.post("pothole", None, form, fmt=fmt)

    assert error_descriptions(response, 400, fmt) == descriptions
    assert counts(count_rows) == (0, 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_point_outside_every_district_is_a_400_and_creates_nothing(
    georeport: GeoReport, count_rows: Count, fmt: str
) -> None:
    response = georeport.post("pothole", SOUTH_OF_ISLAND, fmt=fmt)

    assert error_descriptions(response, 400, fmt) == [
        "lat/long: outside the city's service area: no district contains it"
    ]
    assert counts(count_rows) == (0, 0)
    assert count_rows("incident_events") == 0
    assert georeport.ids() == []


# --- 400: description and attributes --------------------------------------------------------


def test_a_description_of_4000_characters_is_accepted_whole(georeport: GeoReport) -> None:
    text = "é" + "x" * 3998 + "!"

    request_id = georeport.create("pothole", PLATEAU, {"description": text})

    assert georeport.one(request_id)["description"] == text


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_description_of_4001_characters_is_a_400_naming_description(
    georeport: GeoReport, count_rows: Count, fmt: str
) -> None:
    response = georeport.post("pothole", PLATEAU, {"description": "x" * 4001}, fmt=fmt)

    assert error_descriptions(response, 400, fmt) == [
        "description: is 4001 characters; at most 4000"
    ]
    assert counts(count_rows) == (0, 0)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("service_code", "form", "description"),
    [
        ("wildlife", {}, "attribute[animal]: is required for this service"),
        ("wildlife", {"attribute[animal]": ""}, "attribute[animal]: is required for this service"),
        (
            "wildlife",
            {"attribute[animal]": "dragon"},
            "attribute[animal]: must be one of coyote, fox, other, raccoon, skunk",
        ),
        (
            "wildlife",
            {"attribute[animal]": "Raccoon"},
            "attribute[animal]: must be one of coyote, fox, other, raccoon, skunk",
        ),
        ("traffic_signal_out", {}, "attribute[signal_state]: is required for this service"),
        (
            "traffic_signal_out",
            {"attribute[signal_state]": "green"},
            "attribute[signal_state]: must be one of dark, flashing, stuck",
        ),
        (
            "flooding",
            {"attribute[water_depth]": "waist"},
            "attribute[water_depth]: must be one of above_knee, ankle, knee",
        ),
    ],
)
def test_a_missing_required_or_bad_list_attribute_is_a_400_naming_it(
    georeport: GeoReport,
    count_rows: Count,
    fmt: str,
    service_code: str,
    form: dict[str, str],
    description: str,
) -> None:
    response = georeport.post(service_code, PLATEAU, form, fmt=fmt)

    assert error_descriptions(response, 400, fmt) == [description]
    assert counts(count_rows) == (0, 0)


@pytest.mark.parametrize(
    ("service_code", "form", "attributes"),
    [
        ("flooding", {}, []),
        ("flooding", {"attribute[water_depth]": ""}, []),
        (
            "flooding",
            {"attribute[water_depth]": "knee"},
            [{"code": "water_depth", "value": "knee"}],
        ),
        (
            "traffic_signal_out",
            {"attribute[signal_state]": "flashing"},
            [{"code": "signal_state", "value": "flashing"}],
        ),
        (
            "wildlife",
            {"attribute[animal]": "skunk", "attribute[behaviour]": "trapped under a porch"},
            [
                {"code": "animal", "value": "skunk"},
                {"code": "behaviour", "value": "trapped under a porch"},
            ],
        ),
    ],
)
def test_valid_attributes_are_kept_and_optional_ones_may_be_left_out(
    georeport: GeoReport, service_code: str, form: dict[str, str], attributes: list[dict[str, str]]
) -> None:
    request_id = georeport.create(service_code, PLATEAU, form)

    assert georeport.one(request_id, extensions="true")["attributes"] == attributes


def test_every_problem_is_named_in_one_answer(georeport: GeoReport) -> None:
    form = {
        "lat": "91",
        "long": "-73.58",
        "description": "x" * 4001,
        "attribute[animal]": "dragon",
    }

    response = georeport.post("wildlife", None, form)

    assert error_descriptions(response, 400, "json") == [
        "lat: must be a latitude between -90 and 90",
        "description: is 4001 characters; at most 4000",
        "attribute[animal]: must be one of coyote, fox, other, raccoon, skunk",
    ]


def test_unknown_extra_attributes_as_fixmystreet_sends_them_are_accepted(
    georeport: GeoReport,
) -> None:
    form = {
        "attribute[animal]": "fox",
        "attribute[fixmystreet_id]": "4242",
        "attribute[closest_address]": "Rue Rachel Est",
        "attribute[easting]": "",
    }

    request_id = georeport.create("wildlife", PLATEAU, form)

    assert georeport.one(request_id, extensions="true")["attributes"] == [
        {"code": "animal", "value": "fox"},
        {"code": "closest_address", "value": "Rue Rachel Est"},
        {"code": "fixmystreet_id", "value": "4242"},
    ]


# --- empty optional parameters --------------------------------------------------------------


def test_empty_optional_parameters_behave_as_absent(
    georeport: GeoReport, count_rows: Count
) -> None:
    empty = {
        name: ""
        for name in (
            "email",
            "media_url",
            "description",
            "first_name",
            "last_name",
            "phone",
            "device_id",
            "account_id",
            "address_string",
            "address_id",
            "jurisdiction_id",
        )
    }

    response = georeport.post("pothole", PLATEAU, empty)

    body = json_doc(response, 201)
    assert body[0]["account_id"] is None
    stored = georeport.one(body[0]["service_request_id"])
    assert (stored["description"], stored["media_url"], stored["address"]) == (None, None, None)
    assert counts(count_rows) == (1, 1)


def test_a_non_empty_media_url_is_checked(georeport: GeoReport) -> None:
    # The contrast to the test above: media_url="" passes only because empty means absent.
    response = georeport.post("pothole", PLATEAU, {"media_url": "photo.jpg"})

    assert error_descriptions(response, 400, "json") == ["media_url: must be an http or https URL"]


def test_a_media_url_is_published(georeport: GeoReport) -> None:
    url = "https://photos.example.org/pothole-1.jpg"

    request_id = georeport.create("pothole", PLATEAU, {"media_url": url})

    assert georeport.one(request_id)["media_url"] == url


# --- Idempotency-Key ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_same_idempotency_key_twice_gives_the_same_id_and_one_report(
    georeport: GeoReport, count_rows: Count, fmt: str
) -> None:
    headers = {"Idempotency-Key": "fms-report-9001"}
    form = {"attribute[animal]": "coyote"}

    first = georeport.post("wildlife", PLATEAU, form, fmt=fmt, headers=headers)
    second = georeport.post("wildlife", PLATEAU, form, fmt=fmt, headers=headers)

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.content == second.content
    if fmt == "json":
        request_id = json_doc(first, 201)[0]["service_request_id"]
    else:
        request_id = xml_doc(first, 201).findtext("request/service_request_id")
    assert georeport.ids() == [request_id]
    assert counts(count_rows) == (1, 1)


def test_without_an_idempotency_key_a_repeat_is_a_new_report(
    georeport: GeoReport, count_rows: Count
) -> None:
    first = georeport.create("pothole", PLATEAU)
    second = georeport.create("pothole", PLATEAU)

    assert first != second
    # The same spot and group: the second report merges into the first's incident.
    assert counts(count_rows) == (1, 2)


# --- merging --------------------------------------------------------------------------------


def test_a_report_near_an_open_incident_of_the_same_group_merges(
    georeport: GeoReport, count_rows: Count
) -> None:
    # rats and wildlife share the "wildlife" group; 40 m is inside both radii (100 m, 75 m).
    first = georeport.create("wildlife", PLATEAU, {"attribute[animal]": "raccoon"})
    second = georeport.create("rats", moved(PLATEAU, north_m=40))

    one = georeport.one(first, extensions="true")
    two = georeport.one(second, extensions="true")
    assert one["extended_attributes"]["incident_id"] == two["extended_attributes"]["incident_id"]
    assert one["extended_attributes"]["reports_count"] == 2
    assert two["extended_attributes"]["reports_count"] == 2
    assert (one["service_code"], two["service_code"]) == ("wildlife", "rats")
    assert [n["type"] for n in two["notes"]] == ["opened", "report_merged"]
    # Both ids still resolve, each to a list of exactly one request.
    for request_id in (first, second):
        body = json_doc(georeport.get(f"requests/{request_id}"))
        assert [r["service_request_id"] for r in body] == [request_id]
    assert sorted(georeport.ids()) == sorted([first, second])
    assert counts(count_rows) == (1, 2)


def test_a_report_of_another_group_at_the_same_spot_does_not_merge(
    georeport: GeoReport, count_rows: Count
) -> None:
    first = georeport.create("wildlife", PLATEAU, {"attribute[animal]": "fox"})
    second = georeport.create("pothole", PLATEAU)

    assert georeport.incident_of(first) != georeport.incident_of(second)
    assert georeport.one(second, extensions="true")["extended_attributes"]["reports_count"] == 1
    assert counts(count_rows) == (2, 2)


# --- application bugs -----------------------------------------------------------------------


def test_the_xml_list_stays_well_formed_whatever_a_client_posted(georeport: GeoReport) -> None:
    response = georeport.post("pothole", PLATEAU, {"description": "bell\x07 and\x01 nul"})
    assert response.status_code in {201, 400}, response.text

    root = xml_doc(georeport.get("requests", "xml"))

    assert len(root) == len(georeport.requests())


def test_a_nul_character_in_the_description_is_a_400_naming_description(
    georeport: GeoReport, lenient_client: TestClient, count_rows: Count
) -> None:
    response = lenient_client.post(
        f"{BASE}/requests.json",
        data={
            "api_key": georeport.api_key,
            "service_code": "pothole",
            "lat": "45.523",
            "long": "-73.58",
            "description": "before\x00after",
        },
    )

    (description,) = error_descriptions(response, 400, "json")
    assert description.startswith("description: ")
    assert counts(count_rows) == (0, 0)
