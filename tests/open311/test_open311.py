"""Open311 GeoReport v2 through the real app, on SpatiaLite and PostGIS: discovery, the
service list, service definitions, tokens and unknown formats, in XML and JSON."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from georeport_doc import (
    SERVICES,
    SPECIFICATION,
    WITH_ATTRIBUTES,
    ZONED,
    GeoReport,
    as_xml_text,
    error_descriptions,
    expected_definition,
    expected_service,
    json_doc,
    xml_data,
    xml_doc,
)
from sqlalchemy.orm import Session, sessionmaker

from fieldops.catalog.models import ServiceType

FORMATS = ["xml", "json"]


# --- the catalogue this suite assumes -------------------------------------------------------


def test_the_catalogue_has_the_attributes_the_suite_relies_on() -> None:
    assert WITH_ATTRIBUTES == ["flooding", "traffic_signal_out", "wildlife"]
    assert SERVICES["vermin_housing"]["coarsen_public_location"] is True
    # No service defines a multivaluelist yet: attribute[code][] is not exercised.
    datatypes = {a["datatype"] for s in SERVICES.values() for a in s.get("attribute", [])}
    assert "multivaluelist" not in datatypes


# --- discovery ------------------------------------------------------------------------------


@pytest.fixture
def changeset(sessions: sessionmaker[Session]) -> str:
    """The newest service definition's timestamp: what discovery must call its changeset."""
    with sessions() as session:
        stamps = session.scalars(sa.select(ServiceType.updated_at)).all()
    assert stamps and all(s is not None for s in stamps)
    return max(s for s in stamps if s is not None).isoformat(timespec="seconds")


def test_discovery_json_has_every_required_field(georeport: GeoReport, changeset: str) -> None:
    settings = georeport.client.app.state.fieldops.settings  # type: ignore[attr-defined]

    body = json_doc(georeport.get("discovery", "json"))

    assert body == {
        "changeset": changeset,
        "contact": settings.contact,
        "key_service": settings.key_service,
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": "http://127.0.0.1:8000/open311/v2",
                "changeset": changeset,
                "type": "test",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }
    assert ZONED.match(body["changeset"])
    assert body["contact"].strip() and body["key_service"].strip()


def test_discovery_xml_nests_endpoints_and_formats(georeport: GeoReport, changeset: str) -> None:
    settings = georeport.client.app.state.fieldops.settings  # type: ignore[attr-defined]

    root = xml_doc(georeport.get("discovery", "xml"))

    assert root.tag == "discovery"
    assert [c.tag for c in root] == ["changeset", "contact", "key_service", "endpoints"]
    assert root.findtext("changeset") == changeset
    assert root.findtext("contact") == settings.contact
    assert root.findtext("key_service") == settings.key_service
    endpoints = root.findall("endpoints/endpoint")
    assert len(endpoints) == 1
    endpoint = endpoints[0]
    assert endpoint.findtext("specification") == SPECIFICATION
    assert endpoint.findtext("url") == "http://127.0.0.1:8000/open311/v2"
    assert endpoint.findtext("changeset") == changeset
    assert endpoint.findtext("type") == "test"
    assert [f.text for f in endpoint.findall("formats/format")] == [
        "text/xml",
        "application/json",
    ]


# --- services -------------------------------------------------------------------------------


def test_services_json_is_a_top_level_array_of_every_service(georeport: GeoReport) -> None:
    body = json_doc(georeport.get("services", "json"))

    assert isinstance(body, list)
    assert body == [expected_service(code) for code in sorted(SERVICES)]
    for service in body:
        assert isinstance(service["service_code"], str)
        assert type(service["metadata"]) is bool
    assert sorted(s["service_code"] for s in body if s["metadata"]) == WITH_ATTRIBUTES


def test_services_xml_says_the_same_as_json(georeport: GeoReport) -> None:
    root = xml_doc(georeport.get("services", "xml"))

    assert root.tag == "services"
    assert [c.tag for c in root] == ["service"] * len(SERVICES)
    assert xml_data(root) == as_xml_text([expected_service(code) for code in sorted(SERVICES)])
    wildlife = next(s for s in root if s.findtext("service_code") == "wildlife")
    assert wildlife.findtext("metadata") == "true"
    pothole = next(s for s in root if s.findtext("service_code") == "pothole")
    assert pothole.findtext("metadata") == "false"


@pytest.mark.parametrize("fmt", FORMATS)
def test_services_are_named_in_french_for_accept_language_fr(
    georeport: GeoReport, fmt: str
) -> None:
    response = georeport.client.get(
        f"/open311/v2/services.{fmt}", headers={"Accept-Language": "fr-CA,fr;q=0.9"}
    )

    expected = [expected_service(code, "fr") for code in sorted(SERVICES)]
    if fmt == "json":
        assert json_doc(response) == expected
    else:
        assert xml_data(xml_doc(response)) == as_xml_text(expected)
    names = {s["service_code"]: s["service_name"] for s in expected}
    assert names["flooding"] == "Inondation / eau sur la chaussée"


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unknown_jurisdiction_is_a_404_error_list(georeport: GeoReport, fmt: str) -> None:
    for path in ("services", "services/wildlife", "requests"):
        response = georeport.get(path, fmt, jurisdiction_id="toronto.ca")

        descriptions = error_descriptions(response, 404, fmt)
        assert len(descriptions) == 1
        assert "toronto.ca" in descriptions[0]
        assert "montreal.ca" in descriptions[0]


@pytest.mark.parametrize("jurisdiction_id", ["", "montreal.ca"])
def test_an_empty_or_own_jurisdiction_behaves_as_absent(
    georeport: GeoReport, jurisdiction_id: str
) -> None:
    plain = georeport.get("services", "json")

    given = georeport.get("services", "json", jurisdiction_id=jurisdiction_id)

    assert json_doc(given) == json_doc(plain) == [expected_service(c) for c in sorted(SERVICES)]


# --- service definitions --------------------------------------------------------------------


@pytest.mark.parametrize("code", WITH_ATTRIBUTES)
def test_a_service_definition_lists_its_attributes(georeport: GeoReport, code: str) -> None:
    body = json_doc(georeport.get(f"services/{code}", "json"))

    assert isinstance(body, dict)
    assert body == expected_definition(code)
    orders = [a["order"] for a in body["attributes"]]
    assert orders == sorted(set(orders)) and orders[0] >= 1
    for attr in body["attributes"]:
        assert (attr["datatype"] in {"singlevaluelist", "multivaluelist"}) == ("values" in attr)


def test_the_wildlife_definition_exactly(georeport: GeoReport) -> None:
    body = json_doc(georeport.get("services/wildlife", "json"))

    animal, behaviour = body["attributes"]
    assert animal == {
        "variable": True,
        "code": "animal",
        "datatype": "singlevaluelist",
        "required": True,
        "datatype_description": None,
        "order": 1,
        "description": "Which animal?",
        "values": [
            {"key": "raccoon", "name": "Raccoon"},
            {"key": "skunk", "name": "Skunk"},
            {"key": "fox", "name": "Fox"},
            {"key": "coyote", "name": "Coyote"},
            {"key": "other", "name": "Other"},
        ],
    }
    assert (behaviour["code"], behaviour["datatype"], behaviour["required"]) == (
        "behaviour",
        "string",
        False,
    )
    assert "values" not in behaviour


def test_a_service_definition_in_xml_nests_attributes_and_values(georeport: GeoReport) -> None:
    root = xml_doc(georeport.get("services/wildlife", "xml"))

    assert root.tag == "service_definition"
    assert [c.tag for c in root] == ["service_code", "attributes"]
    assert root.findtext("service_code") == "wildlife"
    attributes = root.findall("attributes/attribute")
    assert [a.findtext("code") for a in attributes] == ["animal", "behaviour"]
    animal = attributes[0]
    assert animal.findtext("variable") == "true"
    assert animal.findtext("datatype") == "singlevaluelist"
    assert animal.findtext("required") == "true"
    assert animal.findtext("order") == "1"
    assert animal.findtext("description") == "Which animal?"
    values = animal.findall("values/value")
    assert [(v.findtext("key"), v.findtext("name")) for v in values] == [
        ("raccoon", "Raccoon"),
        ("skunk", "Skunk"),
        ("fox", "Fox"),
        ("coyote", "Coyote"),
        ("other", "Other"),
    ]
    assert [[c.tag for c in v] for v in values] == [["key", "name"]] * 5
    assert attributes[1].find("values") is None
    assert xml_data(root) == as_xml_text(expected_definition("wildlife"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_service_definition_in_french(georeport: GeoReport, fmt: str) -> None:
    response = georeport.client.get(
        f"/open311/v2/services/traffic_signal_out.{fmt}", headers={"Accept-Language": "fr"}
    )

    expected = expected_definition("traffic_signal_out", "fr")
    if fmt == "json":
        assert json_doc(response) == expected
    else:
        assert xml_data(xml_doc(response)) == as_xml_text(expected)
    assert expected["attributes"][0]["values"][0] == {"key": "dark", "name": "Éteint"}


def test_a_service_without_attributes_has_an_empty_definition(georeport: GeoReport) -> None:
    assert json_doc(georeport.get("services/pothole", "json")) == {
        "service_code": "pothole",
        "attributes": [],
    }
    root = xml_doc(georeport.get("services/pothole", "xml"))
    assert [(c.tag, len(c)) for c in root] == [("service_code", 0), ("attributes", 0)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unknown_service_definition_is_a_404_error_list(georeport: GeoReport, fmt: str) -> None:
    response = georeport.get("services/unicorn_sighting", fmt)

    assert error_descriptions(response, 404, fmt) == ["no service 'unicorn_sighting'"]


# --- tokens and formats ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_token_is_never_found(georeport: GeoReport, fmt: str) -> None:
    response = georeport.get("tokens/12345", fmt)

    (description,) = error_descriptions(response, 404, fmt)
    assert description.startswith("no token '12345'")


@pytest.mark.parametrize("path", ["discovery", "services", "services/wildlife", "requests"])
def test_an_unknown_format_is_a_404(georeport: GeoReport, path: str) -> None:
    response = georeport.get(path, "yaml")

    assert error_descriptions(response, 404, "xml") == ["unknown format 'yaml': use .xml or .json"]


def test_posting_in_an_unknown_format_is_a_404_and_creates_nothing(
    georeport: GeoReport, count_rows: Callable[[str], int]
) -> None:
    response = georeport.post("pothole", (-73.58, 45.523), fmt="yaml")

    assert error_descriptions(response, 404, "xml") == ["unknown format 'yaml': use .xml or .json"]
    assert count_rows("reports") == 0
